package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// curlEtcd talks to a member's client API from the control machine with
// curl, an observer that shares no code with gokube.
func curlEtcd(pki, addr, path, body string, withCert bool) (string, error) {
	args := []string{"-sS", "--max-time", "3", "--cacert", filepath.Join(pki, "etcd-ca.pem")}
	if withCert {
		args = append(args, "--cert", filepath.Join(pki, "etcd-client.pem"), "--key", filepath.Join(pki, "etcd-client-key.pem"))
	}
	url := "https://" + addr + ":2379" + path
	if body != "" {
		args = append(args, "-X", "POST", "-d", body)
	}
	out, err := exec.Command("curl", append(args, url)...).CombinedOutput()
	return string(out), err
}

// TestEtcdCluster is issue 5's "done means", in order, on three fresh lab
// hosts: check mode predicts and touches nothing; a run builds a healthy
// TLS cluster (checked with curl); a second run changes nothing; a member
// powered off leaves 2 of 3 healthy with a leader; a configuration change
// restarts members one at a time while the cluster keeps answering.
func TestEtcdCluster(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for i := 1; i <= 3; i++ {
		if err := e.lab.Reset(ctx, e.lab.Hosts()[i-1].Name); err != nil {
			t.Fatalf("reset host %d: %v", i, err)
		}
	}
	work := t.TempDir()
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
	inv := e.inventory(t, work, "etcd", map[string][]int{"etcd": {1, 2, 3}})
	playbook := filepath.Join(work, "etcd.yml")
	pki := filepath.Join(work, "pki")
	addrs := []string{e.lab.Hosts()[0].Addr, e.lab.Hosts()[1].Addr, e.lab.Hosts()[2].Addr}

	t.Run("check mode on fresh hosts predicts and changes nothing", func(t *testing.T) {
		r := e.play(t, ctx, "-i", inv, playbook, "--check")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		for i := 1; i <= 3; i++ {
			h := fmt.Sprintf("etcd-%d", i)
			if r.recap[h].changed == 0 {
				t.Errorf("%s: check mode predicted no change on a fresh host\n%s", h, r.out)
			}
			out, err := e.ssh(t, i, "test ! -e /etc/etcd && test ! -e /usr/local/bin/etcd && ! getent passwd etcd && echo untouched")
			if err != nil || !strings.Contains(out, "untouched") {
				t.Errorf("host %d changed by check mode: %v %s", i, err, out)
			}
		}
	})

	t.Run("first run builds a healthy TLS cluster", func(t *testing.T) {
		r := e.play(t, ctx, "-i", inv, playbook)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		t.Logf("verify report:\n%s", tail(r.out, 30))
		if !strings.Contains(r.out, "3/3 members healthy") {
			t.Errorf("verify did not report 3/3 healthy:\n%s", r.out)
		}
		// Independent check: every member answers /health and lists 3 members.
		for _, a := range addrs {
			out, err := curlEtcd(pki, a, "/health", "", true)
			if err != nil || !strings.Contains(out, `"health":"true"`) {
				t.Errorf("%s /health: %v %s", a, err, out)
			}
		}
		out, err := curlEtcd(pki, addrs[0], "/v3/cluster/member/list", "{}", true)
		if err != nil {
			t.Fatalf("member list: %v %s", err, out)
		}
		var ml struct {
			Members []struct {
				Name string `json:"name"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(out), &ml); err != nil || len(ml.Members) != 3 {
			t.Errorf("member list: want 3 members, got %s (%v)", out, err)
		}
		// The default release: 3.7.0, built from the module proxy, with
		// etcdutl beside etcd and etcdctl.
		out, err = curlEtcd(pki, addrs[0], "/version", "", true)
		if err != nil || !strings.Contains(out, `"etcdserver":"3.7.0"`) {
			t.Errorf("/version: want etcdserver 3.7.0: %v %s", err, out)
		}
		out, err = e.ssh(t, 2, "/usr/local/bin/etcdutl version && /usr/local/bin/etcdctl version")
		if err != nil || !strings.Contains(out, "etcdutl version: 3.7.0") || !strings.Contains(out, "etcdctl version: 3.7.0") {
			t.Errorf("etcdutl/etcdctl on host 2: %v %s", err, out)
		}
		// A client without a certificate is refused.
		if out, err := curlEtcd(pki, addrs[0], "/health", "", false); err == nil {
			t.Errorf("client without certificate was served: %s", out)
		}
		// Keys on hosts are 0600 and owned by etcd; the CA key never left.
		out, _ = e.ssh(t, 1, "stat -c '%a %U' /etc/etcd/ssl/member-key.pem; ls /etc/etcd/ssl")
		if !strings.HasPrefix(out, "600 etcd") || strings.Contains(out, "ca-key") {
			t.Errorf("member key on host: %s", out)
		}
		if st, err := os.Stat(filepath.Join(pki, "etcd-ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("CA key on control machine: %v %v", st, err)
		}
	})

	t.Run("second run changes nothing", func(t *testing.T) {
		r := e.play(t, ctx, "-i", inv, playbook)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		for i := 1; i <= 3; i++ {
			h := fmt.Sprintf("etcd-%d", i)
			rc, ok := r.recap[h]
			if !ok || rc.changed != 0 {
				t.Errorf("%s: second run recap %+v (found %v)\n%s", h, rc, ok, r.out)
			}
		}
	})

	startedAt := func(i int) string {
		out, err := e.ssh(t, i, "systemctl show etcd -p ExecMainStartTimestampMonotonic --value")
		if err != nil {
			t.Fatalf("host %d: %v %s", i, err, out)
		}
		return strings.TrimSpace(out)
	}
	pending := func(i int) bool {
		out, err := e.ssh(t, i, "if test -e /etc/etcd/restart-pending; then echo pending; else echo none; fi")
		if err != nil {
			t.Fatalf("host %d: %v %s", i, err, out)
		}
		return strings.TrimSpace(out) == "pending"
	}

	t.Run("a member powered off leaves 2 of 3 healthy and a leader", func(t *testing.T) {
		name := e.lab.Hosts()[2].Name
		if err := e.lab.Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
		r := e.play(t, ctx, "-i", inv, playbook, "--tags", "verify")
		// 4: a host unreachable, which outranks verify's failed health
		// assertion (2), as in Ansible.
		if r.code != 4 {
			t.Errorf("exit %d, want 4", r.code)
		}
		if r.recap["etcd-3"].unreachable == 0 {
			t.Errorf("etcd-3 not reported unreachable:\n%s", r.out)
		}
		if !strings.Contains(r.out, "2/3 members healthy") || !strings.Contains(r.out, "leader: ") {
			t.Errorf("verify did not report 2/3 healthy with a leader:\n%s", r.out)
		}

		// A configuration change now: the rolling restart would take a
		// second member of three down. Refused before the first restart;
		// the new configuration waits on disk, remembered as pending.
		before := []string{startedAt(1), startedAt(2)}
		r = e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_heartbeat_interval=300")
		if r.code != 4 {
			t.Errorf("configuration change with a member down: exit %d, want 4 (etcd-3 unreachable, etcd-1 refused)\n%s", r.code, r.out)
		}
		if !strings.Contains(r.out, "refusing to restart etcd-1: 1 of the 2 other voting members are unhealthy: etcd-3") {
			t.Errorf("the restart was not refused naming etcd-3:\n%s", r.out)
		}
		for i := 1; i <= 2; i++ {
			if got := startedAt(i); got != before[i-1] {
				t.Errorf("member %d restarted (start time %s -> %s) while etcd-3 was down", i, before[i-1], got)
			}
			if out, _ := e.ssh(t, i, "grep HEARTBEAT /etc/etcd/etcd.env"); !strings.Contains(out, "=300") {
				t.Errorf("member %d: new configuration not on disk: %s", i, out)
			}
			if !pending(i) {
				t.Errorf("member %d: no restart-pending after the refused restart", i)
			}
		}
		if err := e.lab.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "etcd-3 back", 3*time.Minute, func() error {
			out, err := curlEtcd(pki, addrs[2], "/health", "", true)
			if err != nil || !strings.Contains(out, `"health":"true"`) {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		// The same settings again: nothing changes on etcd-1 and etcd-2's
		// disks, yet the restart they owe happens, and etcd-3 gets them.
		before = []string{startedAt(1), startedAt(2), startedAt(3)}
		r = e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_heartbeat_interval=300")
		if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
			t.Errorf("after power on: exit %d\n%s", r.code, r.out)
		}
		for i := 1; i <= 3; i++ {
			if got := startedAt(i); got == before[i-1] {
				t.Errorf("member %d not restarted after power on (start time %s)", i, got)
			}
			if pending(i) {
				t.Errorf("member %d: restart-pending left after its restart", i)
			}
		}
	})

	t.Run("a configuration change restarts members one at a time", func(t *testing.T) {
		before := []string{startedAt(1), startedAt(2), startedAt(3)}

		// Write and read a key through the cluster every 200 ms while the
		// play runs; any member may answer, but some member must.
		var rounds, failures atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				rounds.Add(1)
				ok := false
				body := fmt.Sprintf(`{"key":"Z2subW9uaXRvcg==","value":"%s"}`, b64(fmt.Sprint(n)))
				for _, a := range addrs {
					if out, err := curlEtcd(pki, a, "/v3/kv/put", body, true); err == nil && strings.Contains(out, "revision") {
						ok = true
						break
					}
				}
				if !ok {
					failures.Add(1)
				}
			}
		}()
		r := e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_heartbeat_interval=350")
		close(stop)
		wg.Wait()
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		after := []string{startedAt(1), startedAt(2), startedAt(3)}
		for i := range before {
			if before[i] == after[i] {
				t.Errorf("member %d was not restarted (start time %s)", i+1, after[i])
			}
			out, _ := e.ssh(t, i+1, "grep HEARTBEAT /etc/etcd/etcd.env")
			if !strings.Contains(out, "=350") {
				t.Errorf("member %d env: %s", i+1, out)
			}
		}
		t.Logf("cluster polled %d times during the rolling restart, %d without an answer", rounds.Load(), failures.Load())
		if rounds.Load() < 5 {
			t.Errorf("only %d polls: the test did not watch the restart", rounds.Load())
		}
		if failures.Load() > 0 {
			t.Errorf("the cluster did not answer %d of %d times during the rolling restart", failures.Load(), rounds.Load())
		}
		// One at a time: systemd's monotonic start times (one kernel clock for
		// all lab hosts) follow inventory order, each member starting only
		// after the previous one had restarted and reported healthy.
		var prev int64
		for i, a := range after {
			us, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				t.Fatalf("member %d start time %q: %v", i+1, a, err)
			}
			if i > 0 {
				t.Logf("member %d restarted %d ms after member %d", i+1, (us-prev)/1000, i)
			}
			if i > 0 && us-prev < 200_000 {
				t.Errorf("member %d restarted %d ms after member %d: not one at a time", i+1, (us-prev)/1000, i)
			}
			prev = us
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
