package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"gokube/connection"
	"gokube/modules"
)

// Probe batching: before a probeable task runs on a host, the executor
// looks ahead over that host's next tasks, renders their arguments with
// what is known now, and runs every probe script in ONE read-only request.
// Each task later finds its output in the cache, keyed by task and loop
// item and checked against the script it would run now, so a stale entry
// (variables changed in between) is a miss, never a wrong answer.

const maxProbeBatch = 64

type probeKey struct {
	t    *Task
	item int
}

type probeEntry struct {
	script string
	out    []byte
	// paths: the paths the answer depends on, all where their names say
	// (no symbolic link on the way, see modules.PathsUnlinked); nil when
	// the answer may depend on anything.
	paths []string
	// scope: what else the answer depends on (modules.ScopedProber).
	scope modules.ProbeScope
}

type probeReq struct {
	key    probeKey
	script string
	// paths: the probe's declared paths when it is a PathProber's.
	paths []string
	scope modules.ProbeScope
}

func (hr *hostRun) dropProbes() { hr.hs.dropProbes() }

// dropProbes forgets every cached probe and the daemon-reload answers.
func (hs *hostState) dropProbes() {
	hs.mu.Lock()
	hs.probes = nil
	hs.reloadVars, hs.reloadSince = "", ""
	hs.reloadWritten = ""
	hs.behind = nil
	hs.mu.Unlock()
}

// noteReloadWrites records the first daemon-reload input among a change's
// touched paths (hostState.reloadWritten); hs.mu is held.
func (hs *hostState) noteReloadWrites(touched []string) {
	for _, p := range touched {
		if hs.reloadWritten == "" && modules.ReloadInput(p) {
			hs.reloadWritten = p
		}
	}
}

// dropProbesAfter forgets the cached probes a change may have made
// stale. A change that touched only paths where their names say (own: the
// changed task's probed paths; touched paths are those or beside them)
// leaves the probes of unrelated paths true: a path is related to another
// when it is the same, below it or above it. Anything else (a command, a
// unit, an in-place attribute change) forgets every probe. In a cold run
// this saves one probe batch (a request and its processes) per changed
// file. Paths below a directory the change created empty
// (Result.NewDirs) were absent and still are: their probes stay too.
//
// A change of the account databases only (Result.AccountsOnly, a cold
// run's groupadd and useradd) touches no path of the task's own: what
// systemd reports stays, and so do the path probes that name no owner (an
// absent path) or, when the change only added accounts (Result.Added),
// only owners with names, and the probes of other accounts that were
// absent. Then the files, the units and the user that follow a group cost
// no probe batch.
func (hr *hostRun) dropProbesAfter(res *modules.Result, own []string) {
	if !res.AccountsOnly && (len(res.Touched) == 0 || own == nil || !besideOwn(res.Touched, own)) {
		hr.dropProbes()
		hr.hs.mu.Lock()
		hr.hs.noteReloadWrites(res.Touched)
		hr.hs.mu.Unlock()
		return
	}
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	hr.hs.behind = nil // sent before this change: its answers may be stale
	if !res.AccountsOnly {
		// Whether a daemon-reload could change anything is asked again
		// after a file change (a unit file is a path like any other);
		// when the last one was is not: writing files does not reload.
		hr.hs.reloadVars = hr.hs.reloadSince
		hr.hs.noteReloadWrites(res.Touched)
	}
	for k, e := range hr.hs.probes {
		if !probeSurvives(e, res) {
			delete(hr.hs.probes, k)
		}
	}
}

// probeSurvives says whether a cached probe's answer is still true after
// a change of files only or of accounts only (dropProbesAfter).
func probeSurvives(e probeEntry, res *modules.Result) bool {
	switch {
	case e.paths != nil:
		if pathsChanged(e.paths, res.Touched, res.NewDirs) {
			return false
		}
		return !res.AccountsOnly || !modules.ProbeNamesOwner(e.out) || len(res.Added) > 0 && modules.ProbeOwnersNamed(e.out)
	case e.scope.Systemd:
		return res.AccountsOnly
	case e.scope.Account != "":
		return res.AccountsOnly && len(res.Added) > 0 && !slices.Contains(res.Added, e.scope.Account) && modules.AccountAbsent(e.out)
	}
	return false
}

// pathsChanged says whether a change of touched may have changed what is
// at a path of ps: a path related to a touched one (pathsRelated), unless
// it lies below that one and that one is among newDirs (made empty).
func pathsChanged(ps, touched, newDirs []string) bool {
	for _, p := range ps {
		for _, c := range touched {
			if !pathsRelated([]string{p}, []string{c}) || below(p, c) && slices.Contains(newDirs, c) {
				continue
			}
			return true
		}
	}
	return false
}

// below says whether p is strictly below directory d.
func below(p, d string) bool { return strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") }

// besideOwn says whether every touched path is clean and absolute and is
// one of own or in the same directory as one of own (a backup, a temp
// file), so that no symbolic link lies on its way either.
func besideOwn(touched, own []string) bool {
	for _, c := range touched {
		if !path.IsAbs(c) || path.Clean(c) != c {
			return false
		}
		ok := false
		for _, p := range own {
			if c == p || path.Dir(c) == path.Dir(p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// pathsRelated says whether a path of as is the same as, below or above a
// path of bs.
func pathsRelated(as, bs []string) bool {
	for _, a := range as {
		for _, b := range bs {
			if a == b || strings.HasPrefix(a, strings.TrimSuffix(b, "/")+"/") || strings.HasPrefix(b, strings.TrimSuffix(a, "/")+"/") {
				return true
			}
		}
	}
	return false
}

// probeFor returns the probe output for task t (item idx), running a batch
// when the cache has none. nil means the module must probe itself. paths
// are the paths the output depends on, when it depends on nothing else
// (probeEntry.paths).
func (hr *hostRun) probeFor(ctx context.Context, t *Task, sc *scope, idx int, args map[string]any, conn connection.Conn, become bool, buser string) (out []byte, paths []string, err error) {
	p, ok := t.Module.(modules.Prober)
	if !ok {
		return nil, nil, nil
	}
	script, ok := p.Probe(args)
	if !ok {
		return nil, nil, nil
	}
	key := probeKey{t, idx}
	if e, ok := hr.takeProbe(key, script); ok {
		return e.out, e.paths, nil
	}
	// A batch sent behind the changes before t may hold t's answer.
	if kept, err := hr.keepInFlight(ctx); err != nil {
		return nil, nil, err
	} else if kept {
		if e, ok := hr.takeProbe(key, script); ok {
			return e.out, e.paths, nil
		}
	}
	if op, ok := t.Module.(modules.OptionalProber); ok && op.ProbeOnlyInBatch() {
		return nil, nil, nil
	}
	reqs := []probeReq{{key, script, probePaths(t.Module, args, script), probeScope(t.Module, args)}}
	reqs = append(reqs, hr.lookahead(t, sc, idx, become, buser, nil)...)
	known, partial := hr.reloadKnown()
	outs, links, err := runProbes(ctx, conn, reqs, known, become, buser, modules.HashCache{Dir: modules.DefaultHashCacheDir, Write: !hr.r.opts.Check}, hr.r.debugf)
	if err != nil {
		return nil, nil, err
	}
	first := hr.keepBatch(reqs, outs, links, partial, 1)
	return outs[0], first.paths, nil
}

// takeProbe takes key's cached answer out of the cache; ok when it was
// there for script (one rendered otherwise is stale: it goes too).
func (hr *hostRun) takeProbe(key probeKey, script string) (probeEntry, bool) {
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	e, hit := hr.hs.probes[key]
	if hit {
		delete(hr.hs.probes, key)
	}
	return e, hit && e.script == script
}

// reloadKnown is what a batch sent now is told first (runProbes' known);
// partial says its daemon-reload answers are to be kept (none are known,
// or the last reload's time alone).
func (hr *hostRun) reloadKnown() (known string, partial bool) {
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	known, partial = hr.hs.reloadVars, hr.hs.reloadVars == hr.hs.reloadSince
	if hr.hs.reloadWritten != "" {
		known += modules.ReloadWritten(hr.hs.reloadWritten)
	}
	return known, partial
}

// keepBatch keeps a batch's answers to reqs[from:] in the cache, and its
// daemon-reload answers when partial; it returns reqs[0]'s entry.
func (hr *hostRun) keepBatch(reqs []probeReq, outs [][]byte, links map[string]bool, partial bool, from int) probeEntry {
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	return hr.keepBatchLocked(reqs, outs, links, partial, from)
}

// keepBatchLocked is keepBatch with hs.mu held.
func (hr *hostRun) keepBatchLocked(reqs []probeReq, outs [][]byte, links map[string]bool, partial bool, from int) probeEntry {
	for _, out := range outs {
		if !partial {
			break
		}
		if v := modules.ReloadAnswers(out); v != "" {
			hr.hs.reloadVars, hr.hs.reloadSince = v, modules.ReloadSince(out)
			break
		}
	}
	entry := func(rq probeReq, out []byte) probeEntry {
		e := probeEntry{script: rq.script, out: out, scope: rq.scope}
		if rq.paths != nil && links != nil && modules.PathsUnlinked(rq.paths, links) {
			e.paths = rq.paths
		}
		return e
	}
	if hr.hs.probes == nil {
		hr.hs.probes = map[probeKey]probeEntry{}
	}
	for i := from; i < len(reqs); i++ {
		hr.hs.probes[reqs[i].key] = entry(reqs[i], outs[i])
	}
	return entry(reqs[0], outs[0])
}

// probePaths is a PathProber's declared paths for script, nil for any
// other probe.
func probePaths(m modules.Module, args map[string]any, script string) []string {
	pp, ok := m.(modules.PathProber)
	if !ok || !pp.ProbesOnlyPaths(args) {
		return nil
	}
	return modules.ProbePaths(script)
}

// probeScope is a ScopedProber's scope for args, the zero scope (any)
// for any other probe.
func probeScope(m modules.Module, args map[string]any) modules.ProbeScope {
	if sp, ok := m.(modules.ScopedProber); ok {
		return sp.ProbeScope(args)
	}
	return modules.ProbeScope{}
}

// lookahead collects the probes of the rest of t's loop and of the tasks
// that follow t on this host, stopping where the future is not knowable.
// It is long because each stop rule (meta, other become settings, an
// unrenderable argument, the batch limit) sits in the one walk, in the
// order the rules apply; split up, the order would be hidden. A task whose
// condition or loop cannot be rendered yet is passed over, not a stop.
//
// assumed are results the tasks before t will register, as foreseen
// (pipeline): they render as if registered.
func (hr *hostRun) lookahead(t *Task, sc *scope, idx int, become bool, buser string, assumed map[string]any) []probeReq {
	var out []probeReq
	p := t.Module.(modules.Prober)
	// The rest of this task's loop.
	if t.HasLoop && idx >= 0 {
		base := hr.r.taskScope(hr.hs, t)
		items, err := hr.loopItems(base, t)
		if err != nil {
			return out
		}
		loopVar := t.LoopVar
		if loopVar == "" {
			loopVar = "item"
		}
		for i := idx + 1; i < len(items) && len(out) < maxProbeBatch; i++ {
			isc := base.with(loopVars(t, loopVar, items[i], i, len(items)))
			rq, stop := hr.probeOf(t, p, isc, i)
			if stop {
				return out
			}
			if rq != nil {
				out = append(out, *rq)
			}
		}
	}
	seq := hr.play.seq
	if t.seq < 0 {
		return out
	}
	// Results that tasks from t on will register are not known yet. The
	// look-ahead renders later tasks as if each registered an unchanged,
	// successful result (what a run with nothing to change registers), so
	// "daemon_reload: {{ .unit.changed }}" after a template task does not
	// end the batch. A wrong guess costs nothing but the probe: a task
	// uses a cached probe only when its script, rendered with the real
	// results, is the same.
	pending := maps.Clone(assumed)
	if pending == nil {
		pending = map[string]any{}
	}
	registers := t.Register // registered before the next task renders
tasks:
	for j := t.seq + 1; j < len(seq) && len(out) < maxProbeBatch; j++ {
		u := seq[j]
		if registers != "" {
			pending[registers] = unchangedResult()
		}
		registers = ""
		if !hr.r.selected(u) {
			continue
		}
		registers = u.Register
		if u.Module == nil {
			if u.Action == "meta" {
				return out // handlers may run, the play may end
			}
			continue // engine actions do not touch the host
		}
		if u.Delegate != "" || u.RunOnce {
			continue
		}
		// A module that cannot probe is passed over: if it acts on the host
		// it reports changed, and that drops the cache; if it does not (a
		// command whose creates= holds), the probes stay true.
		up, ok := u.Module.(modules.Prober)
		if !ok {
			continue
		}
		usc := hr.r.taskScope(hr.hs, u)
		if len(pending) > 0 {
			usc = usc.with(pending)
		}
		if b, bu := hr.r.becomeFor(usc, u); b != become || b && bu != buser {
			return out
		}
		if !u.HasLoop {
			ok, err := usc.conds(u.When)
			if err != nil {
				// A condition on a result not registered yet (a task of
				// this batch) is passed over like a module that cannot
				// probe: if it runs and acts, that drops the cache; if it
				// runs without acting or is skipped, the probes stay true;
				// if it runs, it probes itself.
				continue
			}
			if !ok {
				continue
			}
			rq, stop := hr.probeOf(u, up, usc, -1)
			if stop {
				return out
			}
			if rq != nil {
				out = append(out, *rq)
			}
			continue
		}
		items, err := hr.loopItems(usc, u)
		if err != nil {
			continue // a loop over results not registered yet: passed over
		}
		loopVar := u.LoopVar
		if loopVar == "" {
			loopVar = "item"
		}
		for i, it := range items {
			isc := usc.with(loopVars(u, loopVar, it, i, len(items)))
			ok, err := isc.conds(u.When)
			if err != nil {
				continue tasks // passed over, as above
			}
			if !ok {
				continue
			}
			rq, stop := hr.probeOf(u, up, isc, i)
			if stop {
				return out
			}
			if rq != nil {
				out = append(out, *rq)
			}
		}
	}
	return out
}

// unchangedResult is what the look-ahead assumes a task not run yet will
// register: ok, nothing changed.
func unchangedResult() map[string]any {
	return map[string]any{"changed": false, "failed": false, "skipped": false}
}

// probeOf renders u's args; stop=true when they cannot be rendered yet.
// A probe the cache already holds, for the same script, is not asked
// again (nil): a batch after a change asks only what the change dropped.
func (hr *hostRun) probeOf(u *Task, p modules.Prober, sc *scope, idx int) (*probeReq, bool) {
	args, err := renderArgs(sc, u)
	if err != nil {
		return nil, true
	}
	script, ok := p.Probe(args)
	if !ok {
		return nil, false
	}
	key := probeKey{u, idx}
	hr.hs.mu.Lock()
	e, hit := hr.hs.probes[key]
	hr.hs.mu.Unlock()
	if hit && e.script == script {
		return nil, false
	}
	return &probeReq{key: key, script: script, paths: probePaths(u.Module, args, script), scope: probeScope(u.Module, args)}, false
}

// runProbes runs every script in one read-only request and splits the
// output at per-run markers. links are the symbolic links on the way to
// the declared paths (modules.ProbeLinks), nil when the batch did not
// scan them.
//
// known is shell text put first: answers an earlier batch found that
// still hold (the daemon-reload questions, modules.ReloadAnswers).
func runProbes(ctx context.Context, conn connection.Conn, reqs []probeReq, known string, become bool, buser string, hc modules.HashCache, debugf func(string, ...any)) (outs [][]byte, links map[string]bool, err error) {
	req, marker, err := probeRequest(reqs, known, become, buser, hc)
	if err != nil {
		return nil, nil, err
	}
	res, err := conn.Run(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return probeAnswers(conn.Host(), reqs, req, res, marker, debugf)
}

// probeRequest is the read-only request of a batch of reqs, and the
// marker its answers are split at.
func probeRequest(reqs []probeReq, known string, become bool, buser string, hc modules.HashCache) (connection.Request, string, error) {
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return connection.Request{}, "", err
	}
	marker := "__GKPROBE_" + hex.EncodeToString(nb[:]) + "__"
	var all strings.Builder
	for _, rq := range reqs {
		all.WriteString(rq.script)
		all.WriteByte('\n')
	}
	var b strings.Builder
	b.WriteString(known)
	b.WriteString(modules.ProbePrelude(all.String(), hc))
	for i, rq := range reqs {
		// A brace group, not a subshell: forks cost ~10 ms each on a
		// loaded host, and probes are read-only scripts that neither exit
		// nor cd (one that did would cut the batch short, which
		// splitProbes reports).
		fmt.Fprintf(&b, "printf '\\n%s %d\\n'\n{\n%s\n} </dev/null\n", marker, i, rq.script)
	}
	fmt.Fprintf(&b, "printf '\\n%s end\\n'\n", marker)
	return connection.Request{Script: b.String(), ReadOnly: true, Become: become, BecomeUser: buser}, marker, nil
}

// probeAnswers splits a batch's answer res to req into the answers to
// reqs.
func probeAnswers(host string, reqs []probeReq, req connection.Request, res connection.Result, marker string, debugf func(string, ...any)) (outs [][]byte, links map[string]bool, err error) {
	head, _, _ := bytes.Cut(res.Stdout, []byte("\n"+marker+" "))
	if l, scanned := modules.ProbeLinks(head); scanned {
		links = l
	}
	// A no_log task's probe carries its rendered arguments in the script
	// and what it read (a file's content) in the output: the batch is
	// shown without them.
	for _, rq := range reqs {
		if rq.key.t != nil && rq.key.t.NoLog {
			debugf("probe batch on %s: %d probes, rc %d (script and output hidden: the batch holds a no_log task)", host, len(reqs), res.RC)
			outs, err := splitProbes(res.Stdout, marker, len(reqs))
			return outs, links, err
		}
	}
	debugf("probe batch on %s: %d probes, rc %d\n--- script\n%s\n--- stdout\n%s\n--- stderr\n%s", host, len(reqs), res.RC, req.Script, res.Stdout, res.Stderr)
	outs, err = splitProbes(res.Stdout, marker, len(reqs))
	return outs, links, err
}

func splitProbes(out []byte, marker string, n int) ([][]byte, error) {
	parts := bytes.Split(out, []byte("\n"+marker+" "))
	res := make([][]byte, n)
	seen := 0
	for _, part := range parts[1:] {
		head, body, _ := bytes.Cut(part, []byte("\n"))
		if string(head) == "end" {
			seen = -seen - 1
			break
		}
		i, err := strconv.Atoi(string(head))
		if err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("probe batch: garbled output near marker %q", head)
		}
		res[i] = body
		seen++
	}
	if seen >= 0 {
		return nil, fmt.Errorf("probe batch: output ended early (%d of %d probes)", seen, n)
	}
	return res, nil
}
