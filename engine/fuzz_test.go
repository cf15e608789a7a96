package engine

import (
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
