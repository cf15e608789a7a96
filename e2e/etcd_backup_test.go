package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEtcdBackupRestore, on both etcd releases: keys written, a backup
// saved to the control machine (snapshot, sha256, member list), every
// member's data wiped, the restore brings the cluster and every key back
// (etcdutl on 3.7, etcdctl's restore on 3.4).
func TestEtcdBackupRestore(t *testing.T) {
	e := setup(t)
	for _, version := range []string{"3.7.0", "3.4.23"} {
		t.Run(version, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			e.resetHosts(t, ctx, 4, 5, 6)
			work := t.TempDir()
			copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
			inv := e.inventory(t, work, "b", map[string][]int{"etcd": {4, 5, 6}})
			pki := filepath.Join(work, "pki")
			addrs := []string{e.lab.Hosts()[3].Addr, e.lab.Hosts()[4].Addr, e.lab.Hosts()[5].Addr}
			ver := "etcd_version=" + version
			if r := e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd.yml"), "-e", ver); r.code != 0 {
				t.Fatalf("bootstrap: exit %d\n%s", r.code, r.out)
			}
			const n = 25
			for i := 0; i < n; i++ {
				body := fmt.Sprintf(`{"key":"%s","value":"%s"}`, b64(fmt.Sprintf("gk/backup/%02d", i)), b64(fmt.Sprintf("value-%d", i)))
				if out, err := curlEtcd(pki, addrs[i%3], "/v3/kv/put", body, true); err != nil || !strings.Contains(out, "revision") {
					t.Fatalf("put %d: %v %s", i, err, out)
				}
			}

			r := e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd-backup.yml"), "-e", ver)
			if r.code != 0 {
				t.Fatalf("backup: exit %d\n%s", r.code, r.out)
			}
			t.Logf("%s", grepLines(r.out, "saved "))
			snaps, _ := filepath.Glob(filepath.Join(work, "backups", "etcd-*.db"))
			if len(snaps) != 1 {
				t.Fatalf("backups: %v", snaps)
			}
			snap := snaps[0]
			check := exec.Command("sha256sum", "-c", filepath.Base(snap)+".sha256")
			check.Dir = filepath.Dir(snap)
			if out, err := check.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v %s", err, out)
			}
			var members []map[string]any
			b, err := os.ReadFile(strings.TrimSuffix(snap, ".db") + ".members.json")
			if err != nil || json.Unmarshal(b, &members) != nil || len(members) != 3 {
				t.Fatalf("members.json: %v %s", err, b)
			}

			// Every member loses its data.
			for i := 4; i <= 6; i++ {
				if out, err := e.ssh(t, i, "systemctl stop etcd && rm -rf /var/lib/etcd/member && ! test -e /var/lib/etcd/member"); err != nil {
					t.Fatalf("wipe host %d: %v %s", i, err, out)
				}
			}
			r = e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd-restore.yml"), "-e", ver, "-e", "snapshot="+snap)
			if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
				t.Fatalf("restore: exit %d\n%s", r.code, r.out)
			}
			t.Logf("restore:\n%s\n%s", grepLines(r.out, "PLAY ["), tail(r.out, 20))
			rng := fmt.Sprintf(`{"key":"%s","range_end":"%s"}`, b64("gk/backup/"), b64("gk/backup0"))
			for _, a := range addrs {
				out, err := curlEtcd(pki, a, "/v3/kv/range", rng, true)
				var res struct {
					Count string `json:"count"`
					KVs   []struct {
						Key   string `json:"key"`
						Value string `json:"value"`
					} `json:"kvs"`
				}
				if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Count != fmt.Sprint(n) || len(res.KVs) != n {
					t.Fatalf("%s after restore: want %d keys: %v %s", a, n, err, out)
				}
				if res.KVs[7].Key != b64("gk/backup/07") || res.KVs[7].Value != b64("value-7") {
					t.Errorf("%s: key 7 is %+v", a, res.KVs[7])
				}
			}
			// The old data dirs were moved aside, not deleted.
			if out, err := e.ssh(t, 5, "ls -d /var/lib/etcd.before-restore-*"); err != nil || out == "" {
				t.Errorf("old data dir on host 5: %v %q", err, out)
			}
		})
	}
}
