package modules

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gokube/connection"
	"gokube/internal/testskip"
)

const etcdBinary = "/usr/bin/etcd"

// pkiNoDialer hides the Dialer of a connection: a transport that cannot
// forward ports.
type pkiNoDialer struct{ connection.Conn }

func pkiFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type etcdTestMember struct {
	name       string
	clientURL  string
	peerURL    string
	cmd        *exec.Cmd
	exited     chan struct{}
	logPath    string
	clientArgs map[string]any // etcd module args reaching this member
}

type etcdTestCluster struct {
	t       *testing.T
	dir     string
	pki     string
	token   string
	members []*etcdTestMember
}

// etcdTestPKI issues, with the x509 module, a CA, one cert per member
// (server and client auth, as peers authenticate each other with it), and
// an operator client cert.
func etcdTestPKI(t *testing.T, pki string, names ...string) {
	t.Helper()
	x509Run(t, false, map[string]any{"path": pki, "name": "ca", "ca": true, "common_name": "etcd-ca"})
	for _, n := range names {
		x509Run(t, false, map[string]any{"path": pki, "name": n, "ca_name": "ca", "common_name": n,
			"dns_names": []any{"localhost", n}, "ip_addresses": []any{"127.0.0.1"}, "usages": []any{"server_auth", "client_auth"}})
	}
	x509Run(t, false, map[string]any{"path": pki, "name": "client", "ca_name": "ca", "common_name": "operator", "usages": []any{"client_auth"}})
}

func newEtcdTestCluster(t *testing.T, n int) *etcdTestCluster {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		testskip.Skip(t, "%s not installed: %v", etcdBinary, err)
	}
	c := &etcdTestCluster{t: t, dir: t.TempDir(), token: fmt.Sprintf("gk-test-%d", time.Now().UnixNano())}
	c.pki = filepath.Join(c.dir, "pki")
	names := make([]string, n+1)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i+1) // one spare for member_add
	}
	etcdTestPKI(t, c.pki, names...)
	var initial []string
	for i := 0; i < n; i++ {
		m := c.newMember(names[i])
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	t.Cleanup(c.stopAll)
	for _, m := range c.members {
		c.start(m, strings.Join(initial, ","), "new")
	}
	for _, m := range c.members {
		c.waitHealthy(m, 30*time.Second)
	}
	return c
}

func (c *etcdTestCluster) newMember(name string) *etcdTestMember {
	m := &etcdTestMember{
		name:      name,
		clientURL: fmt.Sprintf("https://127.0.0.1:%d", pkiFreePort(c.t)),
		peerURL:   fmt.Sprintf("https://127.0.0.1:%d", pkiFreePort(c.t)),
		logPath:   filepath.Join(c.dir, name+".log"),
	}
	m.clientArgs = map[string]any{
		"endpoint": m.clientURL,
		"ca_cert":  filepath.Join(c.pki, "ca.pem"),
		"cert":     filepath.Join(c.pki, "client.pem"),
		"key":      filepath.Join(c.pki, "client-key.pem"),
	}
	return m
}

func (c *etcdTestCluster) start(m *etcdTestMember, initialCluster, state string) {
	c.t.Helper()
	pem := func(s string) string { return filepath.Join(c.pki, s) }
	log, err := os.Create(m.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	m.cmd = exec.Command(etcdBinary,
		"--name", m.name,
		"--data-dir", filepath.Join(c.dir, m.name+".etcd"),
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", initialCluster, "--initial-cluster-state", state,
		"--initial-cluster-token", c.token,
		"--client-cert-auth", "--trusted-ca-file", pem("ca.pem"),
		"--cert-file", pem(m.name+".pem"), "--key-file", pem(m.name+"-key.pem"),
		"--peer-client-cert-auth", "--peer-trusted-ca-file", pem("ca.pem"),
		"--peer-cert-file", pem(m.name+".pem"), "--peer-key-file", pem(m.name+"-key.pem"),
		"--logger", "zap", "--log-outputs", "stderr",
		"--heartbeat-interval", "50", "--election-timeout", "500",
	)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		log.Close()
		c.t.Fatal(err)
	}
	log.Close()
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.exited)
}

// stop kills one member's etcd by its PID and waits for it.
func (c *etcdTestCluster) stop(m *etcdTestMember) {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (c *etcdTestCluster) stopAll() {
	for _, m := range c.members {
		c.stop(m)
	}
}

func (c *etcdTestCluster) waitHealthy(m *etcdTestMember, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	conn := connection.NewLocal("ctl")
	var last *Result
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			b, _ := os.ReadFile(m.logPath)
			c.t.Fatalf("etcd %s exited:\n%s", m.name, pkiTail(b, 3000))
		default:
		}
		res, err := Etcd{}.Run(context.Background(), &Env{Conn: conn, Host: m.name}, m.clientArgs)
		if err != nil {
			c.t.Fatal(err)
		}
		if !res.Failed && res.Data["health"] == true {
			return
		}
		last = res
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(m.logPath)
	c.t.Fatalf("etcd %s not healthy after %v: %v\n%s", m.name, d, last.Msg, pkiTail(b, 3000))
}

// logs returns the tail of every member's log, for failure messages.
func (c *etcdTestCluster) logs() string {
	var b strings.Builder
	for _, m := range c.members {
		log, _ := os.ReadFile(m.logPath)
		fmt.Fprintf(&b, "--- %s\n%s\n", m.name, pkiTail(log, 4000))
	}
	return b.String()
}

func pkiTail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func etcdRun(t *testing.T, conn connection.Conn, check bool, args map[string]any, extra map[string]any) *Result {
	t.Helper()
	a := map[string]any{}
	for k, v := range args {
		a[k] = v
	}
	for k, v := range extra {
		a[k] = v
	}
	res, err := Etcd{}.Run(context.Background(), &Env{Conn: conn, Host: conn.Host(), Check: check}, a)
	if err != nil {
		t.Fatalf("etcd %v: %v", extra, err)
	}
	return res
}

func etcdMemberNames(t *testing.T, res *Result) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	list, ok := res.Data["members"].([]any)
	if !ok {
		t.Fatalf("members not a list: %#v", res.Data["members"])
	}
	for _, e := range list {
		m := e.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

// TestEtcdRealCluster runs the module against a real 3-member etcd with TLS
// and client certificate authentication on loopback ports.
func TestEtcdRealCluster(t *testing.T) {
	c := newEtcdTestCluster(t, 3)
	local := connection.NewLocal("ctl")

	// status on every member: all healthy, one leader they agree on.
	leaders := 0
	var leader string
	var leaderMember *etcdTestMember
	ids := map[string]bool{}
	for _, m := range c.members {
		res := etcdRun(t, local, false, m.clientArgs, nil)
		d := res.Data
		if res.Failed || d["health"] != true {
			t.Fatalf("%s: %+v", m.name, res)
		}
		if d["version"] != "3.4.23" || d["raft_term"].(uint64) == 0 || d["db_size"].(uint64) == 0 || d["raft_index"].(uint64) == 0 {
			t.Fatalf("%s status fields: %v", m.name, d)
		}
		if leader == "" {
			leader = d["leader"].(string)
		}
		if d["leader"] != leader || leader == "" {
			t.Fatalf("%s sees leader %v, another sees %v", m.name, d["leader"], leader)
		}
		if d["is_leader"] == true {
			leaders++
			leaderMember = m
			if d["member_id"] != leader {
				t.Fatalf("is_leader but member_id %v != leader %v", d["member_id"], leader)
			}
		}
		ids[d["member_id"].(string)] = true
	}
	if leaders != 1 || len(ids) != 3 {
		t.Fatalf("%d leaders, %d distinct member ids", leaders, len(ids))
	}

	// members
	res := etcdRun(t, local, false, c.members[0].clientArgs, map[string]any{"action": "members"})
	byName := etcdMemberNames(t, res)
	if len(byName) != 3 {
		t.Fatalf("members: %v", res.Data["members"])
	}
	for _, m := range c.members {
		got := byName[m.name]
		if got == nil || !ids[got["id"].(string)] || fmt.Sprint(got["peer_urls"]) != "["+m.peerURL+"]" || fmt.Sprint(got["client_urls"]) != "["+m.clientURL+"]" || got["is_learner"] != false {
			t.Fatalf("member %s: %v", m.name, got)
		}
	}

	// discovery_token: created once (a v3 size key a new cluster's members
	// read), then present; another size for the same token is refused.
	tok := map[string]any{"action": "discovery_token", "token": "t-1", "size": 3}
	for i, wantChanged := range []bool{true, false} {
		res = etcdRun(t, local, false, c.members[0].clientArgs, tok)
		if res.Failed || res.Changed != wantChanged || res.Data["registered"] != 0 || res.Data["size"] != 3 {
			t.Fatalf("discovery_token run %d: %+v", i+1, res)
		}
	}
	if out := etcdGetKey(t, c, "/_etcd/registry/t-1/_config/size"); out != "3" {
		t.Fatalf("size key: %q", out)
	}
	res = etcdRun(t, local, false, c.members[0].clientArgs, map[string]any{"action": "discovery_token", "token": "t-1", "size": 5})
	if !res.Failed || !strings.Contains(res.Msg, "exists for a cluster of 3 members, not 5") {
		t.Fatalf("discovery_token with another size: %+v", res)
	}

	// A client without a certificate is refused by etcd (TLS handshake).
	noCert := map[string]any{"endpoint": c.members[0].clientURL, "ca_cert": filepath.Join(c.pki, "ca.pem")}
	res = etcdRun(t, local, false, noCert, nil)
	if !res.Failed || res.Data["health"] != false || !strings.Contains(res.Msg, "certificate") {
		t.Fatalf("client without certificate: %+v", res)
	}
	uriRes, err := URI{}.Run(context.Background(), &Env{Conn: local, Host: "ctl"}, map[string]any{"url": c.members[0].clientURL + "/health", "ca_path": filepath.Join(c.pki, "ca.pem")})
	if err != nil || !uriRes.Failed || uriRes.Data["status"] != -1 {
		t.Fatalf("uri without client certificate: %+v %v", uriRes, err)
	}
	// The client cert works with plain uri too, and the answer is JSON.
	uriRes, err = URI{}.Run(context.Background(), &Env{Conn: local, Host: "ctl"}, map[string]any{"url": c.members[0].clientURL + "/health",
		"ca_path": filepath.Join(c.pki, "ca.pem"), "client_cert": filepath.Join(c.pki, "client.pem"), "client_key": filepath.Join(c.pki, "client-key.pem")})
	if err != nil || uriRes.Failed || uriRes.Data["json"].(map[string]any)["health"] != "true" {
		t.Fatalf("uri with client certificate: %+v %v", uriRes, err)
	}

	// A connection without port forwarding is a clear error, not a hang.
	_, err = Etcd{}.Run(context.Background(), &Env{Conn: pkiNoDialer{local}, Host: "ctl"}, c.members[0].clientArgs)
	if err == nil || !strings.Contains(err.Error(), "cannot forward ports") {
		t.Fatalf("no dialer: %v", err)
	}
	// Dry always has DialContext; it fails at dial time, so the task fails.
	res, err = Etcd{}.Run(context.Background(), &Env{Conn: connection.NewDry(pkiNoDialer{local}), Host: "ctl", Check: true}, c.members[0].clientArgs)
	if err != nil || !res.Failed || !strings.Contains(res.Msg, "cannot forward ports") {
		t.Fatalf("dry over no dialer: %+v %v", res, err)
	}

	// Through the Fake connection: its Dialer counts forwards; status uses
	// one forwarded connection for both requests.
	fake := connection.NewFake("h1")
	res = etcdRun(t, fake, false, c.members[1].clientArgs, nil)
	if res.Failed || res.Data["health"] != true {
		t.Fatalf("via fake: %+v", res)
	}
	if rt := fake.RoundTrips(); rt != 1 {
		t.Errorf("status through the fake opened %d forwards, want 1", rt)
	}
	fake.SetUnreachable(fmt.Errorf("sshd gone"))
	if _, err := (Etcd{}).Run(context.Background(), &Env{Conn: fake, Host: "h1"}, c.members[1].clientArgs); !connection.IsUnreachable(err) {
		t.Fatalf("unreachable host: %v", err)
	}

	// member_remove of the leader (the hard case: the survivors elect a new
	// leader, which drops conf changes until its first entry commits), check
	// mode first: predicted, nothing removed.
	victim := leaderMember
	var survivors []*etcdTestMember
	for _, m := range c.members {
		if m != victim {
			survivors = append(survivors, m)
		}
	}
	m1 := survivors[0]
	dry := connection.NewDry(local)
	res = etcdRun(t, dry, true, m1.clientArgs, map[string]any{"action": "member_remove", "name": victim.name})
	if !res.Changed || res.Data["id"] != byName[victim.name]["id"] {
		t.Fatalf("check member_remove: %+v", res)
	}
	if got := etcdMemberNames(t, etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "members"})); len(got) != 3 {
		t.Fatalf("check mode removed a member: %v", got)
	}
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_remove", "name": victim.name})
	if res.Failed || !res.Changed || len(etcdMemberNames(t, res)) != 2 {
		t.Fatalf("member_remove: %+v\n%s", res, c.logs())
	}
	c.stop(victim)
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_remove", "name": victim.name})
	if res.Failed || res.Changed {
		t.Fatalf("member_remove again: %+v", res)
	}
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_remove", "id": byName[victim.name]["id"]})
	if res.Failed || res.Changed {
		t.Fatalf("member_remove by id again: %+v", res)
	}

	// member_add m4: check mode predicts, the real add registers what the
	// new member needs, a second add changes nothing.
	m4 := c.newMember("m4")
	addArgs := map[string]any{"action": "member_add", "name": "m4", "peer_urls": []any{m4.peerURL}}
	res = etcdRun(t, dry, true, m1.clientArgs, addArgs)
	if !res.Changed || res.Data["id"] != "" || !strings.Contains(res.Data["initial_cluster"].(string), "m4="+m4.peerURL) {
		t.Fatalf("check member_add: %+v", res)
	}
	if got := etcdMemberNames(t, etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "members"})); len(got) != 2 {
		t.Fatalf("check mode added a member: %v", got)
	}
	start := time.Now()
	res = etcdRun(t, local, false, m1.clientArgs, addArgs)
	t.Logf("member_add after the leader's removal took %v", time.Since(start))
	if res.Failed || !res.Changed || res.Data["id"] == "" {
		t.Fatalf("member_add: %+v\n%s", res, c.logs())
	}
	newID := res.Data["id"]
	ic := res.Data["initial_cluster"].(string)
	want := []string{survivors[0].name + "=" + survivors[0].peerURL, survivors[1].name + "=" + survivors[1].peerURL, "m4=" + m4.peerURL}
	for _, w := range want {
		if !strings.Contains(ic, w) {
			t.Fatalf("initial_cluster %q lacks %q", ic, w)
		}
	}
	if strings.Count(ic, "=") != 3 {
		t.Fatalf("initial_cluster %q", ic)
	}
	again := etcdRun(t, local, false, m1.clientArgs, addArgs)
	if again.Changed || again.Failed || again.Data["id"] != newID || again.Data["initial_cluster"] != ic {
		t.Fatalf("member_add again: %+v", again)
	}
	// The registered initial_cluster is what the new member starts with.
	c.members = append(c.members, m4)
	c.start(m4, ic, "existing")
	c.waitHealthy(m4, 30*time.Second)
	got := etcdMemberNames(t, etcdRun(t, local, false, m4.clientArgs, map[string]any{"action": "members"}))
	if len(got) != 3 || got["m4"] == nil || got["m4"]["id"] != newID || fmt.Sprint(got["m4"]["client_urls"]) != "["+m4.clientURL+"]" {
		t.Fatalf("after m4 joined: %v", got)
	}
	// A member is not removed through its own endpoint.
	res = etcdRun(t, local, false, m4.clientArgs, map[string]any{"action": "member_remove", "name": "m4"})
	if !res.Failed || !strings.Contains(res.Msg, "serves this endpoint") {
		t.Fatalf("self removal: %+v", res)
	}
	// A conflicting add (m4's peer URL under another name) is refused.
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_add", "name": "m5", "peer_urls": []any{m4.peerURL}})
	if !res.Failed || !strings.Contains(res.Msg, "belong to member m4") {
		t.Fatalf("conflicting add: %+v", res)
	}
}

// TestEtcdStatusUnhealthy: a member that lost its quorum answers, but is
// reported unhealthy, without a leader.
func TestEtcdStatusUnhealthy(t *testing.T) {
	c := newEtcdTestCluster(t, 3)
	c.stop(c.members[1])
	c.stop(c.members[2])
	local := connection.NewLocal("ctl")
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := etcdRun(t, local, false, c.members[0].clientArgs, map[string]any{"timeout": 3})
		if res.Failed && res.Data["health"] == false {
			if !strings.Contains(res.Msg, "unhealthy") && !strings.Contains(res.Msg, "timed out") {
				t.Fatalf("unhealthy message: %q", res.Msg)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a member without quorum still reported healthy: %+v", res)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestEtcdArgErrors(t *testing.T) {
	conn := connection.NewFake("h1")
	cases := []struct {
		args map[string]any
		key  string
	}{
		{map[string]any{"action": "member_add", "name": "x"}, "peer_urls"},
		{map[string]any{"action": "member_add", "peer_urls": []any{"https://10.0.0.1:2380"}}, "name"},
		{map[string]any{"action": "member_add", "name": "x", "peer_urls": []any{"10.0.0.1:2380"}}, "peer_urls"},
		{map[string]any{"action": "member_remove"}, "name"},
		{map[string]any{"action": "member_remove", "id": "xyz"}, "id"},
		{map[string]any{"action": "status", "name": "x"}, "name"},
		{map[string]any{"action": "bogus"}, "action"},
		{map[string]any{"endpoint": "127.0.0.1:2379"}, "endpoint"},
		{map[string]any{"cert": "/c.pem"}, "key"},
		{map[string]any{"timeout": "soon"}, "timeout"},
		{map[string]any{"action": "discovery_token", "size": 3}, "token"},
		{map[string]any{"action": "discovery_token", "token": "a/b", "size": 3}, "token"},
		{map[string]any{"action": "discovery_token", "token": "t", "size": 0}, "size"},
		{map[string]any{"action": "discovery_token", "token": "t", "size": 3, "protocol": "v1"}, "protocol"},
		{map[string]any{"action": "members", "token": "t"}, "token"},
	}
	for _, c := range cases {
		_, err := Etcd{}.Run(context.Background(), &Env{Conn: conn, Host: "h1"}, c.args)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != c.key {
			t.Errorf("%v: got %v, want ArgError on %q", c.args, err, c.key)
		}
	}
	if n := len(conn.Requests()); n != 0 || conn.RoundTrips() != 0 {
		t.Errorf("bad args contacted the host: %d requests", n)
	}
}

func TestEtcdInitialCluster(t *testing.T) {
	ms := []etcdMember{
		{ID: 1, Name: "a", PeerURLs: []string{"https://10.0.0.1:2380"}},
		{ID: 2, Name: "", PeerURLs: []string{"https://10.0.0.2:2380"}},
	}
	if got := etcdInitialCluster(ms, 2, "b", []string{"https://10.0.0.2:2380"}); got != "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380" {
		t.Fatal(got)
	}
	if got := etcdInitialCluster(ms[:1], 0, "c", []string{"https://10.0.0.3:2380"}); got != "a=https://10.0.0.1:2380,c=https://10.0.0.3:2380" {
		t.Fatal(got)
	}
}

// FuzzEtcdUint: the gateway's integer encoding (quoted, bare, absent).
func FuzzEtcdUint(f *testing.F) {
	for _, s := range []string{`"18446744073709551615"`, `12`, `""`, `null`, `"-1"`, `"0x10"`, `"1e3"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var u etcdUint
		if err := u.UnmarshalJSON([]byte(s)); err == nil && u != 0 {
			if u.hex() == "" {
				t.Fatal("empty hex")
			}
		}
	})
}

// etcdGetKey reads a key from the test cluster's first member with a client
// of its own (not the module under test).
func etcdGetKey(t *testing.T, c *etcdTestCluster, key string) string {
	t.Helper()
	cfg, err := pkiTLS{caPath: filepath.Join(c.pki, "ca.pem"), certPath: filepath.Join(c.pki, "client.pem"), keyPath: filepath.Join(c.pki, "client-key.pem")}.config("test")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	ec := &etcdClient{c: hc, endpoint: c.members[0].clientURL}
	var r etcdRange
	if err := ec.post(context.Background(), "/v3/kv/range", map[string]any{"key": etcdB64(key)}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.KVs) == 0 {
		return ""
	}
	v, err := base64.StdEncoding.DecodeString(r.KVs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}
