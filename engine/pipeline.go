package engine

import (
	"context"
	"errors"
	"fmt"

	"gokube/connection"
	"gokube/modules"
)

// Pipelining a host's changes (connection.Pipeliner).
//
// In a cold run nearly every task changes something, and each change was
// a request of its own: the host waited for gokube to render the next
// task, gokube for the host's answer. When a task is about to send its
// change, the executor also works out the changes of the tasks that follow
// it, as far as their outcome can be foreseen, and sends them all at
// once; each task then reads its answer at its turn, which has usually
// arrived. A task is foreseen by running its module against a connection
// that records its one change request and answers it with success; its
// probe answer is the batch's, and the probes its predecessors' changes
// would make stale are dropped first, as they will be. The host runs the
// requests in order and stops at the first that fails, as Ansible stops a
// host at its first failed task; the ones behind it answer "not run" and
// their tasks run the usual way if the host goes on (a rescue).
//
// Only what cannot depend on an earlier task's outcome is foreseen: a
// module that says its result does not depend on its request's output
// (modules.Pipelinable), with no loop, until, changed_when, failed_when,
// ignore_errors, timeout, delegation or run_once, in a play that does not
// stop every host on one's failure (any_errors_fatal,
// max_fail_percentage); an action or meta task ends the pipeline, and so
// does a task whose probe answer the batch does not hold (the batch that
// task needs then goes behind the changes, inflight.go). A task that
// registers its result does not: the tasks after it are rendered with the
// result it will register when its request succeeds (the foreseen one);
// when a request fails, the ones behind it do not run, and their tasks,
// rendered again with what was really registered, run the usual way.
// Nothing is foreseen in check mode, where nothing is sent.

// maxPipeline bounds the requests sent at once.
const maxPipeline = 32

// foreseen is a task whose change request went out ahead of its turn.
type foreseen struct {
	t       *Task
	args    map[string]any
	env     *modules.Env    // as the module saw it; Conn is the real one
	res     *modules.Result // the module's result, its request answered with success
	op      *connection.Op  // nil: the module sends nothing (no change)
	pending *connection.Pending
	// after is the answer of the last request sent before this task's
	// place: a task that sends nothing was foreseen on the state that
	// request leaves, which holds only if it succeeded.
	after *connection.Pending
	key   probeKey // the probe answer it was foreseen on (not the first's)
}

// errNotForeseen stops a module run against the recording connection: it
// wanted more than one change request, or to read the host.
var errNotForeseen = errors.New("not foreseeable")

// recordConn records a module's one change request (recording) or answers
// it with the real answer (replaying).
type recordConn struct {
	connection.Conn
	op  *connection.Op
	bad bool
	// replay: the answer to give the request (req), once
	replay *connection.Result
	req    connection.Request
	used   bool
}

func (c *recordConn) Run(ctx context.Context, req connection.Request) (connection.Result, error) {
	if req.ReadOnly || c.op != nil || c.used {
		c.bad = true
		return connection.Result{}, errNotForeseen
	}
	if c.replay != nil {
		c.used = true
		return *c.replay, nil
	}
	c.op = &connection.Op{Req: req}
	return connection.Result{}, nil
}

func (c *recordConn) Put(ctx context.Context, up connection.Upload) error {
	if c.op != nil || c.used {
		c.bad = true
		return errNotForeseen
	}
	if c.replay != nil {
		c.used = true
		return connection.PutResult(c.Host(), up, c.req, *c.replay)
	}
	req, temp, ok, err := connection.PutRequest(up)
	if err != nil || !ok {
		c.bad = true
		return errNotForeseen
	}
	c.op = &connection.Op{Req: req, Temp: temp}
	return nil
}

func (c *recordConn) Get(context.Context, string, bool) ([]byte, error) {
	c.bad = true
	return nil, errNotForeseen
}

func (c *recordConn) Close() error { return nil }

// pipelinable says whether t may be foreseen (the rules above).
func (hr *hostRun) pipelinable(t *Task) bool {
	if _, ok := t.Module.(modules.Pipelinable); !ok {
		return false
	}
	return hr.plainTask(t)
}

// plainTask says whether t is a task of the play's own list whose one run
// on this host is its module's (no loop, retries, result conditions,
// timeout, delegation), in a play that stops hosts one by one.
func (hr *hostRun) plainTask(t *Task) bool {
	if t.HasLoop || len(t.Until) > 0 || t.HasChg || t.HasFail || t.Ignore || t.Timeout > 0 || t.Delegate != "" || t.RunOnce {
		return false
	}
	if t.seq < 0 || t.seq >= len(hr.play.seq) || hr.play.seq[t.seq] != t {
		return false // a handler or a rescue task
	}
	return !hr.r.checkFor(t) && !hr.play.AnyErrorsFatal && hr.play.MaxFailPercentage < 0
}

// foresee runs t's module against a recording connection; nil when its
// outcome cannot be foreseen. The probes its change makes stale are
// dropped, as they will be once it ran.
func (hr *hostRun) foresee(ctx context.Context, t *Task, args map[string]any, env *modules.Env, probed []string) *foreseen {
	rc := &recordConn{Conn: env.Conn}
	e := *env
	e.Conn = rc
	res, err := t.Module.Run(ctx, &e, args)
	if err != nil || rc.bad || res == nil || res.Failed || res.Skipped {
		return nil
	}
	if res.Changed || res.Reprobe {
		hr.dropProbesAfter(res, probed)
	}
	return &foreseen{t: t, args: args, env: env, res: res, op: rc.op}
}

// pipeline foresees t and the tasks after it and sends their changes at
// once (t's alone when nothing after it can be foreseen: one request, as
// it would have sent); t's own result is then read as any other's
// (answer). ok=false: t cannot be foreseen and runs the usual way.
func (hr *hostRun) pipeline(ctx context.Context, t *Task, args map[string]any, env *modules.Env, probed []string) (res *modules.Result, err error, ok bool) {
	pl, isPipe := env.Conn.(connection.Pipeliner)
	if !isPipe || !hr.pipelinable(t) {
		return nil, nil, false
	}
	first := hr.foresee(ctx, t, args, env, probed)
	if first == nil {
		return nil, nil, false
	}
	if first.op == nil {
		// Nothing to change: the module ran as it would have, without
		// a request (read-only ones stop the recording).
		return first.res, nil, true
	}
	window := []*foreseen{first}
	ops := []connection.Op{*first.op}
	// assumed: what the window's tasks will register when their requests
	// succeed, which the tasks after them render with; when one fails,
	// those behind it did not run and run again the usual way.
	assumed := map[string]any{}
	if t.Register != "" {
		assumed[t.Register] = resultOutcome(t, first.res, "").data
	}
	var next *Task // the task that would send the batch after the window
	for j := t.seq + 1; j < len(hr.play.seq); j++ {
		u := hr.play.seq[j]
		if !hr.r.selected(u) {
			continue
		}
		if len(ops) >= maxPipeline {
			break
		}
		f, stop := hr.foreseeNext(ctx, u, env, assumed)
		if f != nil {
			window = append(window, f)
			if f.op != nil {
				ops = append(ops, *f.op)
			}
		}
		if stop {
			if f == nil {
				next = hr.nextProber(j)
			}
			break
		}
	}
	var behind *batchInFlight
	if next != nil {
		if behind = hr.batchBehind(next, env, assumed); behind != nil {
			ops = append(ops, connection.Op{Req: behind.req})
		}
	}
	pend, err := pl.Send(ctx, ops)
	if err != nil {
		return nil, err, true
	}
	k := 0
	var last *connection.Pending
	hr.hs.mu.Lock()
	if hr.ahead == nil {
		hr.ahead = map[*Task]*foreseen{}
	}
	for _, f := range window {
		f.after = last
		if f.op != nil {
			f.pending = pend[k]
			last = f.pending
			k++
		}
		if f != first {
			// The batch's answer is used: at its turn the task takes
			// this instead.
			delete(hr.hs.probes, f.key)
			hr.ahead[f.t] = f
		}
	}
	if behind != nil {
		behind.sent(pend[k], hr.r.opts.Verbosity)
		hr.hs.behind = behind
	}
	hr.hs.mu.Unlock()
	res, err, ran := first.answer(ctx)
	if !ran {
		// t was first: nothing before it could fail.
		return nil, fmt.Errorf("%s: internal error: the first request of a pipeline did not run", t.Pos), true
	}
	return res, err, true
}

// foreseeNext foresees u, which follows the task that sends the pipeline;
// stop says the pipeline ends with u (or before it, when f is nil). A
// result u registers is added to assumed.
func (hr *hostRun) foreseeNext(ctx context.Context, u *Task, env0 *modules.Env, assumed map[string]any) (f *foreseen, stop bool) {
	if !hr.pipelinable(u) {
		return nil, true
	}
	usc := hr.r.taskScope(hr.hs, u)
	if len(assumed) > 0 {
		usc = usc.with(assumed)
	}
	if b, bu := hr.r.becomeFor(usc, u); b != env0.Become || b && bu != env0.BecomeUser {
		return nil, true
	}
	run, err := usc.conds(u.When)
	if err != nil {
		return nil, true
	}
	if !run {
		return nil, u.Register != "" // skipped at its turn; its skip is registered
	}
	args, err := renderArgs(usc, u)
	if err != nil {
		return nil, true
	}
	p, ok := u.Module.(modules.Prober)
	if !ok {
		return nil, true
	}
	script, ok := p.Probe(args)
	if !ok {
		return nil, true
	}
	key := probeKey{u, -1}
	hr.hs.mu.Lock()
	e, hit := hr.hs.probes[key]
	hr.hs.mu.Unlock()
	if !hit || e.script != script {
		return nil, true
	}
	environ, err := hr.environment(usc, u)
	if err != nil {
		return nil, true
	}
	f = hr.foresee(ctx, u, args, hr.moduleEnv(u, usc, env0.Conn, false, env0.Become, env0.BecomeUser, environ, e.out), e.paths)
	if f == nil {
		return nil, true
	}
	f.key = key
	if u.Register != "" {
		assumed[u.Register] = resultOutcome(u, f.res, "").data
	}
	return f, false
}

// takeAhead returns t's foreseen run when its request went out ahead of
// its turn (loops are never foreseen: idx must be -1).
func (hr *hostRun) takeAhead(t *Task, idx int) *foreseen {
	if idx != -1 {
		return nil
	}
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	f := hr.ahead[t]
	delete(hr.ahead, t)
	return f
}

// answer is the task's result once its request's answer is in: the
// foreseen one on success; on failure the module's own verdict, from the
// module run again with the real answer. ran=false: the request did not
// run (one before it failed), the task must run the usual way.
func (f *foreseen) answer(ctx context.Context) (res *modules.Result, err error, ran bool) {
	if f.pending == nil {
		if f.after != nil {
			if ans, err := f.after.Wait(ctx); err != nil || ans.RC != 0 {
				if ctx.Err() != nil {
					return nil, ctx.Err(), true
				}
				return nil, nil, false // the host went on after a failure (a rescue): look again
			}
		}
		return f.res, nil, true
	}
	ans, err := f.pending.Wait(ctx)
	if errors.Is(err, connection.ErrNotRun) {
		return nil, nil, false
	}
	if err != nil {
		return nil, err, true
	}
	if ans.RC == 0 {
		return f.res, nil, true
	}
	rc := &recordConn{Conn: f.env.Conn, replay: &ans, req: f.op.Req}
	e := *f.env
	e.Conn = rc
	res, err = f.t.Module.Run(ctx, &e, f.args)
	if err == nil && rc.bad {
		err = fmt.Errorf("%s: internal error: the module did not send the request it sent ahead", f.t.Pos)
	}
	return res, err, true
}

// failedAhead forgets every probe after a pipelined change failed: it may
// have changed part of what it set out to (a directory made, its owner
// not), which its foreseen success did not drop.
func failedAhead(hr *hostRun, res *modules.Result) {
	if res != nil && res.Failed {
		hr.dropProbes()
	}
}
