package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// resetHosts gives lab hosts (1-based) fresh disks now and again when the
// test ends, so the tests after it find clean hosts.
func (e *env) resetHosts(t *testing.T, ctx context.Context, idx ...int) {
	t.Helper()
	reset := func(ctx context.Context) error {
		for _, i := range idx {
			if err := e.lab.Reset(ctx, e.lab.Hosts()[i-1].Name); err != nil {
				return fmt.Errorf("reset host %d: %w", i, err)
			}
		}
		return nil
	}
	if err := reset(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := reset(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// TestEtcdOldRelease: etcd 3.4.23 (Debian's, for operators' old clusters)
// still builds a healthy TLS cluster from the same roles, a second run
// changes nothing, and switching that cluster to 3.7.0 (which would skip
// two minor releases) is refused before any binary is replaced.
func TestEtcdOldRelease(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e.resetHosts(t, ctx, 4, 5, 6)
	work := t.TempDir()
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
	inv := e.inventory(t, work, "old", map[string][]int{"etcd": {4, 5, 6}})
	playbook := filepath.Join(work, "etcd.yml")
	pki := filepath.Join(work, "pki")
	addrs := []string{e.lab.Hosts()[3].Addr, e.lab.Hosts()[4].Addr, e.lab.Hosts()[5].Addr}

	r := e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_version=3.4.23")
	if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	for _, a := range addrs {
		out, err := curlEtcd(pki, a, "/version", "", true)
		if err != nil || !strings.Contains(out, `"etcdserver":"3.4.23"`) {
			t.Errorf("%s /version: want 3.4.23: %v %s", a, err, out)
		}
	}
	// 3.4.23 ships no etcdutl; the role installs only what the version has.
	if out, err := e.ssh(t, 4, "ls /usr/local/bin"); err != nil || strings.Contains(out, "etcdutl") || !strings.Contains(out, "etcdctl") {
		t.Errorf("binaries on host 4: %v %q", err, out)
	}

	r = e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_version=3.4.23")
	for i := 4; i <= 6; i++ {
		if rc := r.recap[fmt.Sprintf("old-%d", i)]; r.code != 0 || rc.changed != 0 {
			t.Errorf("second run: exit %d, old-%d %+v\n%s", r.code, i, rc, r.out)
		}
	}

	sumBefore, _ := e.ssh(t, 5, "sha256sum /usr/local/bin/etcd")
	r = e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_version=3.7.0")
	if r.code != 2 || !strings.Contains(r.out, "runs etcd 3.4.23; etcd_version=3.7.0 would skip or go back a minor release") {
		t.Errorf("upgrade 3.4 -> 3.7: exit %d, want 2 and the refusal\n%s", r.code, r.out)
	}
	if sumAfter, _ := e.ssh(t, 5, "sha256sum /usr/local/bin/etcd"); sumAfter != sumBefore || sumBefore == "" {
		t.Errorf("the refused upgrade replaced the binary: %q -> %q", sumBefore, sumAfter)
	}
	for _, a := range addrs {
		if out, err := curlEtcd(pki, a, "/health", "", true); err != nil || !strings.Contains(out, `"health":"true"`) {
			t.Errorf("%s after the refused upgrade: %v %s", a, err, out)
		}
	}
}
