package lab

// What a kubelet and its container runtime need from a lab host that the
// other hosts do without. Measured with kubelet v1.37.2 on these machines'
// cgroup v1 hierarchy: it reads /dev/kmsg (the OOM watcher), writes
// kernel/panic_on_oops and vm/overcommit_memory under /proc/sys, and creates
// the pods' cgroups in every controller; runc mounts, pivots and sets up
// namespaces and keyrings for each container.

// kubeletNspawnEnv is added to systemd-nspawn's environment: the API file
// systems (/proc/sys, /sys, the cgroup controllers) mounted writable.
var kubeletNspawnEnv = []string{"SYSTEMD_NSPAWN_API_VFS_WRITABLE=1"}

// kubeletNspawnArgs are added to systemd-nspawn's arguments.
func kubeletNspawnArgs() []string {
	return []string{
		"--bind=/dev/kmsg",
		// runc and containerd need capabilities nspawn keeps from its
		// containers by default (e.g. CAP_SYS_MODULE probes, CAP_SYSLOG for
		// /dev/kmsg), and system calls its filter refuses (keyctl for the
		// session keyring of every container).
		"--capability=all",
		"--system-call-filter=@keyring @privileged bpf",
	}
}
