package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// What a kubelet and its container runtime need from a lab host that the
// other hosts do without. Measured with kubelet v1.37.2 on these machines'
// cgroup v1 hierarchy: it reads /dev/kmsg (the OOM watcher), writes
// kernel/panic_on_oops and vm/overcommit_memory under /proc/sys, and creates
// the pods' cgroups in every controller; runc mounts, pivots and sets up
// namespaces and keyrings for each container.

// kubeletNspawnArgs are added to systemd-nspawn's arguments for a kubelet
// host; sysctlDir holds the files of kubeletSysctls (writeKubeletFiles).
func (l *Lab) kubeletNspawnArgs(h *hostState) []string {
	args := []string{
		"--bind-ro=/dev/kmsg",
		// containerd's overlayfs snapshots cannot sit on the host's own
		// overlay root: its image store is a directory of the lab's disk.
		"--bind=" + filepath.Join(l.hostDir(h), "containerd") + ":/var/lib/containerd",
		// runc and containerd need capabilities nspawn keeps from its
		// containers by default, and system calls its filter refuses
		// (keyctl for every container's session keyring).
		"--capability=all",
		"--system-call-filter=@keyring @privileged bpf",
	}
	return args
}

// writeKubeletFiles writes what a kubelet host's boot needs: the containerd
// directory and, in the host's root, the sysctl files and kubeletUnit.
func (l *Lab) writeKubeletFiles(h *hostState) error {
	root := l.hostRoot(h)
	dir := filepath.Join(root, kubeletSysctlDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	for k, v := range kubeletSysctls {
		if err := writeFileAtomic(filepath.Join(dir, strings.ReplaceAll(k, "/", ".")), []byte(v+"\n"), 0o444); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(l.hostDir(h), "containerd"), 0o711); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	unit := filepath.Join(root, "etc/systemd/system/gokube-lab-kubelet.service")
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system/sysinit.target.wants"), 0o755); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if err := writeFileAtomic(unit, []byte(kubeletUnitText()), 0o644); err != nil {
		return err
	}
	link := filepath.Join(root, "etc/systemd/system/sysinit.target.wants/gokube-lab-kubelet.service")
	_ = os.Remove(link)
	if err := os.Symlink("/etc/systemd/system/gokube-lab-kubelet.service", link); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	return nil
}

// kubeletCgroups are the cgroups a kubelet host starts in, one per cgroup
// v1 controller hierarchy (cpu, memory, pids, ...), below the cgroup this
// process is in there (a memory limit of the control machine stays over
// the host). nspawn gives its container a cgroup namespace, so the
// kubelet's /kubepods of each host is its own, and a kubelet's cleanup of
// cgroups it does not know never reaches another host's pods.
func kubeletCgroups(machine string) ([]string, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" || strings.HasPrefix(f[1], "name=") {
			continue // the unified and name=systemd ones are hostCgroups'
		}
		mnt := filepath.Join("/sys/fs/cgroup", f[1])
		if fsMagic(mnt) != cgroup1Magic {
			continue
		}
		if strings.ContainsAny(f[2], "'\n") {
			return nil, fmt.Errorf("cgroups: own cgroup %q: quotes or newlines in it", f[2])
		}
		out = append(out, filepath.Join(mnt, f[2], "gokube-lab", machine))
	}
	return out, nil
}

// makeCgroup creates cg and its missing parents. A new cpuset cgroup has
// no CPUs or memory nodes and accepts no process until it gets its
// parent's.
func makeCgroup(cg string) error {
	if _, err := os.Stat(cg); err == nil {
		return nil
	}
	parent := filepath.Dir(cg)
	if err := makeCgroup(parent); err != nil {
		return err
	}
	if err := os.Mkdir(cg, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("cgroup %s: %w", cg, err)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(parent, f))
		if err != nil {
			continue // not a cpuset hierarchy
		}
		if err := os.WriteFile(filepath.Join(cg, f), b, 0o644); err != nil {
			return fmt.Errorf("cgroup %s: %s: %w", cg, f, err)
		}
	}
	return nil
}

// kubeletSysctls are the values kubelet v1.37 wants in /proc/sys. It
// writes each that differs, and these are not namespaced: on a shared
// machine a lab host must not turn on panic_on_oops for everyone. The lab
// binds files holding the wanted values over them (kubeletUnit), so the kubelet finds nothing to change and /proc/sys stays read-only.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// kubeletSysctlDir holds, in a kubelet host's root, one file per
// kubeletSysctls entry (slashes become dots).
const kubeletSysctlDir = "etc/gokube-lab/sysctl"

// kubeletUnitText is a unit that, before containerd or a kubelet starts,
// remounts the container's cgroup controllers writable (nspawn mounts them
// read-only; their superblocks are writable already, so only the bind
// mounts' flag changes) and binds the files of kubeletSysctls over /proc/sys.
// (nspawn's own --bind cannot: it resolves binds under /proc inside the
// container.)
func kubeletUnitText() string {
	keys := make([]string, 0, len(kubeletSysctls))
	for k := range kubeletSysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var binds strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&binds, "ExecStart=/bin/mount --bind -o ro /%s/%s /proc/sys/%s\n", kubeletSysctlDir, strings.ReplaceAll(k, "/", "."), k)
	}
	return `# Written by gokube lab for kubelet hosts.
[Unit]
Description=gokube lab: writable cgroup controllers and kubelet sysctls
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do case "$$d" in */systemd/|*/unified/) ;; *) mount -o remount,bind,rw "$$d" ;; esac; done'
` + binds.String() + `
[Install]
WantedBy=sysinit.target
`
}
