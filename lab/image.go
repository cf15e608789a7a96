package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Recipe is how a base image is made. Its hash names the image directory,
// so changing the package list or the setup script makes the next `lab up`
// build a new image instead of booting a stale one.
type Recipe struct {
	Suite    string
	Variant  string
	Packages []string
	// Setup runs in the finished root (chroot, /bin/sh -e).
	Setup string
}

// DefaultRecipe is the lab's Debian bookworm image: what the roles need
// that the hosts cannot download (they have no internet), plus python3 so
// Ansible can run against the same hosts for comparison.
func DefaultRecipe() Recipe {
	return Recipe{
		Suite:   "bookworm",
		Variant: "minbase",
		Packages: []string{
			// No libpam-systemd: a per-user systemd under cgroup v1 in a
			// container can hang a host's poweroff for good.
			"systemd", "systemd-sysv", "dbus",
			"openssh-server", "sudo", "python3",
			"haproxy", "curl", "ca-certificates", "iproute2", "iputils-ping",
			"procps", "dnsmasq", "less", "netbase",
			// Kubelet hosts' container runtime, pod network and
			// kube-proxy's rules (the kube-node role configures and
			// starts them; kubelet hosts: `lab up --kubelet`).
			"containerd", "runc", "containernetworking-plugins",
			"iptables", "conntrack",
		},
		Setup: imageSetup,
	}
}

// imageSetup prepares the generic image; everything host-specific (names,
// addresses, keys, machine-id) is written per host into its overlay.
const imageSetup = `
systemctl enable systemd-networkd.service ssh.service
# Roles start dnsmasq where they need it.
systemctl disable dnsmasq.service || true
# Only kubelet hosts run a container runtime; the kube-node role starts it.
systemctl disable containerd.service || true
# Nothing here needs these, and they slow boots or wake up at random times.
systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
  apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
  console-getty.service getty@tty1.service systemd-timesyncd.service \
  >/dev/null 2>&1 || true
id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy
echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
# Every host gets its own host key from the lab; none may be shared.
rm -f /etc/ssh/ssh_host_*
cat > /etc/ssh/sshd_config.d/gokube-lab.conf <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
MaxSessions 64
MaxStartups 100:30:200
EOF
# The login uid cannot always be set inside a container; make it optional
# so it never refuses a session.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd
# No logind sessions or user managers for SSH logins (see the package list).
sed -i '/pam_systemd\.so/d' /etc/pam.d/common-session /etc/pam.d/common-session-noninteractive 2>/dev/null || true
# The hosts have no internet: no package sources, no lists.
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
apt-get clean
rm -rf /var/lib/apt/lists/*
: > /etc/machine-id
rm -f /etc/hostname /var/lib/dbus/machine-id
`

// Hash identifies the recipe (first 16 hex digits of its SHA-256).
func (r Recipe) Hash() string {
	pk := append([]string(nil), r.Packages...)
	sort.Strings(pk)
	h := sha256.New()
	// Bump the version when the way images are built changes.
	fmt.Fprintf(h, "gokube-lab-image v1\nsuite=%s\nvariant=%s\npackages=%s\nsetup=%s\n",
		r.Suite, r.Variant, strings.Join(pk, ","), r.Setup)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ImagePath is where the root of the image for r lives under imageDir.
func ImagePath(imageDir string, r Recipe) string {
	return filepath.Join(imageDir, r.Hash(), "rootfs")
}

// EnsureImage returns the root of the image built from r, building it when
// missing. A build happens in a temporary directory renamed into place only
// when complete, so an interrupted build leaves nothing that looks usable.
func EnsureImage(ctx context.Context, imageDir string, r Recipe, log io.Writer) (string, error) {
	root := ImagePath(imageDir, r)
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(imageDir, 0o755); err != nil {
		return "", fmt.Errorf("image dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(imageDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Someone else may have built it while we waited for the lock.
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	if err := needTools("debootstrap", "chroot"); err != nil {
		return "", err
	}
	if err := removeStaleBuilds(imageDir); err != nil {
		return "", err
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(imageDir, ".build-"+r.Hash()+"-")
	if err != nil {
		return "", fmt.Errorf("image build dir: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeUnmounted(tmp)
		}
	}()
	troot := filepath.Join(tmp, "rootfs")
	fmt.Fprintf(log, "building base image %s (debootstrap %s, about a minute)\n", r.Hash(), r.Suite)
	t0 := time.Now()
	args := []string{"--variant=" + r.Variant, "--include=" + strings.Join(r.Packages, ","), r.Suite, troot, mirror}
	if err := runLogged(ctx, log, "debootstrap", args...); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	if err := runLogged(ctx, log, "chroot", troot, "/bin/sh", "-ec", r.Setup); err != nil {
		return "", fmt.Errorf("image setup script: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "recipe.txt"), []byte(fmt.Sprintf("suite=%s\nvariant=%s\npackages=%s\nsetup:\n%s", r.Suite, r.Variant, strings.Join(r.Packages, ","), r.Setup)), 0o644); err != nil {
		return "", fmt.Errorf("image recipe: %w", err)
	}
	if mounts := mountsUnder(tmp); len(mounts) > 0 {
		return "", fmt.Errorf("image build left mounts behind: %v", mounts)
	}
	if err := os.Rename(tmp, filepath.Dir(root)); err != nil {
		return "", fmt.Errorf("image: rename into place: %w", err)
	}
	ok = true
	fmt.Fprintf(log, "base image %s built in %s\n", r.Hash(), time.Since(t0).Round(time.Second))
	return root, nil
}

// needTools checks the programs the lab runs, naming the Debian package to
// install, before anything is changed.
func needTools(names ...string) error {
	pkg := map[string]string{"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "ip": "iproute2", "chroot": "coreutils"}
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s not found: apt-get install %s", n, pkg[n])
		}
	}
	return nil
}

func removeStaleBuilds(imageDir string) error {
	ents, err := os.ReadDir(imageDir)
	if err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".build-") {
			if err := removeUnmounted(filepath.Join(imageDir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeUnmounted deletes dir after unmounting anything below it (an
// interrupted debootstrap leaves /proc and /sys mounted in its target;
// deleting through those mounts would be a disaster).
func removeUnmounted(dir string) error {
	for _, m := range mountsUnder(dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("refusing to delete %s: still mounted: %v", dir, left)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		mp := unescapeMount(fs[1])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes the octal escapes (\040 for space) of /proc/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			okOct := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					okOct = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if okOct {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// debianMirror reads the Debian archive URI this machine's apt uses, so the
// lab never carries a mirror's name of its own.
func debianMirror() (string, error) {
	files := []string{"/etc/apt/sources.list"}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorFromSources(string(b), strings.HasSuffix(f, ".sources")); m != "" {
			return m, nil
		}
	}
	return "", errors.New("no Debian bookworm archive found in /etc/apt/sources.list or /etc/apt/sources.list.d/: the lab needs one for debootstrap")
}

// mirrorFromSources finds the URI that serves the "bookworm" suite (not
// -security, -updates) in one-line or deb822 format.
func mirrorFromSources(text string, deb822 bool) string {
	if !deb822 && !strings.Contains(text, "URIs:") {
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			i := 1
			if strings.HasPrefix(f[i], "[") {
				for i < len(f) && !strings.HasSuffix(f[i], "]") {
					i++
				}
				i++
			}
			if i+1 < len(f) && f[i+1] == "bookworm" {
				return f[i]
			}
		}
		return ""
	}
	for _, stanza := range strings.Split(text, "\n\n") {
		var uris, suites []string
		isDeb := true
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			switch strings.TrimSpace(k) {
			case "URIs":
				uris = strings.Fields(v)
			case "Suites":
				suites = strings.Fields(v)
			case "Types":
				isDeb = false
				for _, t := range strings.Fields(v) {
					if t == "deb" {
						isDeb = true
					}
				}
			case "Enabled":
				if strings.TrimSpace(v) == "no" {
					isDeb = false
				}
			}
		}
		if !isDeb || len(uris) == 0 {
			continue
		}
		for _, s := range suites {
			if s == "bookworm" {
				return uris[0]
			}
		}
	}
	return ""
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting while ctx allows.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
