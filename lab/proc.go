package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc identifies a process the lab started. The start time (in clock
// ticks since boot, field 22 of /proc/PID/stat) guards against PID reuse:
// a PID whose start time differs is someone else's process and is never
// signalled.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// procStat returns the state letter, parent PID and start time of pid.
func procStat(pid int) (state byte, ppid int, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// comm (field 2) may contain spaces and parentheses: parse after the
	// last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return f[0][0], ppid, start, nil
}

func procOf(pid int) (Proc, error) {
	_, _, st, err := procStat(pid)
	if err != nil {
		return Proc{}, err
	}
	return Proc{PID: pid, Start: st}, nil
}

// Alive reports whether the recorded process still runs (a zombie counts
// as gone: it holds no resources but its PID).
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, _, st, err := procStat(p.PID)
	if err != nil || st != p.Start {
		return false
	}
	if state == 'Z' || state == 'X' {
		// Reap it if it is our child (tests keep one process alive for
		// long); harmless ECHILD otherwise.
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(p.PID, &ws, syscall.WNOHANG, nil)
		return false
	}
	return true
}

// Signal sends sig only if the PID still belongs to the recorded process.
func (p Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// Wait polls until the process is gone, the timeout passes or ctx ends.
// It reports whether the process is gone.
func (p Proc) Wait(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !p.Alive() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// children lists the direct children of the process, read from
// /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN) with a scan of
// /proc as fallback.
func (p Proc) children() []Proc {
	if !p.Alive() {
		return nil
	}
	var out []Proc
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(p.PID) + "/task")
	found := false
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		found = true
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				if c, err := procOf(pid); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	if found {
		return out
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, st, err := procStat(pid); err == nil && ppid == p.PID {
			out = append(out, Proc{PID: pid, Start: st})
		}
	}
	return out
}

// nspawnOf returns the PID of a live systemd-nspawn (or the shell about to
// become one) that runs machine, or 0. It reads every process's argv, so it
// also finds a machine another lab directory or a hand-started nspawn runs.
func nspawnOf(machine string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if runsMachine(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), machine) {
			return pid
		}
	}
	return 0
}

// runsMachine reports whether argv starts systemd-nspawn for machine.
func runsMachine(argv []string, machine string) bool {
	nspawn, named := false, false
	for i, a := range argv {
		if a == "systemd-nspawn" || strings.HasSuffix(a, "/systemd-nspawn") {
			nspawn = true
		}
		if ((a == "-M" || a == "--machine") && i+1 < len(argv) && argv[i+1] == machine) || a == "--machine="+machine {
			named = true
		}
	}
	return nspawn && named
}
