package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWarmRunRoundTrips runs the benchmark's 31 tasks on 3 lab hosts cold
// (after bench/reset.yml) and warm, and asserts that the warm run changes
// nothing and costs at most 9 round trips per host, SSH handshake
// included, and what each run starts on a host (coldRunSpawns,
// warmRunSpawns). Counts, not timings.
func TestWarmRunRoundTrips(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "bench", map[string][]int{"bench": {4, 5, 6}})
	pb := filepath.Join(e.root, "bench/gokube/site.yml")
	if r := e.play(t, ctx, "-i", inv, filepath.Join(e.root, "bench/reset.yml")); r.code != 0 {
		t.Fatalf("reset: exit %d\n%s", r.code, r.out)
	}
	host := e.lab.Hosts()[3]
	stop := traceExecs(t, host)
	cold, err := exec.CommandContext(ctx, e.bin, "play", "-i", inv, pb, "--output", "json").Output()
	if err != nil {
		t.Fatalf("cold run: %v\n%s", err, cold)
	}
	coldRunSpawns(t, stop())
	// Nothing of the run outlives it: the rename helper ended with its
	// session, and no temp file or FIFO of the session is left.
	// (The helper ends at its input's end, just after its session: the
	// wait only stops a hang.)
	for i := 4; i <= 6; i++ {
		var out string
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out, err = e.ssh(t, i, "pgrep -a perl; ls -a ${TMPDIR:-/tmp} | grep gokube; true"); err == nil && strings.TrimSpace(out) == "" {
				break
			}
		}
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("host %d after the cold run: %q %v", i, out, err)
		}
	}
	// The cold run's round trips: the connection (handshake, session,
	// 8) and the first batch; the group, the user and the 19 file changes
	// in one pipeline, with the batch the file modes need behind them; the
	// unit's start with the next batch behind it; the command with the
	// last batch behind it: 12. 36 before pipelines, 18 before the
	// batches went behind the changes and registered results and accounts
	// were foreseen.
	var coldRep struct {
		Hosts map[string]struct {
			Changed    int `json:"changed"`
			RoundTrips int `json:"round_trips"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(cold, &coldRep); err != nil || len(coldRep.Hosts) != 3 {
		t.Fatalf("cold run's json output: %v\n%s", err, cold)
	}
	for h, s := range coldRep.Hosts {
		t.Logf("%s: cold run changed=%d round_trips=%d", h, s.Changed, s.RoundTrips)
		if s.Changed != 23 || s.RoundTrips > 12 {
			t.Errorf("%s: cold run changed=%d in %d round trips, want 23 in at most 12", h, s.Changed, s.RoundTrips)
		}
	}
	// The hash cache records a file only once its ctime is 2 s old (see
	// modules.hashCacheRead): after this, the warm run records them all.
	time.Sleep(2100 * time.Millisecond)
	out, err := exec.CommandContext(ctx, e.bin, "play", "-i", inv, pb, "--output", "json").Output()
	if err != nil {
		t.Fatalf("warm run: %v\n%s", err, out)
	}
	// A second warm run, the steady state, counts the processes.
	stop = traceExecs(t, host)
	if r := e.play(t, ctx, "-i", inv, pb); r.code != 0 {
		t.Fatalf("second warm run: exit %d\n%s", r.code, r.out)
	}
	warmRunSpawns(t, stop())
	var rep struct {
		Hosts map[string]struct {
			Ok         int `json:"ok"`
			Changed    int `json:"changed"`
			RoundTrips int `json:"round_trips"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if len(rep.Hosts) != 3 {
		t.Fatalf("want 3 hosts in the report, got %d: %s", len(rep.Hosts), out)
	}
	for h, s := range rep.Hosts {
		t.Logf("%s: ok=%d changed=%d round_trips=%d", h, s.Ok, s.Changed, s.RoundTrips)
		if s.Changed != 0 {
			t.Errorf("%s: warm run changed=%d", h, s.Changed)
		}
		if s.RoundTrips == 0 || s.RoundTrips > 9 {
			t.Errorf("%s: %d round trips for a warm run of 31 tasks, want 1..9 (issue 14 asks for at most 12)", h, s.RoundTrips)
		}
	}
}

// probePrograms are what probes and the request protocol start: they
// decide, they change nothing.
var probePrograms = map[string]bool{
	"request": true, "base64": true, "mktemp": true, "rm": true, // protocol: script shell, output, temp dir, the end
	"stat batch": true, "stat": true, "sha256sum": true, "sha1sum": true, "readlink": true, // file probes
	"getent": true, "id": true, "systemctl show": true, // user, group, unit probes
}

// coldRunSpawns: in the cold run every task changes something, and each
// change starts at most what the change itself is (sh has no builtin for
// any of these); the session's helper (perl, started with its two FIFOs
// at the first change that can use it: mkfifo and perl) does the small
// ones in its own process:
//   - a file (6 copies, 4 templates, 2 lineinfile, 1 blockinfile): the
//     rename of its complete temp file over the name, plus chgrp where
//     the task names a group (file 3): the helper's; content, mode (a
//     umask) and the noclobber create are shell builtins: no cat, no
//     chmod, no base64 -d (an mv each and chgrp before the helper);
//   - a directory (4): mkdir -p -m MODE, or install -d -m MODE with the
//     owner (data, log) or the group (conf) the task names: the helper's
//     (a process each before, mkdir and chown or chgrp before that);
//   - a link (2): ln -s: the helper's;
//   - the unit: enable -q --now (one systemctl for enable and start;
//     enable reloads systemd itself, so the daemon-reload its new file
//     asks for is that one; -q: the links it lists would come back
//     through base64);
//   - the user and group: useradd, groupadd; the command: touch.
//
// Probes are not changes; a change of a path leaves the batched probes of
// unrelated paths standing, a directory made empty those of the paths
// below it (absent before, absent after), and an account change (the
// group, the user without a home) those of absent paths, of paths owned
// by named accounts (when the change only added accounts), of accounts
// that were absent and of the units, so the run costs one probe batch per
// change that may affect what follows (a file a later task looks at
// again, the unit, the command), not one per changed task: 4 batches, 5
// before account additions kept the user's and the units' probes, 8
// before new directories and account changes kept what they cannot
// change.
func coldRunSpawns(t *testing.T, execs []execRec) {
	t.Helper()
	session, progs, lines := runExecs(t, execs)
	want := map[string]int{
		"mkfifo": 1, "perl": 1,
		"systemctl enable": 1, "useradd": 1, "groupadd": 1, "touch": 1,
	}
	changes := map[string]int{}
	probes := 0
	for name, n := range progs {
		if probePrograms[name] {
			probes += n
		} else {
			changes[name] = n
		}
	}
	t.Logf("cold run: session %d processes, changes %v, probes and protocol %d (%d requests, %d probe batches)", session, changes, probes, progs["request"], progs["stat batch"])
	bad := len(changes) != len(want)
	for name, n := range want {
		if changes[name] != n {
			bad = true
		}
	}
	if bad {
		t.Errorf("cold run started %v beyond its probes, want exactly %v:\n%s", changes, want, strings.Join(lines, "\n"))
	}
	// Every probe batch with a file probe stats once, a batch of one path
	// included (its declarations share the stat, the hash cache may answer
	// its checksum).
	// Probes and the protocol: 9 on 2026-12-02: the 4 stat batches, 3
	// systemctl show (the units before the unit file, after it, ssh after
	// gkbench's start), the stat task's sha1sum of a file written seconds
	// ago, the command's own shell. 14 before the lab's files-only
	// nsswitch.conf made a name absent from /etc/passwd absent without
	// getent (2), the unit file this run wrote decided the daemon-reload
	// without asking when the last one was and the unit directories'
	// times (systemctl show, stat -c), and the session's end removed its
	// temp files through the rename helper (rm). 17 before the
	// user's probe stopped asking id about a user getent does not know and
	// enable printed no links to encode, 21 before account additions kept
	// the user's and the units' probes, 29 before the evening's, 74 before
	// requests became subshells streaming their output (a script shell and
	// base64 per request).
	if probes > 9 {
		t.Errorf("cold run: %d processes for probes and the protocol, want at most 9:\n%s", probes, strings.Join(lines, "\n"))
	}
	for _, name := range []string{"getent", "id", "rm", "stat"} {
		if progs[name] != 0 {
			t.Errorf("cold run started %s %d times: want none (accounts from the files, the reload decided by the unit file written, the end's removal through the helper)", name, progs[name])
		}
	}
	if progs["systemctl show"] > 3 {
		t.Errorf("cold run: %d systemctl show, want at most 3", progs["systemctl show"])
	}
	if progs["stat batch"] > 4 {
		t.Errorf("cold run: %d probe batches, want at most 4 (one per change that may affect later probes)", progs["stat batch"])
	}
}

// warmRunSpawns: nothing changes, so the run starts only probes and the
// protocol's processes: one stat for the one probe batch (a result
// registered in the batch is taken to be unchanged, so the batch runs
// through), one systemctl show for both units, one rm at the end for the
// locks and the temp files. No checksum process: the hash cache answers
// the copies' sha256 and the stat task's sha1. No request of its own for
// the command task: the batch's file probes answer its creates= guard.
// It was 24 on 2026-12-01 before gokube's own requests became subshells
// streaming their output and the temp files, accounts, link targets and
// small files' contents were read with builtins, and 6 before the guard
// and the sha1 were answered by the batch. Issue 14 asks for 3.
func warmRunSpawns(t *testing.T, execs []execRec) {
	t.Helper()
	session, progs, lines := runExecs(t, execs)
	n := 0
	for name, c := range progs {
		if !probePrograms[name] {
			t.Errorf("warm run started %s %d times: a change", name, c)
		}
		n += c
	}
	t.Logf("warm run: session %d processes, then %d: %v", session, n, progs)
	if n > 3 {
		t.Errorf("warm run started %d processes besides its session, want at most 3:\n%s", n, strings.Join(lines, "\n"))
	}
	for _, name := range []string{"sha256sum", "sha1sum"} {
		if progs[name] != 0 {
			t.Errorf("warm run hashed files (%d %s): the hash cache should answer", progs[name], name)
		}
	}
	if progs["request"] != 0 || progs["base64"] != 0 {
		t.Errorf("warm run sent a request of its own (%d shells, %d base64): the creates= guard should be answered by the probe batch", progs["request"], progs["base64"])
	}
}
