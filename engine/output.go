package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// HostStats are one host's counts for the recap.
type HostStats struct {
	Ok          int   `json:"ok"`
	Changed     int   `json:"changed"`
	Unreachable int   `json:"unreachable"`
	Failed      int   `json:"failed"`
	Skipped     int   `json:"skipped"`
	Rescued     int   `json:"rescued"`
	Ignored     int   `json:"ignored"`
	RoundTrips  int64 `json:"round_trips"`
}

// TaskTime is how long a task took across all hosts (first start to last end).
type TaskTime struct {
	Name     string        `json:"name"`
	Pos      Pos           `json:"-"`
	Duration time.Duration `json:"duration_ns"`
	start    time.Time
}

// Event is one task result on one host, in completion order.
type Event struct {
	Host   string `json:"host"`
	Task   string `json:"task"`
	Status string `json:"status"`
	// For the timeline: when the task ran on the host (from the start of
	// the run; waiting for a fork slot excluded), the network round trips
	// and bytes of the host's connection meanwhile, whether it was a
	// handler, and the play and serial batch (from 0) it ran in.
	Start      time.Duration `json:"start_ns"`
	End        time.Duration `json:"end_ns"`
	RoundTrips int64         `json:"round_trips"`
	Bytes      int64         `json:"bytes"`
	Handler    bool          `json:"handler,omitempty"`
	Play       string        `json:"play"`
	Batch      int           `json:"batch"`
}

// Recap is the result of a run.
type Recap struct {
	Hosts     map[string]*HostStats `json:"stats"`
	HostOrder []string              `json:"-"`
	// Vars holds each host's registered and set_fact variables at the end.
	Vars        map[string]map[string]any `json:"-"`
	Events      []Event                   `json:"-"`
	Slowest     []TaskTime                `json:"slowest"`
	Duration    time.Duration             `json:"duration_ns"`
	Interrupted bool                      `json:"interrupted,omitempty"`
	// failures is each host's last failure (failed or unreachable), for
	// the RunError's joined cause.
	failures map[string]*HostError
}

// ExitCode follows Ansible: 4 when a host was unreachable, else 2 when one
// failed, 0 otherwise; 99 when the run was interrupted.
func (r *Recap) ExitCode() int {
	if r.Interrupted {
		return ExitInterrupted
	}
	code := 0
	for _, s := range r.Hosts {
		if s.Unreachable > 0 {
			return 4 // as Ansible: an unreachable host outranks a failed one
		}
		if s.Failed > 0 {
			code = 2
		}
	}
	return code
}

// ExitInterrupted is the exit code of a run stopped by Ctrl-C or SIGTERM,
// Ansible's code for a user interrupt (1 is bad input).
const ExitInterrupted = 99

func (r *Recap) err(ctx context.Context) error {
	if ctx.Err() != nil {
		return &RunError{Code: ExitInterrupted, Msg: "interrupted", Err: ctx.Err()}
	}
	switch r.ExitCode() {
	case 2:
		return &RunError{Code: 2, Msg: "one or more hosts failed", Err: r.hostErrors()}
	case 4:
		return &RunError{Code: 4, Msg: "one or more hosts were unreachable", Err: r.hostErrors()}
	}
	return nil
}

// hostErrors joins, in inventory order, the failure of every host the
// recap counts as failed or unreachable (a rescued failure is not one).
func (r *Recap) hostErrors() error {
	var errs []error
	for _, h := range r.HostOrder {
		s, e := r.Hosts[h], r.failures[h]
		if s != nil && e != nil && (s.Failed > 0 || s.Unreachable > 0) {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

type reporter interface {
	playStart(pl *Play)
	hostResult(t *Task, host string, o *outcome, handler bool)
	retry(t *Task, host string, attempt, retries int)
	progress(t *Task, host string, elapsed time.Duration, moved int64)
	warn(msg string)
	recap(r *Recap)
}

const (
	cReset  = "\x1b[0m"
	cGreen  = "\x1b[32m"
	cYellow = "\x1b[33m"
	cRed    = "\x1b[31m"
	cCyan   = "\x1b[36m"
	cPurple = "\x1b[35m"
)

type textReporter struct {
	mu      sync.Mutex
	w       io.Writer
	color   bool
	verbose int
	noTime  bool
	diff    bool
	last    *Task

	prog     map[*Task]map[string]hostProgress
	progAt   time.Time
	progTask *Task
	every    time.Duration
}

// hostProgress is how long a host has been running a task and the bytes
// its connection moved meanwhile.
type hostProgress struct {
	elapsed time.Duration
	moved   int64
}

func newTextReporter(w io.Writer, color bool, verbose int, noTime, diff bool, every time.Duration) *textReporter {
	return &textReporter{w: w, color: color, verbose: verbose, noTime: noTime, diff: diff, every: every}
}

func (t *textReporter) c(code, s string) string {
	if !t.color {
		return s
	}
	return code + s + cReset
}

func banner(s string) string {
	if n := 79 - len(s); n > 3 {
		return s + " " + strings.Repeat("*", n-1)
	}
	return s + " ***"
}

func (t *textReporter) playStart(pl *Play) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = nil
	fmt.Fprintf(t.w, "\n%s\n", banner("PLAY ["+pl.Name+"]"))
}

func (t *textReporter) warn(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s\n", t.c(cPurple, "[WARNING]: "+msg))
}

func (t *textReporter) retry(task *Task, host string, attempt, retries int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.header(task, false)
	fmt.Fprintf(t.w, "%s\n", t.c(cYellow, fmt.Sprintf("FAILED - RETRYING: [%s]: %s (%d retries left).", host, task.Display(), retries-attempt+1)))
}

// progress prints one line per task and interval listing the hosts still
// running it, so a long wait does not look like a hang; hosts moving data
// (an upload of a large file) show the bytes and the rate.
func (t *textReporter) progress(task *Task, host string, elapsed time.Duration, moved int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prog == nil {
		t.prog = map[*Task]map[string]hostProgress{}
	}
	m := t.prog[task]
	if m == nil {
		m = map[string]hostProgress{}
		t.prog[task] = m
	}
	m[host] = hostProgress{elapsed, moved}
	if time.Since(t.progAt) < t.every/2 && t.progTask == task {
		return
	}
	t.progAt, t.progTask = time.Now(), task
	running := map[string]hostProgress{}
	for h, p := range m {
		if p.elapsed >= elapsed-t.every {
			running[h] = p
		}
	}
	fmt.Fprintln(t.w, t.c(cCyan, progressLine(task.Display(), elapsed, running)))
}

// movingBytes is from when a host's progress shows its bytes: below it a
// task is talking, not transferring.
const movingBytes = 256 << 10

// progressLine is "  ... TASK still running on a, b (12s)", followed by
// "; a: 40.0 MiB at 3.3 MiB/s" for each host moving data.
func progressLine(task string, elapsed time.Duration, hosts map[string]hostProgress) string {
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	line := fmt.Sprintf("  ... %s still running on %s (%s)", task, strings.Join(names, ", "), elapsed.Round(time.Second))
	for _, h := range names {
		p := hosts[h]
		if p.moved < movingBytes || p.elapsed <= 0 {
			continue
		}
		line += fmt.Sprintf("; %s: %s at %s/s", h, humanBytes(p.moved), humanBytes(int64(float64(p.moved)/p.elapsed.Seconds())))
	}
	return line
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (t *textReporter) header(task *Task, handler bool) {
	if t.last == task {
		return
	}
	t.last = task
	kind := "TASK"
	if handler {
		kind = "RUNNING HANDLER"
	}
	fmt.Fprintf(t.w, "\n%s\n", banner(kind+" ["+task.Display()+"]"))
}

func (t *textReporter) hostResult(task *Task, host string, o *outcome, handler bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.header(task, handler)
	hostTag := "[" + host + "]"
	if o.delegate != "" {
		hostTag = "[" + host + " -> " + o.delegate + "]"
	}
	if len(o.items) > 0 {
		for _, it := range o.items {
			t.line(task, hostTag+" => (item="+it.label+")", it.status, false, it.msg, it.diff, it.output)
		}
		if o.status == stFailed || o.status == stUnreachable {
			t.line(task, hostTag, o.status, o.ignored, o.msg, "", nil)
		}
		return
	}
	msg := o.msg
	if o.status == stFailed && !o.redacted {
		msg += failDetail(o.data)
	}
	if t.verbose >= 2 && !o.redacted && o.data != nil && o.output == nil {
		if b, err := json.MarshalIndent(o.data, "    ", "  "); err == nil {
			msg += "\n    " + string(b)
		}
	}
	t.line(task, hostTag, o.status, o.ignored, msg, o.diff, o.output)
}

// failDetail adds a failed command's output to its message: the reason a
// task failed is usually there.
func failDetail(d map[string]any) string {
	var b strings.Builder
	if rc, ok := d["rc"]; ok {
		fmt.Fprintf(&b, " (rc %v)", rc)
	}
	for _, k := range []string{"stderr", "stdout"} {
		v, _ := d[k].(string)
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		lines := strings.Split(v, "\n")
		if len(lines) > 20 {
			lines = append(lines[:10], append([]string{"..."}, lines[len(lines)-9:]...)...)
		}
		fmt.Fprintf(&b, "\n  %s:\n    %s", k, strings.Join(lines, "\n    "))
	}
	return b.String()
}

func (t *textReporter) line(task *Task, hostTag string, st status, ignored bool, msg, diff string, output any) {
	switch st {
	case stOK:
		s := "ok: " + hostTag
		if text, ok := output.(string); ok && task.Action == "debug" && strings.Contains(text, "\n") {
			// A multi-line message (a report, a table) reads as text, not as
			// a JSON string full of \n.
			s += " =>\n    " + strings.ReplaceAll(strings.TrimRight(text, "\n"), "\n", "\n    ")
		} else if output != nil {
			b, _ := json.MarshalIndent(output, "", "    ")
			if task.Action == "debug" {
				if _, isMap := output.(map[string]any); !isMap || task.Args["var"] == nil {
					b, _ = json.MarshalIndent(map[string]any{"msg": output}, "", "    ")
				}
			}
			s += " => " + string(b)
		} else if msg != "" && t.verbose > 0 {
			s += " => " + msg
		}
		fmt.Fprintln(t.w, t.c(cGreen, s))
	case stChanged:
		s := "changed: " + hostTag
		if msg != "" && t.verbose > 0 {
			s += " => " + msg
		}
		fmt.Fprintln(t.w, t.c(cYellow, s))
	case stSkipped:
		s := "skipping: " + hostTag
		if msg != "" && t.verbose > 0 {
			s += " => " + msg
		}
		fmt.Fprintln(t.w, t.c(cCyan, s))
	case stFailed:
		s := "failed: " + hostTag + " => " + msg
		if !strings.Contains(hostTag, "item=") {
			s = "fatal: " + hostTag + ": FAILED! => " + msg
		}
		fmt.Fprintln(t.w, t.c(cRed, s))
		if ignored {
			fmt.Fprintln(t.w, t.c(cCyan, "...ignoring"))
		}
	case stUnreachable:
		fmt.Fprintln(t.w, t.c(cRed, "fatal: "+hostTag+": UNREACHABLE! => "+msg))
	}
	if diff != "" && t.diff {
		fmt.Fprint(t.w, diff)
		if !strings.HasSuffix(diff, "\n") {
			fmt.Fprintln(t.w)
		}
	}
}

func (t *textReporter) recap(r *Recap) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "\n%s\n", banner("PLAY RECAP"))
	width := 0
	hosts := recapHosts(r)
	for _, h := range hosts {
		if len(h) > width {
			width = len(h)
		}
	}
	for _, h := range hosts {
		s := r.Hosts[h]
		col := cGreen
		switch {
		case s.Failed > 0 || s.Unreachable > 0:
			col = cRed
		case s.Changed > 0:
			col = cYellow
		}
		line := fmt.Sprintf("%s : ok=%-4d changed=%-4d unreachable=%-4d failed=%-4d skipped=%-4d rescued=%-4d ignored=%-4d",
			t.c(col, fmt.Sprintf("%-*s", width, h)), s.Ok, s.Changed, s.Unreachable, s.Failed, s.Skipped, s.Rescued, s.Ignored)
		if t.verbose > 0 {
			line += fmt.Sprintf(" round_trips=%d", s.RoundTrips)
		}
		fmt.Fprintln(t.w, strings.TrimRight(line, " "))
	}
	if r.Interrupted {
		fmt.Fprintln(t.w, t.c(cRed, "\ninterrupted"))
	}
	if t.noTime || len(r.Slowest) == 0 {
		return
	}
	fmt.Fprintf(t.w, "\nslowest tasks (total %s):\n", r.Duration.Round(time.Millisecond))
	for _, tt := range r.Slowest {
		fmt.Fprintf(t.w, "  %-60s %8s\n", tt.Name, tt.Duration.Round(time.Millisecond))
	}
}

// recapHosts lists the hosts that did anything, in inventory order.
func recapHosts(r *Recap) []string {
	var out []string
	for _, h := range r.HostOrder {
		s := r.Hosts[h]
		if s == nil {
			continue
		}
		if *s != (HostStats{}) {
			out = append(out, h)
		}
	}
	return out
}

// jsonReporter collects everything and prints one JSON document at the end.
type jsonReporter struct {
	mu    sync.Mutex
	w     io.Writer
	plays []*jsonPlay
	tasks map[*Task]*jsonTask
	warns []string
}

type jsonPlay struct {
	Name  string      `json:"name"`
	Hosts string      `json:"hosts"`
	Tasks []*jsonTask `json:"tasks"`
}

type jsonTask struct {
	Name    string                    `json:"name"`
	File    string                    `json:"file"`
	Handler bool                      `json:"handler,omitempty"`
	Hosts   map[string]map[string]any `json:"hosts"`
}

func newJSONReporter(w io.Writer) *jsonReporter {
	return &jsonReporter{w: w, tasks: map[*Task]*jsonTask{}}
}

func (j *jsonReporter) playStart(pl *Play) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.plays = append(j.plays, &jsonPlay{Name: pl.Name, Hosts: pl.Hosts, Tasks: []*jsonTask{}})
}

func (j *jsonReporter) hostResult(t *Task, host string, o *outcome, handler bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	jt, ok := j.tasks[t]
	if !ok {
		jt = &jsonTask{Name: t.Display(), File: t.Pos.String(), Handler: handler, Hosts: map[string]map[string]any{}}
		j.tasks[t] = jt
		if len(j.plays) > 0 {
			p := j.plays[len(j.plays)-1]
			p.Tasks = append(p.Tasks, jt)
		}
	}
	m := map[string]any{"status": o.status.String()}
	if o.msg != "" {
		m["msg"] = o.msg
	}
	if o.ignored {
		m["ignored"] = true
	}
	if o.diff != "" {
		m["diff"] = o.diff
	}
	if o.delegate != "" {
		m["delegate_to"] = o.delegate
	}
	if o.output != nil {
		m["output"] = o.output
	}
	if len(o.items) > 0 {
		var items []map[string]any
		for _, it := range o.items {
			im := map[string]any{"item": it.label, "status": it.status.String()}
			if it.msg != "" {
				im["msg"] = it.msg
			}
			items = append(items, im)
		}
		m["items"] = items
	}
	if o.redacted {
		delete(m, "output")
	}
	jt.Hosts[host] = m
}

func (j *jsonReporter) retry(*Task, string, int, int) {}

func (j *jsonReporter) progress(*Task, string, time.Duration, int64) {}

func (j *jsonReporter) warn(msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.warns = append(j.warns, msg)
}

func (j *jsonReporter) recap(r *Recap) {
	j.mu.Lock()
	defer j.mu.Unlock()
	stats := map[string]*HostStats{}
	for _, h := range recapHosts(r) {
		stats[h] = r.Hosts[h]
	}
	hosts := make([]string, 0, len(stats))
	for h := range stats {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	doc := map[string]any{"plays": j.plays, "hosts": stats, "stats": stats, "slowest": r.Slowest,
		"duration_ms": r.Duration.Milliseconds(), "exit_code": r.ExitCode()}
	if len(j.warns) > 0 {
		doc["warnings"] = j.warns
	}
	if r.Interrupted {
		doc["interrupted"] = true
	}
	enc := json.NewEncoder(j.w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
}
