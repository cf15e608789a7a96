package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gokube/connection"
	"gokube/internal/testskip"
)

// TestMain lets the test binary act as the delay forwarder: Delay starts
// os.Executable() with the same arguments as `gokube lab delay-proxy`.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "lab" && os.Args[2] == "delay-proxy" {
		os.Exit(delayProxyMain(os.Args[3:]))
	}
	os.Exit(m.Run())
}

func delayProxyMain(args []string) int {
	var d time.Duration
	var maps []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--delay" && i+1 < len(args) {
			v, err := time.ParseDuration(args[i+1])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			d = v
			i++
			continue
		}
		maps = append(maps, args[i])
	}
	ctx, cancel := signalCtx()
	defer cancel()
	if err := RunDelayProxy(ctx, d, maps); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func signalCtx() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("GOKUBE_LAB_TEST") != "1" {
		testskip.Skip(t, "lab integration test: set GOKUBE_LAB_TEST=1 (needs root, debootstrap, systemd-container)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("GOKUBE_LAB_TEST=1 but not root")
	}
}

// newTestLab makes a lab of its own (never the shared `gk` lab) with the
// base image ready, and tears it down after the test.
func newTestLab(t *testing.T, name, subnet string) *Lab {
	t.Helper()
	ctx := context.Background()
	if _, err := EnsureImage(ctx, DefaultImageDir, DefaultRecipe(), testLog{t}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), name)
	l, err := New(Config{Name: name, Dir: dir, Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	l.Log = testLog{t}
	l.StopTimeout = 20 * time.Second
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "console.log"))
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("=== %s (tail)\n%s", f, b)
			}
		}
		if _, err := os.Stat(l.statePath()); err == nil {
			snap := snapshot(t, l)
			if err := l.Down(context.Background()); err != nil {
				t.Errorf("cleanup down: %v", err)
			}
			assertNothingLeft(t, l, snap)
		}
	})
	return l
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// run logs in as deploy (host key checked) and runs script with sudo.
func run(ctx context.Context, l *Lab, h Host, script string) (string, error) {
	c, err := l.dialHost(ctx, h, "deploy", 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	res, err := c.Run(ctx, connection.Request{Script: script, Become: true})
	if err != nil {
		return "", err
	}
	if res.RC != 0 {
		return "", fmt.Errorf("%s: %q exited %d: %s", h.Name, script, res.RC, res.Stderr)
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

func hostByName(t *testing.T, l *Lab, name string) Host {
	t.Helper()
	for _, h := range l.Hosts() {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return Host{}
}

func mustRun(t *testing.T, l *Lab, name, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	out, err := run(ctx, l, hostByName(t, l, name), script)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func mustFail(t *testing.T, l *Lab, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if out, err := run(ctx, l, hostByName(t, l, name), "hostname"); err == nil {
		t.Fatalf("%s still answers SSH: %q", name, out)
	} else {
		t.Logf("%s unreachable as expected: %v", name, err)
	}
}

// labProcs is every process of a lab at one moment: systemd-nspawn of each
// running host with all its descendants (the whole container), the delay
// forwarder, and the PID namespaces of the hosts.
type labProcs struct {
	procs  []Proc
	pidNS  map[string]bool
	nspawn int
}

func snapshot(t *testing.T, l *Lab) labProcs {
	t.Helper()
	s := labProcs{pidNS: map[string]bool{}}
	l.Hosts()
	var walk func(p Proc)
	walk = func(p Proc) {
		s.procs = append(s.procs, p)
		for _, c := range p.children() {
			walk(c)
		}
	}
	for _, h := range l.st.Hosts {
		if !h.Proc.Alive() {
			continue
		}
		s.nspawn++
		walk(h.Proc)
		for _, c := range h.Proc.children() {
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.PID)); err == nil {
				s.pidNS[ns] = true
			}
		}
	}
	if l.st.Delay != nil && l.st.Delay.Proc.Alive() {
		s.procs = append(s.procs, l.st.Delay.Proc)
	}
	return s
}

// assertNothingLeft checks /proc, /proc/mounts and the interfaces: none of
// the processes seen in snap runs, no process is in a host's PID namespace
// or names the lab dir, nothing is mounted under the dir, and no bridge or
// veth of the lab exists.
func assertNothingLeft(t *testing.T, l *Lab, snap labProcs) {
	t.Helper()
	dir := l.cfg.Dir
	for _, p := range snap.procs {
		if p.Alive() {
			t.Errorf("process %d left", p.PID)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, _, _, err := procStat(pid); err != nil || st == 'Z' {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if snap.pidNS[ns] || strings.Contains(string(cmdline), dir) {
			t.Errorf("process %d left (%s, cmd %q)", pid, ns, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	for _, r := range cgroupRoots() {
		left, _ := filepath.Glob(filepath.Join(r, "gokube-lab", "gk-"+l.cfg.Name+"-*"))
		if len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " "+bridgeName(l.cfg.Name)+":") || strings.Contains(line, " vb-gk-"+l.cfg.Name+"-") {
			t.Errorf("interface left: %s", line)
		}
	}
}

func TestLabLifecycle(t *testing.T) {
	integration(t)
	l := newTestLab(t, "t1", "10.231.240.0/24")
	ctx := context.Background()

	t0 := time.Now()
	if err := l.Up(ctx, 3); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t.Logf("up 3 from a built image: SSH (deploy + sudo) on all hosts after %s", took.Round(10*time.Millisecond))
	ids := map[string]string{}
	for _, h := range l.Hosts() {
		if !h.Running || h.PID == 0 {
			t.Fatalf("%s not running: %+v", h.Name, h)
		}
		out := mustRun(t, l, h.Name, "hostname; cat /etc/machine-id; ip -4 -o addr show host0; getent hosts t1-1 t1-2 t1-3 | wc -l; id -u")
		f := strings.Split(out, "\n")
		if len(f) != 5 || f[0] != h.Name || !strings.Contains(f[2], " "+h.Addr+"/24 ") || f[3] != "3" || f[4] != "0" {
			t.Fatalf("%s: unexpected identity:\n%s", h.Name, out)
		}
		if other, dup := ids[f[1]]; dup {
			t.Fatalf("%s and %s share machine-id %s", h.Name, other, f[1])
		}
		ids[f[1]] = h.Name
	}
	// Hosts reach each other by name.
	mustRun(t, l, "t1-1", "ping -c1 -W2 t1-3 >/dev/null")
	// RunSSH (lab ssh without a system client): root login, output and
	// exit status come back.
	var out, errb strings.Builder
	rc, err := l.RunSSH(ctx, "t1-2", "root", "hostname; id -un; echo oops >&2; exit 3", &out, &errb)
	if err != nil || rc != 3 || out.String() != "t1-2\nroot\n" || errb.String() != "oops\n" {
		t.Fatalf("RunSSH: rc %d, err %v, stdout %q, stderr %q", rc, err, out.String(), errb.String())
	}

	// up is idempotent, and adds hosts without touching running ones.
	pids := map[string]int{}
	for _, h := range l.Hosts() {
		pids[h.Name] = h.PID
	}
	if err := l.Up(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.Up(ctx, 4); err != nil {
		t.Fatal(err)
	}
	hs := l.Hosts()
	if len(hs) != 4 {
		t.Fatalf("after up 4: %d hosts", len(hs))
	}
	for _, h := range hs[:3] {
		if h.PID != pids[h.Name] {
			t.Fatalf("%s was restarted by an idempotent up (pid %d -> %d)", h.Name, pids[h.Name], h.PID)
		}
	}
	if got := mustRun(t, l, "t1-1", "getent hosts t1-4"); !strings.HasPrefix(got, "10.231.240.14") {
		t.Fatalf("t1-1 does not know t1-4: %q", got)
	}
	inv, err := os.ReadFile(l.InventoryPath())
	if err != nil || !strings.Contains(string(inv), "t1-4 ansible_host=10.231.240.14 ") {
		t.Fatalf("inventory: %v\n%s", err, inv)
	}

	// stop/start: power goes, the disk stays.
	mustRun(t, l, "t1-2", "echo kept > /root/marker")
	stopped := hostByName(t, l, "t1-2")
	t0 = time.Now()
	if err := l.Stop(ctx, "t1-2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %s", time.Since(t0).Round(10*time.Millisecond))
	if h := hostByName(t, l, "t1-2"); h.Running {
		t.Fatalf("t1-2 still running: %+v", h)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", stopped.PID)); err == nil {
		if st, _, _, _ := procStat(stopped.PID); st != 'Z' {
			t.Fatalf("nspawn pid %d survived stop", stopped.PID)
		}
	}
	if isMountPoint(filepath.Join(l.cfg.Dir, "hosts", "t1-2", "root")) {
		t.Fatal("overlay of a stopped host still mounted")
	}
	mustFail(t, l, "t1-2")
	if err := l.Start(ctx, "t1-2"); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, l, "t1-2", "cat /root/marker"); got != "kept" {
		t.Fatalf("disk lost across stop/start: %q", got)
	}

	// cut/heal: SSH fails, then works again, on the same boot.
	before := hostByName(t, l, "t1-3").PID
	if err := l.Cut(ctx, "t1-3"); err != nil {
		t.Fatal(err)
	}
	if !hostByName(t, l, "t1-3").Cut {
		t.Fatal("status does not show the cut")
	}
	mustFail(t, l, "t1-3")
	if out := mustRun(t, l, "t1-1", "ping -c1 -W1 t1-3 >/dev/null && echo reached || echo cut"); out != "cut" {
		t.Fatalf("t1-1 still reaches t1-3: %s", out)
	}
	if err := l.Heal(ctx, "t1-3"); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l, "t1-3", "true")
	if after := hostByName(t, l, "t1-3").PID; after != before {
		t.Fatalf("cut/heal restarted the host (%d -> %d)", before, after)
	}

	// Reset gives a fresh disk.
	mustRun(t, l, "t1-4", "echo old > /root/marker")
	if err := l.Reset(ctx, "t1-4"); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, l, "t1-4", "test -e /root/marker && echo present || echo gone"); got != "gone" {
		t.Fatalf("reset kept the disk: %s", got)
	}

	// Open sees the same lab from its directory (as other packages' tests do).
	o, err := Open(l.cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Hosts()) != 4 || o.KeyPath() != l.KeyPath() {
		t.Fatalf("Open: %+v", o.Hosts())
	}

	snap := snapshot(t, l)
	if snap.nspawn != 4 || len(snap.procs) < 4*4 || len(snap.pidNS) != 4 {
		t.Fatalf("snapshot of 4 hosts: %d nspawn, %d processes, %d PID namespaces", snap.nspawn, len(snap.procs), len(snap.pidNS))
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, l, snap)
	for _, h := range l.Hosts() {
		if h.Running {
			t.Fatalf("%s running after down", h.Name)
		}
	}
	// Up after down boots the same disks again.
	if err := l.Up(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, l, "t1-2", "cat /root/marker"); got != "kept" {
		t.Fatalf("disk lost across down/up: %q", got)
	}
	// Reset with no grace period: the stop path that kills each
	// container's init must leave nothing either.
	l.StopTimeout = time.Millisecond
	snap = snapshot(t, l)
	if err := l.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, l, snap)
	if _, err := os.Stat(filepath.Join(l.cfg.Dir, "hosts")); err == nil {
		t.Fatal("reset kept the disks")
	}
}

// delay 25 adds 25 ms each way: a round trip through the forwarder costs
// 50 ms more than a direct one. Timed over a known number of framed
// requests on one connection (one round trip each, counted by the
// connection). The machine is shared, so load only ever adds time: the
// fastest request of each series is the one compared.
func TestLabDelay(t *testing.T) {
	integration(t)
	l := newTestLab(t, "t2", "10.231.241.0/24")
	ctx := context.Background()
	if err := l.Up(ctx, 1); err != nil {
		t.Fatal(err)
	}
	const n = 30
	measure := func() (fastest, total time.Duration) {
		h := hostByName(t, l, "t2-1")
		c, err := l.dialHost(ctx, h, "deploy", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The first request opens the shell session; time only the rest.
		if _, err := c.Run(ctx, connection.Request{Script: "true"}); err != nil {
			t.Fatal(err)
		}
		rt0 := c.RoundTrips()
		fastest = time.Hour
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if _, err := c.Run(ctx, connection.Request{Script: "true"}); err != nil {
				t.Fatal(err)
			}
			d := time.Since(t0)
			total += d
			fastest = min(fastest, d)
		}
		if got := c.RoundTrips() - rt0; got != n {
			t.Fatalf("%d requests counted %d round trips", n, got)
		}
		return fastest, total
	}
	directMin, direct := measure()
	if err := l.Delay(ctx, 25); err != nil {
		t.Fatal(err)
	}
	h := hostByName(t, l, "t2-1")
	if h.SSHAddr != "10.231.241.1" || h.SSHPort != 22001 || l.DelayMS() != 25 {
		t.Fatalf("delay not active: %+v", h)
	}
	inv, _ := os.ReadFile(l.InventoryPath())
	if !strings.Contains(string(inv), "t2-1 ansible_host=10.231.241.1 ansible_port=22001 ip=10.231.241.11 ") {
		t.Fatalf("inventory does not point at the forwarder:\n%s", inv)
	}
	delayedMin, delayed := measure()
	added := delayedMin - directMin
	t.Logf("%d round trips: direct %s (fastest %s), with delay 25 %s (fastest %s): added per round trip %s (want ~50ms), on average %s",
		n, direct, directMin, delayed, delayedMin, added, (delayed-direct)/n)
	// A lower bound only: no round trip through 25 ms each way can be
	// faster than 50 ms, however quiet the machine; an upper bound would
	// measure the machine's load, not the delay.
	if delayedMin < 50*time.Millisecond {
		t.Fatalf("a round trip through delay 25 took %s, under 2x25ms", delayedMin)
	}
	proxy := l.st.Delay.Proc
	if err := l.Delay(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if proxy.Alive() {
		t.Fatal("forwarder still running after delay 0")
	}
	if h := hostByName(t, l, "t2-1"); h.SSHPort != 22 {
		t.Fatalf("delay 0 left %+v", h)
	}
	mustRun(t, l, "t2-1", "true")
}

func TestArtifacts(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Artifacts(ctx, dir, testLog{t}); err != nil {
		t.Fatal(err)
	}
	sums, err := ReadSums(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"etcd/v3.4.23/etcd", "etcd/v3.4.23/etcdctl"} {
		got, err := fileSHA256(filepath.Join(dir, rel))
		if err != nil || sums[rel] == "" || got != sums[rel] {
			t.Fatalf("%s: sha256 %s, SHA256SUMS says %q (%v)", rel, got, sums[rel], err)
		}
	}
	sumCheck := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sumCheck.Dir = dir
	out, err := sumCheck.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	out, err = exec.Command(filepath.Join(dir, "etcd/v3.4.23/etcd"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3.4.23") {
		t.Fatalf("etcd --version: %v\n%s", err, out)
	}
	// Cached: a second run changes nothing.
	fi, _ := os.Stat(filepath.Join(dir, "etcd/v3.4.23/etcd"))
	if err := Artifacts(ctx, dir, testLog{t}); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(filepath.Join(dir, "etcd/v3.4.23/etcd"))
	if !fi.ModTime().Equal(fi2.ModTime()) {
		t.Fatal("cached artifact was rewritten")
	}
	// A corrupted file is fetched again.
	if err := os.WriteFile(filepath.Join(dir, "etcd/v3.4.23/etcdctl"), []byte("junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Artifacts(ctx, dir, testLog{t}); err != nil {
		t.Fatal(err)
	}
	sumCheck = exec.Command("sha256sum", "-c", "SHA256SUMS")
	sumCheck.Dir = dir
	if out, err := sumCheck.CombinedOutput(); err != nil {
		t.Fatalf("corrupted artifact not replaced: %v\n%s", err, out)
	}
}

func TestLabBig(t *testing.T) {
	integration(t)
	if os.Getenv("GOKUBE_LAB_BIG") != "1" {
		testskip.Skip(t, "set GOKUBE_LAB_BIG=1 for up 30")
	}
	l := newTestLab(t, "t3", "10.231.242.0/24")
	l.BootTimeout = 5 * time.Minute
	ctx := context.Background()
	t0 := time.Now()
	if err := l.Up(ctx, 30); err != nil {
		t.Fatal(err)
	}
	t.Logf("up 30: all hosts answer SSH after %s", time.Since(t0).Round(100*time.Millisecond))
	for _, h := range l.Hosts() {
		if got := mustRun(t, l, h.Name, "hostname"); got != h.Name {
			t.Fatalf("%s answers as %s", h.Name, got)
		}
	}
	snap := snapshot(t, l)
	if snap.nspawn != 30 {
		t.Fatalf("%d nspawn running, want 30", snap.nspawn)
	}
	t0 = time.Now()
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("down 30 took %s", time.Since(t0).Round(100*time.Millisecond))
	assertNothingLeft(t, l, snap)
}

// TestStrayLinkSettles: a killed machine's interface does not stop the next
// boot (a CI job once found a lab killed seconds before still holding its
// veths and failed), but a machine that still runs keeps its own.
func TestStrayLinkSettles(t *testing.T) {
	integration(t)
	ctx := context.Background()
	const veth, machine = "vb-gk-gkst-1", "gk-gkst-1"
	add := func() {
		t.Helper()
		if _, err := ipCmd(ctx, "link", "add", veth, "type", "veth", "peer", "name", "gkst-peer"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = ipCmd(ctx, "link", "del", veth) })

	// A machine of that name runs: its interface is refused, not deleted.
	add()
	holder := exec.Command("/bin/sh", "-c", "sleep 600; :", "systemd-nspawn", "-M", machine)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	if err := settleStrayLink(ctx, veth, machine, time.Second); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a running machine's interface: err = %v, want in use", err)
	}
	if !linkExists(ctx, veth) {
		t.Fatal("a running machine's interface was deleted")
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()

	// Nobody runs it: after the wait the stray link is gone and a boot may go on.
	if err := settleStrayLink(ctx, veth, machine, time.Second); err != nil {
		t.Fatal(err)
	}
	if linkExists(ctx, veth) || linkExists(ctx, "gkst-peer") {
		t.Fatal("the stray interface stays")
	}
}
