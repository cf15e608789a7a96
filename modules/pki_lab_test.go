package modules

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gokube/connection"
	"gokube/internal/labtest"
	"gokube/internal/testskip"
	"gokube/lab"
)

// pkiLabConn dials the first running lab host over SSH, or skips (fails
// under GOKUBE_INTEGRATION=1) when no lab is configured.
func pkiLabConn(t *testing.T) (connection.Conn, lab.Host) {
	t.Helper()
	l := labtest.Require(t, 1)
	for _, h := range l.Hosts() {
		if h.Running && !h.Cut {
			return labtest.Dial(t, l, h), h
		}
	}
	t.Fatal("no running lab host")
	return nil, lab.Host{}
}

// TestEtcdThroughSSHLab runs a TLS etcd that listens only on a lab host's
// loopback, and reaches it with the etcd and uri modules through the host's
// SSH connection: the path the verify role takes.
func TestEtcdThroughSSHLab(t *testing.T) {
	conn, host := pkiLabConn(t)
	if _, err := os.Stat(etcdBinary); err != nil {
		testskip.Skip(t, "%s not installed", etcdBinary)
	}
	ctx := context.Background()
	pki := filepath.Join(t.TempDir(), "pki")
	etcdTestPKI(t, pki, "m1")

	// Upload etcd and the member's certificates to a scratch dir.
	dir := fmt.Sprintf("/tmp/gk-pki-test-%d", time.Now().UnixNano())
	if res, err := conn.Run(ctx, connection.Request{Script: "mkdir -m 700 " + dir}); err != nil || res.RC != 0 {
		t.Fatalf("mkdir: %v %s", err, res.Stderr)
	}
	t.Cleanup(func() { conn.Run(context.Background(), connection.Request{Script: "rm -rf " + dir}) })
	put := func(local, remote string, mode uint32) {
		f, err := os.Open(local)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		if err := conn.Put(ctx, connection.Upload{Path: remote, Content: f, Size: fi.Size(), Mode: mode}); err != nil {
			t.Fatalf("put %s: %v", remote, err)
		}
	}
	start := time.Now()
	put(etcdBinary, dir+"/etcd", 0o755)
	t.Logf("uploaded etcd (21 MB) in %v", time.Since(start))
	for _, f := range []string{"ca.pem", "m1.pem", "m1-key.pem"} {
		put(filepath.Join(pki, f), dir+"/"+f, 0o600)
	}

	cport, pport := 20000+rand.IntN(20000), 40000+rand.IntN(20000)
	client := fmt.Sprintf("https://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("https://127.0.0.1:%d", pport)
	script := fmt.Sprintf(`cd %[1]s && nohup ./etcd --name m1 --data-dir %[1]s/data \
 --listen-client-urls %[2]s --advertise-client-urls %[2]s --listen-peer-urls %[3]s --initial-advertise-peer-urls %[3]s \
 --initial-cluster m1=%[3]s --client-cert-auth --trusted-ca-file ca.pem --cert-file m1.pem --key-file m1-key.pem \
 --peer-client-cert-auth --peer-trusted-ca-file ca.pem --peer-cert-file m1.pem --peer-key-file m1-key.pem \
 >etcd.log 2>&1 </dev/null & echo $!`, dir, client, peer)
	res, err := conn.Run(ctx, connection.Request{Script: script})
	if err != nil || res.RC != 0 {
		t.Fatalf("start etcd: %v %s", err, res.Stderr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		t.Fatalf("pid %q", res.Stdout)
	}
	t.Cleanup(func() {
		conn.Run(context.Background(), connection.Request{Script: fmt.Sprintf("kill %d; sleep 0.2; kill -9 %d 2>/dev/null; true", pid, pid)})
	})

	args := map[string]any{"endpoint": client, "ca_cert": filepath.Join(pki, "ca.pem"),
		"cert": filepath.Join(pki, "client.pem"), "key": filepath.Join(pki, "client-key.pem")}
	env := &Env{Conn: conn, Host: host.Name}
	var st *Result
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err = Etcd{}.Run(ctx, env, args)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Failed && st.Data["health"] == true {
			break
		}
		if time.Now().After(deadline) {
			log, _ := conn.Get(ctx, dir+"/etcd.log", false)
			t.Fatalf("etcd on %s not healthy: %s\n%s", host.Name, st.Msg, pkiTail(log, 2000))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if st.Data["is_leader"] != true || st.Data["version"] != "3.4.23" {
		t.Fatalf("status: %v", st.Data)
	}

	// The member listens on the host's loopback only: the control machine
	// cannot reach it directly, so the answer above came through SSH.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host.Addr, strconv.Itoa(cport)), 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("etcd client port reachable from the control machine at %s", host.Addr)
	}

	// Round trips of a warm status: one forward (channel open) per task.
	before := conn.RoundTrips()
	start = time.Now()
	if st, err = (Etcd{}).Run(ctx, env, args); err != nil || st.Failed {
		t.Fatalf("status: %v %+v", err, st)
	}
	if n := conn.RoundTrips() - before; n != 1 {
		t.Errorf("status counted %d round trips, want 1 forward", n)
	}
	const n = 10
	for range n - 1 {
		if st, err = (Etcd{}).Run(ctx, env, args); err != nil || st.Failed {
			t.Fatalf("status: %v %+v", err, st)
		}
	}
	t.Logf("etcd status through SSH: %d round trips counted for %d tasks, %v per task", conn.RoundTrips()-before, n, time.Since(start)/n)

	mres, err := Etcd{}.Run(ctx, env, map[string]any{"endpoint": client, "ca_cert": args["ca_cert"], "cert": args["cert"], "key": args["key"], "action": "members"})
	if err != nil || mres.Failed || len(mres.Data["members"].([]any)) != 1 {
		t.Fatalf("members: %v %+v", err, mres)
	}
	// Without a client certificate etcd refuses the TLS handshake.
	nores, err := Etcd{}.Run(ctx, env, map[string]any{"endpoint": client, "ca_cert": args["ca_cert"]})
	if err != nil || !nores.Failed || !strings.Contains(nores.Msg, "certificate") {
		t.Fatalf("no client cert: %v %+v", err, nores)
	}
	// uri via the host's curl, if it has one, sees the same member.
	if r, _ := conn.Run(ctx, connection.Request{Script: "command -v curl", ReadOnly: true}); r.RC == 0 {
		ures, err := URI{}.Run(ctx, env, map[string]any{"url": client + "/health", "via": "host", "ca_path": dir + "/ca.pem",
			"client_cert": dir + "/m1.pem", "client_key": dir + "/m1-key.pem"})
		if err != nil || ures.Failed || ures.Data["json"].(map[string]any)["health"] != "true" {
			t.Fatalf("uri via host: %v %+v", err, ures)
		}
		t.Logf("uri via host curl: %v", ures.Msg)
	}
}
