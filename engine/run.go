package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	"gokube/connection"
	"gokube/inventory"
	"gokube/modules"
)

// Run runs a playbook. The recap is returned even when hosts failed; the
// error then has ExitCode() 2 (failed) or 4 (unreachable), or 1 for bad input.
func Run(ctx context.Context, opts Options) (*Recap, error) {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Forks <= 0 {
		opts.Forks = 50
	}
	pb, inv, err := Load(opts)
	if err != nil {
		return nil, err
	}
	if pb == nil {
		return nil, &UsageError{errors.New("no playbook given")}
	}
	extra, err := ParseExtraVars(opts.ExtraVars, opts.Vault)
	if err != nil {
		return nil, &UsageError{err}
	}
	r := newRun(opts, pb, inv, extra)
	if opts.Limit != "" {
		lim, err := r.limitHosts()
		if err != nil {
			return nil, &UsageError{err}
		}
		if len(lim) == 0 {
			return nil, &UsageError{fmt.Errorf("--limit %q matches no host of the inventory", opts.Limit)}
		}
	}
	if opts.StartAtTask != "" {
		if err := r.markStartAt(); err != nil {
			return nil, &UsageError{err}
		}
	}
	for _, w := range inv.Warnings() {
		r.out.warn(w)
	}
	start := time.Now()
	r.start = start
	defer r.pool.closeAll()
	for _, pl := range pb.Plays {
		if ctx.Err() != nil || r.stop {
			break
		}
		if err := r.runPlay(ctx, pl); err != nil {
			r.out.warn(err.Error())
			break
		}
	}
	r.finish(time.Since(start))
	if ctx.Err() != nil {
		r.recap.Interrupted = true
	}
	r.out.recap(r.recap)
	return r.recap, r.recap.err(ctx)
}

type run struct {
	opts   Options
	inv    *inventory.Inventory
	pb     *Playbook
	reg    *modules.Registry
	out    reporter
	extra  map[string]any
	funcs  template.FuncMap
	tmpl   *tmplCache
	groups map[string]any
	hosts  map[string]*hostState
	pool   *connPool
	skip   map[*Task]bool // --start-at-task
	recap  *Recap
	invDir string
	play   *Play
	mu     sync.Mutex
	times  map[timeKey]*TaskTime
	stop   bool // any_errors_fatal fired
	start  time.Time
	// batchNum counts the serial batches of the current play.
	batchNum int
	// lock is the per-host run lock every SSH connection takes (nil in
	// check mode, which changes nothing).
	lock *connection.RunLock
}

type timeKey struct {
	t *Task
	b *batch
}

type hostState struct {
	name   string
	mu     sync.Mutex
	inv    map[string]any
	groups []string
	facts  map[string]any
	gotF   bool
	vars   map[string]any // set_fact and registered
	// dead hosts (failed or unreachable) sit out the rest of the run.
	dead    bool
	stats   *HostStats
	pending map[int]bool // handler indexes notified in this play
	probes  map[probeKey]probeEntry
	// reloadVars keeps a probe batch's daemon-reload answers
	// (modules.ReloadAnswers) for later batches, until a change that may
	// alter them; reloadSince the one of them that file writes leave
	// true (modules.ReloadSince).
	reloadVars, reloadSince string
	// reloadWritten: a daemon-reload input (modules.ReloadInput) this
	// run's changes wrote since the executor last forgot what it knew of
	// the host (a reload, a command, any change it cannot account for);
	// the first one, which names the reason.
	reloadWritten string
	// behind: a probe batch sent behind a pipeline's changes whose
	// answers are not kept yet (batchInFlight); forgotten with the probes.
	behind   *batchInFlight
	batch    []any // hosts of the current serial batch (a template value)
	playHost []any
}

func newRun(opts Options, pb *Playbook, inv *inventory.Inventory, extra map[string]any) *run {
	reg := opts.Registry
	if reg == nil {
		reg = modules.NewRegistry()
	}
	funcs := baseFuncs()
	// now is the run's start, one value for every host and task of the
	// run: a stamp (a backup's name) is the same wherever it is rendered,
	// and a task rendered twice (probe, then run) sees one value.
	t0 := time.Now()
	funcs["now"] = func() time.Time { return t0 }
	r := &run{opts: opts, inv: inv, pb: pb, reg: reg, extra: extra, funcs: funcs, tmpl: newTmplCache(funcs),
		hosts: map[string]*hostState{}, times: map[timeKey]*TaskTime{},
		recap: &Recap{Hosts: map[string]*HostStats{}, Vars: map[string]map[string]any{}, failures: map[string]*HostError{}}}
	if p := inv.Path(); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			r.invDir = filepath.Dir(abs)
		}
	} else if len(opts.Inventory) > 0 {
		if abs, err := filepath.Abs(opts.Inventory[0]); err == nil {
			r.invDir = filepath.Dir(abs)
		}
	}
	for _, name := range inv.HostNames() {
		h, _ := inv.Host(name)
		st := &HostStats{}
		r.hosts[name] = &hostState{name: name, inv: h.Vars, groups: h.Groups, vars: map[string]any{},
			facts: map[string]any{}, stats: st}
		r.recap.Hosts[name] = st
	}
	r.pool = newConnPool(r)
	if !opts.Check {
		r.lock = newRunLock(opts.LockWait)
	}
	// The inventory does not change during a run; templates share this.
	r.groups = r.groupsVar()
	if opts.Output == "json" {
		r.out = newJSONReporter(opts.Out)
	} else {
		r.out = newTextReporter(opts.Out, opts.Color, opts.Verbosity, opts.HideTimings, opts.Diff, r.progressEvery())
	}
	return r
}

func (r *run) limitHosts() (map[string]bool, error) {
	if r.opts.Limit == "" {
		return nil, nil
	}
	// The inventory's pattern code reads @file (one pattern per line, as a
	// retry file has one host per line), like ListHosts does.
	hs, err := r.inv.Match(r.opts.Limit)
	if err != nil {
		return nil, fmt.Errorf("--limit: %w", err)
	}
	m := map[string]bool{}
	for _, h := range hs {
		m[h] = true
	}
	return m, nil
}

// markStartAt marks every task before the first task named StartAtTask.
func (r *run) markStartAt() error {
	r.skip = map[*Task]bool{}
	found := false
	var walk func(ts []*Task)
	walk = func(ts []*Task) {
		for _, t := range ts {
			if found {
				return
			}
			if t.IsBlock {
				walk(t.Block)
				walk(t.Rescue)
				walk(t.Always)
				continue
			}
			if !t.Implicit && (t.Name == r.opts.StartAtTask || t.Display() == r.opts.StartAtTask) {
				found = true
				return
			}
			if t.Action != "setup" || !t.Implicit {
				r.skip[t] = true
			}
		}
	}
	for _, pl := range r.pb.Plays {
		walk(pl.Tasks)
	}
	if !found {
		return fmt.Errorf("--start-at-task: no task named %q", r.opts.StartAtTask)
	}
	return nil
}

// selected applies --tags, --skip-tags and --start-at-task.
func (r *run) selected(t *Task) bool {
	if r.skip[t] {
		return false
	}
	return tagsSelected(t.Tags, r.opts.Tags, r.opts.SkipTags)
}

func tagsSelected(tags, only, skip []string) bool {
	has := slices.Contains[[]string]
	for _, s := range skip {
		if has(tags, s) || s == "all" && !has(tags, "always") || s == "tagged" && len(tags) > 0 || s == "untagged" && len(tags) == 0 {
			return false
		}
	}
	if has(tags, "never") {
		for _, t := range tags {
			if t != "never" && has(only, t) {
				return true
			}
		}
		return has(only, "never")
	}
	if len(only) == 0 {
		return true
	}
	if has(tags, "always") {
		return true
	}
	for _, o := range only {
		switch o {
		case "all":
			return true
		case "tagged":
			if len(tags) > 0 {
				return true
			}
		case "untagged":
			if len(tags) == 0 {
				return true
			}
		default:
			if has(tags, o) {
				return true
			}
		}
	}
	return false
}

func (r *run) hostGroups(h string) []string {
	if hs, ok := r.hosts[h]; ok {
		return hs.groups
	}
	return nil
}

func (r *run) groupsVar() map[string]any {
	g := map[string]any{}
	for _, name := range r.inv.GroupNames() {
		hs := r.inv.GroupHosts(name)
		l := make([]any, len(hs))
		for i, h := range hs {
			l[i] = h
		}
		g[name] = l
	}
	// index .groups "kube-master" works on a kubespray inventory too, as
	// hostsOf does (inventory.GroupAlias).
	for _, name := range r.inv.GroupNames() {
		if a := inventory.GroupAlias(name); a != "" && g[a] == nil {
			g[a] = g[name]
		}
	}
	if _, ok := g["all"]; !ok {
		l := []any{}
		for _, h := range r.inv.HostNames() {
			l = append(l, h)
		}
		g["all"] = l
	}
	return g
}

func strAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// debugf prints under -vvvv (protocol-level detail for debugging).
func (r *run) debugf(format string, args ...any) {
	if r.opts.Verbosity >= 4 {
		r.out.warn(fmt.Sprintf(format, args...))
	}
}

// runPlay runs one play on its hosts, batch by batch.
func (r *run) runPlay(ctx context.Context, pl *Play) error {
	r.play = pl
	pattern := pl.Hosts
	if strings.Contains(pattern, "{{") {
		// hosts: "{{ .target }}" — only extra and play vars exist before a
		// host is chosen.
		vars := mergeMaps(pl.Vars, r.extra)
		sc := &scope{r: r, vars: vars}
		p, err := sc.render(pl.Pos, pattern)
		if err != nil {
			return err
		}
		pattern = p
	}
	all, err := r.inv.Match(pattern)
	if err != nil {
		return fmt.Errorf("%s: hosts: %w", pl.Pos, err)
	}
	lim, err := r.limitHosts()
	if err != nil {
		return err
	}
	var hosts []string
	for _, h := range all {
		if lim != nil && !lim[h] {
			continue
		}
		if hs := r.hosts[h]; hs == nil || hs.dead {
			continue
		}
		hosts = append(hosts, h)
	}
	r.out.playStart(pl)
	if len(hosts) == 0 {
		r.out.warn("no hosts matched")
		return nil
	}
	// One list shared by every host, as the batch's is (runBatch): a copy
	// per host would grow with the square of the inventory (31 MB of a
	// 1000-host run's heap).
	playHosts := strAny(hosts)
	for _, h := range hosts {
		r.hosts[h].pending = map[int]bool{}
		r.hosts[h].playHost = playHosts
	}
	r.batchNum = 0
	for _, b := range batches(hosts, pl.Serial) {
		if ctx.Err() != nil || r.stop {
			return nil
		}
		r.runBatch(ctx, pl, b)
	}
	return nil
}

func batches(hosts []string, serial []string) [][]string {
	if len(serial) == 0 {
		return [][]string{hosts}
	}
	var out [][]string
	i, si := 0, 0
	for i < len(hosts) {
		n, _ := parseSerial(serial[si], len(hosts))
		if si < len(serial)-1 {
			si++
		}
		end := i + n
		if end > len(hosts) {
			end = len(hosts)
		}
		out = append(out, hosts[i:end])
		i = end
	}
	return out
}

func (r *run) recordEvent(host string, t *Task, res *outcome, handler bool, b *batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Host: host, Task: t.Display(), Status: res.status.String(), RoundTrips: res.rt, Bytes: res.bytes, Handler: handler}
	if !res.begin.IsZero() {
		ev.Start, ev.End = res.begin.Sub(r.start), res.end.Sub(r.start)
	}
	if b != nil {
		ev.Play, ev.Batch = b.play.Name, b.num
	}
	r.recap.Events = append(r.recap.Events, ev)
	if res.status == stUnreachable || res.status == stFailed && !res.ignored {
		r.recap.failures[host] = &HostError{Host: host, Task: t.Display(), Pos: t.Pos, Msg: res.msg,
			Unreachable: res.status == stUnreachable}
	}
}

// taskTime keeps, per task and serial batch, the span from the first
// host's start to the last host's end.
func (r *run) taskTime(t *Task, b *batch, start time.Time) {
	end := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	k := timeKey{t, b}
	tt, ok := r.times[k]
	if !ok {
		tt = &TaskTime{Name: t.Display(), Pos: t.Pos, start: start}
		r.times[k] = tt
	}
	if start.Before(tt.start) {
		tt.start = start
	}
	if d := end.Sub(tt.start); d > tt.Duration {
		tt.Duration = d
	}
}

func (r *run) finish(d time.Duration) {
	rc := r.recap
	rc.Duration = d
	rc.HostOrder = r.inv.HostNames()
	for name, hs := range r.hosts {
		hs.mu.Lock()
		if len(hs.vars) > 0 {
			m := map[string]any{}
			for k, v := range hs.vars {
				m[k] = v
			}
			rc.Vars[name] = m
		}
		hs.mu.Unlock()
		hs.stats.RoundTrips = r.pool.roundTrips(name)
	}
	for _, tt := range r.times {
		rc.Slowest = append(rc.Slowest, *tt)
	}
	sort.Slice(rc.Slowest, func(i, j int) bool { return rc.Slowest[i].Duration > rc.Slowest[j].Duration })
	if len(rc.Slowest) > 5 {
		rc.Slowest = rc.Slowest[:5]
	}
}

func (r *run) progressEvery() time.Duration {
	if r.opts.ProgressEvery > 0 {
		return r.opts.ProgressEvery
	}
	return progressEvery
}
