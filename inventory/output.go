package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// ListJSON returns the inventory in the shape of `ansible-inventory --list`:
// one object per non-empty group with its direct "hosts" and "children"
// (each sorted by name, empty lists left out), "all" with children only,
// and "_meta.hostvars" with every host's merged vars (hosts without vars
// left out). Keys are sorted and indented by four spaces as Ansible prints
// them; there is no trailing newline.
func (inv *Inventory) ListJSON() ([]byte, error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := map[string]any{}
	seen := map[string]bool{}
	var format func(string)
	format = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		g := inv.groups[name]
		entry := map[string]any{}
		if name != "all" && len(g.hosts) > 0 {
			entry["hosts"] = sortedCopy(g.hosts)
		}
		children := sortedCopy(g.children)
		if len(children) > 0 {
			entry["children"] = children
		}
		for _, c := range children {
			format(c)
		}
		if len(entry) > 0 {
			out[name] = entry
		}
	}
	format("all")
	hostvars := map[string]any{}
	for _, hn := range inv.hostOrder {
		if h := inv.merged[hn]; len(h.Vars) > 0 {
			hostvars[hn] = h.Vars
		}
	}
	out["_meta"] = map[string]any{"hostvars": hostvars}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("inventory: --list: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// Graph returns the inventory in the shape of `ansible-inventory --graph`:
//
//	@all:
//	  |--@ungrouped:
//	  |--@web:
//	  |  |--node1
//
// Children and hosts are sorted by name, children first; a group under
// several parents is drawn under each. No trailing newline.
func (inv *Inventory) Graph() string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	var b strings.Builder
	var walk func(name string, depth int)
	line := func(s string, depth int) {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		if depth > 0 {
			b.WriteString(strings.Repeat("  |", depth))
			b.WriteString("--")
		}
		b.WriteString(s)
	}
	walk = func(name string, depth int) {
		g := inv.groups[name]
		line("@"+name+":", depth)
		for _, c := range sortedCopy(g.children) {
			walk(c, depth+1)
		}
		if name != "all" {
			for _, h := range sortedCopy(g.hosts) {
				line(h, depth+1)
			}
		}
	}
	walk("all", 0)
	return b.String()
}
