package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gokube/modules"
)

// action runs an engine-level action (not a host module). It is one
// switch with a short case per action, so a reader sees every action the
// engine implements in one place; the longer ones are methods of their own.
func (hr *hostRun) action(ctx context.Context, t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	switch t.Action {
	case "debug":
		return hr.debug(t, sc, args)
	case "set_fact":
		facts := map[string]any{}
		for _, k := range slices.Sorted(maps.Keys(args)) {
			if k == "cacheable" {
				continue
			}
			p := t.Pos
			if ap, ok := t.ArgPos[k]; ok {
				p = ap
			}
			v, err := sc.resolve(args[k], p)
			if err != nil {
				return nil, err
			}
			facts[k] = v
		}
		for k, v := range facts {
			hr.setVar(k, v)
		}
		return &modules.Result{Data: map[string]any{"ansible_facts": facts}}, nil
	case "assert":
		return hr.assert(t, sc, args)
	case "fail":
		msg := "Failed as requested from task"
		if m, ok := args["msg"]; ok {
			msg = fmt.Sprint(m)
		}
		return &modules.Result{Failed: true, Msg: msg}, nil
	case "pause":
		d := time.Duration(0)
		if s, ok := modules.AsInt(args["seconds"]); ok {
			d += time.Duration(s) * time.Second
		}
		if m, ok := modules.AsInt(args["minutes"]); ok {
			d += time.Duration(m) * time.Minute
		}
		if d == 0 && args["prompt"] != nil {
			return nil, fmt.Errorf("%s: pause with a prompt needs seconds or minutes (gokube does not read the terminal)", t.Pos)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &modules.Result{Data: map[string]any{"delta": d.Seconds()}}, nil
	case "meta":
		switch fmt.Sprint(args["_raw"]) {
		case "clear_facts":
			hr.hs.mu.Lock()
			hr.hs.facts, hr.hs.gotF = map[string]any{}, false
			hr.hs.mu.Unlock()
		case "noop", "end_host", "end_play", "flush_handlers":
		}
		return &modules.Result{}, nil
	case "setup":
		if t.Implicit {
			hr.hs.mu.Lock()
			got := hr.hs.gotF
			hr.hs.mu.Unlock()
			if got {
				return &modules.Result{}, nil
			}
		}
		unlock := hr.r.pool.lock(hr.hs.name)
		defer unlock()
		conn, err := hr.r.pool.get(ctx, hr.hs.name, hr.r.checkFor(t))
		if err != nil {
			return nil, err
		}
		// Facts come from the shell the play's tasks use (become, as
		// Ansible gathers them): a become play otherwise opens the login
		// user's shell for this one script, a round trip more.
		become, buser := hr.r.becomeFor(sc, t)
		facts, err := gatherFacts(ctx, conn, become, buser)
		if err != nil {
			return nil, err
		}
		hr.hs.mu.Lock()
		hr.hs.facts, hr.hs.gotF = facts, true
		hr.hs.mu.Unlock()
		return &modules.Result{Data: map[string]any{"ansible_facts": facts["ansible_facts"]}}, nil
	case "include_vars":
		return hr.includeVars(t, args)
	}
	return nil, fmt.Errorf("%s: action %s cannot run here", t.Pos, t.Action)
}

func (hr *hostRun) debug(t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	if v, ok := modules.AsInt(args["verbosity"]); ok && v > hr.r.opts.Verbosity {
		return &modules.Result{Skipped: true}, nil
	}
	if name, ok := args["var"].(string); ok && name != "" {
		expr := strings.TrimSpace(name)
		if !strings.Contains(expr, "{{") {
			if !strings.HasPrefix(expr, ".") && identRe.MatchString(strings.SplitN(expr, ".", 2)[0]) {
				expr = "." + expr
			}
			expr = "{{ " + expr + " }}"
		}
		v, err := sc.renderNative(t.Pos, expr)
		if err != nil {
			if te, ok := err.(*TemplateError); ok && te.Missing {
				v = "VARIABLE IS NOT DEFINED!"
			} else {
				return nil, err
			}
		}
		return &modules.Result{Data: map[string]any{name: v, "_var": map[string]any{name: v}}}, nil
	}
	msg := any("Hello world!")
	if m, ok := args["msg"]; ok {
		p := t.Pos
		if ap, ok := t.ArgPos["msg"]; ok {
			p = ap
		}
		v, err := sc.resolve(m, p)
		if err != nil {
			return nil, err
		}
		msg = v
	}
	return &modules.Result{Data: map[string]any{"msg": msg}}, nil
}

func (hr *hostRun) assert(t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	p := t.Pos
	if ap, ok := t.ArgPos["that"]; ok {
		p = ap
	}
	for _, c := range assertConds(t.Args["that"], p) {
		ok, err := sc.cond(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			msg := "Assertion failed: " + c.Expr
			if m, ok := args["fail_msg"]; ok && m != nil {
				msg = fmt.Sprint(m)
			}
			return &modules.Result{Failed: true, Msg: msg, Data: map[string]any{"assertion": c.Expr, "evaluated_to": false}}, nil
		}
	}
	msg := "All assertions passed"
	if m, ok := args["success_msg"]; ok && m != nil {
		msg = fmt.Sprint(m)
	}
	if q, _ := modules.AsBool(args["quiet"]); q {
		msg = ""
	}
	return &modules.Result{Msg: msg}, nil
}

func (hr *hostRun) includeVars(t *Task, args map[string]any) (*modules.Result, error) {
	name := fmt.Sprint(args["file"])
	var cands []src
	if t.Role != nil {
		cands = append(cands, t.Role.Dir.join("vars").join(name))
	}
	dir := t.posDir()
	dir.vault = hr.play.Dir.vault
	cands = append(cands, dir.join(name), hr.play.Dir.join(name))
	for _, c := range cands {
		if !c.exists() {
			continue
		}
		m, err := loadVarsFile(c, t.Pos)
		if err != nil {
			return nil, err
		}
		if under, ok := args["name"].(string); ok && under != "" {
			hr.setVar(under, m)
		} else {
			for k, v := range m {
				hr.setVar(k, v)
			}
		}
		return &modules.Result{Data: map[string]any{"ansible_facts": m}}, nil
	}
	return nil, fmt.Errorf("%s: include_vars: %s not found", t.Pos, name)
}

// posDir is the directory of the file the task was written in.
func (t *Task) posDir() src {
	return src{path: dirOf(t.Pos.File), display: dirOf(t.Pos.File)}
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}
