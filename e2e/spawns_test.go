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
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return func() []execRec {
		// With -ff strace writes a process's lines out when that process
		// ends, so the run's sessions must be over first: sshd's session
		// children leave a moment after gokube exits.
		deadline := time.Now().Add(60 * time.Second)
		for len(childrenOf(sshd)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if kids := childrenOf(sshd); len(kids) > 0 {
			t.Logf("sshd %d still has children %v after 60 s", sshd, kids)
		}
		// SIGINT detaches cleanly. A CI run once hung here for over an
		// hour with strace never exiting, so SIGINT gets a hang guard and
		// then SIGKILL: the kernel detaches the tracees itself, and every
		// process whose execve is counted has ended, so its lines are on
		// disk already.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			st, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
			wchan, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/wchan")
			t.Logf("strace %d did not exit 60 s after SIGINT (wchan %q); killing it\n%s", cmd.Process.Pid, wchan, st)
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("strace %d did not exit after SIGKILL", cmd.Process.Pid)
			}
		}
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

// proc is one process: its pid and command name.
type proc struct {
	pid  int
	comm string
}

// childrenOf lists parent's children, read from /proc/*/stat
// ("pid (comm) state ppid ...").
func childrenOf(parent int) []proc {
	var out []proc
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
			out = append(out, proc{pid: pid, comm: s[open+1 : end]})
		}
	}
	return out
}

// childNamed is the pid of parent's child whose command is name.
func childNamed(t *testing.T, parent int, name string) int {
	t.Helper()
	for _, c := range childrenOf(parent) {
		if c.comm == name {
			return c.pid
		}
	}
	t.Fatalf("no %s under pid %d", name, parent)
	return 0
}

// runExecs splits what a run started on a host into its session (sshd,
// the login's motd scripts, sudo, up to the persistent shell gokube talks
// to) and the rest, counted by program: "request" is a request's own
// script shell (a command or shell task's), "base64" an output stream,
// anything else the work of probes and changes. It fails when a run opened more than one session.
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
			name = "request" // a request with its own shell (OwnShell)
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
