package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"gokube/engine"
	"gokube/modules"
)

// docEntry is one documented name: a host module or an engine action.
type docEntry struct {
	spec modules.Spec
	also []string
}

// docEntries gathers every action a task may name, from the Specs the
// engine validates tasks against.
func docEntries() map[string]docEntry {
	reg := modules.NewRegistry()
	out := map[string]docEntry{}
	for _, n := range reg.Names() {
		m, _ := reg.Lookup(n)
		out[n] = docEntry{spec: m.Spec(), also: reg.Also(n)}
	}
	for n, s := range engine.ActionSpecs() {
		e := docEntry{spec: s}
		if n == "include_role" {
			e.also = []string{"import_role"}
		}
		out[n] = e
	}
	out["import_role"] = docEntry{spec: out["include_role"].spec, also: []string{"include_role"}}
	return out
}

func newDocCmd() *cobra.Command {
	var list bool
	cmd := &cobra.Command{
		Use:     "doc [--list] [MODULE...]",
		Short:   "Show module documentation (arguments, types, defaults, choices, returned values), generated from the modules' Specs",
		Example: "  gokube doc --list\n  gokube doc package\n  gokube doc copy template",
		RunE: func(cmd *cobra.Command, args []string) error {
			entries := docEntries()
			out := cmd.OutOrStdout()
			if list || len(args) == 0 {
				writeDocList(out, entries)
				return nil
			}
			for i, name := range args {
				e, ok := entries[strings.TrimPrefix(strings.TrimPrefix(name, "ansible.builtin."), "ansible.legacy.")]
				if !ok {
					return fmt.Errorf("no module %q (gokube doc --list shows them)", name)
				}
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprint(out, modules.RenderDoc(name, e.spec, e.also))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&list, "list", "l", false, "list every module with its summary")
	return cmd
}

func writeDocList(w io.Writer, entries map[string]docEntry) {
	names := make([]string, 0, len(entries))
	width := 0
	for n := range entries {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "%-*s  %s\n", width, n, modules.Summary(entries[n].spec))
	}
}
