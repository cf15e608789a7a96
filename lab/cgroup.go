package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every host gets a cgroup of its own, entered before systemd-nspawn runs.
// Without one, nspawn (--keep-unit, no systemd on this machine) puts every
// container's systemd into the same <own cgroup>/payload, where the
// containers create, kill and remove each other's unit cgroups: under load
// units fail with 219/CGROUP, logins stay refused and poweroffs hang.

const (
	cgroup2Magic = 0x63677270
	cgroup1Magic = 0x27e0eb
)

func fsMagic(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Type)
}

// cgroupRoots lists the hierarchies nspawn looks at for its own cgroup:
// the unified one (pure v2 at /sys/fs/cgroup, or hybrid's
// /sys/fs/cgroup/unified) and the v1 name=systemd one. Each host gets the
// same relative path in each.
func cgroupRoots() []string {
	if fsMagic("/sys/fs/cgroup") == cgroup2Magic {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	if fsMagic("/sys/fs/cgroup/unified") == cgroup2Magic {
		out = append(out, "/sys/fs/cgroup/unified")
	}
	if fsMagic("/sys/fs/cgroup/systemd") == cgroup1Magic {
		out = append(out, "/sys/fs/cgroup/systemd")
	}
	return out
}

// hostCgroups are the cgroups of one machine (names are unique across
// labs), one per hierarchy.
func hostCgroups(machine string) []string {
	var out []string
	for _, r := range cgroupRoots() {
		out = append(out, filepath.Join(r, "gokube-lab", machine))
	}
	return out
}

// cgroupProcs lists the PIDs in a cgroup and all its descendants.
func cgroupProcs(cg string) []int {
	var out []int
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// sweepCgroups kills whatever still runs in the host's cgroups (only
// processes of that host can be there) and removes the cgroup trees.
func sweepCgroups(cgs []string) error {
	for _, cg := range cgs {
		if err := sweepCgroup(cg); err != nil {
			return err
		}
	}
	return nil
}

func sweepCgroup(cg string) error {
	if _, err := os.Stat(cg); err != nil {
		return nil
	}
	for i := 0; i < 50; i++ {
		pids := cgroupProcs(cg)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pids := cgroupProcs(cg); len(pids) > 0 {
		return fmt.Errorf("cgroup %s: processes %v do not end", cg, pids)
	}
	var dirs []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	// Deepest first: a cgroup can only go when its children are gone.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
	if _, err := os.Stat(cg); err == nil {
		return fmt.Errorf("cgroup %s: cannot remove", cg)
	}
	return nil
}
