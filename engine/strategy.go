package engine

import (
	"context"
	"sort"
	"sync"
)

// batch is one serial batch of a play in flight.
type batch struct {
	r       *run
	play    *Play
	hosts   []string
	sched   strategy
	sem     chan struct{}
	mu      sync.Mutex
	once    map[*Task]*onceCell
	failed  int
	abort   bool // any_errors_fatal / max_fail_percentage / end_play
	abortAt ord  // the task that set abort: its round still completes
	endPlay bool
	num     int // serial batch of the play, from 0
}

type onceCell struct {
	started bool
	done    chan struct{}
	res     *outcome
}

func (r *run) runBatch(ctx context.Context, pl *Play, hosts []string) {
	b := &batch{r: r, play: pl, hosts: hosts, sched: newStrategy(pl.Strategy, hosts),
		sem: make(chan struct{}, r.opts.Forks), once: map[*Task]*onceCell{}, num: r.batchNum}
	r.batchNum++
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

func (b *batch) done(h string) { b.sched.done(h) }

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

// strategy decides when a host of a batch may run its next task. The play
// keyword strategy picks one (newStrategy); the loader refuses other names.
type strategy interface {
	// wait blocks until host may run task o and returns the hosts that
	// run it together, in batch order (nil when each host runs alone).
	wait(ctx context.Context, host string, o ord) ([]string, error)
	// done says host has no task left in this batch.
	done(host string)
}

// newStrategy returns the strategy named by a play ("linear" or "free").
func newStrategy(name string, hosts []string) strategy {
	if name == "free" {
		return free{}
	}
	return newLockstep(hosts)
}

// free lets every host run ahead: a host never waits for the others (only
// for a fork slot and its own connection).
type free struct{}

func (free) wait(context.Context, string, ord) ([]string, error) { return nil, nil }
func (free) done(string)                                         {}

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
	o  ord
	ch chan []string
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

// runShared runs a run_once task: the first host of the round (or the
// first to arrive under the free strategy) runs it; the others wait and
// take its result.
func (hr *hostRun) runShared(ctx context.Context, t *Task, round []string, handler bool) error {
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
