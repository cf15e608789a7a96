package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Pipelines: consecutive requests sent without waiting for each answer.
//
// In a cold run most tasks change something, and each change was a
// request of its own, a round trip in which the host waited for gokube and
// gokube for the host. The executor sends the requests of consecutive
// tasks whose outcome it can foresee together (Send) and reads each answer
// when its task's turn comes (Pending.Wait). The session's shell runs them
// in order and stops at the first that fails: the requests behind it
// answer notRunRC without running, as Ansible stops a host at its first
// failed task.

const (
	notRunRC  = "254"
	notRunMsg = "gokube: not run: a request before it in its pipeline failed\n"
	notRunB64 = "Z29rdWJlOiBub3QgcnVuOiBhIHJlcXVlc3QgYmVmb3JlIGl0IGluIGl0cyBwaXBlbGluZSBmYWlsZWQK"
)

// ErrNotRun is the answer of a pipelined request that did not run because
// a request before it in its pipeline failed.
var ErrNotRun = errors.New("not run: a request before it in its pipeline failed")

// Op is one request of a pipeline.
type Op struct {
	Req Request
	// Temp is a file the request's script makes and removes itself (a
	// put's temp file, PutRequest) unless a cancellation kills it; the
	// connection removes it then.
	Temp string
}

// Pipeliner is a Conn that can send several requests at once.
type Pipeliner interface {
	// Send writes every op's request to the host in one go, in order, and
	// returns at once; each Pending's Wait reads that request's answer.
	// The requests run in order; one behind a request that failed (a
	// non-zero exit) does not run (ErrNotRun). They run as one user: all
	// must share the first one's become settings. A request made later on
	// the connection is answered after all of them.
	Send(ctx context.Context, ops []Op) ([]*Pending, error)
}

// Pending is the answer to one request of a pipeline.
type Pending struct {
	done chan struct{}
	res  Result
	err  error
	// lost is closed when the connection ends (nil where answers are in
	// at once); end ends the pipeline when its waiter gives up
	// (cancelled, or the connection lost) and says why.
	lost <-chan struct{}
	end  func(ctx context.Context) error
}

// Wait returns the request's answer as Run would, or ErrNotRun. A
// cancellation ends the session and what runs in it, as it does for Run;
// so does the connection's end, which a silent peer never confirms to a
// reader.
func (p *Pending) Wait(ctx context.Context) (Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	default:
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return Result{}, p.end(ctx)
	case <-p.lost:
		return Result{}, p.end(ctx)
	}
}

func newPending() *Pending { return &Pending{done: make(chan struct{})} }

func (p *Pending) answer(res Result, err error) {
	p.res, p.err = res, err
	close(p.done)
}

// notRun says whether an answer is the shell's for a request it did not
// run (see gk_go).
func notRun(res Result) bool {
	return strconv.Itoa(res.RC) == notRunRC && bytes.Equal(res.Stderr, []byte(notRunMsg))
}

// PutRequest is the request Put sends for a file small enough to travel
// in its script, and the temp file the script makes beside the
// destination; ok=false when the content needs an upload of its own. The
// content is read from up.Content.
func PutRequest(up Upload) (req Request, temp string, ok bool, err error) {
	if up.Size > inlinePutLimit {
		return Request{}, "", false, nil
	}
	var data []byte
	if up.Content != nil {
		if data, err = readLimited(up.Content, inlinePutLimit); err != nil {
			return Request{}, "", false, err
		}
		if data == nil {
			return Request{}, "", false, nil
		}
	}
	tag := newMarker()[3:]
	return Request{Script: putScript(up, "", tag, append([]byte{}, data...)), Become: up.Become, BecomeUser: up.BecomeUser, Inline: true},
		putTemp(up.Path, tag), true, nil
}

// readLimited reads r whole, or returns nil when it holds more than limit
// bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil || int64(len(data)) > limit {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// PutResult is Put's error for the answer res to its request req.
func PutResult(host string, up Upload, req Request, res Result) error {
	if err := CheckResult(host, req, res); err != nil {
		return fmt.Errorf("put %s: %w", up.Path, err)
	}
	return nil
}

// Send implements Pipeliner: the frames go in one write, one reader takes
// their answers in order as they come (whether or not anyone waits yet),
// and the connection's other requests wait until the last is in. Run is a
// pipeline of one.
func (c *sshConn) Send(ctx context.Context, ops []Op) ([]*Pending, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.closed() {
		return nil, fmt.Errorf("%s: connection closed", c.cfg.Host)
	}
	first := ops[0].Req
	markers := make([]string, len(ops))
	var frames []byte
	for i, op := range ops {
		if op.Req.Become != first.Become || op.Req.BecomeUser != first.BecomeUser {
			return nil, fmt.Errorf("%s: the requests of a pipeline must run as one user", c.cfg.Host)
		}
		m, f, err := frameFor(op.Req, i > 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.cfg.Host, err)
		}
		markers[i] = m
		frames = append(frames, f...)
	}
	select {
	case c.runSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.busy.Add(1)
	// Released when the last answer is in, or when a waiter gives up:
	// closing a channel does not unblock its reader until the peer
	// confirms, and a silent peer never does, so the reader may never
	// return; its late answers go nowhere.
	release := sync.OnceFunc(func() {
		c.busy.Add(-1)
		<-c.runSem
	})
	// Refused once, refused for the run: another shell of this connection
	// would otherwise take the locks the refused one did not get.
	c.mu.Lock()
	refused := c.lockErr
	c.mu.Unlock()
	if refused != nil {
		release()
		return nil, refused
	}
	s, err := c.shell(ctx, first.Become, first.BecomeUser)
	if err != nil {
		release()
		return nil, err
	}
	if s.pending != nil {
		frames = append(s.pending, frames...)
		s.pending = nil
	}
	ps := make([]*Pending, len(ops))
	for i := range ps {
		ps[i] = newPending()
	}
	var ended atomic.Bool
	readerDone := make(chan struct{})
	end := func(ctx context.Context) error {
		if !ended.Swap(true) {
			if ctx.Err() == nil {
				s.close()
				release()
				return c.unreachable(errors.New("connection lost"))
			}
			// The frame that was running was killed before its own
			// trap could remove its temp file; the ones behind it never
			// ran.
			var temps []string
			for i, p := range ps {
				select {
				case <-p.done:
				default:
					if ops[i].Temp != "" {
						temps = append(temps, ops[i].Temp)
					}
				}
			}
			s.kill()
			if len(temps) > 0 {
				// Removed once the killed session is gone (its end is
				// the reader's), so that nothing of it runs after.
				select {
				case <-readerDone:
				case <-time.After(putCleanupBound):
				}
			}
			release()
			c.cleanupTemps(ctx, first, temps)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.unreachable(errors.New("connection lost"))
	}
	for _, p := range ps {
		p.lost, p.end = c.done, end
	}
	c.rt.Add(1)
	go func() {
		defer close(readerDone)
		defer release()
		failFrom := func(i int, err error) {
			for ; i < len(ps); i++ {
				ps[i].answer(Result{}, err)
			}
		}
		if err := writeChunks(s.ch, frames); err != nil {
			failFrom(0, c.shellErr(s, first, err))
			return
		}
		for i, op := range ops {
			res, err := readFrame(s.r, markers[i], op.Req.OwnShell)
			if err != nil {
				failFrom(i, c.shellErr(s, first, err))
				return
			}
			if err := lockedResult(c.cfg.Host, res); err != nil {
				c.mu.Lock()
				c.lockErr = err
				c.mu.Unlock()
				failFrom(i, err)
				return
			}
			if notRun(res) {
				ps[i].answer(Result{}, ErrNotRun)
				continue
			}
			ps[i].answer(res, nil)
		}
	}()
	return ps, nil
}

// cleanupTemps removes temp files after a cancellation killed the
// script that would have, as the user req runs as, waiting at most
// putCleanupBound (it must not hang an interrupt on a host that stopped
// answering).
func (c *sshConn) cleanupTemps(ctx context.Context, req Request, temps []string) {
	if len(temps) == 0 || c.closed() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), putCleanupBound)
	defer cancel()
	script := "rm -f --"
	for _, t := range temps {
		script += " " + shQuote(t)
	}
	_, _ = c.Run(cctx, Request{Script: script, Become: req.Become, BecomeUser: req.BecomeUser})
}

// PipeFake is a Fake that is a Pipeliner (a Fake alone is not: its Put
// keeps files in memory, where a pipelined put is a script).
type PipeFake struct{ *Fake }

// Send implements Pipeliner for tests: the requests run one after the
// other through Run, as one round trip; those behind a failed one do not
// run.
func (f PipeFake) Send(ctx context.Context, ops []Op) ([]*Pending, error) {
	ps := make([]*Pending, len(ops))
	failed := false
	for i, op := range ops {
		ps[i] = newPending()
		if failed {
			ps[i].answer(Result{}, ErrNotRun)
			continue
		}
		res, err := f.Run(ctx, op.Req)
		if i > 0 {
			f.mu.Lock()
			f.rt--
			f.mu.Unlock()
		}
		ps[i].answer(res, err)
		failed = err != nil || res.RC != 0
	}
	return ps, nil
}
