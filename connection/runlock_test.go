package connection

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lockShell is a local /bin/sh driven by the shell protocol whose preamble
// takes the run lock at path, with home as $HOME.
type lockShellProc struct {
	*localShell
	cmd *exec.Cmd
}

func startLockShell(t *testing.T, l *RunLock, path, home string) *lockShellProc {
	t.Helper()
	sh, cmd := startShellWith(t, []string{"HOME=" + home}, shellPreamble+lockPreamble(l, []string{shQuote(path)}, `"$HOME"`, true))
	return &lockShellProc{sh, cmd}
}

func lockLine(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TestRunLock: the first run's shell holds the lock; a second run waits
// its tries and is refused naming the holder; the same run's second
// connection shares it; a killed holder's lock is taken over; the holder's
// shell removes it when it ends; uploads older than the lock are removed
// when it is taken, newer ones and other files are kept.
func TestRunLock(t *testing.T) {
	dir := t.TempDir()
	home := t.TempDir()
	path := filepath.Join(dir, "lock")
	start := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	runA := &RunLock{ID: "aaaa", User: "alice@ctl", Start: start, Wait: 1}
	runB := &RunLock{ID: "bbbb", User: "bob@ctl", Start: start, Wait: 1}

	stale := filepath.Join(home, ".gokube-upload-"+strings.Repeat("ab", 12))
	other := filepath.Join(home, ".gokube-upload-notours")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}

	a := startLockShell(t, runA, path, home)
	if res := a.run(t, Request{Script: "echo a"}); res.RC != 0 || string(res.Stdout) != "a\n" {
		t.Fatalf("holder's first request: %+v", res)
	}
	held := lockLine(t, path)
	if !strings.HasPrefix(held, "run=aaaa user=alice@ctl start=2026-11-30T14:00:00Z pid=") {
		t.Fatalf("lock line %q", held)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale upload %s not removed (%v)", stale, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not gokube's was touched: %v", err)
	}

	// A second run is refused, every request, naming the holder.
	b := startLockShell(t, runB, path, home)
	for i := 0; i < 2; i++ {
		res := b.run(t, Request{Script: "echo b"})
		err := lockedResult("h", res)
		if err == nil || !strings.Contains(err.Error(), "run=aaaa user=alice@ctl") || len(res.Stdout) != 0 {
			t.Fatalf("second run's request %d: %+v (%v)", i, res, err)
		}
	}
	if got := lockLine(t, path); got != held {
		t.Errorf("the refused run changed the lock: %q", got)
	}

	// The same run through a second connection shares it.
	a2 := startLockShell(t, runA, path, home)
	if res := a2.run(t, Request{Script: "echo a2"}); res.RC != 0 {
		t.Fatalf("same run refused: %+v", res)
	}

	// A holder killed without its trap leaves the lock; it is dead, taken over.
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	if got := lockLine(t, path); got != held {
		t.Fatalf("killed holder's lock: %q", got)
	}
	a2.w.Close() // the sharing shell does not remove a lock it does not hold
	c := startLockShell(t, runB, path, home)
	if res := c.run(t, Request{Script: "echo c"}); res.RC != 0 {
		t.Fatalf("takeover refused: %+v", res)
	}
	if got := lockLine(t, path); !strings.HasPrefix(got, "run=bbbb ") {
		t.Fatalf("after takeover: %q", got)
	}

	// The holder's shell ends: the lock goes with it.
	c.w.Close()
	_ = c.cmd.Wait()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("lock left after its shell ended: %v", err)
	}
}

// TestRunLockOrder: a shell takes its locks in order (the login's
// per-user lock, then the root lock). Waiting on the first it takes
// neither; refused on the second it releases the first, so a run that
// fails on a host holds up no other run of that user.
func TestRunLockOrder(t *testing.T) {
	dir, home := t.TempDir(), t.TempDir()
	user, root := filepath.Join(dir, "user"), filepath.Join(dir, "root")
	start := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	runA := &RunLock{ID: "aaaa", User: "deploy@ctl", Start: start, Wait: 1}
	runB := &RunLock{ID: "bbbb", User: "deploy@ctl", Start: start, Wait: 1}
	both := []string{shQuote(user), shQuote(root)}
	shell := func(l *RunLock, locks []string) *localShell {
		sh, _ := startShellWith(t, []string{"HOME=" + home}, shellPreamble+lockPreamble(l, locks, `"$HOME"`, true))
		return sh
	}
	a, aCmd := startShellWith(t, []string{"HOME=" + home}, shellPreamble+lockPreamble(runA, both, `"$HOME"`, true))
	if res := a.run(t, Request{Script: "echo a"}); res.RC != 0 {
		t.Fatalf("holder: %+v", res)
	}
	ua, ra := lockLine(t, user), lockLine(t, root)
	if !strings.HasPrefix(ua, "run=aaaa ") || ua != ra {
		t.Fatalf("holder's locks: user %q root %q", ua, ra)
	}
	// B waits on the user lock: refused naming it, the root lock untouched.
	res := shell(runB, both).run(t, Request{Script: "echo b"})
	var le *LockedError
	if err := lockedResult("h", res); !errors.As(err, &le) || le.Path != user || le.Holder != ua {
		t.Fatalf("refused on the user lock: %+v %v", res, err)
	}
	if !strings.Contains(le.Error(), "another gokube run holds "+user+" ("+ua+")") {
		t.Errorf("message: %v", le)
	}
	// A root-only holder (another login's run) and a free user lock: B
	// takes the user lock, is refused on the root lock and lets go of it.
	a.w.Close()
	_ = aCmd.Wait()
	if lockLine(t, root) != "" || lockLine(t, user) != "" {
		t.Fatal("locks left after the holder's shell ended")
	}
	c := shell(&RunLock{ID: "cccc", User: "root@ctl", Start: start, Wait: 1}, []string{shQuote(root)})
	if res := c.run(t, Request{Script: "echo c"}); res.RC != 0 {
		t.Fatalf("root-only holder: %+v", res)
	}
	res = shell(runB, both).run(t, Request{Script: "echo b"})
	if err := lockedResult("h", res); !errors.As(err, &le) || le.Path != root || !strings.HasPrefix(le.Holder, "run=cccc ") {
		t.Fatalf("refused on the root lock: %+v %v", res, err)
	}
	if _, err := os.Stat(user); !os.IsNotExist(err) {
		t.Errorf("the refused shell kept the user lock: %q", lockLine(t, user))
	}
}

// TestLocalLock: the local connection takes the per-user lock from Go
// with the shell's protocol: the first run holds it (gokube's pid), a
// second connection of the same run shares it, another run (a Local or an
// SSH-style shell) is refused naming it after the wait, and every
// request of the refused connection is; Close removes it; a lock whose
// process is gone is taken over.
func TestLocalLock(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	path := filepath.Join(home, UserLockName)
	start := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	runA := &RunLock{ID: "aaaa", User: "deploy@ctl", Start: start, Wait: 1}
	runB := &RunLock{ID: "bbbb", User: "deploy@ctl", Start: start, Wait: 1}
	local := func(name string, l *RunLock) *Local { return &Local{host: name, uid: 1000, lock: l} }
	ctx := context.Background()

	a := local("localhost", runA)
	if lockLine(t, path) != "" {
		t.Fatal("lock taken before a request")
	}
	if res := run(t, a, Request{Script: "echo a"}); string(res.Stdout) != "a\n" {
		t.Fatalf("holder: %+v", res)
	}
	held := lockLine(t, path)
	if want := fmt.Sprintf("run=aaaa user=deploy@ctl start=2026-11-30T14:00:00Z pid=%d pst=", os.Getpid()); !strings.HasPrefix(held, want) {
		t.Fatalf("lock line %q, want %q...", held, want)
	}
	a2 := local("ctl", runA)
	if res := run(t, a2, Request{Script: "echo a2"}); res.RC != 0 {
		t.Fatalf("same run refused: %+v", res)
	}
	b := local("localhost", runB)
	for i := 0; i < 2; i++ {
		_, err := b.Run(ctx, Request{Script: "echo b >" + shQuote(filepath.Join(home, "b"))})
		var le *LockedError
		if !errors.As(err, &le) || le.Path != path || le.Holder != held || le.Host != "localhost" {
			t.Fatalf("second run's request %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "b")); !os.IsNotExist(err) {
		t.Error("the refused run's request ran")
	}
	res := startLockShell(t, runB, path, home).run(t, Request{Script: "echo b"})
	if err := lockedResult("h", res); err == nil || !strings.Contains(err.Error(), held) {
		t.Fatalf("a shell of another run: %+v %v", res, err)
	}
	a2.Close() // shares it: does not remove it
	if lockLine(t, path) != held {
		t.Fatal("the sharing connection removed the lock")
	}
	a.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("lock left after Close: %q", lockLine(t, path))
	}

	// A holder whose process is gone: taken over.
	dead := exec.Command("/bin/sh", "-c", "exit 0")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := takeLock(ctx, runA, path, dead.Process.Pid)
	_ = dead.Wait()
	if err != nil || line == "" {
		t.Fatalf("lock for a short-lived process: %q %v", line, err)
	}
	c := local("localhost", runB)
	if res := run(t, c, Request{Script: "echo c"}); res.RC != 0 {
		t.Fatalf("takeover refused: %+v", res)
	}
	if got := lockLine(t, path); !strings.HasPrefix(got, "run=bbbb ") {
		t.Fatalf("after takeover: %q", got)
	}
	c.Close()
}
