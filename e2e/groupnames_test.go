package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubesprayGroupNames: examples/ha-cluster, written with the recipe's
// group names, runs unchanged on an inventory in kubespray's current shape
// ([kube_control_plane], [kube_node]): check mode on two fresh hosts
// predicts the etcd member, the master and the load balancer with the
// right members and backends, and changes nothing. An etcd group named
// otherwise (etcd_prod) without etcd_group set stops a real run at its
// first task, naming the group, before a host or the pki folder changes.
func TestKubesprayGroupNames(t *testing.T) {
	e := setupN(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := 1; i <= 2; i++ {
		if err := e.lab.Reset(ctx, e.lab.Hosts()[i-1].Name); err != nil {
			t.Fatalf("reset host %d: %v", i, err)
		}
	}
	untouched := func(t *testing.T) {
		t.Helper()
		for i := 1; i <= 2; i++ {
			out, err := e.ssh(t, i, "test ! -e /etc/etcd && test ! -e /etc/kubernetes && test ! -e /usr/local/bin/etcd && echo untouched")
			if err != nil || !strings.Contains(out, "untouched") {
				t.Errorf("host %d changed: %v %s", i, err, out)
			}
		}
	}
	a1 := e.lab.Hosts()[0].Addr

	t.Run("kubespray's names, check mode", func(t *testing.T) {
		work := t.TempDir()
		copyTree(t, filepath.Join(e.root, "examples/ha-cluster"), work)
		inv := e.inventory(t, work, "h", map[string][]int{"etcd": {1}, "kube_control_plane": {1}, "kube_node": {}, "loadbalancer": {2}})
		r := e.play(t, ctx, "-i", inv, filepath.Join(work, "cluster.yml"), "--check", "--diff")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		for _, w := range []string{
			"+ETCD_INITIAL_CLUSTER=h-1=https://" + a1 + ":2380\n", // etcd_group
			"+    server h-1 " + a1 + ":6443\n",                   // kube-master in haproxy.cfg
			"TASK [kube-master : start the components]",           // the masters play matched
		} {
			if !strings.Contains(r.out, w) {
				t.Errorf("output lacks %q\n%s", w, tail(r.out, 80))
			}
		}
		// Only the two worker plays ([kube_node] is empty) match nothing.
		if n := strings.Count(r.out, "no hosts matched"); n != 2 {
			t.Errorf("%d plays matched no host, want 2\n%s", n, r.out)
		}
		if r.recap["h-1"].changed == 0 || r.recap["h-2"].changed == 0 {
			t.Errorf("check mode predicted no change on a fresh host: %+v", r.recap)
		}
		untouched(t)
	})

	t.Run("an etcd group of another name stops the run before anything changes", func(t *testing.T) {
		work := t.TempDir()
		copyTree(t, filepath.Join(e.root, "examples/ha-cluster"), work)
		inv := e.inventory(t, work, "h", map[string][]int{"etcd_prod": {1}, "kube_control_plane": {1}, "kube_node": {}, "loadbalancer": {2}})
		// The operator's own playbook names the group; the roles still
		// read etcd_group.
		b, err := os.ReadFile(filepath.Join(work, "etcd.yml"))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "hosts: etcd:kube-master", "hosts: etcd_prod:kube-master")
		s = strings.ReplaceAll(s, "hosts: etcd\n", "hosts: etcd_prod\n")
		if err := os.WriteFile(filepath.Join(work, "etcd.yml"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		r := e.play(t, ctx, "-i", inv, filepath.Join(work, "cluster.yml"))
		if r.code == 0 || !strings.Contains(r.out, "group etcd has no hosts") {
			t.Fatalf("exit %d, want the empty group named\n%s", r.code, tail(r.out, 40))
		}
		if _, err := os.Stat(filepath.Join(work, "pki")); !os.IsNotExist(err) {
			t.Errorf("pki folder written before the check: %v", err)
		}
		untouched(t)
	})
}
