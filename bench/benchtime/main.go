// Command benchtime runs a command and writes its wall time, the peak
// memory of its whole process tree and its CPU time to a file:
//
//	benchtime -o FILE -- CMD ARGS...   writes "SECONDS PEAK_KB USER_S SYS_S"
//
// GNU time reports the largest single process of a tree; Ansible forks a
// worker per host and task, so the benchmark wants the tree's total. The
// tree (the command and every descendant) is sampled every 100 ms and its proportional set sizes (Pss, so
// pages the forked workers share count once) added up. CPU is the
// command's and its waited-for descendants' (rusage). Exit status is the
// command's.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	out := flag.String("o", "", "file to write \"SECONDS PEAK_KB USER_S SYS_S\" to")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: benchtime -o FILE -- CMD ARGS...")
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "benchtime:", err)
		os.Exit(127)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		if kb := treeKB(cmd.Process.Pid); kb > peak {
			peak = kb
		}
		select {
		case err = <-done:
			break loop
		case <-tick.C:
		}
	}
	elapsed := time.Since(start).Seconds()
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var user, sys float64
	if ru != nil {
		user = time.Duration(ru.Utime.Nano()).Seconds()
		sys = time.Duration(ru.Stime.Nano()).Seconds()
		// A tree that ends between two samples: the largest process's
		// own peak is a lower bound for the tree's.
		if rss := ru.Maxrss; rss > peak {
			peak = rss
		}
	}
	line := fmt.Sprintf("%.3f %d %.3f %.3f\n", elapsed, peak, user, sys)
	if werr := os.WriteFile(*out, []byte(line), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "benchtime:", werr)
		os.Exit(1)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
}

// treeKB is the summed Pss (RSS where smaps_rollup is unreadable) of root
// and its descendants, found through /proc/PID/task/TID/children (no scan
// of all of /proc: the sampler must not compete with what it measures).
func treeKB(root int) int64 {
	var total int64
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		total += procKB(pid)
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					stack = append(stack, c)
				}
			}
		}
	}
	return total
}

func procKB(pid int) int64 {
	p := "/proc/" + strconv.Itoa(pid)
	if f, err := os.Open(p + "/smaps_rollup"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb
			}
		}
	}
	b, err := os.ReadFile(p + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize()) / 1024
}
