package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gokube/modules"
)

func TestVariableCycle(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    a: "{{ .b }}"
    b: "x{{ .c }}"
    c: "{{ .a }}"
  tasks:
    - debug: {msg: "{{ .a }}"}
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(e.out.String(), "site.yml:9: variable cycle: a -> b -> c -> a (host node-1)") {
		t.Fatalf("err %v\n%s", err, e.out.String())
	}
}

func TestTemplateErrors(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2 etcd_peer_port=2380\n", map[string]string{
		"site.yml": `
- hosts: all
  gather_facts: false
  roles: [etcd]
`,
		"roles/etcd/tasks/main.yml": `
- name: env file
  template: {src: etcd.env.tmpl, dest: "out/{{ .inventory_hostname }}.env"}
- name: inline
  tfile:
    path: x
    content: "port {{ .missing_inline }}"
`,
		"roles/etcd/templates/etcd.env.tmpl": "# comment\nA={{ .inventory_hostname }}\nPEER={{ .etcd_peer_port }}\n",
	})
	if err := os.MkdirAll(filepath.Join(e.dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := e.opts("site.yml")
	reg := modules.NewRegistry()
	reg.Register(tfile{}, "tfile")
	o.Registry = reg
	_, err := e.run(o)
	if err == nil {
		t.Fatal("want failure")
	}
	out := e.out.String()
	for _, w := range []string{
		"roles/etcd/templates/etcd.env.tmpl:3: .etcd_peer_port is not defined (host node-1)",
		"roles/etcd/tasks/main.yml:7: .missing_inline is not defined (host node-2)",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	f, ok := e.fake("node-2").File("out/node-2.env")
	if !ok || !strings.Contains(string(f.Data), "PEER=2380") {
		t.Fatalf("node-2 env file: %q %v", f.Data, ok)
	}
}

func TestExtraVarsForms(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.yml"), []byte("a: 1\nb: [x]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"c": {"d": true}}`), 0o644)
	m, err := ParseExtraVars([]string{"k=v k2='with space'", "@" + filepath.Join(dir, "x.yml"), "@" + filepath.Join(dir, "x.json"), `{"n": 3}`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantM := map[string]any{"k": "v", "k2": "with space", "a": 1, "b": []any{"x"}, "c": map[string]any{"d": true}, "n": 3}
	if !reflect.DeepEqual(m, wantM) {
		t.Fatalf("got %#v", m)
	}
	if _, err := ParseExtraVars([]string{"novalue"}, nil); err == nil {
		t.Fatal("want error for a bare word")
	}
}

func TestTruthyAndConditions(t *testing.T) {
	for v, w := range map[any]bool{"": false, "no": false, "False": false, "0": false, "yes": true, "x": true, 0: false, 2: true, true: true, nil: false} {
		if truthy(v) != w {
			t.Errorf("truthy(%#v) = %v", v, !w)
		}
	}
	e := newEnv(t, "node-1 flag=yes mode=discovery\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: bare name, command: "true", when: flag}
    - {name: pipeline, command: "true", when: eq .mode "discovery"}
    - {name: list, command: "true", when: [.flag, eq .mode "static"]}
    - {name: default, command: "true", when: "{{ .nope | default false }}"}
    - {name: defined, command: "true", when: not (defined "nope")}
    - {name: bool helper, command: "true", when: bool .flag}
`})
	r := mustRun(t, e, e.opts("site.yml"))
	want(t, eventsOf(r, "node-1"), []string{"bare name=changed", "pipeline=changed", "list=skipping", "default=skipping", "defined=changed", "bool helper=changed"})
}

func TestErrorInsideVariableNamesUseAndChain(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    a: "x-{{ .b }}"
    b: "{{ .missing }}"
  tasks:
    - name: use
      debug:
        msg: "{{ .a }}"
`})
	_, err := e.run(e.opts("site.yml"))
	// b's own template failed: the message names the file that set b.
	w := "site.yml:10: .missing is not defined (host node-1) (while rendering variable a -> b, set in vars of the play at "
	if err == nil || !strings.Contains(e.out.String(), w) || !strings.Contains(e.out.String(), "site.yml:2)") {
		t.Fatalf("want %q in\n%s", w, e.out.String())
	}
}

// TestErrorNamesTheVarsFileOfTheVariable: a variable from group_vars whose
// template fails is named with its file and line.
func TestErrorNamesTheVarsFileOfTheVariable(t *testing.T) {
	e := newEnv(t, "[etcd]\nnode-1\n", map[string]string{
		"group_vars/etcd.yml": "etcd_port: 2379\netcd_url: \"https://{{ .etcd_adress }}:{{ .etcd_port }}\"\n",
		"site.yml":            "- hosts: all\n  gather_facts: false\n  tasks:\n    - debug: {msg: \"{{ .etcd_url }}\"}\n",
	})
	_, err := e.run(e.opts("site.yml"))
	w := ".etcd_adress is not defined (host node-1) (while rendering variable etcd_url, set in " + filepath.Join(e.dir, "group_vars/etcd.yml") + ":2 (inventory))"
	if err == nil || !strings.Contains(e.out.String(), w) {
		t.Fatalf("want %q in\n%s", w, e.out.String())
	}
}
