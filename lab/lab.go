package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Lab is one lab: its config and (while a method runs) its state. Every
// method takes the lab's lock and rereads state.json, so several processes
// (the CLI, tests of other packages) can drive the same lab.
type Lab struct {
	// mu guards st between goroutines of one process; the file lock
	// guards it between processes.
	mu     sync.Mutex
	cfg    Config
	recipe Recipe
	st     *state
	// Log receives progress messages (default: discarded).
	Log io.Writer
	// StopTimeout is how long a host gets to power off before its init is
	// killed (default 30s).
	StopTimeout time.Duration
	// BootTimeout bounds the wait for SSH after a boot (default 120s).
	BootTimeout time.Duration
	// KubeletHosts are the indices of hosts Up boots as kubelet hosts
	// (see kubeletNspawn). A host keeps the option once given; a running
	// host gets it at its next boot.
	KubeletHosts []int
}

// Host is a lab host as seen from the control machine.
type Host struct {
	Name    string // inventory name, <lab>-<i>
	Index   int
	Addr    string // the host's own address on the lab bridge
	Machine string // nspawn machine name
	Veth    string // host-side interface on the bridge
	Running bool
	Cut     bool
	Kubelet bool // booted for a kubelet (`lab up --kubelet`)
	PID     int  // systemd-nspawn's PID while running
	// SSHAddr and SSHPort are where to dial SSH: Addr:22, or the delaying
	// forwarder on the gateway while `lab delay` is active.
	SSHAddr string
	SSHPort int
}

// New returns the lab described by cfg (defaults filled in). Nothing is
// created until Up.
func New(cfg Config) (*Lab, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Lab{cfg: cfg, recipe: DefaultRecipe(), Log: io.Discard}, nil
}

// Open returns the lab whose state is in dir (as written by Up).
func Open(dir string) (*Lab, error) {
	if a, err := filepath.Abs(dir); err == nil {
		dir = a
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w (run `gokube lab up` first)", dir, err)
	}
	l := &Lab{cfg: Config{Dir: dir}, recipe: DefaultRecipe(), Log: io.Discard}
	if err := l.loadStateBytes(b); err != nil {
		return nil, err
	}
	l.cfg.Name, l.cfg.Subnet = l.st.Name, l.st.Subnet
	l.cfg = l.cfg.withDefaults()
	return l, l.cfg.validate()
}

func (l *Lab) loadStateBytes(b []byte) error {
	l.st = &state{}
	return jsonUnmarshal(b, l.st, l.statePath())
}

// Name is the lab's identity.
func (l *Lab) Name() string { return l.cfg.Name }

// Subnet is the lab's address range.
func (l *Lab) Subnet() string { return l.cfg.Subnet }

// KeyPath is the lab's private key (0600), accepted by root and deploy on
// every host.
func (l *Lab) KeyPath() string { return filepath.Join(l.cfg.Dir, "id_ed25519") }

// KnownHostsPath lists every host's key (by name, address and, while the
// delay is active, forwarder port).
func (l *Lab) KnownHostsPath() string { return filepath.Join(l.cfg.Dir, "known_hosts") }

// InventoryPath is the INI inventory of all hosts, rewritten on every change.
func (l *Lab) InventoryPath() string { return filepath.Join(l.cfg.Dir, "inventory.cfg") }

func (l *Lab) logf(format string, args ...any) {
	if l.Log != nil {
		fmt.Fprintf(l.Log, format+"\n", args...)
	}
}

func (l *Lab) stopTimeout() time.Duration {
	if l.StopTimeout > 0 {
		return l.StopTimeout
	}
	return 30 * time.Second
}

func (l *Lab) bootTimeout() time.Duration {
	if l.BootTimeout > 0 {
		return l.BootTimeout
	}
	return 120 * time.Second
}

// locked runs fn holding the lab's lock with fresh state, and saves state
// afterwards (also when fn fails half-way: state must name every process
// and mount that exists).
func (l *Lab) locked(ctx context.Context, create bool, fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if create {
		if err := os.MkdirAll(l.cfg.Dir, 0o755); err != nil {
			return fmt.Errorf("lab dir: %w", err)
		}
	} else if _, err := os.Stat(l.statePath()); err != nil {
		return fmt.Errorf("lab %s: %w (run `gokube lab up` first)", l.cfg.Dir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(l.cfg.Dir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := l.loadState(); err != nil {
		return err
	}
	ferr := fn()
	if err := l.saveState(); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

func (l *Lab) host(name string) (*hostState, error) {
	for _, h := range l.st.Hosts {
		if h.Name == name || h.Machine == name || h.Addr == name {
			return h, nil
		}
	}
	names := make([]string, 0, len(l.st.Hosts))
	for _, h := range l.st.Hosts {
		names = append(names, h.Name)
	}
	return nil, fmt.Errorf("lab %s has no host %q (hosts: %v)", l.cfg.Name, name, names)
}

// Up makes sure hosts 1..n exist and run, booting the missing and stopped
// ones (a running lab just gains hosts), and waits until each answers SSH.
func (l *Lab) Up(ctx context.Context, n int) error {
	sub, err := l.checkUp(n)
	if err != nil {
		return err
	}
	return l.locked(ctx, true, func() error {
		if l.st.Name != "" && l.st.Name != l.cfg.Name {
			return fmt.Errorf("%s holds lab %s, not %s", l.cfg.Dir, l.st.Name, l.cfg.Name)
		}
		if len(l.st.Hosts) > 0 && l.st.Subnet != l.cfg.Subnet {
			return fmt.Errorf("lab %s uses subnet %s, not %s: `gokube lab reset` it first to change", l.cfg.Name, l.st.Subnet, l.cfg.Subnet)
		}
		l.st.Name, l.st.Subnet = l.cfg.Name, l.cfg.Subnet
		// The bridge first: it checks the subnet is free; a lab that cannot
		// have its network should neither build an image nor record hosts.
		if err := ensureBridge(ctx, bridgeName(l.cfg.Name), sub); err != nil {
			return err
		}
		if l.st.Image == "" || !dirExists(l.st.Image) || len(l.st.Hosts) == 0 {
			img, err := EnsureImage(ctx, l.cfg.ImageDir, l.recipe, l.Log)
			if err != nil {
				return err
			}
			l.st.Image = img
		}
		labPub, err := ensureKey(l.KeyPath(), "gokube-lab-"+l.cfg.Name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(l.cfg.Dir, "hostkeys"), 0o700); err != nil {
			return fmt.Errorf("lab dir: %w", err)
		}
		for i := len(l.st.Hosts) + 1; i <= n; i++ {
			h, err := l.newHost(sub, i)
			if err != nil {
				return err
			}
			l.st.Hosts = append(l.st.Hosts, h)
		}
		for _, i := range l.KubeletHosts {
			h := l.st.Hosts[i-1]
			if !h.Kubelet && h.Proc.Alive() {
				l.logf("%s: running; it becomes a kubelet host at its next boot (`gokube lab stop` and `start`)", h.Name)
			}
			h.Kubelet = true
		}
		if err := raiseInotify(); err != nil {
			return err
		}
		booted, err := l.bootStopped(ctx, n, labPub)
		if err != nil {
			return err
		}
		if l.st.Delay != nil && len(booted) > 0 {
			if err := l.startDelay(ctx, l.st.Delay.MS); err != nil {
				return err
			}
		}
		if err := l.writeClientFiles(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := l.waitAll(ctx, booted); err != nil {
			return err
		}
		if len(booted) > 0 {
			l.logf("%d host(s) booted, SSH answers after %s", len(booted), time.Since(t0).Round(10*time.Millisecond))
		}
		return nil
	})
}

// checkUp refuses, before anything is touched, what Up cannot do: too many
// hosts for the subnet, an invalid machine name, no root, missing tools.
func (l *Lab) checkUp(n int) (netip.Prefix, error) {
	if n < 1 {
		return netip.Prefix{}, fmt.Errorf("lab up: want at least 1 host, got %d", n)
	}
	sub, err := parseSubnet(l.cfg.Subnet)
	if err != nil {
		return netip.Prefix{}, err
	}
	if n > maxHosts(sub) {
		return netip.Prefix{}, fmt.Errorf("lab up %d: subnet %s has room for %d hosts", n, sub, maxHosts(sub))
	}
	for i := 1; i <= n; i++ {
		if _, err := machineName(l.cfg.Name, i); err != nil {
			return netip.Prefix{}, err
		}
	}
	for _, i := range l.KubeletHosts {
		if i < 1 || i > n {
			return netip.Prefix{}, fmt.Errorf("lab up %d: kubelet host %d is not one of hosts 1..%d", n, i, n)
		}
	}
	if os.Geteuid() != 0 {
		return netip.Prefix{}, errors.New("lab up: needs root (mounts, bridges, systemd-nspawn)")
	}
	if err := needTools("systemd-nspawn", "ip"); err != nil {
		return netip.Prefix{}, err
	}
	return sub, nil
}

// bootStopped mounts, configures and boots every host of 1..n that is not
// running, and gives the hosts already running the new /etc/hosts.
func (l *Lab) bootStopped(ctx context.Context, n int, labPub string) ([]*hostState, error) {
	var booted []*hostState
	for _, h := range l.st.Hosts[:n] {
		if h.Proc.Alive() {
			continue
		}
		if err := l.mountHost(h); err != nil {
			return nil, err
		}
		if err := l.writeHostFiles(h, labPub); err != nil {
			return nil, err
		}
		if err := l.bootHost(ctx, h); err != nil {
			return nil, err
		}
		booted = append(booted, h)
	}
	// Hosts that were already running learn the new names too.
	if len(booted) > 0 {
		for _, h := range l.st.Hosts {
			if h.Proc.Alive() && isMountPoint(l.hostRoot(h)) {
				if err := writeFileAtomic(filepath.Join(l.hostRoot(h), "etc/hosts"), []byte(l.etcHosts()), 0o644); err != nil {
					return nil, err
				}
			}
		}
	}
	return booted, nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func (l *Lab) newHost(sub netip.Prefix, i int) (*hostState, error) {
	addr, err := hostAddr(sub, i)
	if err != nil {
		return nil, err
	}
	m, err := machineName(l.cfg.Name, i)
	if err != nil {
		return nil, err
	}
	h := &hostState{Name: hostName(l.cfg.Name, i), Index: i, Addr: addr.String(), Machine: m}
	pub, err := ensureKey(l.hostKeyPath(h), "root@"+h.Name)
	if err != nil {
		return nil, err
	}
	h.HostKey = pub
	return h, nil
}

// waitAll waits for SSH on hosts in parallel, bounded by BootTimeout.
func (l *Lab) waitAll(ctx context.Context, hosts []*hostState) error {
	ctx, cancel := context.WithTimeout(ctx, l.bootTimeout())
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.waitSSH(ctx, h, net.JoinHostPort(h.Addr, "22")); err != nil {
				errs[i] = fmt.Errorf("%w (console: %s)", err, filepath.Join(l.hostDir(h), "console.log"))
				return
			}
			if ch := h.Proc.children(); len(ch) == 1 {
				h.Init = ch[0]
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Down stops every host (disks stay), the delay forwarder and the bridge.
func (l *Lab) Down(ctx context.Context) error {
	return l.locked(ctx, false, func() error { return l.down(ctx) })
}

func (l *Lab) down(ctx context.Context) error {
	var errs []error
	if err := l.stopDelay(); err != nil {
		errs = append(errs, err)
	}
	var wg sync.WaitGroup
	herrs := make([]error, len(l.st.Hosts))
	for i, h := range l.st.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			herrs[i] = l.stopHost(ctx, h, l.stopTimeout())
		}()
	}
	wg.Wait()
	errs = append(errs, herrs...)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := deleteBridge(ctx, bridgeName(l.st.Name)); err != nil {
		return err
	}
	return l.writeClientFiles()
}

// Wipe is `lab reset`: Down, then forget the hosts' disks (their keys stay,
// so known_hosts stays valid for the next Up).
func (l *Lab) Wipe(ctx context.Context) error {
	return l.locked(ctx, false, func() error {
		if err := l.down(ctx); err != nil {
			return err
		}
		if err := removeUnmounted(filepath.Join(l.cfg.Dir, "hosts")); err != nil {
			return err
		}
		l.st.Hosts = nil
		l.st.Image = ""
		return l.writeClientFiles()
	})
}

// Stop powers a host off; its disk stays.
func (l *Lab) Stop(ctx context.Context, name string) error {
	return l.locked(ctx, false, func() error {
		h, err := l.host(name)
		if err != nil {
			return err
		}
		return l.stopHost(ctx, h, l.stopTimeout())
	})
}

// Start powers a stopped host on (a cut host comes back connected) and
// waits for SSH. Starting a running host does nothing.
func (l *Lab) Start(ctx context.Context, name string) error {
	return l.locked(ctx, false, func() error {
		h, err := l.host(name)
		if err != nil {
			return err
		}
		return l.startHost(ctx, h)
	})
}

func (l *Lab) startHost(ctx context.Context, h *hostState) error {
	if h.Proc.Alive() {
		return nil
	}
	sub, err := parseSubnet(l.st.Subnet)
	if err != nil {
		return err
	}
	if err := ensureBridge(ctx, bridgeName(l.st.Name), sub); err != nil {
		return err
	}
	pub, err := os.ReadFile(l.KeyPath() + ".pub")
	if err != nil {
		return fmt.Errorf("lab key: %w", err)
	}
	if err := l.mountHost(h); err != nil {
		return err
	}
	if err := l.writeHostFiles(h, string(trimNL(pub))); err != nil {
		return err
	}
	if err := l.bootHost(ctx, h); err != nil {
		return err
	}
	return l.waitAll(ctx, []*hostState{h})
}

// Reset gives a host a fresh disk: stop, forget its overlay's upper layer,
// boot again from the base image (same name, address and host key).
func (l *Lab) Reset(ctx context.Context, name string) error {
	return l.locked(ctx, false, func() error {
		h, err := l.host(name)
		if err != nil {
			return err
		}
		if err := l.stopHost(ctx, h, l.stopTimeout()); err != nil {
			return err
		}
		// containerd's store (kubelet hosts) is part of the disk too.
		for _, sub := range []string{"upper", "work", "containerd"} {
			if err := removeUnmounted(filepath.Join(l.hostDir(h), sub)); err != nil {
				return err
			}
		}
		return l.startHost(ctx, h)
	})
}

// Cut partitions a running host from the network (its veth leaves the
// bridge); Heal reconnects it.
func (l *Lab) Cut(ctx context.Context, name string) error {
	return l.locked(ctx, false, func() error {
		h, err := l.host(name)
		if err != nil {
			return err
		}
		if !h.Proc.Alive() {
			return fmt.Errorf("cut %s: host is not running", h.Name)
		}
		if err := cutLink(ctx, vethName(h.Machine)); err != nil {
			return err
		}
		h.Cut = true
		return nil
	})
}

// Heal undoes Cut.
func (l *Lab) Heal(ctx context.Context, name string) error {
	return l.locked(ctx, false, func() error {
		h, err := l.host(name)
		if err != nil {
			return err
		}
		if !h.Proc.Alive() {
			return fmt.Errorf("heal %s: host is not running", h.Name)
		}
		if err := healLink(ctx, vethName(h.Machine), bridgeName(l.st.Name)); err != nil {
			return err
		}
		h.Cut = false
		return nil
	})
}

// Hosts lists the lab's hosts as state.json has them, in index order.
func (l *Lab) Hosts() []Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hostsLocked()
}

func (l *Lab) hostsLocked() []Host {
	if b, err := os.ReadFile(l.statePath()); err == nil {
		st := &state{}
		if jsonUnmarshal(b, st, l.statePath()) == nil {
			l.st = st
		}
	}
	if l.st == nil {
		return nil
	}
	return l.hostsOf(l.st)
}

func (l *Lab) hostsOf(st *state) []Host {
	sub, _ := parseSubnet(st.Subnet)
	out := make([]Host, 0, len(st.Hosts))
	for _, h := range st.Hosts {
		x := Host{Name: h.Name, Index: h.Index, Addr: h.Addr, Machine: h.Machine, Veth: vethName(h.Machine),
			Running: h.Proc.Alive(), Cut: h.Cut, Kubelet: h.Kubelet, SSHAddr: h.Addr, SSHPort: 22}
		if x.Running {
			x.PID = h.Proc.PID
		}
		if st.Delay != nil && st.Delay.Proc.Alive() {
			x.SSHAddr, x.SSHPort = gatewayAddr(sub).String(), delayPortBase+h.Index
		}
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// DelayMS is the active SSH delay (0 when none).
func (l *Lab) DelayMS() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hostsLocked()
	if l.st == nil || l.st.Delay == nil || !l.st.Delay.Proc.Alive() {
		return 0
	}
	return l.st.Delay.MS
}

// writeClientFiles rewrites known_hosts and inventory.cfg from state.
func (l *Lab) writeClientFiles() error {
	hosts := l.hostsOf(l.st)
	if err := writeFileAtomic(l.KnownHostsPath(), []byte(renderKnownHosts(l.st, hosts)), 0o644); err != nil {
		return err
	}
	inv, err := RenderInventory(hosts, InventoryOptions{
		Lab: l.st.Name, User: "deploy", KeyPath: l.KeyPath(), KnownHosts: l.KnownHostsPath(),
	})
	if err != nil {
		return err
	}
	return writeFileAtomic(l.InventoryPath(), []byte(inv), 0o644)
}

func renderKnownHosts(st *state, hosts []Host) string {
	var b []byte
	b = append(b, "# gokube lab "+st.Name+": host keys generated by the lab\n"...)
	keys := map[string]string{}
	for _, h := range st.Hosts {
		keys[h.Name] = h.HostKey
	}
	for _, h := range hosts {
		b = append(b, h.Name+","+h.Addr+" "+keys[h.Name]+"\n"...)
		if h.SSHPort != 22 {
			b = append(b, "["+h.SSHAddr+"]:"+strconv.Itoa(h.SSHPort)+" "+keys[h.Name]+"\n"...)
		}
	}
	return string(b)
}
