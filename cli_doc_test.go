package main

import (
	"bytes"
	"strings"
	"testing"

	"gokube/engine"
	"gokube/modules"
)

// `gokube doc --list` names every module a task may use, each with a
// summary; `gokube doc NAME` prints its page; an unknown name is an error.
func TestDocCommand(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := newDocCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	list, err := run("--list")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		name, summary, _ := strings.Cut(l, " ")
		lines[name] = strings.TrimSpace(summary)
	}
	names := modules.NewRegistry().Names()
	for n := range engine.ActionSpecs() {
		names = append(names, n)
	}
	for _, n := range append(names, "import_role") {
		if lines[n] == "" {
			t.Errorf("--list: %s missing or without summary", n)
		}
	}
	page, err := run("ansible.builtin.apt")
	if err != nil || !strings.Contains(page, "> ANSIBLE.BUILTIN.APT") || !strings.Contains(page, "- update_cache\n") {
		t.Fatalf("doc apt: %v\n%s", err, page)
	}
	if _, err := run("no_such_module"); err == nil || !strings.Contains(err.Error(), `no module "no_such_module"`) {
		t.Fatalf("unknown module: %v", err)
	}
}
