package engine

import (
	"testing"

	"gokube/inventory"
)

// BenchmarkTaskRender measures what the executor pays per task and host
// to build the variable scope and render a typical argument.
func BenchmarkTaskRender(b *testing.B) {
	inv, err := inventory.Parse("inv.ini", []byte("[etcd]\nnode-1 a=1\nnode-2\nnode-3\n"), inventory.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	r := &run{inv: inv, pb: &Playbook{}, funcs: baseFuncs(), hosts: map[string]*hostState{}}
	r.tmpl = newTmplCache(r.funcs)
	for _, n := range inv.HostNames() {
		h, _ := inv.Host(n)
		r.hosts[n] = &hostState{name: n, inv: h.Vars, groups: h.Groups, vars: map[string]any{}, facts: map[string]any{}}
	}
	t := &Task{Pos: Pos{"x.yml", 1}}
	b.ReportAllocs()
	for b.Loop() {
		sc := r.taskScope(r.hosts["node-1"], t)
		if _, err := sc.render(t.Pos, "{{ .a }}/{{ .inventory_hostname }}/conf"); err != nil {
			b.Fatal(err)
		}
	}
}
