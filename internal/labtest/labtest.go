// Package labtest gives tests of every package the same access to a running
// lab (docs/DESIGN.md, "Lab"): GOKUBE_LAB_DIR names it; without it lab tests
// skip, unless GOKUBE_INTEGRATION=1 says a lab was promised.
package labtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"gokube/connection"
	"gokube/internal/testskip"
	"gokube/lab"
)

// FromEnv returns the lab named by GOKUBE_LAB_DIR, or nil when none is set.
func FromEnv(t testing.TB) *lab.Lab {
	t.Helper()
	dir := os.Getenv("GOKUBE_LAB_DIR")
	if dir == "" {
		if testskip.Promised() {
			t.Fatal("GOKUBE_INTEGRATION=1 but GOKUBE_LAB_DIR is not set")
		}
		return nil
	}
	l, err := lab.Open(dir)
	if err != nil {
		t.Fatalf("open lab %s: %v", dir, err)
	}
	return l
}

// Require is FromEnv for tests that need a lab of at least min hosts: it
// skips without one.
func Require(t testing.TB, min int) *lab.Lab {
	t.Helper()
	l := FromEnv(t)
	if l == nil {
		testskip.Skip(t, "no lab: set GOKUBE_LAB_DIR (make test does)")
	}
	if n := len(l.Hosts()); n < min {
		t.Fatalf("lab %s has %d hosts, want at least %d", os.Getenv("GOKUBE_LAB_DIR"), n, min)
	}
	return l
}

// Dial connects to h as the lab's deploy user, host key checked against
// the lab's known_hosts; the connection closes when the test ends.
func Dial(t testing.TB, l *lab.Lab, h lab.Host) connection.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, port := h.SSHAddr, h.SSHPort
	if addr == "" {
		addr = h.Addr
	}
	c, err := connection.DialSSH(ctx, connection.SSHConfig{Host: h.Name, Addr: addr, Port: port, User: "deploy",
		KeyFiles: []string{l.KeyPath()}, KnownHosts: []string{l.KnownHostsPath()}})
	if err != nil {
		t.Fatalf("dial %s: %v", h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SSH runs a command as root on the host at addr through the system ssh
// client: an observer that shares no code with gokube. The connect
// timeout only stops a hang: on a machine at load 100 a lab host's sshd
// took over 5 s to send its banner.
func SSH(l *lab.Lab, addr, command string) (string, error) {
	cmd := exec.Command("ssh", "-i", l.KeyPath(), "-o", "UserKnownHostsFile="+l.KnownHostsPath(),
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=60", "root@"+addr, command)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
