package engine

import (
	"fmt"
	"io"
	"strings"

	"gokube/inventory"
)

// ListTasks prints every play's tasks (after tag selection) without
// contacting any host, like `ansible-playbook --list-tasks`.
func ListTasks(w io.Writer, pb *Playbook, tags, skipTags []string) {
	for i, pl := range pb.Plays {
		fmt.Fprintf(w, "\nplay #%d (%s): %s\tTAGS: [%s]\n    tasks:\n", i+1, pl.Hosts, pl.Name, strings.Join(pl.Tags, ","))
		var walk func(ts []*Task, indent string)
		walk = func(ts []*Task, indent string) {
			for _, t := range ts {
				if t.Implicit {
					continue
				}
				if t.IsBlock {
					walk(t.Block, indent)
					walk(t.Rescue, indent)
					walk(t.Always, indent)
					continue
				}
				if !tagsSelected(t.Tags, tags, skipTags) {
					continue
				}
				fmt.Fprintf(w, "%s%s\tTAGS: [%s]\t%s\n", indent, t.Display(), strings.Join(uniq(t.Tags), ","), t.Pos)
			}
		}
		walk(pl.Tasks, "      ")
	}
}

// uniq drops repeated tags, keeping the first of each in order (a
// sort-based slices.Compact would reorder them).
func uniq(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ListHosts prints the hosts each play would run on.
func ListHosts(w io.Writer, pb *Playbook, inv *inventory.Inventory, limit string) error {
	var lim map[string]bool
	if limit != "" {
		hs, err := inv.Match(limit)
		if err != nil {
			return &UsageError{fmt.Errorf("--limit: %w", err)}
		}
		lim = map[string]bool{}
		for _, h := range hs {
			lim[h] = true
		}
	}
	for i, pl := range pb.Plays {
		hs, err := inv.Match(pl.Hosts)
		if err != nil {
			return &UsageError{fmt.Errorf("%s: hosts: %w", pl.Pos, err)}
		}
		var sel []string
		for _, h := range hs {
			if lim == nil || lim[h] {
				sel = append(sel, h)
			}
		}
		fmt.Fprintf(w, "\nplay #%d (%s): %s\tTAGS: [%s]\n    pattern: [%q]\n    hosts (%d):\n", i+1, pl.Hosts, pl.Name,
			strings.Join(pl.Tags, ","), pl.Hosts, len(sel))
		for _, h := range sel {
			fmt.Fprintf(w, "      %s\n", h)
		}
	}
	return nil
}

// Graph writes the playbook's plan as a Graphviz DOT digraph: plays, their
// tasks in run order, block/rescue/always edges and handlers.
func Graph(w io.Writer, pb *Playbook) {
	fmt.Fprintln(w, "digraph playbook {")
	fmt.Fprintln(w, "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];")
	id := 0
	next := func() string { id++; return fmt.Sprintf("n%d", id) }
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	prev := ""
	for i, pl := range pb.Plays {
		pn := next()
		fmt.Fprintf(w, "  %s [label=%s, shape=ellipse, style=filled, fillcolor=lightblue];\n", pn,
			q(fmt.Sprintf("play #%d: %s\nhosts: %s", i+1, pl.Name, pl.Hosts)))
		if prev != "" {
			fmt.Fprintf(w, "  %s -> %s [style=bold];\n", prev, pn)
		}
		last := pn
		var walk func(ts []*Task, from string, label string) string
		walk = func(ts []*Task, from string, label string) string {
			cur := from
			for _, t := range ts {
				if t.Implicit && t.Action == "meta" {
					continue
				}
				if t.IsBlock {
					bn := next()
					fmt.Fprintf(w, "  %s [label=%s, shape=diamond];\n", bn, q("block "+t.Name))
					fmt.Fprintf(w, "  %s -> %s%s;\n", cur, bn, label)
					label = ""
					end := walk(t.Block, bn, "")
					if len(t.Rescue) > 0 {
						walk(t.Rescue, bn, " [label=\"rescue\", style=dashed, color=red]")
					}
					if len(t.Always) > 0 {
						end = walk(t.Always, end, " [label=\"always\"]")
					}
					cur = end
					continue
				}
				tn := next()
				fmt.Fprintf(w, "  %s [label=%s];\n", tn, q(t.Display()+"\n"+t.Action))
				fmt.Fprintf(w, "  %s -> %s%s;\n", cur, tn, label)
				label = ""
				cur = tn
			}
			return cur
		}
		last = walk(pl.Tasks, pn, "")
		for _, h := range pl.Handlers {
			hn := next()
			fmt.Fprintf(w, "  %s [label=%s, style=dashed];\n", hn, q("handler: "+h.Display()))
			fmt.Fprintf(w, "  %s -> %s [style=dotted];\n", pn, hn)
		}
		prev = last
	}
	fmt.Fprintln(w, "}")
}
