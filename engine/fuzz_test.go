package engine

import (
	"strings"
	"testing"
	"testing/fstest"
)

func FuzzParsePlaybook(f *testing.F) {
	seeds := []string{
		"- hosts: all\n  tasks:\n    - command: echo hi\n",
		"- hosts: all\n  vars: {a: 1}\n  tasks:\n    - name: x\n      tfile: {path: p, content: \"{{ .a }}\"}\n      loop: [1, 2]\n      when: eq .a 1\n",
		"- hosts: all\n  tasks:\n    - block:\n        - command: 'true'\n      rescue:\n        - debug: msg=hi\n      always:\n        - meta: flush_handlers\n  handlers:\n    - {name: h, command: 'true', listen: t}\n",
		"- import_playbook: site.yml\n",
		"- hosts: all\n  roles: [r, {role: r, x: 1}]\n",
		"- hosts: all\n  serial: [1, '30%']\n  strategy: free\n  tasks: []\n",
		"- hosts: all\n  tasks:\n    - tfile: path=x content='a b'\n",
		"- hosts: all\n  tasks:\n    - include_tasks: t.yml\n",
		"- hosts: [a, b]\n  tasks:\n    - shell: make all chdir=/src\n      until: .r.changed\n      retries: 3\n",
		"{",
		"- 1\n",
		"- hosts: all\n  tasks:\n    - command:\n        - a\n",
		"- hosts: all\n  tasks: {a: 1}\n",
		"- hosts: all\n  tasks:\n    - tfile: {path: \"{{ \"}\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, data string) {
		fsys := fstest.MapFS{
			"site.yml":               {Data: []byte(data)},
			"t.yml":                  {Data: []byte("- command: 'true'\n")},
			"roles/r/tasks/main.yml": {Data: []byte("- command: 'true'\n")},
		}
		l := &loader{reg: reg, roleMemo: map[string]*Role{}, pbDir: src{fsys: fsys, path: ".", display: "."}}
		plays, err := l.loadPlaybookFile(src{fsys: fsys, path: "site.yml", display: "site.yml"}, nil)
		if err == nil {
			for _, p := range plays {
				if p.Hosts == "" {
					t.Fatalf("play without hosts accepted")
				}
			}
		}
	})
}

// FuzzRenderTemplate: any text either fails to parse with an error, or
// renders (possibly to an error) with the run's functions and Ansible-like
// data; neither panics nor hangs. Texts that ask for their own repetition
// (repeat, range over a number, until, seq) are passed over: a template
// can ask for any amount of work, and that is the author's, not a bug.
func FuzzRenderTemplate(f *testing.F) {
	for _, s := range []string{
		"{{ .a }}", "{{ if .b }}x{{ else }}y{{ end }}", `{{ .m.k | default "d" }}`,
		`{{ range $i, $h := .l }}{{ $i }}={{ $h }} {{ end }}`, `{{ join "," .l }}`, "{{ .a",
		"{{ eq .a 1 }}", `{{ version .v ">=" "1.2.0" }}`, `{{ get .m "k" "d" }}`, "{{ toYaml .m }}",
		`{{ .missing }}`, `{{ index .l 5 }}`, `{{ printf "%d" .a }}`, "{{ len .m }}{{ not .b }}",
		`{{ if and (gt .a 0) (ne .v "1") }}ok{{ end }}`, "{{ .item | upper }}", "{{ {{", "}}{{",
	} {
		f.Add(s)
	}
	fm := baseFuncs()
	data := map[string]any{"a": 1, "b": true, "v": "1.10.2", "item": "x",
		"l": []any{"n1", "n2", 3}, "m": map[string]any{"k": "v", "n": map[string]any{"x": 1}}}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 256 {
			return
		}
		for _, w := range []string{"repeat", "range", "until", "seq"} {
			if strings.Contains(text, w) {
				return
			}
		}
		// A cache per text: a run's cache keeps every text it saw.
		c := newTmplCache(fm)
		e := c.entry(text)
		if err := e.err; err != nil {
			if err.Error() == "" {
				t.Fatal("empty parse error")
			}
			return
		}
		// No scope: a host helper fails (text/template recovers it).
		_, _, _ = c.exec(e, nil, data)
	})
}
