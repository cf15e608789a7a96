package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
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
	// With OwnShell $$ is the script's own shell: killing it ends the
	// script only.
	res = run(t, c, Request{Script: "echo before; kill -KILL $$; echo after", OwnShell: true})
	if string(res.Stdout) != "before\n" || res.RC != 137 {
		t.Errorf("kill $$: %q rc %d", res.Stdout, res.RC)
	}
	// Without OwnShell the script is a subshell of the session's shell:
	// no positional parameters, and nothing it sets (variables, the
	// driving shell's own, umask, directory) outlives the request.
	before := run(t, c, Request{Script: "umask; pwd"})
	res = run(t, c, Request{Script: `echo "$#"; x=1; gk_D=/nonexistent; umask 077; cd /`})
	if string(res.Stdout) != "0\n" || res.RC != 0 {
		t.Errorf("subshell: %q rc %d", res.Stdout, res.RC)
	}
	after := run(t, c, Request{Script: `echo "${x-unset}"; umask; pwd`})
	if want := "unset\n" + string(before.Stdout); string(after.Stdout) != want {
		t.Errorf("a request's settings outlived it: %q, want %q", after.Stdout, want)
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
	// The forwarder delays each direction by delay: a round trip costs 2*delay.
	t.Logf("handshake: client counts %d, wall %v = %.1f round trips", hs, time.Since(start), float64(time.Since(start))/float64(2*delay))
	// connect, version+kexinit, kex, service, auth none, key query, signature
	if hs != 7 {
		t.Errorf("handshake round trips %d, want 7", hs)
	}
	// The session is opened as soon as the connection is up, before any
	// request asks for it (sshd's session setup overlaps the executor's
	// first probe batch): the server sees it with nothing run.
	for deadline := time.Now().Add(10 * time.Second); env.srv.sessionCount() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no session channel opened after the handshake")
		}
	}
	start = time.Now()
	for i := 0; i < 10; i++ {
		res := run(t, c, Request{Script: fmt.Sprintf("echo %d", i)})
		if string(res.Stdout) != fmt.Sprintf("%d\n", i) {
			t.Fatalf("run %d: %q", i, res.Stdout)
		}
	}
	t.Logf("10 runs: wall %v = %.1f round trips", time.Since(start), float64(time.Since(start))/float64(2*delay))
	// The session was opened right after the handshake (preopen), while
	// nothing waited on it; it is counted when the first shell takes it.
	if got := c.RoundTrips() - hs; got != 11 {
		t.Errorf("10 runs: %d round trips, want 11 (10 requests + 1 session open)", got)
	}
	// What the client counts is what the network saw (the TCP connect is
	// no burst of the client's; the forwarder may merge or split one).
	if d := c.RoundTrips() - (fwd.roundTrips() + 1); d < -1 || d > 1 {
		t.Errorf("client counted %d round trips, the forwarder saw %d client bursts (+1 TCP connect)", c.RoundTrips(), fwd.roundTrips())
	}
	if n, s := env.srv.execCount(), env.srv.sessionCount(); n != 1 || s != 1 {
		t.Errorf("%d exec sessions of %d session channels, want the one opened after the handshake", n, s)
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

func TestSSHCancel(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// Cancelled once the script has started (its pid file is written): a
	// fixed deadline came before the start on a busy machine.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	// The sleep outlasts any test timeout: the Run can only end with the
	// cancel if the cancel is honoured (no wall-clock bound needed).
	_, err := c.Run(ctx, Request{Script: "sh -c 'echo $$ > " + pidFile + "; exec sleep 3600'"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
	// The sleep (a grandchild of the shell) is killed.
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	if pid == "" {
		t.Fatal("script did not start")
	}
	deadline := time.Now().Add(60 * time.Second) // only stops a hang
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
		t.Fatal("sudo is not installed: `make deps` installs it")
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
	_, err = c.Run(ctx, Request{Script: "sleep 3600"})
	if !IsUnreachable(err) {
		t.Errorf("server killed: %v", err)
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
	_, err = c2.Run(ctx, Request{Script: "sleep 3600"})
	if !IsUnreachable(err) {
		t.Errorf("silent network: %v", err)
	}
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
	_, err := DialSSH(context.Background(), cfg)
	if !IsUnreachable(err) {
		t.Fatalf("err %v", err)
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
	if _, err := c.Run(ctx, Request{Script: "true"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
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

func addKnownHost(t testing.TB, file, hostport string, key ssh.PublicKey) {
	t.Helper()
	if err := appendKnownHost(file, hostport, key); err != nil {
		t.Fatal(err)
	}
}

// TestSSHIdleKeepalive: a connection nothing waits on is pinged once in
// idlePingEvery intervals, not every interval (with 1000 hosts, most idle
// while others work, the pings were ~20% of gokube's CPU). The count is an
// upper bound: a slow machine only delays ticks. That a connection with a
// run in flight is pinged each interval TestSSHUnreachable's silent
// network shows.
func TestSSHIdleKeepalive(t *testing.T) {
	env := newTestEnv(t)
	cfg := env.config()
	cfg.KeepAlive = 10 * time.Millisecond
	c, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c, Request{Script: "true"})
	const ticks = 60
	p0 := env.srv.pingCount()
	time.Sleep(ticks * cfg.KeepAlive)
	if n := env.srv.pingCount() - p0; n > ticks/idlePingEvery+1 {
		t.Errorf("idle for %d keepalive intervals: %d pings, want at most %d", ticks, n, ticks/idlePingEvery+1)
	}
}
