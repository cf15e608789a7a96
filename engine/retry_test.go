package engine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A run with a failed and an unreachable host lists both in the retry
// file; --limit @FILE then runs only them.
func TestRetryFileRunsOnlyFailedHosts(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\nnode-3\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: fails on node-3
      command: sh -c 'test "$HOST" != node-3'
`})
	e.fake("node-2").SetUnreachable(errors.New("connection refused"))
	r, err := e.run(e.opts("site.yml"))
	if err == nil {
		t.Fatal("want an error")
	}
	want(t, r.FailedHosts(), []string{"node-2", "node-3"})
	path := DefaultRetryFile(filepath.Join(e.dir, "site.yml"), "")
	if path != filepath.Join(e.dir, "site.retry") {
		t.Fatalf("default retry file %s", path)
	}
	if got := DefaultRetryFile("/x/site.yml", "/var/retry"); got != "/var/retry/site.retry" {
		t.Fatalf("retry_files_save_path: %s", got)
	}
	if err := WriteRetryFile(path, r.FailedHosts()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "node-2\nnode-3\n" {
		t.Fatalf("retry file %q", b)
	}
	e.fake("node-2").SetUnreachable(nil)
	o := e.opts("site.yml")
	o.Limit = "@" + path
	r, _ = e.run(o)
	var ran []string
	for _, h := range r.HostOrder {
		if s := r.Hosts[h]; s != nil && *s != (HostStats{}) {
			ran = append(ran, h)
		}
	}
	want(t, ran, []string{"node-2", "node-3"})
	want(t, r.FailedHosts(), []string{"node-3"})
}
