package engine

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"

	"gokube/connection"
	"gokube/modules"
)

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
	if f := hr.takeAhead(t, idx); f != nil {
		// Its request went out with an earlier task's.
		if res, err, ran := f.answer(ctx); ran {
			failedAhead(hr, res)
			return res, delegate, err
		}
	}
	become, buser := hr.r.becomeFor(sc, t)
	env, err := hr.environment(sc, t)
	if err != nil {
		return nil, delegate, err
	}
	var probe []byte
	var probed []string
	if delegate == "" {
		probe, probed, err = hr.probeFor(ctx, t, sc, idx, args, conn, become, buser)
		if err != nil {
			return nil, delegate, err
		}
	}
	e := hr.moduleEnv(t, sc, conn, check, become, buser, env, probe)
	if delegate == "" && !check {
		if res, err, sent := hr.pipeline(ctx, t, args, e, probed); sent {
			failedAhead(hr, res)
			return res, delegate, err
		}
	}
	if delegate == "" && !check {
		e.Conn = hr.commandConn(t, conn, e)
	}
	res, err := t.Module.Run(ctx, e, args)
	if err == nil && res == nil {
		res = &modules.Result{}
	}
	// The module's own changed (before changed_when) says whether it acted
	// on the host: a command reports changed whenever it ran. In check mode
	// nothing changed on the host, so cached probes stay true.
	if err == nil && !check && !res.Skipped && (res.Changed || res.Reprobe) {
		// A delegated task has no probed paths here: every probe goes.
		hr.dropProbesAfter(res, probed)
		if delegate != "" {
			if d, ok := hr.r.hosts[delegate]; ok {
				d.dropProbes()
			}
		}
	}
	if err == nil && !res.Failed {
		hr.afterCommand(e.Conn)
	}
	return res, delegate, err
}

// moduleEnv is what t's module sees on this host.
func (hr *hostRun) moduleEnv(t *Task, sc *scope, conn connection.Conn, check, become bool, buser string, env map[string]string, probe []byte) *modules.Env {
	dirs := hr.filesFor(t)
	files := make([]fs.FS, len(dirs))
	for i, d := range dirs {
		files[i] = d.asFS()
	}
	return &modules.Env{Conn: conn, Host: hr.hs.name, Check: check, Diff: hr.r.opts.Diff, Become: become,
		BecomeUser: buser, Environment: env, Files: files, Vars: sc.vars, Probe: probe,
		ArtifactDir: hr.r.opts.ArtifactDir,
		Render: func(name, text string) (string, error) {
			return sc.render(Pos{File: displayName(dirs, name), Line: 1}, text)
		}}
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
			return f.where()
		}
	}
	return name
}
