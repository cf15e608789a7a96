package engine

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/connection"
	"gokube/modules"
)

// no_log hides every value a task would print, in text and JSON output:
// debug's message, loop items' labels and outputs, a failure's message
// and command output. What register stores keeps the values.
func TestNoLogHidesEverythingItWouldPrint(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  vars: {secret: s3cret-var}
  tasks:
    - debug: msg="{{ .secret }}"
      no_log: true
    - debug: msg="{{ .item }}"
      loop: [s3cret-item]
      no_log: true
      register: looped
    - command: "echo s3cret-out; false"
      no_log: true
      ignore_errors: true
      register: failed
`
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": play})
			o := e.opts("site.yml")
			o.Output = format
			o.Verbosity = 2
			r, err := e.run(o)
			if err != nil {
				t.Fatal(err)
			}
			out := e.out.String()
			if strings.Contains(out, "s3cret") {
				t.Fatalf("no_log leaked:\n%s", out)
			}
			if n := strings.Count(out, "hidden due to the 'no_log: true'"); n < 3 {
				t.Fatalf("want the no_log message for each task, got %d:\n%s", n, out)
			}
			want(t, eventsOf(r, "node-1"), []string{"debug=ok", "debug=ok", "command=failed"})
			vars := fmt.Sprint(r.Vars["node-1"])
			if !strings.Contains(vars, "s3cret-item") || !strings.Contains(vars, "s3cret-out") {
				t.Fatalf("register lost the values: %s", vars)
			}
		})
	}
}

// At -vvvv the probe batch is dumped (script and output); a batch that
// holds a no_log task's probe, whose script carries its arguments and
// whose output what it read on the host, is shown without them. Real
// probes on the control machine (a local connection), text and JSON.
func TestNoLogHidesProbesAtVVVV(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "conf")
			if err := os.WriteFile(f, []byte("s3cret-in-file\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			play := `
- hosts: all
  gather_facts: false
  tasks:
    - lineinfile: {path: ` + f + `, line: "{{ .pw }}"}
      vars: {pw: s3cret-line}
      no_log: true
    - lineinfile: {path: ` + f + `.other, line: plain, create: true}
`
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": play})
			o := e.opts("site.yml")
			o.Registry = modules.NewRegistry()
			o.ConnFactory = func(host string, _ map[string]any) (connection.Conn, error) { return connection.NewLocal(host), nil }
			o.Output = format
			o.Verbosity = 4
			if _, err := e.run(o); err != nil {
				t.Fatal(err)
			}
			out := e.out.String()
			// Probes send file contents base64-encoded.
			enc := base64.StdEncoding.EncodeToString([]byte("s3cret-in-file\n"))
			if strings.Contains(out, "s3cret") || strings.Contains(out, enc[:12]) {
				t.Fatalf("no_log leaked at -vvvv:\n%s", out)
			}
			if !strings.Contains(out, "the batch holds a no_log task") {
				t.Fatalf("no probe batch shown:\n%s", out)
			}
			if b, _ := os.ReadFile(f); string(b) != "s3cret-in-file\ns3cret-line\n" {
				t.Fatalf("file: %q", b)
			}
		})
	}
}

// no_log on a roles: entry is the keyword (every task of the role hides
// its output), not a role variable named no_log.
func TestNoLogOnRoleEntry(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml": `
- hosts: all
  gather_facts: false
  roles:
    - {role: r, no_log: true}
`,
		"roles/r/tasks/main.yml": `
- debug: msg="{{ .secret }} {{ if .no_log }}var{{ end }}"
  vars: {secret: s3cret-role}
  register: said
`,
		"roles/r/defaults/main.yml": "no_log: false\n",
	})
	o := e.opts("site.yml")
	o.Verbosity = 2
	r, err := e.run(o)
	if err != nil {
		t.Fatal(err)
	}
	out := e.out.String()
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "hidden due to the 'no_log: true'") {
		t.Fatalf("role entry no_log:\n%s", out)
	}
	if said := fmt.Sprint(r.Vars["node-1"]["said"]); !strings.Contains(said, "s3cret-role ") || strings.Contains(said, "var") {
		t.Fatalf("no_log became a role variable: %s", said)
	}
}

// --diff of a no_log task shows no diff: the old and new content are the
// secret (copy on the control machine, text and JSON).
func TestNoLogHidesDiff(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "pw")
			if err := os.WriteFile(f, []byte("s3cret-old\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - copy: {dest: ` + f + `, content: "s3cret-new\n"}
      no_log: true
`})
			o := e.opts("site.yml")
			o.Registry = modules.NewRegistry()
			o.ConnFactory = func(host string, _ map[string]any) (connection.Conn, error) { return connection.NewLocal(host), nil }
			o.Output, o.Diff, o.Verbosity = format, true, 2
			if _, err := e.run(o); err != nil {
				t.Fatal(err)
			}
			if out := e.out.String(); strings.Contains(out, "s3cret") {
				t.Fatalf("no_log leaked in the diff:\n%s", out)
			}
			if b, _ := os.ReadFile(f); string(b) != "s3cret-new\n" {
				t.Fatalf("file: %q", b)
			}
		})
	}
}
