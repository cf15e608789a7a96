package connection

import (
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
	sh, cmd := startShellWith(t, []string{"HOME=" + home}, shellPreamble+lockPreamble(l, "", path))
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
