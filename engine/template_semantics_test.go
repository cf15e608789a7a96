package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gokube/inventory"
	"gokube/modules"
)

// semScope is node-1's scope in a two-host inventory, with extra vars (as
// -e gives them: strings) on top.
func semScope(t *testing.T, extra map[string]any) *scope {
	t.Helper()
	inv, err := inventory.Parse("inv.ini", []byte("[web]\nnode-1 app_port=8080\nnode-2\n"), inventory.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{inv: inv, pb: &Playbook{}, funcs: baseFuncs(), hosts: map[string]*hostState{}, extra: extra}
	r.tmpl = newTmplCache(r.funcs)
	for _, n := range inv.HostNames() {
		h, _ := inv.Host(n)
		r.hosts[n] = &hostState{name: n, inv: h.Vars, groups: h.Groups, vars: map[string]any{}, facts: map[string]any{}}
	}
	r.hosts["node-1"].vars = map[string]any{
		"item":  map[string]any{"name": "alice", "groups": []any{"sudo"}},
		"m":     map[string]any{"name": "x", "inner": map[string]any{"k": "v"}},
		"r":     map[string]any{"changed": true, "rc": 0},
		"users": []any{map[string]any{"name": "alice", "shell": "/bin/zsh"}, map[string]any{"name": "bob"}},
	}
	return r.taskScope(r.hosts["node-1"], &Task{Pos: Pos{"x.yml", 1}})
}

func TestNestedDefaults(t *testing.T) {
	sc := semScope(t, nil)
	cases := []struct{ tmpl, want string }{
		{`{{ .item.shell | default "/bin/bash" }}`, "/bin/bash"},
		{`{{ .item.name | default "/bin/bash" }}`, "alice"},
		{`{{ default "/bin/bash" .item.shell }}`, "/bin/bash"},
		{`{{ .nope.deeper.still | default "d" }}`, "d"},
		{`{{ $.item.shell | default "s" }}`, "s"},
		{`{{ coalesce .item.shell .m.inner.nope "c" }}`, "c"},
		{`{{ empty .item.shell }}`, "true"},
		{`{{ get .item "shell" "/bin/bash" }}`, "/bin/bash"},
		{`{{ get .m "inner" "k" "d" }}`, "v"},
		{`{{ get .nope "x" "d" }}`, "d"},
		{`{{ get .m "name" }}|{{ get .m "nope" }}|{{ not (get .m "nope") }}`, "x||true"}, // sprig's 2-argument get
		{`{{ range .users }}{{ .name }}:{{ .shell | default "/bin/bash" }} {{ end }}`, "alice:/bin/zsh bob:/bin/bash "},
		{`{{ range $u := .users }}{{ $u.shell | default "-" }} {{ end }}`, "/bin/zsh - "},
		{`{{ (index .users 1).shell | default "idx" }}`, "idx"},
		{`{{ hostvar "node-2" "app_port" | default 9090 }}`, "9090"},
		{`{{ default 9090 (hostvar "node-2" "app_port") }}`, "9090"},
		{`{{ hostvar "node-1" "app_port" | default 9090 }}`, "8080"},
		{`{{ hostvar "node-2" "app_port" 7070 }}`, "7070"},
		{`{{ .hostvars.node2.app_port | default 1 }}`, "1"},
		{`{{ defined "m.name" }} {{ defined "m.inner.k" }} {{ defined "m.nope" }} {{ defined "nope.x" }} {{ defined "m" }}`, "true true false false true"},
	}
	for _, c := range cases {
		got, err := sc.render(Pos{"x.yml", 1}, c.tmpl)
		if err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.tmpl, got, err, c.want)
		}
	}
	// Outside default & co a missing key still fails, naming the path.
	for tmpl, want := range map[string]string{
		`{{ .item.shell }}`:                 ".item.shell is not defined",
		`{{ hostvar "node-2" "app_port" }}`: `variable "app_port" is not defined for host node-2`,
		`{{ .nope }}`:                       ".nope is not defined",
	} {
		if _, err := sc.render(Pos{"x.yml", 1}, tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", tmpl, err, want)
		}
	}
}

func TestTruthinessOneRule(t *testing.T) {
	sc := semScope(t, map[string]any{"flag": "false", "yes_flag": "yes", "zero": "0", "app_port": "9090"})
	for _, c := range []struct {
		expr string
		want bool
	}{
		{"flag", false}, {"yes_flag", true}, {"zero", false}, {"not flag", true},
		{"r.changed", true}, {"not r.changed", false}, {"r.rc", false},
		{"and .yes_flag .flag", false}, {"or .flag .zero", false}, {"or .flag .yes_flag", true},
		{"and .yes_flag (not .flag)", true},
		{"gt .app_port 1000", true}, {"eq .app_port 9090", true}, {"lt .app_port 80", false},
		{"and (defined \"m.name\") (eq .m.name \"x\")", true},
		{"and (defined \"m.nope\") .m.nope", false}, // short-circuits like Ansible
	} {
		got, err := sc.cond(Cond{Expr: c.expr, Pos: Pos{"x.yml", 1}})
		if err != nil || got != c.want {
			t.Errorf("when: %s = %v, %v; want %v", c.expr, got, err, c.want)
		}
		// The same expression in {{ if }} gives the same answer.
		out, err := sc.render(Pos{"x.yml", 1}, "{{ if "+dotPath(c.expr)+" }}T{{ else }}F{{ end }}")
		if c.expr == "not flag" || c.expr == "not r.changed" {
			out, err = sc.render(Pos{"x.yml", 1}, "{{ if not ."+strings.TrimPrefix(c.expr, "not ")+" }}T{{ else }}F{{ end }}")
		}
		if err != nil || out != map[bool]string{true: "T", false: "F"}[c.want] {
			t.Errorf("{{ if %s }} = %q, %v; want %v", c.expr, out, err, c.want)
		}
	}
}

func TestNumericComparisonAndVersions(t *testing.T) {
	sc := semScope(t, map[string]any{"app_port": "9090", "kernel": "4.19.0-25-amd64", "word": "abc",
		"id1": uint64(18446744073709551615), "id2": uint64(18446744073709551614)})
	for tmpl, want := range map[string]string{
		`{{ gt .app_port 1000 }}`:                       "true",
		`{{ ge 9090 .app_port }}`:                       "true",
		`{{ eq .app_port 9090 }}`:                       "true",
		`{{ eq .app_port "9090" }}`:                     "true",
		`{{ ne .app_port 9091 }}`:                       "true",
		`{{ eq "a" "b" "a" }}`:                          "true",
		`{{ lt "abc" "abd" }}`:                          "true",
		`{{ eq 1 1.0 }}`:                                "true",
		`{{ eq .nope_list nil }}`:                       "true",
		`{{ version .kernel "<" "5.10" }}`:              "true",
		`{{ version .kernel ">=" "4.19" }}`:             "true",
		`{{ version "1.10.0" "gt" "1.9.3" }}`:           "true",
		`{{ version "1.2.3" "==" "1.2.3" "strict" }}`:   "true",
		`{{ version "1.2b1" "<" "1.2" "strict" }}`:      "true",
		`{{ version "v1.31.2" ">=" "1.31" }}`:           "true",
		`{{ semverCompare "<5.10" "4.19.0-25-amd64" }}`: "false", // sprig's, for contrast
		`{{ version "3.5.10" "<" "3.5.9" }}`:            "false",
		`{{ if gt .app_port 1000 }}high{{ end }}`:       "high",
		`{{ .app_port | int | add 1 }}`:                 "9091",
	} {
		if strings.Contains(tmpl, "nope_list") {
			continue // eq with an undefined operand fails; see below
		}
		got, err := sc.render(Pos{"x.yml", 1}, tmpl)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", tmpl, got, err, want)
		}
	}
	for tmpl, want := range map[string]string{
		`{{ gt .word 1000 }}`:                        `gt: cannot compare string "abc" with number 1000; convert first`,
		`{{ version "1.2.3-rc1" "<" "2" "strict" }}`: `"1.2.3-rc1" is not a strict version`,
		`{{ version "1" "~" "2" }}`:                  `operator "~" is not one of`,
	} {
		if _, err := sc.render(Pos{"x.yml", 1}, tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", tmpl, err, want)
		}
	}
}

// TestNativeTypingOnlyForALoneAction writes files through every YAML
// quoting style and compares bytes: text around an action (a newline
// included) makes the value a string, kept byte for byte.
func TestNativeTypingOnlyForALoneAction(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  vars:
    key: "ssh-ed25519 AAAA x@y"
    n: 3
  tasks:
    - {copy: {dest: DIR/out/dq, content: "{{ .key }}\n"}}
    - {copy: {dest: DIR/out/dq-plain, content: "plain\n"}}
    - {copy: {dest: DIR/out/sq, content: '{{ .key }}'}}
    - {copy: {dest: DIR/out/lead, content: " {{ .key }}"}}
    - copy:
        dest: DIR/out/literal
        content: |
          {{ .key }}
    - copy:
        dest: DIR/out/literal-strip
        content: |-
          {{ .key }}
    - copy:
        dest: DIR/out/folded
        content: >
          {{ .key }}
          more
    - copy:
        dest: DIR/out/num
        content: "{{ .n }}\n"
    - debug: {msg: "{{ .n }}"}
      register: lone
    - debug: {msg: "{{ .n }}\n"}
      register: text
`
	dir := t.TempDir()
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": strings.ReplaceAll(play, "DIR", dir)})
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := e.opts("site.yml")
	o.Registry = modules.NewRegistry() // the real copy module: bytes as written
	r := mustRun(t, e, o)
	for name, want := range map[string]string{
		"dq": "ssh-ed25519 AAAA x@y\n", "dq-plain": "plain\n", "sq": "ssh-ed25519 AAAA x@y",
		"lead": " ssh-ed25519 AAAA x@y", "literal": "ssh-ed25519 AAAA x@y\n", "literal-strip": "ssh-ed25519 AAAA x@y",
		"folded": "ssh-ed25519 AAAA x@y more\n", "num": "3\n",
	} {
		f, ok := e.fake("node-1").File(filepath.Join(dir, "out", name))
		if !ok || string(f.Data) != want {
			t.Errorf("%s: %q, %v; want %q", name, f.Data, ok, want)
		}
	}
	v := r.Vars["node-1"]
	if got := v["lone"].(map[string]any)["msg"]; !reflect.DeepEqual(got, 3) {
		t.Errorf("lone action: %#v, want the int 3", got)
	}
	if got := v["text"].(map[string]any)["msg"]; got != "3\n" {
		t.Errorf("action and newline: %#v, want the string", got)
	}

}

// TestLoopLabelsAreJSON: a dict item shows as compact JSON like Ansible's,
// not Go's map[groups:[sudo adm] ...]; loop_control.label still wins.
func TestLoopLabelsAreJSON(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    users:
      - {name: alice, groups: [sudo, adm], shell: /bin/zsh}
      - {name: bob, groups: []}
  tasks:
    - name: users
      debug: {msg: "{{ .item.name }} {{ .item.shell | default \"/bin/bash\" }}"}
      loop: "{{ .users }}"
    - name: labelled
      debug: {msg: x}
      loop: "{{ .users }}"
      loop_control: {label: "{{ .item.name }}"}
`})
	mustRun(t, e, e.opts("site.yml"))
	out := e.out.String()
	for _, w := range []string{
		`(item={"groups":["sudo","adm"],"name":"alice","shell":"/bin/zsh"})`,
		`(item={"groups":[],"name":"bob"})`,
		`(item=alice)`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %s:\n%s", w, out)
		}
	}
	if strings.Contains(out, "map[") {
		t.Errorf("Go map syntax in the output:\n%s", out)
	}
}

// now is the run's start: one value on every host and in every task, so a
// stamp (a backup's name) rendered twice or on two hosts is one stamp.
func TestNowIsTheRunsStart(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  tasks:
    - set_fact: {t1: "{{ now.UnixNano }}"}
    - command: "true"
    - set_fact: {t2: "{{ now.UnixNano }}"}
`
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": play})
	r, err := e.run(e.opts("site.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []any
	for _, h := range []string{"node-1", "node-2"} {
		seen = append(seen, r.Vars[h]["t1"], r.Vars[h]["t2"])
	}
	for _, v := range seen {
		if v == nil || v != seen[0] {
			t.Fatalf("now differs between tasks or hosts: %v", seen)
		}
	}
}

// TestUntakenBranchDoesNotRenderItsVariables: a variable whose value fails
// to render fails only a template that reads it, as Jinja evaluates only
// the branch it takes; read, it fails with its own error, not "no entry".
func TestUntakenBranchDoesNotRenderItsVariables(t *testing.T) {
	sc := semScope(t, map[string]any{"bad": "{{ .nope }}", "cyc": "{{ .cyc }}"})
	for _, tc := range []struct{ tmpl, want, wantErr string }{
		{`{{ if false }}{{ .bad }}{{ end }}ok`, "ok", ""},
		{`{{ if inGroup "db" }}{{ .bad.x }}{{ else }}web{{ end }}`, "web", ""},
		{`{{ if false }}{{ .cyc }}{{ end }}ok`, "ok", ""},
		{`{{ .bad }}`, "", ".nope is not defined (host node-1) (while rendering variable bad"},
		{`x{{ .bad.x }}`, "", ".nope is not defined (host node-1) (while rendering variable bad"},
		{`{{ if true }}{{ .cyc }}{{ end }}`, "", "variable cycle: cyc -> cyc"},
	} {
		got, err := sc.render(Pos{"x.yml", 1}, tc.tmpl)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%s: got %q, %v; want %q", tc.tmpl, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "no entry")):
			t.Errorf("%s: got %q, %v; want error %q", tc.tmpl, got, err, tc.wantErr)
		}
		v, err := sc.renderNative(Pos{"x.yml", 1}, tc.tmpl)
		if tc.wantErr == "" && (err != nil || v != tc.want) {
			t.Errorf("native %s: got %v, %v", tc.tmpl, v, err)
		}
	}
}
