package modules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadNeeded judges probe outputs: any doubt reloads.
func TestReloadNeeded(t *testing.T) {
	head := func(needs, since, inputs string) string {
		return reloadNeedMark + "\n" + needs + reloadSinceMark + "\n" + since + reloadInputsMark + "\n" + inputs
	}
	unit := reloadUnitMark + "\nId=a.service\nLoadState=loaded\n"
	cases := []struct {
		name, out string
		need      bool
	}{
		{"nothing changed", head("no\nno\n", "UnitsLoadTimestamp=@200\n", "189 /etc/systemd/system\n50 /etc/fstab\n") + unit, false},
		{"a unit changed", head("no\nyes\n", "UnitsLoadTimestamp=@200\n", "99 /etc/systemd/system\n") + unit, true},
		{"within the margin", head("no\n", "UnitsLoadTimestamp=@200\n", "190 /etc/systemd/system\n") + unit, true},
		{"input newer", head("no\n", "UnitsLoadTimestamp=@200\n", "99 /etc/fstab\n201 /etc/systemd/system.conf\n"), true},
		{"no answer", head("", "UnitsLoadTimestamp=@200\n", "99 /etc/fstab\n"), true},
		{"no timestamp", head("no\n", "", "99 /etc/fstab\n"), true},
		{"garbled timestamp", head("no\n", "UnitsLoadTimestamp=Mon 2026\n", "99 /etc/fstab\n"), true},
		{"empty", "", true},
		{"written by the run", reloadWrittenMark + "\n/etc/systemd/system/a.service\n" + unit, true},
	}
	for _, c := range cases {
		need, why, u := reloadNeeded([]byte(c.out))
		if need != c.need {
			t.Errorf("%s: need=%v (%s), want %v", c.name, need, why, c.need)
		}
		if c.name == "nothing changed" && parseKV(u)["LoadState"] != "loaded" {
			t.Errorf("unit part lost: %q", u)
		}
	}
}

// TestReloadProbeAsksOncePerBatch: the reload probes of one batch (brace
// groups in one shell, as engine.runProbes writes them) ask systemd and
// stat once, and every probe prints the same answers.
func TestReloadProbeAsksOncePerBatch(t *testing.T) {
	run := countingShell(t, "systemctl", "stat")
	var batch strings.Builder
	for range 4 {
		batch.WriteString("{\n" + reloadProbe("") + "\n} </dev/null\n")
	}
	out, calls := run(batch.String())
	if calls != 3 {
		t.Errorf("4 reload probes in one batch started systemctl and stat %d times, want 3 (the first probe's)", calls)
	}
	parts := strings.Split(out, reloadQuestions()[0].mark+"\n")
	if len(parts) != 5 {
		t.Fatalf("want 4 probe outputs: %q", out)
	}
	for _, p := range parts[2:] {
		if p != parts[1] {
			t.Errorf("a later probe printed %q, the first %q", p, parts[1])
		}
	}
	// Separate requests (separate shells) each ask.
	if _, calls := run("{\n" + reloadProbe("") + "\n} </dev/null\n"); calls != 3 {
		t.Errorf("one probe: %d calls, want 3", calls)
	}
}

// TestReloadProbeSkipsTheSlowQuestion: when an input changed since the
// last reload (by the times the probe itself read), the probe answers
// without asking every unit's NeedDaemonReload, and the verdict is
// "reload"; when none did, it asks. A shell function stands in for
// systemd (there is none here) and counts the NeedDaemonReload questions.
func TestReloadProbeSkipsTheSlowQuestion(t *testing.T) {
	asked := filepath.Join(t.TempDir(), "asked")
	// A file, not a variable: the probe asks in a command substitution.
	fake := func(since string) string {
		return `systemctl() { case "$*" in *UnitsLoadTimestamp*) echo 'UnitsLoadTimestamp=@` + since + `';; *NeedDaemonReload*) echo >>` + shq(asked) + `; echo no;; esac; }
`
	}
	run := countingShell(t)
	cases := []struct {
		since string
		asked bool
		need  bool
	}{
		{"100", false, true},         // every input is newer than 10 s before the last reload
		{"99999999999", true, false}, // none is: systemd decides (and says no)
		{"not-a-time", true, true},   // unknown: asked, and any doubt reloads
	}
	for _, c := range cases {
		os.Remove(asked)
		out, _ := run(fake(c.since) + "{\n" + reloadProbe("") + "\n} </dev/null\n")
		_, err := os.Stat(asked)
		if (err == nil) != c.asked {
			t.Errorf("since %s: NeedDaemonReload asked %v, want %v:\n%s", c.since, err == nil, c.asked, out)
		}
		if need, why, _ := reloadNeeded([]byte(out)); need != c.need {
			t.Errorf("since %s: need %v (%s), want %v:\n%s", c.since, need, why, c.need, out)
		}
		if !c.asked && !strings.Contains(out, reloadNeedMark+"\n"+reloadInputsChanged+"\n") {
			t.Errorf("since %s: no %s answer:\n%s", c.since, reloadInputsChanged, out)
		}
	}
}

// TestReloadAnswersKeepTheProbe: the assignments ReloadAnswers makes from
// one reload probe's output, put before a later batch, make its reload
// probes print exactly the same without starting systemctl or stat (the
// unit's own show still asks).
func TestReloadAnswersKeepTheProbe(t *testing.T) {
	run := countingShell(t, "systemctl", "stat")
	probe := "{\n" + reloadProbe("etcd") + "\n} </dev/null 2>&1; true\n" // no systemd here: the show fails
	first, calls := run(probe)
	if calls != 4 {
		t.Fatalf("a reload probe with its unit: %d calls, want 4", calls)
	}
	known := ReloadAnswers([]byte(first))
	if !strings.Contains(known, "gk_rl_need=") || strings.Count(known, "\n") < 3 {
		t.Fatalf("answers %q from\n%s", known, first)
	}
	again, calls := run(known + probe)
	if calls != 1 {
		t.Errorf("with the answers known: %d calls, want 1 (the unit's show)", calls)
	}
	if again != first {
		t.Errorf("with the answers known the probe printed\n%s\nwant\n%s", again, first)
	}
	if ReloadAnswers([]byte("--- gokube need-daemon-reload\nno\n")) != "" {
		t.Error("answers from an incomplete output")
	}
	// After file writes only the last reload's time is known: the probe
	// asks the rest (stat and the unit's show; with no systemd here the
	// inputs' answer leaves the need question to systemctl too) and
	// prints the same.
	since := ReloadSince([]byte(first))
	if !strings.HasPrefix(since, "gk_rl_since=") || strings.Count(since, "\n") != 1 {
		t.Fatalf("since %q", since)
	}
	again, calls = run(since + probe)
	if calls != 3 {
		t.Errorf("with the last reload known: %d calls, want 3", calls)
	}
	if again != first {
		t.Errorf("with the last reload known the probe printed\n%s\nwant\n%s", again, first)
	}
}

// TestReloadWrittenAsksNothing: with a reload input said written by the
// run (ReloadWritten before the batch), a reload probe starts neither
// systemctl for the last reload nor stat for the inputs: only the unit's
// own show runs, the verdict is "reload", and nothing of it is kept as
// the batch's answers. ReloadInput names what counts.
func TestReloadWrittenAsksNothing(t *testing.T) {
	run := countingShell(t, "systemctl", "stat")
	probe := "{\n" + reloadProbe("etcd") + "\n} </dev/null 2>&1; true\n"
	out, calls := run(ReloadWritten("/etc/systemd/system/etcd.service") + probe)
	if calls != 1 {
		t.Errorf("with a unit file written: %d calls, want 1 (the unit's show)", calls)
	}
	need, why, _ := reloadNeeded([]byte(out))
	if !need || !strings.Contains(why, "/etc/systemd/system/etcd.service") {
		t.Errorf("need %v (%s):\n%s", need, why, out)
	}
	if ReloadAnswers([]byte(out)) != "" {
		t.Errorf("answers kept from a probe that asked nothing:\n%s", out)
	}
	for p, want := range map[string]bool{
		"/etc/systemd/system/etcd.service":                      true,
		"/etc/systemd/system/etcd.service.d/10-x.conf":          true,
		"/etc/systemd/system/multi-user.target.wants/a.service": true,
		"/lib/systemd/system/kubelet.service":                   true,
		"/etc/fstab":                                            true,
		"/etc/init.d/x":                                         true,
		"/etc/systemd/system.conf.d/x.conf":                     true,
		"/etc/systemd/systemx":                                  false,
		"/etc/kubernetes/manifests/a.yaml":                      false,
		"/etc/fstab.d":                                          false,
		"/opt/gkbench/conf/app.conf":                            false,
	} {
		if ReloadInput(p) != want {
			t.Errorf("ReloadInput(%s) = %v, want %v", p, !want, want)
		}
	}
}
