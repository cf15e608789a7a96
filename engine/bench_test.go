package engine

import (
	"fmt"
	"strings"
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

// BenchmarkWarmRun50Hosts200Tasks is the executor's own overhead on a warm
// run: 50 fake hosts, 200 probeable tasks each (answers come from Go, not
// a shell).
func BenchmarkWarmRun50Hosts200Tasks(b *testing.B) {
	var pb strings.Builder
	pb.WriteString("- hosts: all\n  vars: {base: data}\n  tasks:\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&pb, "    - name: file %d\n      tfile: {path: \"{{ .base }}/p-{{ .inventory_hostname }}-%d\", content: \"c%d\"}\n", i, i, i)
	}
	var inv strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&inv, "h%02d\n", i)
	}
	e := newEnv(b, inv.String(), map[string]string{"site.yml": pb.String(), "data/.keep": ""})
	o := e.opts("site.yml")
	if _, err := e.run(o); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.run(o); err != nil {
			b.Fatal(err)
		}
	}
}
