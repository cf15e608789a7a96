package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	// Every byte value, the characters printf and sh treat specially, an
	// empty file; inline in the script (under inlinePutLimit) or through
	// stdin (over it); modes a umask gives and modes it cannot.
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	all = append(all, "%s%%\\'\"$(x)`\n\n"...)
	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
	}{
		{"bytes", all, 0o600},
		{"dash", []byte("-----BEGIN X-----\n"), 0o644},
		{"empty", nil, 0o644},
		{"exec", all, 0o755},
		{"stdin", bytes.Repeat(all, inlinePutLimit/len(all)+1), 0o640},
	} {
		p := filepath.Join(dir, tc.name)
		if err := c.Put(ctx, Upload{Path: p, Content: bytes.NewReader(tc.content), Mode: uint32(tc.mode)}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkFile(t, p, tc.content, tc.mode)
		os.Remove(p)
	}

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
	// The put returns although the reader is stuck (after the cleanup's
	// bound: the reader cannot be interrupted).
	err := c.Put(ctx, Upload{Path: p, Content: &blockingReader{n: SmallPutLimit + 100<<10, release: release}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
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

// An interrupt at any point of a put leaves the destination as it was and
// no temp file anywhere: beside the destination (.gokube.*) or in the login
// user's home (.gokube-upload-*). The script is stopped at a chosen command
// (a stand-in for cat, chmod (with no helper) or the session helper's perl
// on PATH that reports it was reached and hangs), then the put is cancelled, which
// kills the script's process group before its own trap can run.
func TestSSHPutInterruptedLeavesNothing(t *testing.T) {
	bin := t.TempDir()
	signal := filepath.Join(t.TempDir(), "reached")
	for _, cmd := range []string{"cat", "chmod", "perl"} {
		script := "#!/bin/sh\n: >\"$GK_TEST_REACHED.$(basename \"$0\")\"\nexec sleep 600\n"
		if err := os.WriteFile(filepath.Join(bin, cmd), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GK_TEST_REACHED", signal)
	env := newTestEnv(t)
	for _, size := range []int{1 << 10, SmallPutLimit + 200<<10} {
		// A small put's content is in the script (printf, a builtin):
		// no cat to stop at.
		stops := []string{"cat", "chmod", "perl"}
		if size <= inlinePutLimit {
			stops = stops[1:]
		}
		for _, at := range stops {
			t.Run(fmt.Sprintf("%s/%d", at, size), func(t *testing.T) {
				// Only the chosen command hangs; the others are the real ones.
				path := filepath.Join(t.TempDir(), "fakebin")
				if err := os.MkdirAll(path, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(bin, at), filepath.Join(path, at)); err != nil {
					t.Fatal(err)
				}
				if at == "chmod" {
					// With the session's helper, chmod is its own work:
					// no helper (a perl that fails), the program runs.
					if err := os.WriteFile(filepath.Join(path, "perl"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				t.Setenv("PATH", path+":"+os.Getenv("PATH"))
				c := env.dial(t)
				dir := t.TempDir()
				dest := filepath.Join(dir, "dest")
				old := []byte("old content\n")
				if err := os.WriteFile(dest, old, 0o640); err != nil {
					t.Fatal(err)
				}
				reached := signal + "." + at
				os.Remove(reached)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() {
					done <- c.Put(ctx, Upload{Path: dest, Content: bytes.NewReader(bytes.Repeat([]byte("n"), size)), Mode: 0o755}) // 0755: a umask cannot give it, chmod runs
				}()
				waitFor(t, func() bool { _, err := os.Stat(reached); return err == nil }, "the put to reach "+at)
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("put returned %v, want context.Canceled", err)
				}
				checkFile(t, dest, old, 0o640)
				for _, pat := range []string{filepath.Join(dir, ".gokube*"), filepath.Join(env.srv.home, ".gokube*")} {
					if m, _ := filepath.Glob(pat); len(m) > 0 {
						t.Errorf("left behind: %v", m)
					}
				}
			})
		}
	}
}

// waitFor polls cond until it holds; the bound only stops a hang.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSSHInlinePut: a put runs in the session's shell itself (no fork)
// and leaves that shell as it found it: its umask, its options, no temp
// file; a failed one reports the failing step's message and status, and
// the session goes on.
func TestSSHInlinePut(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	dir := t.TempDir()
	ctx := context.Background()
	state := Request{Script: "umask; echo \"opts=$-\"; trap"}
	before := string(run(t, c, state).Stdout)

	// Inline requests share the session shell: a variable one sets is seen
	// by the next (a forked subshell's would not be).
	run(t, c, Request{Script: "gk_inline_seen=yes", Inline: true})
	if got := string(run(t, c, Request{Script: "echo ${gk_inline_seen-no}"}).Stdout); got != "yes\n" {
		t.Fatalf("an Inline request did not run in the session's shell: %q", got)
	}
	run(t, c, Request{Script: "gk_sub_seen=yes"})
	if got := string(run(t, c, Request{Script: "echo ${gk_sub_seen-no}"}).Stdout); got != "no\n" {
		t.Fatalf("a request without Inline ran in the session's shell: %q", got)
	}

	f := filepath.Join(dir, "f")
	if err := c.Put(ctx, Upload{Path: f, Content: strings.NewReader("x\n"), Size: 2, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, []byte("x\n"), 0o600)
	if got := string(run(t, c, Request{Script: "echo \"helper=$gk_H\"", Inline: true}).Stdout); got != "helper=1\n" {
		t.Errorf("after a put, the session's rename helper: %q, want helper=1", got)
	}
	if err := c.Put(ctx, Upload{Path: f, Content: strings.NewReader("y\n"), Size: 2, Mode: 0o4755}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, []byte("y\n"), 0o755)
	if st, _ := os.Stat(f); st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("mode 4755: setuid bit missing (%v)", st.Mode())
	}
	if after := string(run(t, c, state).Stdout); after != before {
		t.Errorf("the session's shell after puts:\n%s\nbefore:\n%s", after, before)
	}

	// Failures: a missing directory (the create fails), a mode the owner
	// cannot take (chown to an unknown user fails after the create).
	err := c.Put(ctx, Upload{Path: filepath.Join(dir, "no", "f"), Content: strings.NewReader("z"), Size: 1, Mode: 0o644})
	if err == nil || !strings.Contains(err.Error(), "Directory nonexistent") {
		t.Errorf("put into a missing directory: %v", err)
	}
	g := filepath.Join(dir, "g")
	err = c.Put(ctx, Upload{Path: g, Content: strings.NewReader("z"), Size: 1, Mode: 0o644, Owner: "gk-no-such-user"})
	if err == nil || !strings.Contains(err.Error(), "invalid user") {
		t.Errorf("put with an unknown owner: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".gokube.*")); len(left) > 0 || fileExists(g) {
		t.Errorf("after the failed puts: temp files %q, g exists %v", left, fileExists(g))
	}
	if after := string(run(t, c, state).Stdout); after != before {
		t.Errorf("the session's shell after failed puts:\n%s\nbefore:\n%s", after, before)
	}
}

func fileExists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestInlinePutKeepsSessionNames: a put runs in the session's shell
// (Request.Inline), so it must not assign a variable or define a function
// that the session's own text (the preamble, the run lock's) assigns or
// defines: the frames, the end of the session and the lock's release read
// them after every request.
func TestInlinePutKeepsSessionNames(t *testing.T) {
	names := regexp.MustCompile(`\b(gk_[A-Za-z0-9_]+)(=|\(\))`)
	forVar := regexp.MustCompile(`\bfor (gk_[A-Za-z0-9_]+) in`)
	collect := func(text string) map[string]bool {
		out := map[string]bool{}
		for _, m := range names.FindAllStringSubmatch(text, -1) {
			out[m[1]] = true
		}
		for _, m := range forVar.FindAllStringSubmatch(text, -1) {
			out[m[1]] = true
		}
		return out
	}
	session := collect(shellPreamble + lockPreamble(&RunLock{}, []string{"/run/gokube/lock"}, `"$HOME"`, true))
	if !session["gk_D"] || !session["gk_go"] || !session["gk_own"] || !session["gk_x"] {
		t.Fatalf("the session's names were not found: %v", session)
	}
	// Each frame assigns the script and the env prelude it evaluates.
	session["gk_qs"], session["gk_qv"] = true, true
	for _, up := range []Upload{
		{Path: "/etc/a", Mode: 0o644},
		{Path: "/etc/a", Mode: 0o4755, Owner: "u", Group: "g"},
		{Path: "a", Group: "g"},
		{Path: "/etc/a"},
	} {
		for _, script := range []string{putScript(up, "", "t", []byte("x")), putScript(up, "/tmp/up", "t", nil)} {
			for n := range collect(script) {
				if session[n] {
					t.Errorf("put %+v assigns or defines the session's %s:\n%s", up, n, script)
				}
			}
		}
	}
}

// TestSSHRenameHelper: the session's rename helper (sessionHelper) renames
// the files puts write, outlives nothing (it ends with the session, its
// FIFOs gone), and when it is gone mid-session the puts go on with mv.
func TestSSHRenameHelper(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	dir := t.TempDir()
	ctx := context.Background()
	put := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := c.Put(ctx, Upload{Path: p, Content: strings.NewReader(content), Size: int64(len(content)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, []byte(content), 0o644)
	}
	state := func() (helper, pid, temp string) {
		out := strings.Fields(string(run(t, c, Request{Script: `echo "h=$gk_H" "p=${gk_Hp-}" "t=$gk_T"`, Inline: true}).Stdout))
		if len(out) != 3 {
			t.Fatalf("session state: %q", out)
		}
		return strings.TrimPrefix(out[0], "h="), strings.TrimPrefix(out[1], "p="), strings.TrimPrefix(out[2], "t=")
	}
	put("a", "A\n")
	put("b", "B\n")
	helper, pid, temp := state()
	if helper != "1" || pid == "" {
		t.Fatalf("after two puts: helper=%q pid=%q, want a running helper", helper, pid)
	}
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	if !strings.HasPrefix(string(cmdline), "perl\x00") {
		t.Fatalf("helper %s is %q, not perl", pid, cmdline)
	}
	if m, _ := filepath.Glob(temp + ".h*"); len(m) > 0 {
		t.Errorf("the helper's FIFOs outlive its start: %v", m)
	}

	// The helper killed: the next put renames with mv and says so.
	run(t, c, Request{Script: "kill -9 " + pid})
	waitFor(t, func() bool { _, err := os.Stat("/proc/" + pid); return err != nil }, "the helper's end")
	put("c", "C\n")
	if helper, _, _ := state(); helper != "0" {
		t.Errorf("after the helper's death: helper=%q, want 0", helper)
	}

	// A new session's helper ends with its session.
	c2 := env.dial(t)
	if err := c2.Put(ctx, Upload{Path: filepath.Join(dir, "d"), Content: strings.NewReader("D\n"), Size: 2, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	out := strings.Fields(string(run(t, c2, Request{Script: `echo "$gk_H" "${gk_Hp-}" "$gk_T"`, Inline: true}).Stdout))
	if len(out) != 3 || out[0] != "1" {
		t.Fatalf("second session: %q", out)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat("/proc/" + out[1]); return err != nil }, "the helper's end with its session")
	if m, _ := filepath.Glob(out[2] + "*"); len(m) > 0 {
		t.Errorf("left behind by the session: %v", m)
	}
}
