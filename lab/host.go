package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func (l *Lab) hostDir(h *hostState) string { return filepath.Join(l.cfg.Dir, "hosts", h.Name) }
func (l *Lab) hostRoot(h *hostState) string {
	return filepath.Join(l.hostDir(h), "root")
}
func (l *Lab) hostKeyPath(h *hostState) string {
	return filepath.Join(l.cfg.Dir, "hostkeys", h.Name+"_ed25519")
}

// mountHost mounts the host's overlay (lower: the base image; upper and
// work: the host's own disk in the lab dir) unless it is mounted already.
func (l *Lab) mountHost(h *hostState) error {
	d := l.hostDir(h)
	root := l.hostRoot(h)
	for _, sub := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	if isMountPoint(root) {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", l.st.Image, filepath.Join(d, "upper"), filepath.Join(d, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("%s: mount overlay on %s: %w", h.Name, root, err)
	}
	return nil
}

func isMountPoint(dir string) bool {
	for _, m := range mountsUnder(dir) {
		if m == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

// unmountHost unmounts the overlay; a busy mount (a shell of the operator
// inside it) is detached lazily rather than left behind.
func (l *Lab) unmountHost(h *hostState) error {
	root := l.hostRoot(h)
	for i := 0; i < 20 && isMountPoint(root); i++ {
		err := syscall.Unmount(root, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) {
			continue
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("%s: unmount %s: %w", h.Name, root, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if isMountPoint(root) {
		if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("%s: unmount %s: %w", h.Name, root, err)
		}
	}
	return nil
}

// writeHostFiles writes everything that makes a host itself into its
// (mounted) root: name, machine-id, hosts, host key, authorized keys,
// network config. Called before every boot, so a changed lab (more hosts)
// is reflected; the machine-id is kept once made.
func (l *Lab) writeHostFiles(h *hostState, labPub string) error {
	root := l.hostRoot(h)
	p := func(rel string) string { return filepath.Join(root, rel) }
	sub, err := parseSubnet(l.st.Subnet)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p("etc/hostname"), []byte(h.Name+"\n"), 0o644); err != nil {
		return err
	}
	if b, _ := os.ReadFile(p("etc/machine-id")); len(strings.TrimSpace(string(b))) != 32 {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return fmt.Errorf("machine-id: %w", err)
		}
		if err := writeFileAtomic(p("etc/machine-id"), []byte(hex.EncodeToString(id[:])+"\n"), 0o444); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(p("etc/hosts"), []byte(l.etcHosts()), 0o644); err != nil {
		return err
	}
	priv, err := os.ReadFile(l.hostKeyPath(h))
	if err != nil {
		return fmt.Errorf("%s: host key: %w", h.Name, err)
	}
	if err := writeFileAtomic(p("etc/ssh/ssh_host_ed25519_key"), priv, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(p("etc/ssh/ssh_host_ed25519_key.pub"), []byte(h.HostKey+"\n"), 0o644); err != nil {
		return err
	}
	uid, gid, home, err := passwdEntry(p("etc/passwd"), "deploy")
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	for _, u := range []struct {
		home     string
		uid, gid int
	}{{"/root", 0, 0}, {home, uid, gid}} {
		sshDir := p(filepath.Join(u.home, ".ssh"))
		if err := os.MkdirAll(sshDir, 0o700); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		ak := filepath.Join(sshDir, "authorized_keys")
		if err := writeFileAtomic(ak, []byte(labPub+"\n"), 0o600); err != nil {
			return err
		}
		for _, f := range []string{sshDir, ak} {
			if err := os.Lchown(f, u.uid, u.gid); err != nil {
				return fmt.Errorf("%s: chown %s: %w", h.Name, f, err)
			}
		}
	}
	network := fmt.Sprintf("# Written by gokube lab; sorts before nspawn's 80-container-host0.network.\n[Match]\nName=host0\n\n[Network]\nAddress=%s/%d\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
		h.Addr, sub.Bits(), gatewayAddr(sub))
	if err := os.MkdirAll(p("etc/systemd/network"), 0o755); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if err := writeFileAtomic(p("etc/systemd/network/10-host0.network"), []byte(network), 0o644); err != nil {
		return err
	}
	// The hosts have no DNS server (and no internet); names of the lab
	// come from /etc/hosts. A resolver pointing nowhere fails fast.
	resolv := "# gokube lab: no DNS; lab hosts are in /etc/hosts\noptions timeout:1 attempts:1\n"
	_ = os.Remove(p("etc/resolv.conf")) // may be a symlink in the image
	return writeFileAtomic(p("etc/resolv.conf"), []byte(resolv), 0o644)
}

// etcHosts lists every host of the lab, so hosts know each other by name.
func (l *Lab) etcHosts() string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\n# gokube lab " + l.st.Name + "\n")
	for _, o := range l.st.Hosts {
		fmt.Fprintf(&b, "%s\t%s\n", o.Addr, o.Name)
	}
	return b.String()
}

func passwdEntry(path, user string) (uid, gid int, home string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) >= 6 && fs[0] == user {
			uid, err1 := strconv.Atoi(fs[2])
			gid, err2 := strconv.Atoi(fs[3])
			if err1 != nil || err2 != nil {
				return 0, 0, "", fmt.Errorf("%s: bad entry for %s", path, user)
			}
			return uid, gid, fs[5], nil
		}
	}
	return 0, 0, "", fmt.Errorf("%s: no user %s (image built without it?)", path, user)
}

// bootHost starts systemd-nspawn for the host as a process of its own
// session, so it outlives the `gokube lab up` that started it.
func (l *Lab) bootHost(ctx context.Context, h *hostState) error {
	// nspawn would fail with a terse message; say who holds the name.
	if err := settleStrayLink(ctx, vethName(h.Machine), h.Machine, strayLinkWait); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	logf, err := os.OpenFile(filepath.Join(l.hostDir(h), "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: console log: %w", h.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== gokube lab: booting %s at %s ===\n", h.Name, time.Now().UTC().Format(time.RFC3339))
	args := []string{"systemd-nspawn",
		"--register=no", "--keep-unit", "--console=passive", "-b",
		"--network-bridge=" + bridgeName(l.st.Name),
		"-D", l.hostRoot(h), "-M", h.Machine,
		"--resolv-conf=off", "--timezone=off", "--link-journal=no",
	}
	cgs := hostCgroups(h.Machine)
	h.Cgroups = nil
	if h.Kubelet {
		if err := l.writeKubeletFiles(h); err != nil {
			return err
		}
		args = append(args, l.kubeletNspawnArgs(h)...)
		kcgs, err := kubeletCgroups(h.Machine)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		h.Cgroups = kcgs
		cgs = append(cgs, kcgs...)
	}
	var cmd *exec.Cmd
	if len(cgs) > 0 {
		// A leftover of an earlier boot would mix two boots' units.
		if err := sweepCgroups(cgs); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		// The shell enters the cgroups, then becomes nspawn (same PID), so
		// nspawn starts inside them and builds the container's tree there.
		// The paths are made of fixed parts, the machine name and (on
		// kubelet hosts) this process's own cgroups, quoted.
		script := ""
		for _, cg := range cgs {
			if err := makeCgroup(cg); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			script += "echo $$ > '" + cg + "/cgroup.procs' && "
		}
		cmd = exec.Command("/bin/sh", append([]string{"-c", script + `exec "$0" "$@"`}, args...)...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start systemd-nspawn: %w", h.Name, err)
	}
	p, err := procOf(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("%s: systemd-nspawn exited at once (see %s): %w", h.Name, logf.Name(), err)
	}
	h.Proc, h.Init = p, Proc{}
	h.Cut = false
	// Reap it when it ends while this process lives (tests); after we
	// exit, it is reparented and tracked by PID + start time only.
	go func() { _ = cmd.Wait() }()
	return nil
}

// stopHost powers the host off: SIGTERM asks nspawn to shut the container
// down cleanly; when that takes longer than timeout, the container's init
// (nspawn's child, PID 1 of the host's PID namespace) is killed, which ends
// every process of the host, then nspawn itself.
func (l *Lab) stopHost(ctx context.Context, h *hostState, timeout time.Duration) error {
	p := h.Proc
	if p.Alive() {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if !p.Wait(ctx, timeout) {
			l.logf("%s: not powered off after %s; killing its init", h.Name, timeout)
			for _, c := range p.children() {
				_ = c.Signal(syscall.SIGKILL)
			}
			if !p.Wait(ctx, 5*time.Second) {
				_ = p.Signal(syscall.SIGKILL)
				if !p.Wait(ctx, 5*time.Second) {
					return fmt.Errorf("%s: systemd-nspawn (pid %d) does not end", h.Name, p.PID)
				}
			}
		}
	}
	// An init that outlived its nspawn (nspawn killed from outside) would
	// keep the host running unseen.
	if h.Init.Alive() {
		_ = h.Init.Signal(syscall.SIGKILL)
		if !h.Init.Wait(ctx, 5*time.Second) {
			return fmt.Errorf("%s: container init (pid %d) does not end", h.Name, h.Init.PID)
		}
	}
	if err := sweepCgroups(append(hostCgroups(h.Machine), h.Cgroups...)); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	h.Proc, h.Init, h.Cgroups = Proc{}, Proc{}, nil
	h.Cut = false
	return l.unmountHost(h)
}
