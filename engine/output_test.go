package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestGoldenOutput(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- name: golden
  hosts: all
  gather_facts: false
  tasks:
    - name: write
      tfile: {path: golden-out, content: "v1"}
      notify: reload
    - name: show
      debug: {msg: "hello {{ .inventory_hostname }}"}
    - name: skipped
      command: "true"
      when: false
    - block:
        - {name: boom, command: "exit 2"}
      rescue:
        - {name: recover, debug: {var: inventory_hostname}}
  handlers:
    - {name: reload, command: "true"}
`})
	o := e.opts("site.yml")
	o.Diff = true
	mustRun(t, e, o)
	got := regexp.MustCompile(`site\.yml:\d+`).ReplaceAllString(e.out.String(), "site.yml:N")
	golden := filepath.Join("testdata", "golden_output.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(b) != got {
		t.Fatalf("output differs from %s (run with -update to accept):\n%s", golden, got)
	}
}

func TestJSONOutput(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - {name: t, command: \"true\"}\n"})
	o := e.opts("site.yml")
	o.Output = "json"
	mustRun(t, e, o)
	var doc struct {
		Hosts map[string]HostStats `json:"hosts"`
		Plays []struct {
			Tasks []struct {
				Name  string
				Hosts map[string]map[string]any
			}
		}
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal(e.out.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, e.out.String())
	}
	if s := doc.Hosts["node-1"]; s.RoundTrips != 2 || s.Changed != 1 || s.Ok != 2 || doc.ExitCode != 0 {
		t.Fatalf("json stats %+v exit %d", s, doc.ExitCode)
	}
	if st := doc.Plays[0].Tasks[1].Hosts["node-1"]["status"]; doc.Plays[0].Tasks[1].Name != "t" || st != "changed" {
		t.Fatalf("json task %+v", doc.Plays[0].Tasks[1])
	}
}

func TestListAndGraph(t *testing.T) {
	e := newEnv(t, "[web]\nnode-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: web
  tasks:
    - {name: a, command: "true", tags: t1}
    - block:
        - {name: b, command: "true"}
      rescue:
        - {name: c, command: "true"}
  handlers:
    - {name: h, command: "true"}
`})
	o := e.opts("site.yml")
	pb, inv, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	ListTasks(&b, pb, []string{"t1"}, nil)
	if !strings.Contains(b.String(), "a\tTAGS: [t1]") || strings.Contains(b.String(), "\n      b\t") {
		t.Fatalf("list-tasks:\n%s", b.String())
	}
	b.Reset()
	if err := ListHosts(&b, pb, inv, "node-2"); err != nil || !strings.Contains(b.String(), "hosts (1):\n      node-2") {
		t.Fatalf("list-hosts: %v\n%s", err, b.String())
	}
	b.Reset()
	Graph(&b, pb)
	for _, w := range []string{"digraph playbook {", `label="rescue"`, `"handler: h"`} {
		if !strings.Contains(b.String(), w) {
			t.Fatalf("graph lacks %s:\n%s", w, b.String())
		}
	}
	if len(e.dials) != 0 {
		t.Fatal("listing contacted hosts")
	}
}
