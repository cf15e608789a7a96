package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
}

type probeReq struct {
	key    probeKey
	script string
}

func (hr *hostRun) dropProbes() {
	hr.hs.mu.Lock()
	hr.hs.probes = nil
	hr.hs.mu.Unlock()
}

// probeFor returns the probe output for task t (item idx), running a batch
// when the cache has none. nil means the module must probe itself.
func (hr *hostRun) probeFor(ctx context.Context, t *Task, sc *scope, idx int, args map[string]any, conn connection.Conn, become bool, buser string) ([]byte, error) {
	p, ok := t.Module.(modules.Prober)
	if !ok {
		return nil, nil
	}
	script, ok := p.Probe(args)
	if !ok {
		return nil, nil
	}
	key := probeKey{t, idx}
	hr.hs.mu.Lock()
	e, hit := hr.hs.probes[key]
	if hit {
		delete(hr.hs.probes, key)
	}
	hr.hs.mu.Unlock()
	if hit && e.script == script {
		return e.out, nil
	}
	reqs := []probeReq{{key, script}}
	reqs = append(reqs, hr.lookahead(t, sc, idx, become, buser)...)
	outs, err := runProbes(ctx, conn, reqs, become, buser, modules.HashCache{Dir: modules.DefaultHashCacheDir, Write: !hr.r.opts.Check}, hr.r.debugf)
	if err != nil {
		return nil, err
	}
	hr.hs.mu.Lock()
	if hr.hs.probes == nil {
		hr.hs.probes = map[probeKey]probeEntry{}
	}
	for i, rq := range reqs[1:] {
		hr.hs.probes[rq.key] = probeEntry{script: rq.script, out: outs[i+1]}
	}
	hr.hs.mu.Unlock()
	return outs[0], nil
}

// lookahead collects the probes of the rest of t's loop and of the tasks
// that follow t on this host, stopping where the future is not knowable.
// It is long because each stop rule (meta, other become settings, an
// unrenderable condition or argument, the batch limit) sits in the one
// walk, in the order the rules apply; split up, the order would be hidden.
func (hr *hostRun) lookahead(t *Task, sc *scope, idx int, become bool, buser string) []probeReq {
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
	for j := t.seq + 1; j < len(seq) && len(out) < maxProbeBatch; j++ {
		u := seq[j]
		if !hr.r.selected(u) {
			continue
		}
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
		if b, bu := hr.r.becomeFor(usc, u); b != become || b && bu != buser {
			return out
		}
		if !u.HasLoop {
			ok, err := usc.conds(u.When)
			if err != nil {
				return out
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
			return out
		}
		loopVar := u.LoopVar
		if loopVar == "" {
			loopVar = "item"
		}
		for i, it := range items {
			isc := usc.with(loopVars(u, loopVar, it, i, len(items)))
			ok, err := isc.conds(u.When)
			if err != nil {
				return out
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

// probeOf renders u's args; stop=true when they cannot be rendered yet.
func (hr *hostRun) probeOf(u *Task, p modules.Prober, sc *scope, idx int) (*probeReq, bool) {
	args, err := renderArgs(sc, u)
	if err != nil {
		return nil, true
	}
	script, ok := p.Probe(args)
	if !ok {
		return nil, false
	}
	return &probeReq{key: probeKey{u, idx}, script: script}, false
}

// runProbes runs every script in one read-only request and splits the
// output at per-run markers.
func runProbes(ctx context.Context, conn connection.Conn, reqs []probeReq, become bool, buser string, hc modules.HashCache, debugf func(string, ...any)) ([][]byte, error) {
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	marker := "__GKPROBE_" + hex.EncodeToString(nb[:]) + "__"
	var all strings.Builder
	for _, rq := range reqs {
		all.WriteString(rq.script)
		all.WriteByte('\n')
	}
	var b strings.Builder
	b.WriteString(modules.ProbePrelude(all.String(), hc))
	for i, rq := range reqs {
		// A brace group, not a subshell: forks cost ~10 ms each on a
		// loaded host, and probes are read-only scripts that neither exit
		// nor cd (one that did would cut the batch short, which
		// splitProbes reports).
		fmt.Fprintf(&b, "printf '\\n%s %d\\n'\n{\n%s\n} </dev/null\n", marker, i, rq.script)
	}
	fmt.Fprintf(&b, "printf '\\n%s end\\n'\n", marker)
	res, err := conn.Run(ctx, connection.Request{Script: b.String(), ReadOnly: true, Become: become, BecomeUser: buser})
	if err != nil {
		return nil, err
	}
	// A no_log task's probe carries its rendered arguments in the script
	// and what it read (a file's content) in the output: the batch is
	// shown without them.
	for _, rq := range reqs {
		if rq.key.t != nil && rq.key.t.NoLog {
			debugf("probe batch on %s: %d probes, rc %d (script and output hidden: the batch holds a no_log task)", conn.Host(), len(reqs), res.RC)
			return splitProbes(res.Stdout, marker, len(reqs))
		}
	}
	debugf("probe batch on %s: %d probes, rc %d\n--- script\n%s\n--- stdout\n%s\n--- stderr\n%s", conn.Host(), len(reqs), res.RC, b.String(), res.Stdout, res.Stderr)
	return splitProbes(res.Stdout, marker, len(reqs))
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
