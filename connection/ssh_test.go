package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func run(t *testing.T, c Conn, req Request) Result {
	t.Helper()
	res, err := c.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("run %q: %v", req.Script, err)
	}
	return res
}

func TestSSHRunFraming(t *testing.T) {
	c := newTestEnv(t).dial(t)
	dir := t.TempDir()

	// Binary stdout and stderr, including bytes that look like frame
	// markers and no trailing newline.
	res := run(t, c, Request{Script: `printf '\000\001\377GK_x 0\nGK_\n'; printf 'err\000\n' >&2; exit 7`})
	if want := []byte("\x00\x01\xffGK_x 0\nGK_\n"); !bytes.Equal(res.Stdout, want) {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
	if want := []byte("err\x00\n"); !bytes.Equal(res.Stderr, want) {
		t.Errorf("stderr %q, want %q", res.Stderr, want)
	}
	if res.RC != 7 {
		t.Errorf("rc %d, want 7", res.RC)
	}

	// A script that reads all its stdin must not eat the next frame.
	in := []byte("line1\nline2\x00\xff\n")
	res = run(t, c, Request{Script: "cat; echo done", Stdin: in})
	if want := append(append([]byte{}, in...), "done\n"...); !bytes.Equal(res.Stdout, want) {
		t.Errorf("stdin echo %q, want %q", res.Stdout, want)
	}
	// Reading stdin with no stdin given sees EOF instead of hanging.
	res = run(t, c, Request{Script: "cat; echo eof"})
	if string(res.Stdout) != "eof\n" {
		t.Errorf("empty stdin: %q", res.Stdout)
	}
	// $$ is the script's own shell: killing it ends the script only.
	res = run(t, c, Request{Script: "echo before; kill -KILL $$; echo after"})
	if string(res.Stdout) != "before\n" || res.RC != 137 {
		t.Errorf("kill $$: %q rc %d", res.Stdout, res.RC)
	}
	// exit in the script ends the script, not the shell.
	res = run(t, c, Request{Script: "echo a; exit 3; echo b"})
	if string(res.Stdout) != "a\n" || res.RC != 3 {
		t.Errorf("exit: %q rc %d", res.Stdout, res.RC)
	}
	// Env is exported (values with quotes and newlines), Dir applies.
	res = run(t, c, Request{Script: `printf '%s|%s|' "$A" "$B"; pwd; sh -c 'echo "$A"'`, Env: map[string]string{"A": "it's \"x\"\nnext", "B": "$HOME`id`"}, Dir: dir})
	want := "it's \"x\"\nnext|$HOME`id`|" + dir + "\nit's \"x\"\nnext\n"
	if string(res.Stdout) != want {
		t.Errorf("env/dir: %q, want %q", res.Stdout, want)
	}
	// A missing Dir fails the request, not the shell.
	res = run(t, c, Request{Script: "echo no", Dir: filepath.Join(dir, "missing")})
	if res.RC == 0 || len(res.Stdout) != 0 {
		t.Errorf("missing dir: rc %d out %q", res.RC, res.Stdout)
	}
	if _, err := c.Run(context.Background(), Request{Script: "true", Env: map[string]string{"A B": "x"}}); err == nil {
		t.Error("invalid env name accepted")
	}
	// A large output (several channel windows) arrives intact.
	res = run(t, c, Request{Script: "head -c 5000000 /dev/zero | tr '\\0' 'z'"})
	if len(res.Stdout) != 5000000 || bytes.Count(res.Stdout, []byte("z")) != 5000000 {
		t.Errorf("large output: %d bytes", len(res.Stdout))
	}
	// All of that went through a single shell session.
	if n := c.cfg.Host; n != "testhost" {
		t.Errorf("host %q", n)
	}
	res = run(t, c, Request{Script: "echo ok"})
	if string(res.Stdout) != "ok\n" {
		t.Errorf("after all: %q", res.Stdout)
	}
}

func TestSSHRoundTrips(t *testing.T) {
	env := newTestEnv(t)
	const delay = 25 * time.Millisecond // 50 ms round trips, as across a WAN
	fwd := startForwarder(t, env.srv.addr, delay)
	cfg := env.config()
	cfg.Addr, cfg.Port = fwd.addr()
	// known_hosts names the server's port; the forwarder's differs.
	addKnownHost(t, env.knownHosts, net.JoinHostPort(cfg.Addr, fmt.Sprint(cfg.Port)), env.srv.hostKeys[0].PublicKey())
	start := time.Now()
	ci, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ci.Close()
	c := ci.(*sshConn)
	hs := c.RoundTrips()
	fwdHS := fwd.roundTrips()
	// The forwarder delays each direction by delay: a round trip costs 2*delay.
	t.Logf("handshake: client counts %d, forwarder saw %d client bursts (+1 TCP connect), wall %v = %.1f round trips",
		hs, fwdHS, time.Since(start), float64(time.Since(start))/float64(2*delay))
	// connect, version+kexinit, kex, service, auth none, key query, signature
	if hs != 7 {
		t.Errorf("handshake round trips %d, want 7", hs)
	}
	if d := hs - (fwdHS + 1); d < -1 || d > 1 {
		t.Errorf("handshake: client counted %d, forwarder %d+1", hs, fwdHS)
	}
	start = time.Now()
	for i := 0; i < 10; i++ {
		res := run(t, c, Request{Script: fmt.Sprintf("echo %d", i)})
		if string(res.Stdout) != fmt.Sprintf("%d\n", i) {
			t.Fatalf("run %d: %q", i, res.Stdout)
		}
	}
	t.Logf("10 runs: wall %v = %.1f round trips", time.Since(start), float64(time.Since(start))/float64(2*delay))
	if got := c.RoundTrips() - hs; got != 11 {
		t.Errorf("10 runs: %d round trips, want 11 (10 requests + 1 session open)", got)
	}
	if got := fwd.roundTrips() - fwdHS; got != 11 {
		t.Errorf("10 runs: forwarder saw %d client bursts, want 11", got)
	}
	if n := env.srv.execCount(); n != 1 {
		t.Errorf("%d exec sessions, want 1", n)
	}
	// Small put and get: one round trip each.
	before, fbefore := c.RoundTrips(), fwd.roundTrips()
	p := filepath.Join(t.TempDir(), "f")
	if err := c.Put(context.Background(), Upload{Path: p, Content: strings.NewReader("hello"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(context.Background(), p, false); err != nil || string(got) != "hello" {
		t.Fatalf("get: %q %v", got, err)
	}
	if got := c.RoundTrips() - before; got != 2 {
		t.Errorf("put+get: %d round trips, want 2", got)
	}
	if got := fwd.roundTrips() - fbefore; got != 2 {
		t.Errorf("put+get: forwarder saw %d, want 2", got)
	}
}

func addKnownHost(t testing.TB, file, hostport string, key ssh.PublicKey) {
	t.Helper()
	if err := appendKnownHost(file, hostport, key); err != nil {
		t.Fatal(err)
	}
}

func TestSSHPut(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	dir := t.TempDir()
	ctx := context.Background()

	small := filepath.Join(dir, "small")
	if err := c.Put(ctx, Upload{Path: small, Content: strings.NewReader("a\x00b"), Mode: 0o640, Owner: "nobody", Group: "nogroup"}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, small, []byte("a\x00b"), 0o640)
	res := run(t, c, Request{Script: "stat -c '%U:%G' " + small})
	if strings.TrimSpace(string(res.Stdout)) != "nobody:nogroup" {
		t.Errorf("owner %q", res.Stdout)
	}
	// Only a group given: the file keeps its owner.
	if err := c.Put(ctx, Upload{Path: small, Content: strings.NewReader("a\x00b"), Mode: 0o640, Group: "root"}); err != nil {
		t.Fatal(err)
	}
	res = run(t, c, Request{Script: "stat -c '%U:%G' " + small})
	if strings.TrimSpace(string(res.Stdout)) != "nobody:root" {
		t.Errorf("owner after group-only put: %q", res.Stdout)
	}
	// Without a mode, an existing file keeps its mode.
	if err := c.Put(ctx, Upload{Path: small, Content: strings.NewReader("new")}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, small, []byte("new"), 0o640)

	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+3) // > SmallPutLimit, several SFTP windows
	large := filepath.Join(dir, "large")
	before := c.RoundTrips()
	if err := c.Put(ctx, Upload{Path: large, Content: bytes.NewReader(big), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	t.Logf("large put of %d bytes: %d round trips", len(big), c.RoundTrips()-before)
	checkFile(t, large, big, 0o600)
	// The SFTP temp file is gone and nothing else is left beside the target.
	if m, _ := filepath.Glob(filepath.Join(env.srv.home, ".gokube-upload-*")); len(m) != 0 {
		t.Errorf("upload temp files left: %v", m)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("files beside targets: %v", ents)
	}
	// Put into a missing directory fails with an ExitError.
	err := c.Put(ctx, Upload{Path: filepath.Join(dir, "no", "x"), Content: strings.NewReader("x")})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Errorf("put into missing dir: %v", err)
	}
	if _, err := c.Get(ctx, filepath.Join(dir, "nope"), false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get missing: %v", err)
	}
}

func checkFile(t *testing.T, path string, want []byte, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes, want %d", path, len(got), len(want))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), mode)
	}
}

// TestSSHPutAtomic reads the target continuously while Puts replace it: a
// reader must only ever see one whole version.
func TestSSHPutAtomic(t *testing.T) {
	c := newTestEnv(t).dial(t)
	p := filepath.Join(t.TempDir(), "target")
	versions := [][]byte{bytes.Repeat([]byte("A"), 200<<10), bytes.Repeat([]byte("B"), 300<<10), bytes.Repeat([]byte("C"), 100<<10)}
	if err := os.WriteFile(p, versions[2], 0o644); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b, err := os.ReadFile(p)
			if err != nil {
				bad.Store(err.Error())
				return
			}
			ok := false
			for _, v := range versions {
				ok = ok || bytes.Equal(b, v)
			}
			if !ok {
				bad.Store(fmt.Sprintf("partial content: %d bytes", len(b)))
				return
			}
		}
	}()
	for i := 0; i < 6; i++ {
		if err := c.Put(context.Background(), Upload{Path: p, Content: bytes.NewReader(versions[i%3]), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

func TestSSHCancel(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, Request{Script: "sh -c 'echo $$ > " + pidFile + "; exec sleep 30'"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	// The sleep (a grandchild of the shell) is killed.
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	if pid == "" {
		t.Fatal("script did not start")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			st, _ := os.ReadFile("/proc/" + pid + "/stat")
			t.Fatalf("process %s still alive after cancel: %s", pid, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The next Run opens a new session and works.
	res := run(t, c, Request{Script: "echo again"})
	if string(res.Stdout) != "again\n" {
		t.Errorf("after cancel: %q", res.Stdout)
	}
	if n := env.srv.execCount(); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}

func TestSSHBecome(t *testing.T) {
	if _, err := os.Stat("/usr/bin/sudo"); err != nil {
		t.Skip("sudo not installed")
	}
	env := newTestEnv(t)
	c := env.dial(t)
	res := run(t, c, Request{Script: "id -un; echo $HOME", Become: true, BecomeUser: "nobody"})
	if !strings.HasPrefix(string(res.Stdout), "nobody\n") {
		t.Errorf("become nobody: %q %q", res.Stdout, res.Stderr)
	}
	// Plain and become requests use separate shells that both persist.
	for i := 0; i < 2; i++ {
		if out := run(t, c, Request{Script: "id -un"}).Stdout; string(out) != "root\n" {
			t.Errorf("plain: %q", out)
		}
		if out := run(t, c, Request{Script: "id -un", Become: true, BecomeUser: "nobody"}).Stdout; string(out) != "nobody\n" {
			t.Errorf("become: %q", out)
		}
	}
	if n := env.srv.execCount(); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
	// With a become password the password line must not reach the shell
	// when sudo does not ask for it (root never is asked).
	cfg := env.config()
	cfg.BecomePassword = "pw-that-is-not-a-command"
	cp, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	res = run(t, cp, Request{Script: "id -un; cat", Stdin: []byte("in\n"), Become: true, BecomeUser: "nobody"})
	if string(res.Stdout) != "nobody\nin\n" || len(res.Stderr) != 0 {
		t.Errorf("become with password: %q %q", res.Stdout, res.Stderr)
	}
	// A sudo failure is an error naming sudo, and the next request works.
	_, err = c.Run(context.Background(), Request{Script: "true", Become: true, BecomeUser: "no-such-user-gk"})
	if err == nil || !strings.Contains(err.Error(), "no-such-user-gk") {
		t.Errorf("bad become user: %v", err)
	}
	if IsUnreachable(err) {
		t.Errorf("sudo failure reported unreachable: %v", err)
	}
	if out := run(t, c, Request{Script: "echo fine"}).Stdout; string(out) != "fine\n" {
		t.Errorf("after sudo failure: %q", out)
	}
}

func TestSSHHostKeys(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()

	// Unknown host: refused, with the fingerprint; not retried.
	cfg := env.config()
	cfg.KnownHosts = []string{filepath.Join(env.dir, "empty_known_hosts")}
	_, err := DialSSH(ctx, cfg)
	var hk *HostKeyError
	fp := ssh.FingerprintSHA256(env.srv.hostKeys[0].PublicKey())
	if !errors.As(err, &hk) || !IsUnreachable(err) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "testhost") {
		t.Fatalf("unknown host: %v", err)
	}
	// Accepted when asked, and written down for next time.
	cfg.AcceptNewHostKeys = true
	c, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg.AcceptNewHostKeys = false
	c, err = DialSSH(ctx, cfg)
	if err != nil {
		t.Fatalf("after accepting: %v", err)
	}
	c.Close()
	if st, _ := os.Stat(cfg.KnownHosts[0]); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode: %v", st)
	}

	// Changed key: always refused, even with AcceptNewHostKeys.
	other := newSigner(t, false)
	srv2 := startServer(t, nil, other)
	h, p := srv2.hostPort()
	cfg2 := env.config()
	cfg2.Addr, cfg2.Port = h, p
	cfg2.AcceptNewHostKeys = true
	kh := filepath.Join(env.dir, "kh2")
	addKnownHost(t, kh, srv2.addr, env.srv.hostKeys[0].PublicKey())
	cfg2.KnownHosts = []string{kh}
	_, err = DialSSH(ctx, cfg2)
	if !errors.As(err, &hk) || len(hk.Known) != 1 || !strings.Contains(err.Error(), ssh.FingerprintSHA256(other.PublicKey())) || !strings.Contains(err.Error(), "CHANGED") {
		t.Fatalf("changed key: %v", err)
	}
	if n := srv2.acceptCount(); n != 1 {
		t.Errorf("changed key: %d connection attempts, want 1", n)
	}
	t.Log(err)
}

// TestSSHHostKeyAlgorithms: the server has an ed25519 and an RSA key but
// known_hosts records only RSA; the client must ask for RSA.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	dir := t.TempDir()
	client, keyFile := newKeyFile(t, dir, "")
	rsaKey := newSigner(t, true)
	srv := startServer(t, client.PublicKey(), newSigner(t, false), rsaKey)
	kh := filepath.Join(dir, "known_hosts")
	addKnownHost(t, kh, srv.addr, rsaKey.PublicKey())
	h, p := srv.hostPort()
	cfg := SSHConfig{Host: "h", Addr: h, Port: p, User: "root", KeyFiles: []string{keyFile}, KnownHosts: []string{kh}}
	hks, _ := newHostKeys("h", cfg.KnownHosts, false)
	algos := hks.algorithms(srv.addr)
	if len(algos) == 0 || algos[0] != ssh.KeyAlgoRSASHA512 {
		t.Errorf("algorithms %v", algos)
	}
	c, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestSSHAuth(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	cfg := env.config()
	_, enc := newKeyFile(t, env.dir, "pass")
	cfg.KeyFiles = []string{enc}
	if _, err := DialSSH(ctx, cfg); !errors.Is(err, ErrPassphraseNeeded) || !strings.Contains(err.Error(), enc) {
		t.Errorf("encrypted key: %v", err)
	}
	// The right passphrase decrypts, but the server does not know that key:
	// an authentication failure, not retried.
	cfg.KeyPassphrase = "pass"
	before := env.srv.acceptCount()
	_, err := DialSSH(ctx, cfg)
	if !IsUnreachable(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong key: %v", err)
	}
	if n := env.srv.acceptCount() - before; n != 1 {
		t.Errorf("auth failure: %d connection attempts, want 1", n)
	}
	cfg.Password = "s3cret"
	c, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatalf("password: %v", err)
	}
	c.Close()
}

func TestSSHUnreachable(t *testing.T) {
	ctx := context.Background()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	env := newTestEnv(t)
	cfg := env.config()
	cfg.Port = addr.Port
	_, err := DialSSH(ctx, cfg)
	if !IsUnreachable(err) {
		t.Errorf("closed port: %v", err)
	}

	// The server goes away in the middle of a Run.
	c := env.dial(t)
	go func() {
		time.Sleep(200 * time.Millisecond)
		env.srv.killConns()
	}()
	start := time.Now()
	_, err = c.Run(ctx, Request{Script: "sleep 20"})
	if !IsUnreachable(err) {
		t.Errorf("server killed: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := c.Run(ctx, Request{Script: "true"}); !IsUnreachable(err) {
		t.Errorf("after loss: %v", err)
	}

	// The network goes silent: keepalives notice within two intervals.
	fwd := startForwarder(t, env.srv.addr, 0)
	cfg = env.config()
	cfg.Addr, cfg.Port = fwd.addr()
	cfg.KeepAlive = 200 * time.Millisecond
	addKnownHost(t, env.knownHosts, net.JoinHostPort(cfg.Addr, fmt.Sprint(cfg.Port)), env.srv.hostKeys[0].PublicKey())
	c2, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	run(t, c2, Request{Script: "true"})
	go func() {
		time.Sleep(100 * time.Millisecond)
		fwd.freeze()
	}()
	start = time.Now()
	_, err = c2.Run(ctx, Request{Script: "sleep 20"})
	if !IsUnreachable(err) {
		t.Errorf("silent network: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("silent network detected after %v", d)
	}
}

func TestSSHDialerAndJump(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(a, a); a.Close() }()
		}
	}()
	nc, err := c.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(nc, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "ping" {
		t.Errorf("forward: %q %v", buf, err)
	}
	nc.Close()

	// Jump: reach a second server through the first one's client.
	client2, key2 := newKeyFile(t, env.dir, "")
	srv2 := startServer(t, client2.PublicKey(), newSigner(t, false))
	addKnownHost(t, env.knownHosts, srv2.addr, srv2.hostKeys[0].PublicKey())
	h, p := srv2.hostPort()
	jump := env.config()
	cfg := SSHConfig{Host: "inner", Addr: h, Port: p, User: "root", KeyFiles: []string{key2}, KnownHosts: []string{env.knownHosts}, Jump: &jump}
	jc, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if out := run(t, jc, Request{Script: "echo via"}).Stdout; string(out) != "via\n" {
		t.Errorf("jump: %q", out)
	}
	if srv2.execCount() != 1 {
		t.Errorf("target server ran %d sessions", srv2.execCount())
	}
	if knownhosts.Normalize(srv2.addr) == "" {
		t.Fatal("normalize")
	}
}

func BenchmarkRun(b *testing.B) {
	c := newTestEnv(b).dial(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Run(ctx, Request{Script: "echo hi"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.RoundTrips())/float64(b.N), "roundtrips/op")
}

// blockingReader yields n bytes, then blocks until release is closed.
type blockingReader struct {
	n       int
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		<-r.release
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestSSHPutCancel(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	p := filepath.Join(t.TempDir(), "big")
	release := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Put(ctx, Upload{Path: p, Content: &blockingReader{n: SmallPutLimit + 100<<10, release: release}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("target exists after a cancelled put: %v", err)
	}
	// Once the stuck reader returns, the partial upload is removed.
	close(release)
	home := env.srv.home
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(home, ".gokube-upload-*"))
		if len(m) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partial upload left: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	big := bytes.Repeat([]byte("y"), SmallPutLimit+1)
	if err := c.Put(context.Background(), Upload{Path: p, Content: bytes.NewReader(big), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, big, 0o644)
}

// TestSSHDialTimeout: a server that accepts TCP but never answers fails
// after the dial timeout, once (a timeout is not retried).
func TestSSHDialTimeout(t *testing.T) {
	env := newTestEnv(t)
	fwd := startForwarder(t, env.srv.addr, 0)
	fwd.freeze()
	cfg := env.config()
	cfg.Addr, cfg.Port = fwd.addr()
	cfg.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := DialSSH(context.Background(), cfg)
	if !IsUnreachable(err) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	fwd.mu.Lock()
	n := len(fwd.conns) / 2
	fwd.mu.Unlock()
	if n != 1 {
		t.Errorf("%d connection attempts, want 1", n)
	}
}

// TestSSHConcurrentRuns: overlapping Runs on one connection each get their
// own answer.
func TestSSHConcurrentRuns(t *testing.T) {
	c := newTestEnv(t).dial(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Run(context.Background(), Request{Script: fmt.Sprintf("echo %d", i), Become: i%2 == 0})
			if err != nil || string(res.Stdout) != fmt.Sprintf("%d\n", i) {
				t.Errorf("%d: %q %v", i, res.Stdout, err)
			}
		}()
	}
	wg.Wait()
}

// TestSSHCancelSilentNetwork: cancelling a Run whose peer went silent
// returns at once, without waiting for the peer to confirm the close.
func TestSSHCancelSilentNetwork(t *testing.T) {
	env := newTestEnv(t)
	fwd := startForwarder(t, env.srv.addr, 0)
	cfg := env.config()
	cfg.Addr, cfg.Port = fwd.addr()
	addKnownHost(t, env.knownHosts, net.JoinHostPort(cfg.Addr, fmt.Sprint(cfg.Port)), env.srv.hostKeys[0].PublicKey())
	c, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c, Request{Script: "true"})
	fwd.freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Run(ctx, Request{Script: "true"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
}
