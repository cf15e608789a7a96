package connection

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// TestSSHHelperDoesTheWork: in the session's shell (an inline request),
// mkdir -p, install -d, ln -s, chown, chgrp and chmod in the forms gokube
// writes are the session helper's work, no program starts, and what they
// leave is exactly what coreutils leaves for the same commands (modes,
// owners, link targets; the parents' modes from the umask). Forms the
// helper declines (a symbolic mode, a directory that exists, a link onto
// a directory, a name it cannot resolve) and every command of a subshell
// request run the programs, with the same results.
func TestSSHHelperDoesTheWork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test changes owners: run it as root (make test does)")
	}
	// Stand-ins on PATH record each program started, then run the real one.
	bin := t.TempDir()
	logf := filepath.Join(t.TempDir(), "started")
	for _, name := range []string{"mkdir", "install", "ln", "chown", "chgrp", "chmod"} {
		real, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\necho %s >>%s\nexec %s \"$@\"\n", name, logf, real)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	started := func() []string {
		b, _ := os.ReadFile(logf)
		os.Remove(logf)
		return strings.Fields(string(b))
	}
	c := newTestEnv(t).dial(t)
	// The commands as gokube's file module and puts write them, on the
	// paths below $1.
	work := `mkdir -p -m 0750 -- "$1/a/b/c"
mkdir -p -- "$1/p/q"
install -d -m 0710 -o nobody -g nogroup -- "$1/i"
install -d -m 0700 -o 65534 -- "$1/j"
install -d -m 0755 -g nogroup -- "$1/k"
ln -s -- /no/such/target "$1/l"
ln -s -- "$1/a" "$1/m"
: >"$1/f"; : >"$1/g"; : >"$1/h"
chown -- nobody "$1/f"
chgrp -- nogroup "$1/g"
chgrp -h -- nogroup "$1/h"
chmod -- 0604 "$1/f"
chmod 4755 "$1/g"
chmod -- 0600 "$1/h"
`
	declined := `chmod u+x "$1/h"
mkdir -p -m 0700 -- "$1/a"
ln -s -- /x "$1/a"
install -d -m 0700 -o gokube-no-such-user -- "$1/n" 2>/dev/null || true
chgrp -- gokube-no-such-group "$1/h" 2>/dev/null || true
chown -h -- nobody:nogroup "$1/l"
chgrp -h -- nogroup "$1/m"
`
	ref, got, sub := t.TempDir(), t.TempDir(), t.TempDir()
	// The reference: the programs themselves, in a shell of their own.
	if res := run(t, c, Request{Script: "set -e\nset -- " + shQuote(ref) + "\n" + work + declined, OwnShell: true}); res.RC != 0 {
		t.Fatalf("reference: rc %d: %s", res.RC, res.Stderr)
	}
	if n := len(started()); n < 15 {
		t.Fatalf("the reference started %d programs: the stand-ins are not on the session's PATH", n)
	}
	if res := run(t, c, Request{Script: "set -- " + shQuote(got) + "\n" + work, Inline: true}); res.RC != 0 {
		t.Fatalf("inline: rc %d: %s", res.RC, res.Stderr)
	}
	if s := started(); len(s) != 0 {
		t.Errorf("the session's shell started %v: the helper should do that work", s)
	}
	if h := strings.TrimSpace(string(run(t, c, Request{Script: `echo "$gk_H"`, Inline: true}).Stdout)); h != "1" {
		t.Fatalf("helper state %q after the work, want 1", h)
	}
	if res := run(t, c, Request{Script: "set -- " + shQuote(got) + "\n" + declined, Inline: true}); res.RC != 0 {
		t.Fatalf("declined forms: rc %d: %s", res.RC, res.Stderr)
	}
	if s := started(); strings.Join(s, " ") != "chmod mkdir ln install chgrp chown chgrp" {
		t.Errorf("the declined forms started %v, want each program once", s)
	}
	if res := run(t, c, Request{Script: "set -- " + shQuote(sub) + "\n" + work + declined}); res.RC != 0 {
		t.Fatalf("subshell: rc %d: %s", res.RC, res.Stderr)
	}
	if n := len(started()); n < 15 {
		t.Errorf("a subshell request started %d programs: the helper is the session shell's alone", n)
	}
	want := tree(t, ref)
	t.Logf("coreutils left:\n%s", want)
	for _, d := range []string{got, sub} {
		if g := tree(t, d); g != want {
			t.Errorf("%s:\n%s\nwant (coreutils):\n%s", d, g, want)
		}
	}
}

// tree describes every path below root: type and permission bits, owner,
// group, link target.
func tree(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		target := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ = os.Readlink(p)
			target = strings.ReplaceAll(target, root, "$1")
		}
		rel, _ := filepath.Rel(root, p)
		lines = append(lines, fmt.Sprintf("%s %o %d:%d %s", rel, st.Mode, st.Uid, st.Gid, target))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
