package engine

import (
	"context"
	"errors"

	"gokube/connection"
	"gokube/modules"
)

// A probe batch behind a pipeline's changes.
//
// A pipeline ends at a task whose probe answer the changes before it made
// stale (a file mode after the file was written, a unit's state after it
// was started). That task would send a batch of its own and wait for it:
// a round trip after the one of the changes. The session runs requests in
// order, and the foreseen changes' effect on the cache is known when they
// are sent (foresee drops what they make stale), so the batch that task
// would send goes out behind the changes, in the same write: its answers
// describe the host as the changes left it. They are kept at the first
// cache miss after it (keepInFlight), whichever task that is; a change
// after the batch was sent, or a failed change before it (then the batch
// does not run), forgets it with the probes (hostState.dropProbes).

// A command (modules.ChangeLast) forgets every probe: its batch goes
// behind it the same way (batchAfterConn).

// batchInFlight is a probe batch sent behind a pipeline's changes.
type batchInFlight struct {
	reqs []probeReq
	// req: the request, its script only while it is to be sent or shown
	// (-vvvv): a host's batch may wait in flight for a while, and a
	// thousand hosts' scripts add up.
	req     connection.Request
	marker  string
	partial bool // keep its daemon-reload answers (reloadKnown)
	pending *connection.Pending
}

// sent records the batch's answer to come, and forgets its script unless
// it is to be shown.
func (b *batchInFlight) sent(p *connection.Pending, verbosity int) {
	b.pending = p
	if verbosity < 4 {
		b.req.Script = ""
	}
}

// batchBehind is the batch u would send at its turn, as the pipeline
// before it (its become settings env's, the results its tasks register
// assumed) leaves the cache; nil when u would send none or the batch
// cannot be known now.
func (hr *hostRun) batchBehind(u *Task, env *modules.Env, assumed map[string]any) *batchInFlight {
	if u.Module == nil || u.HasLoop || u.Delegate != "" || u.RunOnce {
		return nil
	}
	p, ok := u.Module.(modules.Prober)
	if !ok {
		return nil
	}
	if op, ok := u.Module.(modules.OptionalProber); ok && op.ProbeOnlyInBatch() {
		return nil
	}
	usc := hr.r.taskScope(hr.hs, u)
	if len(assumed) > 0 {
		usc = usc.with(assumed)
	}
	if b, bu := hr.r.becomeFor(usc, u); b != env.Become || b && bu != env.BecomeUser {
		return nil
	}
	if run, err := usc.conds(u.When); err != nil || !run {
		return nil
	}
	rq, stop := hr.probeOf(u, p, usc, -1)
	if stop || rq == nil {
		return nil // not renderable yet, or its answer is kept already
	}
	reqs := append([]probeReq{*rq}, hr.lookahead(u, usc, -1, env.Become, env.BecomeUser, assumed)...)
	known, partial := hr.reloadKnown()
	req, marker, err := probeRequest(reqs, known, env.Become, env.BecomeUser, modules.HashCache{Dir: modules.DefaultHashCacheDir, Write: !hr.r.opts.Check})
	if err != nil {
		return nil
	}
	return &batchInFlight{reqs: reqs, req: req, marker: marker, partial: partial}
}

// keepInFlight waits for the batch sent behind a pipeline, if one is in
// flight, and keeps its answers; kept=false when there was none or it did
// not run (a change before it failed).
func (hr *hostRun) keepInFlight(ctx context.Context) (kept bool, err error) {
	hr.hs.mu.Lock()
	b := hr.hs.behind
	hr.hs.mu.Unlock()
	if b == nil {
		return false, nil
	}
	res, err := b.pending.Wait(ctx)
	if errors.Is(err, connection.ErrNotRun) {
		hr.forgetInFlight(b)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	outs, links, err := probeAnswers(hr.hs.name, b.reqs, b.req, res, b.marker, hr.r.debugf)
	if err != nil {
		return false, err
	}
	hr.hs.mu.Lock()
	defer hr.hs.mu.Unlock()
	if hr.hs.behind != b {
		// Forgotten while it was awaited: a task delegated to this host
		// from another changed something.
		return false, nil
	}
	hr.hs.behind = nil
	hr.keepBatchLocked(b.reqs, outs, links, b.partial, 0)
	return true, nil
}

func (hr *hostRun) forgetInFlight(b *batchInFlight) {
	hr.hs.mu.Lock()
	if hr.hs.behind == b {
		hr.hs.behind = nil
	}
	hr.hs.mu.Unlock()
}

// nextProber is the first task from seq[i] on that may probe this host:
// unselected tasks and the engine's actions (which do not touch the host)
// are passed over as the look-ahead passes them; nil at a meta task
// (handlers may run, the play may end) or the play's end.
func (hr *hostRun) nextProber(i int) *Task {
	for ; i >= 0 && i < len(hr.play.seq); i++ {
		u := hr.play.seq[i]
		if !hr.r.selected(u) {
			continue
		}
		if u.Module == nil {
			if u.Action == "meta" {
				return nil
			}
			continue
		}
		return u
	}
	return nil
}

// batchAfterConn sends the probe batch of the task after a command behind
// the command's request. When the module sends it, the probes are
// forgotten (the command may change anything) and the batch the next task
// would send is worked out on the emptied cache; sent is that batch, to be
// kept in flight once the executor has forgotten the probes after the
// command's result (afterCommand).
type batchAfterConn struct {
	connection.Conn
	hr   *hostRun
	next *Task
	env  *modules.Env
	// assumed: the command's register, guessed as the look-ahead guesses
	// (unchanged); a wrong guess costs the probes it renders, no answer.
	assumed map[string]any
	used    bool
	sent    *batchInFlight
}

func (c *batchAfterConn) Run(ctx context.Context, req connection.Request) (connection.Result, error) {
	pl, ok := c.Conn.(connection.Pipeliner)
	if req.ReadOnly || c.used || !ok {
		return c.Conn.Run(ctx, req)
	}
	c.used = true
	c.hr.dropProbes()
	b := c.hr.batchBehind(c.next, c.env, c.assumed)
	if b == nil || req.Become != b.req.Become || req.BecomeUser != b.req.BecomeUser {
		return c.Conn.Run(ctx, req)
	}
	pend, err := pl.Send(ctx, []connection.Op{{Req: req}, {Req: b.req}})
	if err != nil {
		return connection.Result{}, err
	}
	b.sent(pend[1], c.hr.r.opts.Verbosity)
	c.sent = b
	return pend[0].Wait(ctx)
}

// commandConn wraps conn for t's module when t is a command whose next
// task's batch can go behind it; conn itself otherwise.
func (hr *hostRun) commandConn(t *Task, conn connection.Conn, env *modules.Env) connection.Conn {
	if _, ok := t.Module.(modules.ChangeLast); !ok || !hr.plainTask(t) {
		return conn
	}
	if _, ok := conn.(connection.Pipeliner); !ok {
		return conn
	}
	next := hr.nextProber(t.seq + 1)
	if next == nil {
		return conn
	}
	var assumed map[string]any
	if t.Register != "" {
		assumed = map[string]any{t.Register: unchangedResult()}
	}
	return &batchAfterConn{Conn: conn, hr: hr, next: next, env: env, assumed: assumed}
}

// afterCommand keeps the batch a command's request carried in flight, once
// the probes its result makes stale are forgotten.
func (hr *hostRun) afterCommand(conn connection.Conn) {
	c, ok := conn.(*batchAfterConn)
	if !ok || c.sent == nil {
		return
	}
	hr.hs.mu.Lock()
	hr.hs.behind = c.sent
	hr.hs.mu.Unlock()
}
