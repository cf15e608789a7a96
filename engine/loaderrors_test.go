package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"gokube/modules"
)

// TestEveryLoadErrorAtOnce: errors in several plays, a role's defaults,
// tasks and template file, and -e values come back from one load, sorted
// by file and line, before any host is contacted.
func TestEveryLoadErrorAtOnce(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml": `
- hosts: all
  gather_facts: false
  becom: true
  roles: [app]
  tasks:
    - debug: {msg: "{{ app_name }}"}
    - tfile: {path: x, contnt: y}
- hosts: all
  tasks:
    - command: 'true'
      when: .a == "b"
`,
		"roles/app/defaults/main.yml": "port: [unclosed\n",
		"roles/app/tasks/main.yml": `
- template: {src: app.conf.tmpl, dest: /etc/app.conf}
- command: 'true'
  whenn: true
`,
		"roles/app/templates/app.conf.tmpl": "a=1\n{% if x %}\n",
	})
	o := e.opts("site.yml")
	reg := modules.NewRegistry()
	reg.Register(tfile{}, "tfile")
	o.Registry = reg
	o.ExtraVars = []string{"k=v", "novalue", `{"t": "{{ .x | default('y') }}"}`}
	_, err := e.run(o)
	var les *LoadErrors
	if !errors.As(err, &les) {
		t.Fatalf("want LoadErrors, got %T %v", err, err)
	}
	msg := err.Error()
	want := []string{
		"-e: \"novalue\": want key=value, @file or JSON",
		"-e t: Jinja filter call | default(…)",
		"roles/app/defaults/main.yml:1:",
		"roles/app/tasks/main.yml:4: unknown key \"whenn\" in task (not a task keyword, module or action); did you mean when?",
		"roles/app/templates/app.conf.tmpl:2: Jinja statement {% if %}",
		"site.yml:4: unknown key \"becom\" in play",
		"site.yml:7: app_name is not a function; did you mean .app_name?",
		"site.yml:8: tfile: unknown argument \"contnt\"",
		"site.yml:12: Jinja operator ==",
	}
	last := -1
	for _, w := range want {
		i := strings.Index(msg, w)
		if i < 0 {
			t.Errorf("missing %q in:\n%s", w, msg)
			continue
		}
		if i < last {
			t.Errorf("%q out of order in:\n%s", w, msg)
		}
		last = i
	}
	if !strings.HasPrefix(msg, fmt.Sprintf("%d problems found before contacting any host:", len(want))) {
		t.Errorf("count line: %s", msg)
	}
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 1 {
		t.Fatalf("exit code of %v is not 1", err)
	}
	if len(e.dials) != 0 {
		t.Fatalf("a host was contacted: %v", e.dials)
	}
}

func TestLoadErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("- hosts: all\n  tasks:\n")
	for i := 0; i < maxLoadErrors+7; i++ {
		fmt.Fprintf(&b, "    - command: 'true'\n      whenn: %d\n", i)
	}
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": b.String()})
	_, err := e.run(e.opts("site.yml"))
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	if n := strings.Count(msg, "unknown key \"whenn\""); n != maxLoadErrors {
		t.Errorf("%d errors shown, want %d", n, maxLoadErrors)
	}
	if !strings.Contains(msg, fmt.Sprintf("%d problems found", maxLoadErrors+7)) || !strings.HasSuffix(msg, "... and 7 more") {
		t.Errorf("message:\n%s", msg)
	}
	// Sorted by line, not as text: line 4 before line 10.
	if strings.Index(msg, "site.yml:4:") > strings.Index(msg, "site.yml:10:") {
		t.Errorf("not sorted by line:\n%s", msg)
	}
}

func TestUnknownTaskKeySuggestion(t *testing.T) {
	for key, want := range map[string]string{"whenn": "did you mean when?", "becom": "did you mean become?",
		"templat": "did you mean template?", "notfy": "did you mean notify?", "xyzzy_frob": ""} {
		e := newEnv(t, "node-1\n", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      " + key + ": x\n"})
		o := e.opts("site.yml")
		o.Registry = modules.NewRegistry()
		_, err := e.run(o)
		if err == nil {
			t.Fatalf("%s: no error", key)
		}
		if want == "" && strings.Contains(err.Error(), "did you mean") || want != "" && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", key, err, want)
		}
	}
}
