package engine

import (
	"fmt"
	"strings"
	"testing"
)

// precedenceWorld builds an inventory and a playbook that define variable
// name at the given levels (each level's value is the level's name) and
// returns what a task in role r sees.
func precedence(t *testing.T, name string, levels ...string) any {
	t.Helper()
	on := map[string]bool{}
	for _, l := range levels {
		on[l] = true
	}
	kv := func(level string) string {
		if on[level] {
			return fmt.Sprintf("%s=%s", name, level)
		}
		return ""
	}
	yml := func(level, indent string) string {
		if on[level] {
			return fmt.Sprintf("%s%s: %s\n", indent, name, level)
		}
		return ""
	}
	inv := fmt.Sprintf("[parent:children]\nchild\n[child]\nnode-1 %s\n[all:vars]\n%s\n[parent:vars]\n%s\n[child:vars]\n%s\n",
		kv("host"), kv("all"), kv("parent"), kv("child"))
	var pb strings.Builder
	fmt.Fprintf(&pb, "- hosts: all\n  gather_facts: %v\n  vars_files: [vf.yml]\n  vars:\n    unused: 1\n%s  roles: [r]\n", on["facts"], yml("play", "    "))
	var tasks strings.Builder
	if on["set_fact"] {
		fmt.Fprintf(&tasks, "- set_fact:\n    %s: set_fact\n", name)
	}
	fmt.Fprintf(&tasks, "- vars:\n    unused: 1\n%s  block:\n    - name: probe\n      debug: {msg: \"{{ .%s }}\"}\n      register: out\n      vars:\n        unused: 1\n%s",
		yml("block", "    "), name, yml("task", "        "))
	files := map[string]string{
		"site.yml":                      pb.String(),
		"vf.yml":                        "unused: 1\n" + yml("vars_files", ""),
		"roles/r/defaults/main.yml":     "unused: 1\n" + yml("role_defaults", ""),
		"roles/r/vars/main.yml":         "unused: 1\n" + yml("role_vars", ""),
		"roles/r/tasks/main.yml":        tasks.String(),
		"roles/other/defaults/main.yml": "unused: 1\n",
	}
	e := newEnv(t, inv, files)
	o := e.opts("site.yml")
	if on["extra"] {
		o.ExtraVars = []string{name + "=extra"}
	}
	r := mustRun(t, e, o)
	return r.Vars["node-1"]["out"].(map[string]any)["msg"]
}

// One test per level: the level wins over the one just below it.
func TestPrecedence(t *testing.T) {
	cases := []struct {
		name   string
		levels []string
		want   string
	}{
		{"x", []string{"role_defaults"}, "role_defaults"},
		{"x", []string{"role_defaults", "all"}, "all"},
		{"x", []string{"all", "parent"}, "parent"},
		{"x", []string{"parent", "child"}, "child"},
		{"x", []string{"child", "host"}, "host"},
		{"ansible_distribution", []string{"host", "facts"}, "Debian"},
		{"ansible_distribution", []string{"facts", "play"}, "play"},
		{"x", []string{"host", "play"}, "play"},
		{"x", []string{"play", "vars_files"}, "vars_files"},
		{"x", []string{"vars_files", "role_vars"}, "role_vars"},
		{"x", []string{"role_vars", "block"}, "block"},
		{"x", []string{"block", "task"}, "task"},
		{"x", []string{"task", "set_fact"}, "set_fact"},
		{"x", []string{"set_fact", "extra"}, "extra"},
		{"x", []string{"role_defaults", "all", "parent", "child", "host", "play", "vars_files", "role_vars", "block", "task", "set_fact", "extra"}, "extra"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.levels, "<"), func(t *testing.T) {
			if got := precedence(t, c.name, c.levels...); got != c.want {
				t.Fatalf("%s: got %v, want %s", c.name, got, c.want)
			}
		})
	}
}

func TestMagicVarsWinOverExtraVars(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": "- hosts: all\n  gather_facts: false\n  tasks:\n    - debug: {msg: \"{{ .inventory_hostname }}\"}\n      register: out\n"})
	o := e.opts("site.yml")
	o.ExtraVars = []string{"inventory_hostname=evil"}
	r := mustRun(t, e, o)
	if got := r.Vars["node-1"]["out"].(map[string]any)["msg"]; got != "node-1" {
		t.Fatalf("got %v", got)
	}
}

func TestLazyVarsAndNativeTypes(t *testing.T) {
	e := newEnv(t, "node-1 port=2380\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    url: "https://{{ .addr }}:{{ .port }}"
    addr: "{{ .inventory_hostname }}"
    ports: "{{ list .port 2379 }}"
    enabled: "{{ eq .port 2380 }}"
    conf: {nested: "{{ .url }}/x", list: ["{{ .addr }}"]}
  tasks:
    - debug: {msg: "{{ .url }}"}
      register: a
    - debug: {msg: "{{ .ports }}"}
      register: b
    - debug: {msg: "{{ .enabled }}"}
      register: c
    - debug: {msg: "{{ .conf }}"}
      register: d
`})
	r := mustRun(t, e, e.opts("site.yml"))
	v := r.Vars["node-1"]
	if got := v["a"].(map[string]any)["msg"]; got != "https://node-1:2380" {
		t.Fatalf("a = %v", got)
	}
	if got := fmt.Sprintf("%#v", v["b"].(map[string]any)["msg"]); got != "[]interface {}{2380, 2379}" {
		t.Fatalf("b = %s", got)
	}
	if got := v["c"].(map[string]any)["msg"]; got != true {
		t.Fatalf("c = %#v", got)
	}
	d := v["d"].(map[string]any)["msg"].(map[string]any)
	if d["nested"] != "https://node-1:2380/x" || d["list"].([]any)[0] != "node-1" {
		t.Fatalf("d = %v", d)
	}
}
