package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"gokube/modules"
	"gokube/roles"
)

// TestJinjaHabitsRefusedAtLoad: each habit, in a task argument, a
// condition or a template file, is a load error at its line whose message
// gives the Go form; no host is contacted.
func TestJinjaHabitsRefusedAtLoad(t *testing.T) {
	task := func(body string) string {
		return "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: t\n" + body
	}
	cases := []struct{ name, play, tmpl, want string }{
		{"bare variable", task("      debug: {msg: \"{{ app_name }}\"}\n"), "",
			"site.yml:5: app_name is not a function; did you mean .app_name?"},
		{"bare inventory_hostname", task("      debug: {msg: \"{{ inventory_hostname }}\"}\n"), "",
			"did you mean .inventory_hostname?"},
		{"jinja filter name", task("      debug: {msg: \"{{ .users | length }}\"}\n"), "",
			"length is a Jinja filter; the Go function is len"},
		{"default with parentheses", task("      debug: {msg: \"{{ .x | default('y') }}\"}\n"), "",
			`Jinja filter call | default(…): Go pipes take arguments without parentheses, and the value goes last: .x | default ARG (e.g. .x | default "y")`},
		{"statement", task("      debug: {msg: \"{% if x %}a{% endif %}\"}\n"), "",
			"site.yml:5: Jinja statement {% if %} is plain text to Go templates; write {{ if .x }}"},
		{"comment", task("      debug: {msg: \"{# note #}\"}\n"), "",
			"Jinja comment {# … #} is plain text to Go templates; write {{/* … */}}"},
		{"is defined in when", task("      command: 'true'\n      when: x is defined\n"), "",
			"site.yml:6: Jinja test `is defined`: write defined \"x\""},
		{"is not defined", task("      command: 'true'\n      when: x is not defined\n"), "",
			"Jinja test `is not defined`: write not (defined \"x\""},
		{"is version", task("      command: 'true'\n      when: ansible_kernel is version('5.10', '<')\n"), "",
			"write version .x \"<\" \"1.2\""},
		{"==", task("      command: 'true'\n      when: .mode == \"static\"\n"), "",
			"Jinja operator ==: Go templates compare with functions: eq .a .b"},
		{"and infix", task("      command: 'true'\n      when: .a and .b\n"), "",
			"Jinja infix and: Go templates write the function first: and .a .b"},
		{"or infix in braces", task("      debug: {msg: \"{{ if .a or .b }}x{{ end }}\"}\n"), "",
			"Jinja infix or"},
		{"groups subscript", task("      debug: {msg: \"{{ groups['etcd'] }}\"}\n"), "",
			`Jinja subscript groups[…]: write hostsOf "etcd"`},
		{"hostvars subscript", task("      debug: {msg: \"{{ hostvars[h].x }}\"}\n"), "",
			`Jinja subscript hostvars[h].x: write hostvar $h "x"`},
		{"single quotes", task("      debug: {msg: \"{{ .x | default 'abc' }}\"}\n"), "",
			`'abc': Go template strings use double quotes: "abc"`},
		{"tilde", task("      debug: {msg: \"{{ .a ~ .b }}\"}\n"), "",
			"Jinja operator ~"},
		{"True", task("      debug: {msg: \"{{ True }}\"}\n"), "",
			"True is Jinja/Python; Go templates write true"},
		{"template file", task("      template: {src: app.conf.tmpl, dest: /tmp/x}\n"), "port={{ .port }}\n{% for h in groups['web'] %}\n{{ h }}\n{% endfor %}\n",
			"templates/app.conf.tmpl:2: Jinja statement {% for %} is plain text to Go templates; write {{ range"},
		{"template file syntax", task("      template: {src: app.conf.tmpl, dest: /tmp/x}\n"), "a\nb\n{{ .x \n",
			"templates/app.conf.tmpl:4: unclosed action started at line 3"},
		{"template file bare var", task("      template: {src: app.conf.tmpl, dest: /tmp/x}\n"), "a\n\n{{ port }}\n",
			"templates/app.conf.tmpl:3: port is not a function; did you mean .port?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"site.yml": c.play}
			if c.tmpl != "" {
				files["templates/app.conf.tmpl"] = c.tmpl
			}
			e := newEnv(t, "node-1\n", files)
			o := e.opts("site.yml")
			o.Registry = modules.NewRegistry()
			_, err := e.run(o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %q", err, c.want)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("not a load error: %T %v", err, err)
			}
			if len(e.dials) != 0 {
				t.Fatalf("a host was contacted: %v", e.dials)
			}
		})
	}
}

// TestGoFormsAreNotHabits: valid Go templates that look a little like the
// habits pass.
func TestGoFormsAreNotHabits(t *testing.T) {
	for _, s := range []string{
		`{{ if not .x }}a{{ end }}`,
		`{{- if and .a (not .b) -}}a{{- else if or .c .d }}b{{ end }}`,
		`{{ range $i, $h := hostsOf "etcd" }}{{ if $i }},{{ end }}{{ $h }}{{ end }}`,
		`{{ $x := not .y }}{{ $x = and .a .b }}`,
		`{{ printf "a == b and c or d is defined [x] ~ %s" .x }}`,
		`{{/* a == b and c */}}`,
		`{{ .is_ready }} {{ .x.is }}`,
		`for i in ${#arr[@]}; do echo {{ .x }}; done`,
		"{{ `raw {% if %} ==` }}",
		`{{ .x | default (printf "%s" .y) }}`,
		`{{ eq .c 'a' }}`,
	} {
		if err := checkJinja(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
		if err := newTemplateSyntax().check(s); err != nil {
			t.Errorf("%s: parse: %v", s, err)
		}
	}
}

// TestBundledRolesHaveNoJinjaHabits: every template string in the bundled
// roles (task files, defaults, vars, templates) parses and has none of the
// habits, so a role change that slips into Jinja fails here, not on a host.
func TestBundledRolesHaveNoJinjaHabits(t *testing.T) {
	n := 0
	err := fs.WalkDir(roles.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(roles.FS, p)
		if err != nil {
			return err
		}
		var texts []string
		switch {
		case strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml"):
			var v any
			if err := yaml.Unmarshal(b, &v); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			texts = stringsIn(v, false)
		case strings.Contains(p, "/templates/"):
			texts = []string{string(b)}
		}
		for _, s := range texts {
			if !strings.Contains(s, "{{") {
				continue
			}
			n++
			if err := newTemplateSyntax().check(s); err != nil {
				t.Errorf("%s: %v\n%s", p, err, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("only %d templates found in the bundled roles", n)
	}
}

// stringsIn lists the template strings in a YAML value; conditions (the
// values of when, until, ... and assert's that) as condText wraps them.
func stringsIn(v any, cond bool) []string {
	switch x := v.(type) {
	case string:
		if cond {
			return []string{condText(x)}
		}
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringsIn(e, cond)...)
		}
		return out
	case map[string]any:
		var out []string
		for k, e := range x {
			c := k == "when" || k == "until" || k == "changed_when" || k == "failed_when" || k == "that"
			out = append(out, stringsIn(e, c)...)
		}
		return out
	}
	return nil
}
