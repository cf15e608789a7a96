package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostPoweredOffDuringPlay: a host that dies in the middle of a play is
// reported UNREACHABLE, the play completes on the others, and gokube exits 4.
func TestHostPoweredOffDuringPlay(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "node", map[string][]int{"nodes": {4, 5, 6}})
	pb := filepath.Join(work, "play.yml")
	if err := os.WriteFile(pb, []byte(`
- hosts: nodes
  gather_facts: false
  become: true
  tasks:
    - name: before
      copy: {content: "before\n", dest: /root/gk-fault-before}
    - name: wait while the lab powers a host off
      pause: {seconds: 6}
    - name: after
      copy: {content: "after\n", dest: /root/gk-fault-after}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		e.ssh(t, i, "rm -f /root/gk-fault-before /root/gk-fault-after")
	}
	victim := e.lab.Hosts()[5].Name
	done := make(chan result, 1)
	go func() { done <- e.play(t, ctx, "-i", inv, pb) }()
	time.Sleep(3 * time.Second)
	if err := e.lab.Stop(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.lab.Start(context.Background(), victim) })
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("gokube did not end within 2 minutes of a host powering off")
	}
	if r.code != 4 {
		t.Errorf("exit %d, want 4\n%s", r.code, r.out)
	}
	if r.recap["node-6"].unreachable != 1 || !strings.Contains(r.out, "UNREACHABLE") {
		t.Errorf("node-6 not reported unreachable:\n%s", r.out)
	}
	for _, i := range []int{4, 5} {
		out, err := e.ssh(t, i, "cat /root/gk-fault-after")
		if err != nil || out != "after\n" {
			t.Errorf("host %d did not complete the play: %v %q", i, err, out)
		}
	}
	if err := e.lab.Start(ctx, victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "victim back", 2*time.Minute, func() error { _, err := e.ssh(t, 6, "true"); return err })
}
