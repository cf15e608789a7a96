package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gokube/internal/labtest"
)

// Package tasks in a row share one probe batch on a real host: the first
// task's probe request answers all three (one dpkg-query for every name),
// so the other two cost no round trip, and nothing is changed.
func TestPackageTasksBatchedLab(t *testing.T) {
	l := labtest.Require(t, 1)
	h := l.Hosts()[0]
	dir := t.TempDir()
	files := map[string]string{
		"inventory.cfg": fmt.Sprintf("%s ansible_host=%s ansible_user=deploy ansible_become=true ansible_ssh_private_key_file=%s ansible_ssh_known_hosts_file=%s\n",
			h.Name, h.Addr, l.KeyPath(), l.KnownHostsPath()),
		"site.yml": `- hosts: all
  gather_facts: false
  tasks:
    - name: tools
      package:
        name: [curl, less]
    - name: network tools
      apt: name=iproute2,iputils-ping
    - name: nothing we do not want
      apt:
        name: gokube-never-installed
        state: absent
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Inventory: []string{filepath.Join(dir, "inventory.cfg")}, Playbook: filepath.Join(dir, "site.yml"), Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(r.Events) != 3 {
		t.Fatalf("events %+v", r.Events)
	}
	for i, ev := range r.Events {
		// The first task's round trips include the connection's handshake
		// and session; what matters is that the others add none.
		if ev.Status != "ok" || i > 0 && ev.RoundTrips != 0 {
			t.Errorf("%s: %s with %d round trips", ev.Task, ev.Status, ev.RoundTrips)
		}
	}
}
