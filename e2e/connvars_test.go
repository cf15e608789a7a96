package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectionFollowsVariables: the host a run reaches is the one its
// variables name. -e ansible_host sends inventory host node-1 to lab host 2,
// and an inventory's templated ansible_host is rendered before dialling.
// The hosts are checked: only the host the variables name got the file.
func TestConnectionFollowsVariables(t *testing.T) {
	e := setupN(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "node", map[string][]int{"nodes": {1}})
	pb := filepath.Join(work, "play.yml")
	if err := os.WriteFile(pb, []byte(`
- hosts: nodes
  gather_facts: false
  tasks:
    - copy: {content: "{{ .inventory_hostname }}\n", dest: /root/gk-connvars}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	clean := func() {
		for i := 1; i <= 2; i++ {
			if _, err := e.ssh(t, i, "rm -f /root/gk-connvars"); err != nil {
				t.Fatal(err)
			}
		}
	}
	has := func(i int) bool {
		out, err := e.ssh(t, i, "cat /root/gk-connvars 2>/dev/null || true")
		if err != nil {
			t.Fatal(err)
		}
		return out == "node-1\n"
	}
	second := e.lab.Hosts()[1].Addr

	clean()
	r := e.play(t, ctx, "-i", inv, pb, "-e", "ansible_host="+second)
	if r.code != 0 || r.recap["node-1"].changed != 1 {
		t.Fatalf("exit %d:\n%s", r.code, r.out)
	}
	if has(1) || !has(2) {
		t.Fatalf("-e ansible_host=%s: lab host 1 has the file: %v, lab host 2: %v (want only 2)", second, has(1), has(2))
	}

	// The inventory's address is a template over another variable.
	b, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	first := e.lab.Hosts()[0].Addr
	templated := strings.Replace(string(b), "ansible_host="+first, `ansible_host="{{ .internal_ip }}" internal_ip=`+second, 1)
	if templated == string(b) {
		t.Fatalf("inventory has no ansible_host=%s:\n%s", first, b)
	}
	if err := os.WriteFile(inv, []byte(templated), 0o644); err != nil {
		t.Fatal(err)
	}
	clean()
	r = e.play(t, ctx, "-i", inv, pb)
	if r.code != 0 {
		t.Fatalf("templated ansible_host: exit %d:\n%s", r.code, r.out)
	}
	if has(1) || !has(2) {
		t.Fatalf("templated ansible_host: lab host 1 has the file: %v, lab host 2: %v (want only 2)", has(1), has(2))
	}
}
