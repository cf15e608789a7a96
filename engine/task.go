package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gokube/connection"
	"gokube/modules"
)

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
	redacted bool // no_log: only noLogMsg may be shown (redact)
	// when it ran on the host and what the connection did meanwhile (the
	// timeline's bar); zero for outcomes made without running.
	begin, end time.Time
	rt, bytes  int64
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

// execute runs task t (all loop items) on this host and returns the outcome.
func (hr *hostRun) execute(ctx context.Context, t *Task, handler bool) (res *outcome) {
	start := time.Now()
	defer hr.r.taskTime(t, hr.b, start)
	hr.b.sem <- struct{}{}
	defer func() { <-hr.b.sem }()
	begin, rt0, b0 := time.Now(), hr.r.pool.roundTrips(hr.hs.name), hr.r.pool.wireBytes(hr.hs.name)
	defer func() {
		if res != nil {
			res.begin, res.end = begin, time.Now()
			res.rt = hr.r.pool.roundTrips(hr.hs.name) - rt0
			res.bytes = hr.r.pool.wireBytes(hr.hs.name) - b0
		}
	}()
	defer hr.progress(ctx, t, start, b0)()
	if t.NoLog {
		defer func() { redact(res) }()
	}
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
	return hr.runLoop(ctx, t, sc)
}

// progress prints a progress line (with the bytes sent since bytes0) at
// each progress interval while a task runs long (waits, restarts, health
// checks, uploads); the returned func stops it.
func (hr *hostRun) progress(ctx context.Context, t *Task, start time.Time, bytes0 int64) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(hr.r.progressEvery())
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				hr.r.out.progress(t, hr.hs.name, time.Since(start), hr.r.pool.wireBytes(hr.hs.name)-bytes0)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// runLoop runs every item of a looping task and folds the items' outcomes
// into the task's (results, as Ansible registers them).
func (hr *hostRun) runLoop(ctx context.Context, t *Task, sc *scope) *outcome {
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
		label := itemLabel(it)
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
	o := resultOutcome(t, res, delegate)
	if (t.HasChg || t.HasFail) && !res.Skipped {
		if err := applyResultConds(t, sc, o, res.Changed); err != nil {
			return failOutcome(err)
		}
	}
	return o
}

// resultOutcome turns a module's or action's result into the task's
// outcome on this host, with the data register stores.
func resultOutcome(t *Task, res *modules.Result, delegate string) *outcome {
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
	return o
}

// applyResultConds applies changed_when and failed_when to o; they see the
// result under the register name. changed is what the module reported.
func applyResultConds(t *Task, sc *scope, o *outcome, changed bool) error {
	csc := sc
	if t.Register != "" {
		csc = sc.with(map[string]any{t.Register: o.data})
	}
	if t.HasChg {
		ch, err := csc.conds(t.Changed)
		if err != nil {
			return err
		}
		o.data["changed"] = ch
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
			return err
		}
		o.data["failed"] = fl
		if fl {
			o.status = stFailed
			if o.msg == "" {
				o.msg = "failed_when: " + condsString(t.Failed)
			}
		} else if o.status == stFailed {
			o.status = stOK
			if changed {
				o.status = stChanged
			}
		}
	}
	return nil
}

// itemLabel is how a loop item shows in the output when there is no
// loop_control.label: scalars as they are, lists and maps as compact JSON
// (Ansible's form), not Go's map[k:v].
func itemLabel(it any) string {
	switch it.(type) {
	case map[string]any, []any, []string:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(it); err == nil {
			return strings.TrimSuffix(b.String(), "\n")
		}
	}
	return fmt.Sprint(it)
}

// noLogMsg is what a no_log task shows instead of its output.
const noLogMsg = "the output has been hidden due to the 'no_log: true' specified for this result"

// redact is the one no_log step, applied to a task's outcome before
// anything reports it: the message, diff and debug output of the task and
// of each loop item (whose label shows as None, as in Ansible) are
// replaced; the registered data keeps the values, as in Ansible. The
// reporters show nothing else of a redacted outcome.
func redact(o *outcome) {
	if o == nil {
		return
	}
	o.msg, o.diff, o.output, o.redacted = noLogMsg, "", nil, true
	for i, it := range o.items {
		o.items[i] = itemOutcome{label: "None", status: it.status, msg: noLogMsg}
	}
}
