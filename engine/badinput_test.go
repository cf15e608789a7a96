package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/connection"
)

// writeFiles writes name -> content under a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Mistakes in the YAML itself, in keywords, and against the inventory are
// refused before any host is contacted, naming file and line: the run is
// given a fake connection for every host and none is dialled.
func TestBadInputRefusedBeforeContact(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"two when in one task", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      when: a\n      when: b\n"},
			`site.yml:5: key "when" given twice in one mapping (first at line 4)`},
		{"a module argument twice", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - copy:\n        content: a\n        dest: /x\n        dest: /y\n"},
			`site.yml:6: key "dest" given twice`},
		{"a play key twice", map[string]string{"site.yml": "- hosts: all\n  hosts: web\n  tasks: []\n"},
			`site.yml:2: key "hosts" given twice`},
		{"unquoted template in play vars", map[string]string{"site.yml": "- hosts: all\n  vars:\n    x: {{ .y }}\n  tasks: []\n"},
			`site.yml:3: x: an unquoted template is a YAML mapping; quote it: x: "{{ ... }}"`},
		{"unquoted template in a task argument", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug:\n        msg: {{ .y }}\n"},
			`site.yml:4: msg: an unquoted template is a YAML mapping`},
		{"unquoted template in a list", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: x}\n      loop:\n        - {{ .y }}\n"},
			`site.yml:5: an unquoted template`},
		{"unquoted template in role defaults", map[string]string{
			"site.yml":                  "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml":    "- debug: {msg: x}\n",
			"roles/r/defaults/main.yml": "a: 1\nb: {{ .a }}\n"},
			`main.yml:2: b: an unquoted template is a YAML mapping`},
		{"duplicate key in role defaults", map[string]string{
			"site.yml":                  "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml":    "- debug: {msg: x}\n",
			"roles/r/defaults/main.yml": "a: 1\na: 2\n"},
			`main.yml:2: key "a" given twice`},
		{"unquoted template in group_vars", map[string]string{
			"site.yml": "- hosts: all\n  tasks: []\n", "group_vars/all.yml": "port: {{ .p }}\n"},
			`all.yml:1: port: an unquoted template is a YAML mapping`},
		{"unquoted template in host_vars", map[string]string{
			"site.yml": "- hosts: all\n  tasks: []\n", "host_vars/node-1.yml": "a: 1\nb: [{{ .a }}]\n"},
			`node-1.yml:2: an unquoted template`},
		{"duplicate key in a vars_files file", map[string]string{
			"site.yml": "- hosts: all\n  vars_files: [v.yml]\n  tasks: []\n", "v.yml": "a: 1\nb: 2\na: 3\n"},
			`v.yml:3: key "a" given twice in one mapping (first at line 1)`},
		{"loop over a bare name", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: x}\n      loop: packages\n"},
			`site.yml:4: loop: want a list or a template, got the string "packages" (a variable is "{{ .packages }}")`},
		{"loop over a mapping", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: x}\n      loop: {a: 1}\n"},
			`site.yml:4: loop: want a list or a template ("{{ .list }}"), got a mapping`},
		{"with_items over a bare name", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: x}\n      with_items: pkgs\n"},
			`site.yml:4: with_items: want a list or a template, got the string "pkgs"`},
		{"loop over a number", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: x}\n      loop: 3\n"},
			`site.yml:4: loop: want a list or a template, got "3"`},
		{"retries not a number", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      retries: many\n      until: x\n"},
			`site.yml:4: retries: want a whole number of attempts, got "many"`},
		{"retries negative", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      retries: -1\n"},
			`site.yml:4: retries: want a whole number of attempts, got "-1"`},
		{"delay a fraction", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      delay: 1.5\n"},
			`site.yml:4: delay: want a whole number of seconds, got "1.5"`},
		{"delay a list", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      delay: [1]\n"},
			`site.yml:4: delay: want a whole number of seconds`},
		{"delegate_to a host not in the inventory", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n      delegate_to: node-9\n"},
			`site.yml:3: delegate_to: host "node-9" is not in the inventory`},
		{"delegate_to in a block", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - block:\n        - command: 'true'\n          delegate_to: nope\n"},
			`site.yml:4: delegate_to: host "nope" is not in the inventory`},
		{"delegate_to on a block", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - delegate_to: nope\n      block:\n        - command: 'true'\n"},
			`delegate_to: host "nope" is not in the inventory`},
		{"delegate_to in a handler", map[string]string{"site.yml": "- hosts: all\n  tasks: []\n  handlers:\n    - name: h\n      command: 'true'\n      delegate_to: nope\n"},
			`site.yml:4: delegate_to: host "nope" is not in the inventory`},
		{"missing vars_files entry", map[string]string{"site.yml": "- hosts: all\n  vars_files:\n    - there.yml\n  tasks: []\n"},
			`site.yml:2: vars_files: `},
		{"missing import_playbook", map[string]string{"site.yml": "- hosts: all\n  tasks: []\n- import_playbook: gone.yml\n"},
			`site.yml:3: import_playbook: `},
		{"import_playbook cycle", map[string]string{"site.yml": "- import_playbook: b.yml\n", "b.yml": "- hosts: all\n  tasks: []\n- import_playbook: site.yml\n"},
			`b.yml:3: import_playbook: `},
		{"import_tasks cycle", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - import_tasks: a.yml\n", "a.yml": "- debug: {msg: x}\n- import_tasks: b.yml\n", "b.yml": "- import_tasks: a.yml\n"},
			`b.yml:1: import_tasks: `},
		{"random template function", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - debug:\n        msg: \"{{ randAlphaNum 8 }}\"\n"},
			`site.yml:4: randAlphaNum is not available: it gives a different value on every run`},
		{"uuid in a template file", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - template: {src: t.tmpl, dest: /x}\n", "templates/t.tmpl": "a\nid={{ uuidv4 }}\n"},
			`uuidv4 is not available`},
		{"DNS lookup on the control machine", map[string]string{"site.yml": "- hosts: all\n  vars:\n    ip: '{{ getHostByName \"node-1\" }}'\n  tasks: []\n"},
			`site.yml:3: ip: getHostByName is not available: it resolves on the control machine`},
		{"a new private key per run", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - copy: {content: \"{{ genPrivateKey \\\"rsa\\\" }}\", dest: /k}\n"},
			`genPrivateKey is not available`},
		{"bcrypt in set_fact", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - set_fact: {h: \"{{ bcrypt .pw }}\"}\n"},
			`site.yml:3: bcrypt is not available`},
		{"template syntax in play vars", map[string]string{"site.yml": "- hosts: all\n  vars:\n    a: 1\n    b: '{{ .a '\n  tasks: []\n"},
			`site.yml:4: b: `},
		{"template syntax in role defaults", map[string]string{
			"site.yml":                  "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml":    "- debug: {msg: x}\n",
			"roles/r/defaults/main.yml": "a: 1\nl:\n  - '{{ if .a }}x'\n"},
			`main.yml:3: l: `},
		// Keys gokube parsed and ignored: refused, so a playbook never
		// silently loses what the operator asked for.
		{"setup gather_subset", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - setup:\n        gather_subset: [network]\n"},
			`gather_subset`},
		{"setup filter", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - setup: {filter: 'ansible_*'}\n"},
			`filter`},
		{"include_tasks apply", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - include_tasks:\n        file: t.yml\n        apply: {become: true}\n", "t.yml": "- debug: {msg: x}\n"},
			`apply`},
		{"include_role vars_from", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - include_role: {name: r, vars_from: other}\n", "roles/r/tasks/main.yml": "- debug: {msg: x}\n"},
			`vars_from`},
		{"include_role public", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - include_role: {name: r, public: true}\n", "roles/r/tasks/main.yml": "- debug: {msg: x}\n"},
			`public`},
		{"meta reset_connection", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - meta: reset_connection\n"},
			`reset_connection`},
		{"meta refresh_inventory", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - meta: refresh_inventory\n"},
			`refresh_inventory`},
		{"stat get_mime", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - stat: {path: /etc, get_mime: true}\n"},
			`get_mime`},
		{"fetch validate_checksum", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - fetch: {src: /etc/hostname, dest: out, validate_checksum: false}\n"},
			`validate_checksum`},
		{"systemd force", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - systemd: {name: x, state: started, force: true}\n"},
			`force`},
		{"when on a role dependency", map[string]string{
			"site.yml":               "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml": "- debug: {msg: x}\n",
			"roles/d/tasks/main.yml": "- debug: {msg: d}\n",
			"roles/r/meta/main.yml":  "dependencies:\n  - role: d\n    when: .x\n"},
			`main.yml:3: "when" on a role dependency is not supported`},
		{"vars on a role dependency", map[string]string{
			"site.yml":               "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml": "- debug: {msg: x}\n",
			"roles/d/tasks/main.yml": "- debug: {msg: d}\n",
			"roles/r/meta/main.yml":  "dependencies:\n  - {role: d, vars: {a: 1}}\n"},
			`main.yml:2: "vars" on a role dependency is not supported`},
		{"argument_specs in role meta", map[string]string{
			"site.yml":               "- hosts: all\n  roles: [r]\n",
			"roles/r/tasks/main.yml": "- debug: {msg: x}\n",
			"roles/r/meta/main.yml":  "argument_specs: {}\n"},
			`main.yml:1: "argument_specs" in role meta is not supported`},
		{"bad host pattern in a later play", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - command: 'true'\n- hosts: 'all:&'\n  tasks:\n    - command: 'true'\n"},
			`site.yml:4: hosts:`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, c.files)
			if err := os.WriteFile(filepath.Join(dir, "inv.cfg"), []byte("node-1\nnode-2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			dialled := 0
			opts := Options{Inventory: []string{filepath.Join(dir, "inv.cfg")}, Playbook: filepath.Join(dir, "site.yml"),
				Out: &strings.Builder{}, ConnFactory: func(host string, _ map[string]any) (connection.Conn, error) {
					dialled++
					return connection.NewFake(host), nil
				}}
			_, err := Run(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %q", err, c.want)
			}
			if strings.Contains(c.name, "cycle") && !strings.Contains(err.Error(), "cycle: ") {
				t.Fatalf("%v does not say cycle", err)
			}
			if strings.HasPrefix(c.name, "missing") && !strings.Contains(err.Error(), "no such file") {
				t.Fatalf("%v does not say the file is missing", err)
			}
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != 1 {
				t.Fatalf("exit code of %v is not 1", err)
			}
			if dialled != 0 {
				t.Fatalf("%d hosts dialled before the error", dialled)
			}
		})
	}
}

// Templated values pass the load-time checks: they are decided when they
// are rendered. A local delegate needs no inventory entry.
func TestBadInputChecksLeaveTemplates(t *testing.T) {
	dir := writeFiles(t, map[string]string{"inv.cfg": "node-1\n", "site.yml": `
- hosts: "{{ .target }}"
  vars: {target: all, pk: [a], n: 2}
  tasks:
    - debug: {msg: x}
      loop: "{{ .pk }}"
      retries: "{{ .n }}"
      delay: 0
      until: "true"
    - command: 'true'
      delegate_to: "{{ .inventory_hostname }}"
    - command: 'true'
      delegate_to: localhost
- hosts: node-1
  tasks: []
`})
	_, _, err := Load(Options{Inventory: []string{filepath.Join(dir, "inv.cfg")}, Playbook: filepath.Join(dir, "site.yml")})
	if err != nil {
		t.Fatal(err)
	}
}

// A module task dials its own host only: the executor no longer dials
// localhost for every task (over SSH when the inventory has a localhost).
func TestModuleTaskDialsOnlyItsHost(t *testing.T) {
	dir := writeFiles(t, map[string]string{"inv.cfg": "node-1\nlocalhost ansible_host=10.0.0.9\n", "site.yml": `
- hosts: node-1
  gather_facts: false
  tasks:
    - command: 'true'
    - shell: 'echo hi'
`})
	var dialled []string
	opts := Options{Inventory: []string{filepath.Join(dir, "inv.cfg")}, Playbook: filepath.Join(dir, "site.yml"),
		Out: &strings.Builder{}, ConnFactory: func(host string, _ map[string]any) (connection.Conn, error) {
			dialled = append(dialled, host)
			return connection.NewFake(host), nil
		}}
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if len(dialled) != 1 || dialled[0] != "node-1" {
		t.Fatalf("dialled %v, want [node-1]", dialled)
	}
}
