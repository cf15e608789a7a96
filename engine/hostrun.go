package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// hostRun walks one host through the play's tasks.
type hostRun struct {
	r    *run
	b    *batch
	hs   *hostState
	play *Play
	last ord // the task this host runs or ran last
	// ahead holds the tasks whose change request a pipeline sent before
	// their turn (pipeline.go), under hs.mu.
	ahead map[*Task]*foreseen
}

// progressEvery is how often a running task's progress line is printed
// (Options.ProgressEvery overrides it).
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

// runLeaf runs one task (with its loop) on this host, and the handlers'
// bookkeeping around it.
func (hr *hostRun) runLeaf(ctx context.Context, t *Task, o ord, handler bool) error {
	round, err := hr.b.sched.wait(ctx, hr.hs.name, o)
	if err != nil {
		return err
	}
	// Hosts in the round of the task that ended the play still run it.
	if hr.b.aborted(o) {
		return errEndHost
	}
	hr.last = o
	if t.RunOnce {
		return hr.runShared(ctx, t, round, handler)
	}
	res := hr.execute(ctx, t, handler)
	return hr.finishTask(t, res, handler, true)
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
	hr.r.recordEvent(hs.name, t, res, handler, hr.b)
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
