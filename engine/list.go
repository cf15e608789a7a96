package engine

import (
	"encoding/json"
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
		for _, t := range listedTasks(pl, tags, skipTags) {
			fmt.Fprintf(w, "      %s\tTAGS: [%s]\t%s\n", t.Display(), strings.Join(uniq(t.Tags), ","), t.Pos)
		}
	}
}

// listedTasks is a play's tasks as --list-tasks shows them: blocks
// flattened, implicit tasks (fact gathering) left out, tags applied.
func listedTasks(pl *Play, tags, skipTags []string) []*Task {
	var out []*Task
	var walk func(ts []*Task)
	walk = func(ts []*Task) {
		for _, t := range ts {
			if t.Implicit {
				continue
			}
			if t.IsBlock {
				walk(t.Block)
				walk(t.Rescue)
				walk(t.Always)
				continue
			}
			if tagsSelected(t.Tags, tags, skipTags) {
				out = append(out, t)
			}
		}
	}
	walk(pl.Tasks)
	return out
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
	for i, pl := range pb.Plays {
		sel, err := listedHosts(pl, inv, limit)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\nplay #%d (%s): %s\tTAGS: [%s]\n    pattern: [%q]\n    hosts (%d):\n", i+1, pl.Hosts, pl.Name,
			strings.Join(pl.Tags, ","), pl.Hosts, len(sel))
		for _, h := range sel {
			fmt.Fprintf(w, "      %s\n", h)
		}
	}
	return nil
}

// listedHosts is the hosts a play would run on, --limit applied.
func listedHosts(pl *Play, inv *inventory.Inventory, limit string) ([]string, error) {
	var lim map[string]bool
	if limit != "" {
		hs, err := inv.Match(limit)
		if err != nil {
			return nil, &UsageError{fmt.Errorf("--limit: %w", err)}
		}
		lim = map[string]bool{}
		for _, h := range hs {
			lim[h] = true
		}
	}
	hs, err := inv.Match(pl.Hosts)
	if err != nil {
		return nil, &UsageError{fmt.Errorf("%s: hosts: %w", pl.Pos, err)}
	}
	sel := []string{}
	for _, h := range hs {
		if lim == nil || lim[h] {
			sel = append(sel, h)
		}
	}
	return sel, nil
}

// ListJSON is --list-hosts and --list-tasks with --output json: one
// document, {"playbook": …, "plays": [{"play", "name", "pattern", "tags",
// "hosts" (with hosts), "tasks" (with tasks: name, tags, pos "file:line")}]}.
// inv may be nil when hosts is false.
func ListJSON(w io.Writer, playbook string, pb *Playbook, inv *inventory.Inventory, hosts, tasks bool, limit string, tags, skipTags []string) error {
	type task struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
		Pos  string   `json:"pos"`
	}
	type play struct {
		Play    int       `json:"play"`
		Name    string    `json:"name"`
		Pattern string    `json:"pattern"`
		Tags    []string  `json:"tags"`
		Hosts   *[]string `json:"hosts,omitempty"`
		Tasks   *[]task   `json:"tasks,omitempty"`
	}
	doc := struct {
		Playbook string `json:"playbook"`
		Plays    []play `json:"plays"`
	}{Playbook: playbook, Plays: []play{}}
	for i, pl := range pb.Plays {
		p := play{Play: i + 1, Name: pl.Name, Pattern: pl.Hosts, Tags: nonNil(pl.Tags)}
		if hosts {
			sel, err := listedHosts(pl, inv, limit)
			if err != nil {
				return err
			}
			p.Hosts = &sel
		}
		if tasks {
			ts := []task{}
			for _, t := range listedTasks(pl, tags, skipTags) {
				ts = append(ts, task{Name: t.Display(), Tags: nonNil(uniq(t.Tags)), Pos: t.Pos.String()})
			}
			p.Tasks = &ts
		}
		doc.Plays = append(doc.Plays, p)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
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
