package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"gokube/connection"
	"gokube/inventory"
	"gokube/modules"
)

// Options is one run of a playbook.
type Options struct {
	Inventory []string // inventory files (the first is used for inventory_dir)
	// Inv, when set, is used instead of loading Inventory (tests).
	Inv       *inventory.Inventory
	Playbook  string
	ExtraVars []string // "k=v k2=v2", "@file.yml", "@file.json", "{json}"
	Check     bool
	Diff      bool
	Limit     string
	Tags      []string
	SkipTags  []string
	Forks     int // default 50
	Verbosity int
	// StartAtTask skips every task before the first one of that name.
	StartAtTask string

	Become            bool
	BecomeUser        string
	BecomePassword    string
	User              string
	PrivateKey        string
	KnownHosts        string
	AcceptNewHostKeys bool
	ConnectTimeout    time.Duration

	Output      string    // "text" (default) or "json"
	Out         io.Writer // default os.Stdout
	Color       bool      // ANSI colours (the CLI sets it on a terminal)
	HideTimings bool      // leave durations out of the text output (golden tests)

	BundledRoles fs.FS
	// ConnFactory dials a host; tests inject fakes. vars are the host's
	// inventory variables. Nil dials SSH (or local for
	// ansible_connection=local).
	ConnFactory func(host string, vars map[string]any) (connection.Conn, error)
	Registry    *modules.Registry
	ArtifactDir string
}

// RunError is the outcome of a run that did not fully succeed.
type RunError struct {
	Code int
	Msg  string
}

func (e *RunError) Error() string { return e.Msg }

// ExitCode is what the process should exit with (2 failed, 4 unreachable).
func (e *RunError) ExitCode() int { return e.Code }

// UsageError is bad input (flags, inventory, extra vars): exit code 1.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is 1, like Ansible's usage and parse errors.
func (e *UsageError) ExitCode() int { return 1 }

type hostState struct {
	name   string
	mu     sync.Mutex
	inv    map[string]any
	groups []string
	facts  map[string]any
	gotF   bool
	vars   map[string]any // set_fact and registered
	// dead hosts (failed or unreachable) sit out the rest of the run.
	dead     bool
	stats    *HostStats
	pending  map[int]bool // handler indexes notified in this play
	probes   map[probeKey]probeEntry
	batch    []any // hosts of the current serial batch (a template value)
	playHost []any
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
}

type timeKey struct {
	t *Task
	b *batch
}

// Load parses the playbook and inventory of opts without contacting hosts.
func Load(opts Options) (*Playbook, *inventory.Inventory, error) {
	inv := opts.Inv
	if inv == nil {
		if len(opts.Inventory) == 0 {
			return nil, nil, &UsageError{errors.New("no inventory given (-i)")}
		}
		if len(opts.Inventory) > 1 {
			return nil, nil, &UsageError{errors.New("only one -i is supported; put the inventory files in one directory and pass -i DIR")}
		}
		var err error
		inv, err = inventory.Load(opts.Inventory[0])
		if err != nil {
			return nil, nil, &UsageError{err}
		}
	}
	if opts.Playbook == "" {
		return nil, inv, nil
	}
	reg := opts.Registry
	if reg == nil {
		reg = modules.NewRegistry()
	}
	pb, err := LoadPlaybook(opts.Playbook, reg, opts.BundledRoles)
	if err != nil {
		return nil, nil, err
	}
	if opts.Inv == nil {
		if err := inv.AddVarsDir(pb.Dir); err != nil {
			return nil, nil, &UsageError{err}
		}
	}
	return pb, inv, nil
}

// ParseExtraVars reads -e values: k=v pairs, @file (YAML or JSON), or inline JSON/YAML.
func ParseExtraVars(list []string) (map[string]any, error) {
	out := map[string]any{}
	for _, e := range list {
		e = strings.TrimSpace(e)
		switch {
		case strings.HasPrefix(e, "@"):
			b, err := os.ReadFile(e[1:])
			if err != nil {
				return nil, fmt.Errorf("-e %s: %w", e, err)
			}
			var m map[string]any
			if err := yaml.Unmarshal(b, &m); err != nil {
				return nil, fmt.Errorf("-e %s: %w", e, err)
			}
			for k, v := range m {
				out[k] = normalize(v)
			}
		case strings.HasPrefix(e, "{"):
			var m map[string]any
			if err := json.Unmarshal([]byte(e), &m); err != nil {
				if err2 := yaml.Unmarshal([]byte(e), &m); err2 != nil {
					return nil, fmt.Errorf("-e %q: %w", e, err)
				}
			}
			for k, v := range m {
				out[k] = normalize(jsonNums(v))
			}
		default:
			toks, err := shellSplit(e)
			if err != nil {
				return nil, fmt.Errorf("-e %q: %w", e, err)
			}
			for _, t := range toks {
				k, v, ok := strings.Cut(t, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("-e %q: want key=value, @file or JSON", t)
				}
				out[k] = v
			}
		}
	}
	return out, nil
}

// jsonNums turns whole float64s from JSON into ints so `-e '{"n": 3}'`
// behaves like YAML's 3.
func jsonNums(v any) any {
	switch t := v.(type) {
	case float64:
		if t == float64(int(t)) {
			return int(t)
		}
	case map[string]any:
		for k, x := range t {
			t[k] = jsonNums(x)
		}
	case []any:
		for i, x := range t {
			t[i] = jsonNums(x)
		}
	}
	return v
}

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
	extra, err := ParseExtraVars(opts.ExtraVars)
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

func newRun(opts Options, pb *Playbook, inv *inventory.Inventory, extra map[string]any) *run {
	reg := opts.Registry
	if reg == nil {
		reg = modules.NewRegistry()
	}
	funcs := baseFuncs()
	r := &run{opts: opts, inv: inv, pb: pb, reg: reg, extra: extra, funcs: funcs, tmpl: newTmplCache(funcs),
		hosts: map[string]*hostState{}, times: map[timeKey]*TaskTime{},
		recap: &Recap{Hosts: map[string]*HostStats{}, Vars: map[string]map[string]any{}}}
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
	// The inventory does not change during a run; templates share this.
	r.groups = r.groupsVar()
	if opts.Output == "json" {
		r.out = newJSONReporter(opts.Out)
	} else {
		r.out = newTextReporter(opts.Out, opts.Color, opts.Verbosity, opts.HideTimings, opts.Diff)
	}
	return r
}

func (r *run) limitHosts() (map[string]bool, error) {
	if r.opts.Limit == "" {
		return nil, nil
	}
	var hs []string
	var err error
	if strings.HasPrefix(r.opts.Limit, "@") {
		b, e := os.ReadFile(r.opts.Limit[1:])
		if e != nil {
			return nil, fmt.Errorf("--limit %s: %w", r.opts.Limit, e)
		}
		hs = strings.Fields(string(b))
	} else {
		hs, err = r.inv.Match(r.opts.Limit)
		if err != nil {
			return nil, fmt.Errorf("--limit: %w", err)
		}
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
	has := func(list []string, x string) bool {
		for _, e := range list {
			if e == x {
				return true
			}
		}
		return false
	}
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
	for _, h := range hosts {
		r.hosts[h].pending = map[int]bool{}
		r.hosts[h].playHost = strAny(hosts)
	}
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

// batch is one serial batch of a play in flight.
type batch struct {
	r       *run
	play    *Play
	hosts   []string
	sched   *lockstep // nil for the free strategy
	sem     chan struct{}
	mu      sync.Mutex
	once    map[*Task]*onceCell
	failed  int
	abort   bool // any_errors_fatal / max_fail_percentage / end_play
	abortAt ord  // the task that set abort: its round still completes
	endPlay bool
}

type onceCell struct {
	started bool
	done    chan struct{}
	res     *outcome
}

func (r *run) runBatch(ctx context.Context, pl *Play, hosts []string) {
	b := &batch{r: r, play: pl, hosts: hosts, sem: make(chan struct{}, r.opts.Forks), once: map[*Task]*onceCell{}}
	if pl.Strategy != "free" {
		b.sched = newLockstep(hosts)
	}
	bv := strAny(hosts)
	for _, h := range hosts {
		r.hosts[h].batch = bv
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		hr := &hostRun{r: r, b: b, hs: r.hosts[h], play: pl}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer b.done(h)
			hr.runTop(ctx)
		}()
	}
	wg.Wait()
	if b.abort && !b.endPlay {
		r.stop = true
	}
}

func (b *batch) done(h string) {
	if b.sched != nil {
		b.sched.done(h)
	}
}

func (b *batch) hostFailed(at ord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed++
	if b.play.AnyErrorsFatal || b.play.MaxFailPercentage >= 0 && float64(b.failed)*100/float64(len(b.hosts)) > b.play.MaxFailPercentage {
		if !b.abort {
			b.abort, b.abortAt = true, at
		}
	}
}

func (b *batch) aborted(o ord) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.abort && o != b.abortAt
}

// lockstep is the linear strategy: every host waits at each task until all
// hosts still running have reached a task; the earliest task in play order
// is released for every host waiting on it.
type lockstep struct {
	mu      sync.Mutex
	running int
	waiting map[string]*waiter
	order   map[string]int
}

type waiter struct {
	o     ord
	ch    chan []string
	round []string
}

func newLockstep(hosts []string) *lockstep {
	l := &lockstep{running: len(hosts), waiting: map[string]*waiter{}, order: map[string]int{}}
	for i, h := range hosts {
		l.order[h] = i
	}
	return l
}

// wait blocks until this host's task o is released and returns the hosts
// that run it together (batch order).
func (l *lockstep) wait(ctx context.Context, host string, o ord) ([]string, error) {
	w := &waiter{o: o, ch: make(chan []string, 1)}
	l.mu.Lock()
	l.waiting[host] = w
	l.running--
	l.release()
	l.mu.Unlock()
	select {
	case round := <-w.ch:
		return round, nil
	case <-ctx.Done():
		l.mu.Lock()
		if _, still := l.waiting[host]; still {
			delete(l.waiting, host)
			l.running++
		}
		l.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (l *lockstep) done(host string) {
	l.mu.Lock()
	l.running--
	l.release()
	l.mu.Unlock()
}

// release runs with mu held.
func (l *lockstep) release() {
	if l.running > 0 || len(l.waiting) == 0 {
		return
	}
	var min *ord
	for _, w := range l.waiting {
		if min == nil || w.o.less(*min) {
			o := w.o
			min = &o
		}
	}
	var round []string
	for h, w := range l.waiting {
		if w.o == *min {
			round = append(round, h)
		}
	}
	sort.Slice(round, func(i, j int) bool { return l.order[round[i]] < l.order[round[j]] })
	for _, h := range round {
		w := l.waiting[h]
		delete(l.waiting, h)
		l.running++
		w.ch <- round
	}
}

// hostRun walks one host through the play's tasks.
type hostRun struct {
	r    *run
	b    *batch
	hs   *hostState
	play *Play
	last ord // the task this host runs or ran last
}

const progressEvery = 5 * time.Second

var (
	errHostFailed = errors.New("host failed")
	errEndHost    = errors.New("end_host")
)

func (hr *hostRun) runTop(ctx context.Context) {
	err := hr.runList(ctx, hr.play.Tasks)
	if err == errHostFailed {
		hr.hs.mu.Lock()
		hr.hs.dead = true
		hr.hs.mu.Unlock()
		hr.b.hostFailed(hr.last)
	}
}

func (hr *hostRun) runList(ctx context.Context, ts []*Task) error {
	for _, t := range ts {
		if err := hr.runTask(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (hr *hostRun) runTask(ctx context.Context, t *Task) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if t.IsBlock {
		return hr.runBlock(ctx, t)
	}
	if !hr.r.selected(t) {
		return nil
	}
	if t.Action == "meta" && fmt.Sprint(t.Args["_raw"]) == "flush_handlers" {
		return hr.flushHandlers(ctx, t.Ord.major)
	}
	return hr.runLeaf(ctx, t, t.Ord, false)
}

// runBlock: block, then rescue when the block failed, then always.
func (hr *hostRun) runBlock(ctx context.Context, t *Task) error {
	err := hr.runList(ctx, t.Block)
	if err == errHostFailed && len(t.Rescue) > 0 {
		hr.hs.mu.Lock()
		hr.hs.stats.Rescued++
		// A rescued failure is not a failure of the host (Ansible counts
		// it as rescued only).
		if hr.hs.stats.Failed > 0 {
			hr.hs.stats.Failed--
		}
		hr.hs.mu.Unlock()
		err = hr.runList(ctx, t.Rescue)
	}
	if err != nil && err != errHostFailed {
		return err // unreachable, cancelled, end_host
	}
	if aerr := hr.runList(ctx, t.Always); aerr != nil {
		return aerr
	}
	return err
}

func (hr *hostRun) flushHandlers(ctx context.Context, major int) error {
	for i, h := range hr.play.Handlers {
		hr.hs.mu.Lock()
		p := hr.hs.pending[i]
		delete(hr.hs.pending, i)
		hr.hs.mu.Unlock()
		if !p {
			continue
		}
		o := ord{major, i + 1}
		var err error
		if h.IsBlock {
			err = hr.runHandlerBlock(ctx, h, o)
		} else {
			err = hr.runLeaf(ctx, h, o, true)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (hr *hostRun) runHandlerBlock(ctx context.Context, h *Task, o ord) error {
	for _, t := range h.Block {
		if err := hr.runLeaf(ctx, t, o, true); err != nil {
			return err
		}
	}
	return nil
}

// notify marks the handlers a changed task names (by name or listen).
func (hr *hostRun) notify(names []string) {
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	for _, n := range names {
		for i, h := range hr.play.Handlers {
			if h.Name == n {
				hr.hs.pending[i] = true
				continue
			}
			for _, l := range h.Listen {
				if l == n {
					hr.hs.pending[i] = true
				}
			}
		}
	}
}

// taskScope merges the variables host sees for task t (precedence in doc.go).
func (r *run) taskScope(hs *hostState, t *Task) *scope {
	pl := r.play
	hs.mu.Lock()
	n := 32 + len(hs.inv) + len(hs.facts) + len(hs.vars) + len(r.extra)
	hs.mu.Unlock()
	if pl != nil {
		n += len(pl.Vars)
	}
	vars := make(map[string]any, n)
	put := func(m map[string]any) {
		for k, v := range m {
			vars[k] = v
		}
	}
	if pl != nil {
		for _, ro := range pl.Roles {
			put(ro.Defaults)
		}
	}
	if t != nil && t.Role != nil {
		put(t.Role.Defaults)
	}
	hs.mu.Lock()
	put(hs.inv)
	put(hs.facts)
	hs.mu.Unlock()
	if pl != nil {
		put(pl.Vars)
		for _, vf := range pl.VarsFiles {
			put(vf)
		}
		for _, ro := range pl.Roles {
			put(ro.Vars)
		}
	}
	if t != nil {
		if t.Role != nil {
			put(t.Role.Vars)
		}
		for _, bv := range t.BlockVars {
			put(bv)
		}
		put(t.Vars)
	}
	hs.mu.Lock()
	put(hs.vars)
	batch, playHosts := hs.batch, hs.playHost
	hs.mu.Unlock()
	put(r.extra)
	// Magic variables cannot be overridden.
	vars["inventory_hostname"] = hs.name
	short, _, _ := strings.Cut(hs.name, ".")
	vars["inventory_hostname_short"] = short
	vars["groups"] = r.groups
	var gn []any
	for _, g := range hs.groups {
		if g != "all" && g != "ungrouped" {
			gn = append(gn, g)
		}
	}
	vars["group_names"] = gn
	vars["play_hosts"] = batch
	vars["ansible_play_batch"] = batch
	vars["ansible_play_hosts"] = playHosts
	vars["ansible_play_hosts_all"] = playHosts
	vars["ansible_check_mode"] = r.opts.Check
	vars["ansible_diff_mode"] = r.opts.Diff
	vars["ansible_verbosity"] = r.opts.Verbosity
	vars["playbook_dir"] = r.pb.Dir
	vars["inventory_dir"] = r.invDir
	if len(r.opts.Inventory) > 0 {
		vars["inventory_file"] = r.opts.Inventory[0]
	}
	if t != nil && t.Role != nil {
		vars["role_name"] = t.Role.Name
		// Bundled roles have no directory on disk; show where they come from.
		if t.Role.Dir.fsys == nil {
			vars["role_path"] = t.Role.Dir.path
		} else {
			vars["role_path"] = t.Role.Dir.display
		}
	}
	if pl != nil {
		vars["ansible_play_name"] = pl.Name
	}
	return &scope{r: r, host: hs.name, vars: vars}
}

// hostScope is another host's play-level variables (hostvar, hostvars).
func (r *run) hostScope(host string) *scope {
	hs, ok := r.hosts[host]
	if !ok {
		return nil
	}
	return r.taskScope(hs, nil)
}

// outcome is what one task did on one host.
type outcome struct {
	status   status
	msg      string
	diff     string
	data     map[string]any // what register stores
	items    []itemOutcome
	ignored  bool
	output   any // debug output
	runOnce  bool
	delegate string
}

type itemOutcome struct {
	label  string
	status status
	msg    string
	diff   string
	output any
}

type status int

const (
	stOK status = iota
	stChanged
	stSkipped
	stFailed
	stUnreachable
)

func (s status) String() string {
	return [...]string{"ok", "changed", "skipping", "failed", "unreachable"}[s]
}

// runLeaf runs one task (with its loop) on this host, and the handlers'
// bookkeeping around it.
func (hr *hostRun) runLeaf(ctx context.Context, t *Task, o ord, handler bool) error {
	var round []string
	if hr.b.sched != nil {
		var err error
		if round, err = hr.b.sched.wait(ctx, hr.hs.name, o); err != nil {
			return err
		}
	}
	// Hosts in the round of the task that ended the play still run it.
	if hr.b.aborted(o) {
		return errEndHost
	}
	hr.last = o
	// run_once: the first host of the round (or the first to arrive under
	// the free strategy) runs it; the others take its result.
	if t.RunOnce {
		hr.b.mu.Lock()
		cell, ok := hr.b.once[t]
		if !ok {
			cell = &onceCell{done: make(chan struct{})}
			hr.b.once[t] = cell
		}
		runner := !cell.started && (round == nil || round[0] == hr.hs.name)
		if runner {
			cell.started = true
		}
		hr.b.mu.Unlock()
		if !runner {
			select {
			case <-cell.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			return hr.applyShared(t, cell.res)
		}
		res := hr.execute(ctx, t, handler)
		res.runOnce = true
		cell.res = res
		close(cell.done)
		return hr.finishTask(t, res, handler, true)
	}
	res := hr.execute(ctx, t, handler)
	return hr.finishTask(t, res, handler, true)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// applyShared gives a run_once result to a host that did not run it.
func (hr *hostRun) applyShared(t *Task, res *outcome) error {
	if res == nil {
		return nil
	}
	if t.Register != "" && res.data != nil {
		hr.setVar(t.Register, res.data)
	}
	if t.Action == "set_fact" && res.data != nil {
		if f, ok := res.data["ansible_facts"].(map[string]any); ok {
			for k, v := range f {
				hr.setVar(k, v)
			}
		}
	}
	if res.status == stChanged && len(t.Notify) > 0 {
		hr.notify(t.Notify)
	}
	if res.status == stFailed && !res.ignored {
		return errHostFailed
	}
	if res.status == stUnreachable {
		return errHostFailed
	}
	return nil
}

func (hr *hostRun) setVar(k string, v any) {
	hr.hs.mu.Lock()
	hr.hs.vars[k] = v
	hr.hs.mu.Unlock()
}

// finishTask reports the outcome and updates stats, registered vars and
// handlers. It returns errHostFailed when the host must stop.
func (hr *hostRun) finishTask(t *Task, res *outcome, handler bool, report bool) error {
	if t.Register != "" && res.data != nil {
		hr.setVar(t.Register, res.data)
	}
	hs := hr.hs
	hs.mu.Lock()
	switch res.status {
	case stOK:
		hs.stats.Ok++
	case stChanged:
		hs.stats.Ok++
		hs.stats.Changed++
	case stSkipped:
		hs.stats.Skipped++
	case stFailed:
		if res.ignored {
			hs.stats.Ignored++
		} else {
			hs.stats.Failed++
		}
	case stUnreachable:
		hs.stats.Unreachable++
		hs.dead = true
	}
	hs.mu.Unlock()
	hr.r.recordEvent(hs.name, t, res.status)
	if report && !t.Implicit || res.status >= stFailed || t.Implicit && t.Action == "setup" {
		hr.r.out.hostResult(t, hs.name, res, handler)
	}
	if res.status == stChanged && len(t.Notify) > 0 {
		hr.notify(t.Notify)
	}
	switch {
	case res.status == stUnreachable:
		return errHostFailed
	case res.status == stFailed && !res.ignored:
		return errHostFailed
	}
	meta := ""
	if t.Action == "meta" && res.status == stOK {
		meta = fmt.Sprint(t.Args["_raw"])
	}
	if meta == "end_host" {
		return errEndHost
	}
	if meta == "end_play" {
		hr.b.mu.Lock()
		if !hr.b.abort {
			hr.b.abort, hr.b.abortAt = true, hr.last
		}
		hr.b.endPlay = true
		hr.b.mu.Unlock()
		return errEndHost
	}
	return nil
}

func (r *run) recordEvent(host string, t *Task, st status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recap.Events = append(r.recap.Events, Event{Host: host, Task: t.Display(), Status: st.String()})
}

// execute runs task t (all loop items) on this host and returns the outcome.
func (hr *hostRun) execute(ctx context.Context, t *Task, handler bool) *outcome {
	start := time.Now()
	defer hr.r.taskTime(t, hr.b, start)
	hr.b.sem <- struct{}{}
	defer func() { <-hr.b.sem }()
	// A progress line for tasks that take long (waits, restarts, health).
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() {
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				hr.r.out.progress(t, hr.hs.name, time.Since(start))
			case <-stopProgress:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	sc := hr.r.taskScope(hr.hs, t)
	if !t.HasLoop {
		ok, err := sc.conds(t.When)
		if err != nil {
			return failOutcome(err)
		}
		if !ok {
			return skipOutcome()
		}
		return hr.runItem(ctx, t, sc, -1, nil)
	}
	items, err := hr.loopItems(sc, t)
	if err != nil {
		return failOutcome(err)
	}
	res := &outcome{status: stOK}
	loopVar := t.LoopVar
	if loopVar == "" {
		loopVar = "item"
	}
	var results []any
	allSkipped := len(items) > 0
	for i, it := range items {
		isc := sc.with(loopVars(t, loopVar, it, i, len(items)))
		label := fmt.Sprint(it)
		if t.Label != "" {
			if l, err := isc.render(t.Pos, t.Label); err == nil {
				label = l
			}
		}
		var ir *outcome
		if ok, err := isc.conds(t.When); err != nil {
			ir = failOutcome(err)
		} else if !ok {
			ir = skipOutcome()
		} else {
			ir = hr.runItem(ctx, t, isc, i, it)
		}
		d := ir.data
		if d == nil {
			d = map[string]any{}
		}
		d[loopVar] = it
		d["ansible_loop_var"] = loopVar
		results = append(results, d)
		res.items = append(res.items, itemOutcome{label: label, status: ir.status, msg: ir.msg, diff: ir.diff, output: ir.output})
		if ir.status != stSkipped {
			allSkipped = false
		}
		switch {
		case ir.status == stUnreachable:
			res.status, res.msg = stUnreachable, ir.msg
		case ir.status == stFailed && !ir.ignored && res.status != stUnreachable:
			res.status, res.msg = stFailed, "One or more items failed"
		case ir.status == stFailed && ir.ignored && res.status < stFailed:
			res.status, res.ignored, res.msg = stFailed, true, "One or more items failed"
		case ir.status == stChanged && res.status == stOK:
			res.status = stChanged
		}
		if ir.status == stUnreachable {
			break
		}
	}
	if allSkipped {
		res.status = stSkipped
	}
	res.data = map[string]any{"results": results, "changed": res.status == stChanged, "failed": res.status == stFailed,
		"skipped": allSkipped, "msg": "All items completed"}
	if res.status == stFailed {
		res.data["msg"] = res.msg
		res.ignored = res.ignored || t.Ignore
	}
	if len(items) == 0 {
		res.status = stSkipped
		res.data["skipped"] = true
		res.data["msg"] = "No items in the list"
	}
	return res
}

func loopVars(t *Task, loopVar string, it any, i, n int) map[string]any {
	m := map[string]any{loopVar: it, "ansible_loop_var": loopVar,
		"ansible_loop": map[string]any{"index": i + 1, "index0": i, "first": i == 0, "last": i == n-1,
			"length": n, "revindex": n - i, "revindex0": n - i - 1}}
	if t.IndexVar != "" {
		m[t.IndexVar] = i
	}
	return m
}

func (hr *hostRun) loopItems(sc *scope, t *Task) ([]any, error) {
	v, err := sc.resolve(t.Loop, t.LoopPos)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case []any:
		return x, nil
	case []string:
		return strAny(x), nil
	case nil:
		return nil, nil
	case string:
		if strings.TrimSpace(x) == "" {
			return nil, nil
		}
		return nil, &TemplateError{Pos: t.LoopPos, Host: hr.hs.name, Msg: fmt.Sprintf("loop: want a list, got the string %q", x)}
	}
	return nil, &TemplateError{Pos: t.LoopPos, Host: hr.hs.name, Msg: fmt.Sprintf("loop: want a list, got %s", modules.KindOf(v))}
}

func failOutcome(err error) *outcome {
	st := stFailed
	if connection.IsUnreachable(err) {
		st = stUnreachable
	}
	return &outcome{status: st, msg: err.Error(), data: map[string]any{"failed": st == stFailed, "msg": err.Error(),
		"changed": false, "unreachable": st == stUnreachable}}
}

func skipOutcome() *outcome {
	return &outcome{status: stSkipped, data: map[string]any{"changed": false, "skipped": true,
		"skip_reason": "Conditional result was False"}}
}

// renderArgs renders a task's arguments for this host and coerces types.
func renderArgs(sc *scope, t *Task) (map[string]any, error) {
	args := make(map[string]any, len(t.Args))
	for k, v := range t.Args {
		p := t.Pos
		if ap, ok := t.ArgPos[k]; ok {
			p = ap
		}
		if t.Action == "set_fact" || t.Action == "debug" && k == "msg" {
			args[k] = v // rendered by the action, with native types
			continue
		}
		rv, err := sc.resolve(v, p)
		if err != nil {
			return nil, err
		}
		args[k] = rv
	}
	coerceArgs(t.Spec, args)
	return args, nil
}

// becomeFor is the effective become of t for this host: task/block/role,
// then play, then -b, then the inventory's ansible_become.
func (r *run) becomeFor(sc *scope, t *Task) (bool, string) {
	b := r.opts.Become
	if v, ok := sc.vars["ansible_become"]; ok {
		if x, ok := modules.AsBool(v); ok {
			b = x
		}
	}
	if r.play != nil && r.play.Become != nil {
		b = *r.play.Become
	}
	if t.Become != nil {
		b = *t.Become
	}
	u := r.opts.BecomeUser
	if v, ok := sc.vars["ansible_become_user"]; ok {
		u = fmt.Sprint(v)
	}
	if r.play != nil && r.play.BecomeUser != "" {
		u = r.play.BecomeUser
	}
	if t.BUser != nil {
		u = *t.BUser
	}
	if strings.Contains(u, "{{") {
		if x, err := sc.render(t.Pos, u); err == nil {
			u = x
		}
	}
	return b, u
}

func (r *run) checkFor(t *Task) bool {
	if t.Check != nil {
		return *t.Check
	}
	return r.opts.Check
}

// intKey renders a task keyword that must be an integer (retries, delay).
func (hr *hostRun) intKey(sc *scope, t *Task, raw any, want string) (int, error) {
	v, err := sc.resolve(raw, t.Pos)
	if err != nil {
		return 0, err
	}
	n, ok := modules.AsInt(v)
	if !ok {
		return 0, &TemplateError{Pos: t.Pos, Host: hr.hs.name, Msg: fmt.Sprintf("%s, got %v", want, v)}
	}
	return n, nil
}

// runItem runs one item (or the task without loop) with retries.
func (hr *hostRun) runItem(ctx context.Context, t *Task, sc *scope, idx int, item any) *outcome {
	retries, delay := 0, 5*time.Second
	if len(t.Until) > 0 {
		retries = 3
		if t.Retries != nil {
			n, err := hr.intKey(sc, t, t.Retries, "retries: want a number")
			if err != nil {
				return failOutcome(err)
			}
			retries = n
		}
		if t.Delay != nil {
			n, err := hr.intKey(sc, t, t.Delay, "delay: want seconds")
			if err != nil {
				return failOutcome(err)
			}
			delay = time.Duration(n) * time.Second
		}
	}
	var res *outcome
	for attempt := 0; ; attempt++ {
		res = hr.runOnce(ctx, t, sc, idx, item)
		if res.status == stUnreachable || res.status == stSkipped || len(t.Until) == 0 || ctx.Err() != nil {
			break
		}
		csc := sc
		if t.Register != "" {
			csc = sc.with(map[string]any{t.Register: res.data})
		}
		ok, err := csc.conds(t.Until)
		if err != nil {
			return failOutcome(err)
		}
		if res.data != nil {
			res.data["attempts"] = attempt + 1
		}
		if ok {
			break
		}
		if attempt >= retries {
			res.status = stFailed
			if res.msg == "" {
				res.msg = fmt.Sprintf("retries exhausted (%d) waiting for %s", retries, condsString(t.Until))
			}
			if res.data != nil {
				res.data["failed"] = true
			}
			break
		}
		hr.r.out.retry(t, hr.hs.name, attempt+1, retries)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return failOutcome(ctx.Err())
		}
	}
	if res.status == stFailed && t.Ignore {
		res.ignored = true
	}
	return res
}

func condsString(cs []Cond) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Expr)
	}
	return strings.Join(s, " and ")
}

// runOnce runs the action once and applies changed_when/failed_when.
func (hr *hostRun) runOnce(ctx context.Context, t *Task, sc *scope, idx int, item any) *outcome {
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	args, err := renderArgs(sc, t)
	if err != nil {
		return failOutcome(err)
	}
	var res *modules.Result
	var delegate string
	if t.Module == nil {
		res, err = hr.action(ctx, t, sc, args)
	} else {
		res, delegate, err = hr.module(ctx, t, sc, args, idx)
	}
	if err == nil && t.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The connection finished the request anyway; the task still
		// overran its timeout.
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil && t.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%s: task timed out after %s", t.Pos, t.Timeout)
		}
		o := failOutcome(err)
		// An unreachable delegate fails the task, not this host's connection.
		if delegate != "" && o.status == stUnreachable {
			o.status = stFailed
		}
		return o
	}
	data := map[string]any{}
	for k, v := range res.Data {
		data[k] = v
	}
	data["changed"] = res.Changed
	data["failed"] = res.Failed
	if res.Msg != "" {
		data["msg"] = res.Msg
	}
	if res.Skipped {
		data["skipped"] = true
	}
	if res.Diff != "" {
		data["diff"] = res.Diff
	}
	o := &outcome{status: stOK, msg: res.Msg, diff: res.Diff, data: data, delegate: delegate}
	if res.Changed {
		o.status = stChanged
	}
	if res.Skipped {
		o.status = stSkipped
	}
	if res.Failed {
		o.status = stFailed
	}
	if t.Action == "debug" {
		o.output = data["msg"]
		if v, ok := data["_var"]; ok {
			o.output = v
			delete(data, "_var")
		}
	}
	if (t.HasChg || t.HasFail) && !res.Skipped {
		csc := sc
		if t.Register != "" {
			csc = sc.with(map[string]any{t.Register: data})
		}
		if t.HasChg {
			ch, err := csc.conds(t.Changed)
			if err != nil {
				return failOutcome(err)
			}
			data["changed"] = ch
			if o.status == stChanged || o.status == stOK {
				o.status = stOK
				if ch {
					o.status = stChanged
				}
			}
		}
		if t.HasFail {
			fl, err := csc.conds(t.Failed)
			if err != nil {
				return failOutcome(err)
			}
			data["failed"] = fl
			if fl {
				o.status = stFailed
				if o.msg == "" {
					o.msg = "failed_when: " + condsString(t.Failed)
				}
			} else if o.status == stFailed {
				o.status = stOK
				if res.Changed {
					o.status = stChanged
				}
			}
		}
	}
	if t.NoLog {
		o.msg, o.diff = "the output has been hidden due to the 'no_log: true' specified for this result", ""
	}
	return o
}

// module runs a host module, on the delegate's connection when delegated.
func (hr *hostRun) module(ctx context.Context, t *Task, sc *scope, args map[string]any, idx int) (*modules.Result, string, error) {
	target := hr.hs.name
	delegate := ""
	if t.Delegate != "" {
		d, err := sc.render(t.Pos, t.Delegate)
		if err != nil {
			return nil, "", err
		}
		target, delegate = d, d
	}
	check := hr.r.checkFor(t)
	defer hr.r.pool.lock(target)()
	conn, err := hr.r.pool.get(ctx, target, check)
	if err != nil {
		return nil, delegate, err
	}
	local, _ := hr.r.pool.get(ctx, "localhost", check)
	become, buser := hr.r.becomeFor(sc, t)
	env, err := hr.environment(sc, t)
	if err != nil {
		return nil, delegate, err
	}
	var probe []byte
	if delegate == "" {
		probe, err = hr.probeFor(ctx, t, sc, idx, args, conn, become, buser)
		if err != nil {
			return nil, delegate, err
		}
	}
	dirs := hr.filesFor(t)
	files := make([]fs.FS, len(dirs))
	for i, d := range dirs {
		files[i] = d.asFS()
	}
	e := &modules.Env{Conn: conn, Host: hr.hs.name, Check: check, Diff: hr.r.opts.Diff, Become: become,
		BecomeUser: buser, Environment: env, Files: files, Vars: sc.vars, Probe: probe,
		ArtifactDir: hr.r.opts.ArtifactDir, Local: local,
		Render: func(name, text string) (string, error) {
			return sc.render(Pos{File: displayName(dirs, name), Line: 1}, text)
		}}
	res, err := t.Module.Run(ctx, e, args)
	if err == nil && res == nil {
		res = &modules.Result{}
	}
	// The module's own changed (before changed_when) says whether it acted
	// on the host: a command reports changed whenever it ran. In check mode
	// nothing changed on the host, so cached probes stay true.
	if err == nil && !check && !res.Skipped && res.Changed {
		hr.dropProbes()
		if delegate != "" {
			if d, ok := hr.r.hosts[delegate]; ok {
				d.mu.Lock()
				d.probes = nil
				d.mu.Unlock()
			}
		}
	}
	return res, delegate, err
}

func (hr *hostRun) environment(sc *scope, t *Task) (map[string]string, error) {
	m := mergeMaps(hr.play.Environment, t.Env)
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		rv, err := sc.resolve(v, t.Pos)
		if err != nil {
			return nil, err
		}
		out[k] = fmt.Sprint(rv)
	}
	return out, nil
}

// filesFor is the search path for src= (role templates/ or files/, then
// the playbook directory).
func (hr *hostRun) filesFor(t *Task) []src {
	sub := "files"
	if t.Action == "template" {
		sub = "templates"
	}
	var out []src
	if t.Role != nil {
		out = append(out, t.Role.Dir.join(sub))
		if sub == "templates" {
			out = append(out, t.Role.Dir.join("files"))
		}
	}
	pd := hr.play.Dir
	return append(out, pd.join(sub), pd)
}

// displayName turns a module's src name into the path messages show.
func displayName(dirs []src, name string) string {
	if filepath.IsAbs(name) {
		return displayPath(name)
	}
	for _, d := range dirs {
		if f := d.join(name); f.exists() {
			return f.display
		}
	}
	return name
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

// connPool dials each host once per run and keeps the connection.
type connPool struct {
	r  *run
	mu sync.Mutex
	m  map[string]*pooled
}

type pooled struct {
	// use serialises tasks on one connection: a host's own tasks and tasks
	// delegated to it from other hosts (a Conn serves one goroutine).
	use  sync.Mutex
	once sync.Once
	conn connection.Conn
	dry  connection.Conn
	err  error
}

func newConnPool(r *run) *connPool { return &connPool{r: r, m: map[string]*pooled{}} }

func (p *connPool) get(ctx context.Context, host string, check bool) (connection.Conn, error) {
	p.mu.Lock()
	e, ok := p.m[host]
	if !ok {
		e = &pooled{}
		p.m[host] = e
	}
	p.mu.Unlock()
	e.once.Do(func() {
		e.conn, e.err = p.r.dial(ctx, host)
		if e.err == nil {
			e.dry = connection.NewDry(e.conn)
		}
	})
	if e.err != nil {
		return nil, e.err
	}
	if check {
		return e.dry, nil
	}
	return e.conn, nil
}

// lock reserves host's connection for one task; it returns the unlock.
func (p *connPool) lock(host string) func() {
	p.mu.Lock()
	e, ok := p.m[host]
	if !ok {
		e = &pooled{}
		p.m[host] = e
	}
	p.mu.Unlock()
	e.use.Lock()
	return e.use.Unlock
}

func (p *connPool) roundTrips(host string) int64 {
	p.mu.Lock()
	e, ok := p.m[host]
	p.mu.Unlock()
	if !ok || e.conn == nil {
		return 0
	}
	return e.conn.RoundTrips()
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.m {
		if e.conn != nil {
			e.conn.Close()
		}
	}
}

func isLocalName(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }

func (r *run) dial(ctx context.Context, host string) (connection.Conn, error) {
	h, inInv := r.inv.Host(host)
	var vars map[string]any
	if inInv {
		vars = h.Vars
	}
	if r.opts.ConnFactory != nil {
		return r.opts.ConnFactory(host, vars)
	}
	if !inInv {
		if isLocalName(host) {
			return connection.NewLocal(host), nil
		}
		return nil, fmt.Errorf("delegate_to: host %q is not in the inventory", host)
	}
	cv, err := h.CheckConnVars()
	if err != nil {
		return nil, &connection.UnreachableError{Host: host, Err: err}
	}
	if cv.Connection == "local" {
		return connection.NewLocal(host), nil
	}
	cfg := r.sshConfig(host, cv)
	if cv.ProxyJump != nil {
		j := connection.SSHConfig{Host: host + " (jump)", Addr: cv.ProxyJump.Addr, Port: cv.ProxyJump.Port,
			User: cv.ProxyJump.User, KeyFiles: cfg.KeyFiles, KnownHosts: cfg.KnownHosts,
			AcceptNewHostKeys: cfg.AcceptNewHostKeys, Timeout: cfg.Timeout}
		if j.User == "" {
			j.User = cfg.User
		}
		cfg.Jump = &j
	}
	return connection.DialSSH(ctx, cfg)
}

// sshConfig: inventory variables win over command-line defaults, as in
// Ansible.
func (r *run) sshConfig(host string, cv inventory.ConnVars) connection.SSHConfig {
	cfg := connection.SSHConfig{Host: host, Addr: cv.Addr, Port: cv.Port, User: cv.User, Password: cv.Password,
		BecomePassword: cv.BecomePassword, AcceptNewHostKeys: r.opts.AcceptNewHostKeys, Timeout: r.opts.ConnectTimeout}
	if cfg.User == "" {
		cfg.User = r.opts.User
	}
	if cv.KeyFile != "" {
		cfg.KeyFiles = []string{cv.KeyFile}
	} else if r.opts.PrivateKey != "" {
		cfg.KeyFiles = []string{r.opts.PrivateKey}
	}
	if cv.KnownHostsFile != "" {
		cfg.KnownHosts = []string{cv.KnownHostsFile}
	} else if r.opts.KnownHosts != "" {
		cfg.KnownHosts = []string{r.opts.KnownHosts}
	}
	if cfg.BecomePassword == "" {
		cfg.BecomePassword = r.opts.BecomePassword
	}
	return cfg
}
