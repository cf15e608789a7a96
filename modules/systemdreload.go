package modules

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Skipping a daemon-reload that cannot change anything.
//
// Ansible reloads every time daemon_reload is asked for. A reload costs a
// second or more on a loaded host (systemd re-runs every generator and
// re-reads every unit) and it is most of a warm run's host time, so gokube
// first asks whether the reload could change what systemd knows:
//
//   - NeedDaemonReload of every loaded unit: systemd compares each unit's
//     file, its drop-ins (added, removed or changed) and a generated unit's
//     source (SourcePath: /etc/fstab, /etc/crypttab, an init script) with
//     what it loaded;
//   - the inputs that NeedDaemonReload does not cover, compared with the
//     last reload (UnitsLoadTimestamp, the only manager timestamp systemd
//     252 updates on a reload; it is taken late in the reload, so anything
//     changed less than reloadMargin before it counts as changed): the unit
//     directories (a new or removed unit file, a new .wants/.requires link),
//     system.conf and its drop-ins (a reload re-reads them), the generator
//     directories, /etc/fstab, /etc/crypttab and /etc/init.d (generators
//     that would make new units).
//
// When no unit needs a reload and none of those paths changed since the
// last one started, a reload would load exactly what systemd already has:
// skipping it is indistinguishable to the user, and the task reports ok
// with data.daemon_reload = "skipped". Any doubt (systemctl's answer
// missing, a timestamp that does not parse, a path changed within
// reloadMargin of the last reload) means the reload runs, as before.
// Timestamps are compared in whole seconds, rounded towards reloading.
// The one case this cannot see: a reload that itself took longer than
// reloadMargin while one of those paths (not a loaded unit's file) was
// written during it.

// reloadMargin is how long before the last reload's timestamp a change
// still counts as after it.
const reloadMargin = 10

// reloadInputs are the paths a reload reads that NeedDaemonReload does not
// track; globs are expanded by the host's shell.
var reloadInputs = []string{
	"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system", "/lib/systemd/system",
	"/etc/systemd/system/*.wants", "/etc/systemd/system/*.requires",
	"/etc/systemd/system.conf", "/etc/systemd/system.conf.d", "/run/systemd/system.conf.d",
	"/usr/lib/systemd/system.conf.d", "/lib/systemd/system.conf.d",
	"/etc/systemd/system-generators", "/run/systemd/system-generators",
	"/usr/local/lib/systemd/system-generators", "/usr/lib/systemd/system-generators",
	"/lib/systemd/system-generators", "/usr/lib/systemd/system-environment-generators",
	"/etc/fstab", "/etc/crypttab", "/etc/init.d",
}

const (
	reloadWrittenMark = "--- gokube written-since-reload"
	reloadWrittenVar  = "gk_rl_written"
	reloadNeedMark    = "--- gokube need-daemon-reload"
	reloadSinceMark   = "--- gokube last-reload"
	reloadInputsMark  = "--- gokube reload-inputs"
	reloadUnitMark    = "--- gokube unit"
)

// reloadProbe is a read-only script whose output reloadNeeded judges; the
// unit's systemctl show follows when name is set. The three answers are
// the same for every unit of a probe batch (one shell, read-only, nothing
// changes while it runs), so the first probe asks and the others print what
// it kept in shell variables: the NeedDaemonReload of every loaded unit
// alone takes ~0.5 s on a loaded lab host, and a loop over four units (the
// masters' components) asked it four times.
func reloadProbe(name string) string {
	stat := "stat -c '%Y %n' --"
	for _, p := range reloadInputs {
		if strings.Contains(p, "*") {
			stat += " " + p // the shell expands it; an unmatched glob is left to fail quietly
		} else {
			stat += " " + shq(p)
		}
	}
	var b strings.Builder
	b.WriteString("if [ -n \"${" + reloadWrittenVar + ":-}\" ]; then echo '" + reloadWrittenMark + "'; printf '%s\\n' \"$" + reloadWrittenVar + "\"; else\n")
	for _, q := range reloadQuestions() {
		switch q.v {
		case "gk_rl_inputs":
			q.cmd = stat
		case "gk_rl_need":
			q.cmd = needUnlessInputsChanged(q.cmd)
		}
		fmt.Fprintf(&b, "echo '%s'\n[ -n \"${%s+x}\" ] || %s=$(%s 2>/dev/null)\nprintf '%%s\\n' \"$%s\"\n", q.mark, q.v, q.v, q.cmd, q.v)
	}
	b.WriteString("fi\n")
	if name != "" {
		b.WriteString("echo '" + reloadUnitMark + "'\n" + probeShowScript(name))
	}
	return b.String()
}

// reloadQuestion is one of the reload probe's three questions: the line
// that starts its answer, the batch variable that keeps it, the command
// that asks ("" for the inputs' stat, built by reloadProbe).
type reloadQuestion struct{ mark, v, cmd string }

// The cheap questions come first: when an input already changed since the
// last reload (a unit file just written is renamed into its directory),
// the reload is needed whatever the units say, and their NeedDaemonReload,
// the slow question (~0.25 s on an idle lab host, one D-Bus call per
// loaded unit), is not asked.
func reloadQuestions() []reloadQuestion {
	return []reloadQuestion{
		{reloadSinceMark, "gk_rl_since", "systemctl show -p UnitsLoadTimestamp --timestamp=unix"},
		{reloadInputsMark, "gk_rl_inputs", ""},
		{reloadNeedMark, "gk_rl_need", "systemctl show -p NeedDaemonReload --value -- '*'"},
	}
}

// reloadInputsChanged is what the need question answers instead of asking
// systemd when the inputs' times already call for a reload.
const reloadInputsChanged = "inputs-changed"

// needUnlessInputsChanged wraps the NeedDaemonReload question: the same
// comparison as reloadNeeded's (an input changed at or after reloadMargin
// before the last reload), in the shell that has the answers, so that
// systemd is asked only when it can decide.
func needUnlessInputsChanged(ask string) string {
	return `gk_rs=${gk_rl_since#UnitsLoadTimestamp=@}; gk_rx=
case $gk_rs in ''|*[!0-9]*) ;; *) while read -r gk_rt gk_rp; do case $gk_rt in ''|*[!0-9]*) ;; *) if [ "$gk_rt" -ge $((gk_rs - ` + strconv.Itoa(reloadMargin) + `)) ]; then gk_rx=1; fi;; esac; done <<GK_RL_EOF
$gk_rl_inputs
GK_RL_EOF
;; esac
if [ -n "$gk_rx" ]; then echo ` + reloadInputsChanged + `; else ` + ask + `; fi`
}

// reloadNeeded judges reloadProbe's output: whether a daemon-reload could
// change anything, why, and the unit's show output (after the unit mark).
func reloadNeeded(out []byte) (need bool, why string, unit []byte) {
	sections, unit := reloadSections(out)
	for mark, lines := range sections {
		sections[mark] = slices.DeleteFunc(lines, func(l string) bool { return l == "" })
	}
	if w := sections[reloadWrittenMark]; len(w) > 0 {
		return true, w[0] + " was written by this run since the last reload", unit
	}
	since := sections[reloadSinceMark]
	var start int64 = -1
	if len(since) == 1 {
		if v, ok := strings.CutPrefix(since[0], "UnitsLoadTimestamp=@"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				start = n
			}
		}
	}
	if start < 0 {
		return true, "the last reload's time is unknown", unit
	}
	for _, line := range sections[reloadInputsMark] {
		ts, p, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || n >= start-reloadMargin {
			return true, p + " changed since the last reload", unit
		}
	}
	needs, ok := sections[reloadNeedMark]
	if !ok || len(needs) == 0 {
		return true, "systemd did not say whether a unit needs a reload", unit
	}
	for _, v := range needs {
		if v != "no" {
			return true, "a unit's file or drop-ins changed", unit
		}
	}
	return false, "no unit file, drop-in or generator input changed since the last reload", unit
}

// ReloadAnswers returns, from a probe batch's output of one reload probe,
// shell assignments of the batch variables that keep its three answers
// (NeedDaemonReload of every unit, the last reload's time, the inputs'
// times), or "" when the output does not hold all three. Put before a later
// batch, they make its reload probes print those answers without asking
// systemd again: valid for as long as nothing changed on the host since
// (the executor drops them on any change, as it drops cached probes). The
// HA example's masters asked twice per run, once per play, ~0.5 s each on
// a loaded host.
func ReloadAnswers(out []byte) string {
	sections, _ := reloadSections(out)
	var b strings.Builder
	for _, q := range reloadQuestions() {
		lines, ok := sections[q.mark]
		if !ok {
			return ""
		}
		fmt.Fprintf(&b, "%s=%s\n", q.v, shq(strings.Join(lines, "\n")))
	}
	return b.String()
}

// ReloadSince is the part of ReloadAnswers that only a reload changes:
// the last reload's time. A change made of file writes keeps it true,
// while the inputs' times and the units' answers are asked again.
func ReloadSince(out []byte) string {
	sections, _ := reloadSections(out)
	lines, ok := sections[reloadSinceMark]
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s=%s\n", reloadQuestions()[0].v, shq(strings.Join(lines, "\n")))
}

// reloadSections splits reloadProbe's output into its answers, each the
// lines after its mark (blank ones kept: an answer is the variable's text,
// which printf ended with one newline), and the unit's show output.
func reloadSections(out []byte) (sections map[string][]string, unit []byte) {
	text, unitPart, hasUnit := strings.Cut(string(out), reloadUnitMark+"\n")
	if hasUnit {
		unit = []byte(unitPart)
	}
	sections = map[string][]string{}
	cur := ""
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "--- gokube ") {
			cur = line
			sections[cur] = []string{}
			continue
		}
		if cur != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	return sections, unit
}

// A reload input written by this run: the reload is needed whatever
// systemd would answer, so the executor says so before the batch
// (ReloadWritten) and the probe asks systemd nothing but the unit's
// state. A cold run writes a unit file and then asks for the reload that
// it needs: the last reload's time (a systemctl, ~30 ms on a busy host)
// and the inputs' times (a stat) were asked only to confirm it. Reloading
// is what Ansible always does, so a path recorded wrongly (a reload
// happened since by a means the executor did not see) costs a reload, not
// a wrong answer; the executor forgets the paths at any change it cannot
// account for, the reload's own included.

// ReloadInput says whether writing p may change what a daemon-reload
// loads: p is one of reloadInputs or lies below one (a unit file, a
// drop-in, a .wants link, a generator).
func ReloadInput(p string) bool {
	p = path.Clean(p)
	for _, in := range reloadInputs {
		if strings.Contains(in, "*") {
			continue // below /etc/systemd/system, which is an input itself
		}
		if p == in || strings.HasPrefix(p, in+"/") {
			return true
		}
	}
	return false
}

// ReloadWritten is the shell text that, put before a probe batch, makes
// its reload probes answer that p, a reload input, was written since the
// last reload.
func ReloadWritten(p string) string {
	return reloadWrittenVar + "=" + shq(p) + "\n"
}
