package connection

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// localLockPath is the run lock of the control machine for a process of
// uid: the root lock, or the per-user lock in $HOME (the $HOME the local
// connection's scripts see, so their stale-temp sweep finds it too).
func localLockPath(uid int) (string, error) {
	if uid == 0 {
		return LockPath, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, UserLockName), nil
}

// procStart is pid's identity for a lock line, as the shell's gk_st
// writes it: its start time (field 22 of /proc/pid/stat) and the boot id.
func procStart(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	st := f[19]
	if boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		st += "-" + strings.TrimSpace(string(boot))
	}
	return st, nil
}

func lockFileLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// takeLock takes the run lock at path from Go for the process pid, with
// the protocol of the shell's gk_lock (lockPreamble), so a local run and
// an SSH run to the same machine exclude each other. It returns the line
// written when this call created the lock (the caller removes it, see
// releaseLock), "" when the run already holds it or it cannot be made
// here, or a *LockedError (Host unset) when another live run held it for
// every try.
func takeLock(ctx context.Context, l *RunLock, path string, pid int) (string, error) {
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", nil
	}
	self, err := procStart(pid)
	if err != nil {
		return "", nil
	}
	run := l.line()
	mine := fmt.Sprintf("%s pid=%d pst=%s", run, pid, self)
	tries, empty := 0, 0
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.WriteString(mine + "\n")
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(path)
				return "", fmt.Errorf("write %s: %w", path, werr)
			}
			return mine, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", nil
		}
		h := lockFileLine(path)
		_, rest, isHolder := strings.Cut(h, " pid=")
		pidText, hst, isHolder2 := strings.Cut(rest, " pst=")
		switch {
		case strings.HasPrefix(h, run+" "):
			return "", nil
		case isHolder && isHolder2:
			hp, err := strconv.Atoi(pidText)
			if st, serr := procStart(hp); err != nil || serr != nil || st != hst {
				if lockFileLine(path) == h {
					os.Remove(path)
				}
				continue
			}
			empty = 0
		default:
			// Created but not written yet, or left empty by a process
			// killed in between: empty twice a second apart is dead.
			empty++
			if empty >= 2 {
				os.Remove(path)
				empty = 0
				continue
			}
		}
		tries++
		if tries > l.tries() {
			if h == "" {
				h = "unknown holder"
			}
			return "", &LockedError{Path: path, Holder: h}
		}
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		}
	}
}

// releaseLock removes the lock at path if it still holds line.
func releaseLock(path, line string) {
	if line != "" && lockFileLine(path) == line {
		os.Remove(path)
	}
}
