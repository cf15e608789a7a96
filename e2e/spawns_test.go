package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gokube/lab"
)

// execRec is one program a lab host started: when, and its argv.
type execRec struct {
	at   float64
	argv []string
}

// traceExecs follows the host's sshd, under which every session and all it
// starts run, with strace (one log per process, -ff, so lines never
// interleave) and returns a stop function giving every successful execve,
// in time order. Counts of processes do not depend on the machine's speed.
func traceExecs(t *testing.T, h lab.Host) func() []execRec {
	t.Helper()
	// systemd-nspawn (h.PID) runs the host's init, which runs sshd.
	sshd := childNamed(t, childNamed(t, h.PID, "systemd"), "sshd")
	dir := t.TempDir()
	cmd := exec.Command("strace", "-ff", "-qq", "-ttt", "-s", "256", "-e", "trace=execve", "-o", filepath.Join(dir, "t"), "-p", strconv.Itoa(sshd))
	if err := cmd.Start(); err != nil {
		t.Fatalf("strace: %v", err)
	}
	// Attached when the kernel names strace as sshd's tracer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(sshd) + "/status")
		if m := regexp.MustCompile(`(?m)^TracerPid:\s+(\d+)`).FindSubmatch(st); m != nil && string(m[1]) != "0" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("strace did not attach to sshd %d", sshd)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() []execRec {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		files, _ := filepath.Glob(filepath.Join(dir, "t.*"))
		var out []execRec
		line := regexp.MustCompile(`^(\d+\.\d+) execve\("[^"]*", \[(.*)\], .*\) = 0$`)
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				m := line.FindStringSubmatch(sc.Text())
				if m == nil {
					continue
				}
				at, _ := strconv.ParseFloat(m[1], 64)
				out = append(out, execRec{at: at, argv: straceStrings(m[2])})
			}
			fh.Close()
		}
		sort.Slice(out, func(i, j int) bool { return out[i].at < out[j].at })
		return out
	}
}

// straceStrings reads strace's list of quoted strings ("a", "b"...).
func straceStrings(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(s, -1) {
		if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
			out = append(out, u)
		} else {
			out = append(out, m[1])
		}
	}
	return out
}

// childNamed is the pid of parent's child whose command is name.
func childNamed(t *testing.T, parent int, name string) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || s[open+1:end] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
			return pid
		}
	}
	t.Fatalf("no %s under pid %d", name, parent)
	return 0
}

// runExecs splits what a run started on a host into its session (sshd,
// the login's motd scripts, sudo, up to the persistent shell gokube talks
// to) and the rest, counted by program: "sh" is one request's script
// shell, "base64" one output stream, anything else the work of probes and
// changes. It fails when a run opened more than one session.
func runExecs(t *testing.T, execs []execRec) (session int, progs map[string]int, lines []string) {
	t.Helper()
	progs = map[string]int{}
	inSession, sessions := false, 0
	for _, e := range execs {
		if len(e.argv) == 0 {
			continue
		}
		name := filepath.Base(e.argv[0])
		if name == "sshd" {
			inSession = true
			sessions++
		}
		if inSession {
			session++
			// sudo's /bin/sh without arguments is the persistent shell.
			if (name == "sh" || name == "/bin/sh") && len(e.argv) == 1 {
				inSession = false
			}
			continue
		}
		switch {
		case name == "sh" && len(e.argv) == 2 && e.argv[1] == "/dev/fd/3":
			name = "request"
		case name == "base64" && len(e.argv) > 1 && e.argv[1] == "-d":
			name = "base64 -d"
		case name == "systemctl" && len(e.argv) > 1:
			name = "systemctl " + e.argv[1]
		case name == "stat" && len(e.argv) > 1 && strings.Contains(e.argv[1], "%n"):
			name = "stat batch"
		}
		progs[name]++
		lines = append(lines, strings.Join(e.argv, " "))
	}
	if sessions != 1 {
		t.Errorf("%d sessions opened, want 1", sessions)
	}
	return session, progs, lines
}
