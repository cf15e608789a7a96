package modules

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gokube/connection"
)

// systemdModule is systemd and service: one `systemctl show` tells the
// unit's load, active and unit-file states; the wanted changes then go in
// one request.
type systemdModule struct{ alias string }

func (systemdModule) Spec() Spec {
	return Spec{
		Doc: "Starts, stops, restarts, reloads, enables, disables and masks systemd units; one systemctl show tells the state, the wanted changes go in one request. service is the same module.",
		Returns: map[string]string{
			"enabled": "the enablement asked for",
			"name":    "the unit",
			"state":   "the state asked for",
			"status":  "mapping of Id, LoadState, ActiveState, SubState, UnitFileState, NRestarts (automatic restarts so far) before the task",
		},
		Args: map[string]Arg{
			"name":          {Type: String, Aliases: []string{"service", "unit"}, Doc: "Unit name (foo or foo.service)."},
			"state":         {Type: String, Choices: []string{"started", "stopped", "restarted", "reloaded"}, Doc: "started, stopped, restarted (always acts) or reloaded (starts a stopped unit)."},
			"enabled":       {Type: Bool, Doc: "Whether the unit starts at boot."},
			"masked":        {Type: Bool, Doc: "Mask (yes) or unmask (no) the unit."},
			"daemon_reload": {Type: Bool, Aliases: []string{"daemon-reload"}, Doc: "systemctl daemon-reload first (after changing unit files). Alone it is not a change.", Default: "no"},
			"daemon_reexec": {Type: Bool, Aliases: []string{"daemon-reexec"}, Doc: "systemctl daemon-reexec first.", Default: "no"},
			"no_block":      {Type: Bool, Doc: "Do not wait for the start or stop job to finish.", Default: "no"},
			"scope":         {Type: String, Choices: []string{"system"}, Doc: "Only system units are managed.", Default: "system"},
		}}
}

const systemdProps = "Id,LoadState,ActiveState,SubState,UnitFileState,NRestarts"

func showScript(name string) string {
	return "systemctl show -p " + systemdProps + " -- " + shq(name)
}

func (m systemdModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs(m.alias, m.Spec(), args)
	// After a daemon-reload the unit may look different; the state must be
	// read after it, so such a task cannot be probed ahead of time.
	if err != nil || a.boolean("daemon_reexec", false) {
		return "", false
	}
	if a.boolean("daemon_reload", false) {
		// Whether the reload can change anything is read ahead; when it
		// cannot, the unit's state read with it is the state after it.
		return reloadProbe(a.str("name")), true
	}
	if !a.has("name") {
		return "", false
	}
	return probeShowScript(a.str("name")), true
}

// ProbeScope: the probe asks systemd (the unit, the last reload, the
// times of the reload's inputs).
func (m systemdModule) ProbeScope(map[string]any) ProbeScope {
	return ProbeScope{Systemd: true}
}

// Pipelinable: where the plan needs one request (the unit's changes, a
// reload that enabling does), the result is made from the state read
// before it; a reload whose state must be read again is a second request,
// which the executor does not foresee.
func (systemdModule) Pipelinable() {}

func (m systemdModule) Run(ctx context.Context, env *Env, args map[string]any) (res *Result, err error) {
	a, err := parseArgs(m.alias, m.Spec(), args)
	if err != nil {
		return nil, err
	}
	name := a.str("name")
	if name == "" && (a.has("state") || a.has("enabled") || a.has("masked")) {
		return nil, a.err("name", "required with state, enabled or masked")
	}
	if name == "" && !a.boolean("daemon_reload", false) && !a.boolean("daemon_reexec", false) {
		return nil, a.err("name", "required (or daemon_reload: yes)")
	}
	var pre []string
	var out, before []byte
	skipped := ""
	if a.boolean("daemon_reload", false) && !a.boolean("daemon_reexec", false) && !env.Check {
		probe, err := probeOrRun(ctx, env, reloadProbe(name))
		if err != nil {
			return nil, err
		}
		need, why, unit := reloadNeeded(probe)
		if !need {
			skipped, out = why, unit
		} else {
			before = unit
		}
	}
	if a.boolean("daemon_reexec", false) {
		pre = append(pre, "systemctl daemon-reexec")
	}
	if a.boolean("daemon_reload", false) && skipped == "" {
		pre = append(pre, "systemctl daemon-reload")
	}
	// A reload (or re-exec) is no change, as in Ansible, but what systemd
	// answers afterwards may differ: the executor asks again.
	defer func() {
		if res != nil && len(pre) > 0 {
			res.Reprobe = true
		}
	}()
	if name == "" && skipped != "" {
		return &Result{Msg: "daemon reload skipped: " + skipped, Data: map[string]any{"daemon_reload": "skipped"}}, nil
	}
	if name == "" {
		// Like Ansible, a bare daemon-reload does not count as a change.
		if _, err := mustRun(ctx, env, strings.Join(pre, " && "), false); err != nil {
			return resultFail(err, nil)
		}
		return &Result{Msg: "daemon reloaded", Data: map[string]any{}}, nil
	}
	if skipped != "" {
		// out holds the unit's state, read with the verdict.
	} else if len(pre) == 1 && enableReloads(a, before, name) {
		// The plan's systemctl enable is the reload: out is the state the
		// plan was made from.
		out, pre = before, nil
	} else if len(pre) > 0 {
		r, err := mustRun(ctx, env, strings.Join(pre, " && ")+" && "+showScript(name), false)
		if err != nil {
			return resultFail(err, nil)
		}
		out = r.Stdout
		if parseKV(out)["LoadState"] == "" {
			// A dry connection records the reload without running it: read
			// the state as it is.
			if out, err = probeOrRun(ctx, &Env{Conn: env.Conn, Become: env.Become, BecomeUser: env.BecomeUser, Environment: env.Environment}, probeShowScript(name)); err != nil {
				return nil, err
			}
		}
	} else if out, err = probeOrRun(ctx, env, probeShowScript(name)); err != nil {
		return nil, err
	}
	kv := parseKV(out)
	status := map[string]any{}
	for _, p := range strings.Split(systemdProps, ",") {
		status[p] = kv[p]
	}
	data := map[string]any{"name": name, "status": status}
	if skipped != "" {
		data["daemon_reload"] = "skipped"
	}
	if kv["LoadState"] == "" {
		return nil, fmt.Errorf("systemctl show %s: unexpected output %q", name, truncate(string(out), 200))
	}
	wantsUnit := a.has("state") || a.has("enabled") || a.has("masked") && !a.boolean("masked", false)
	if kv["LoadState"] == "not-found" && wantsUnit {
		if env.Check {
			// An earlier task of this check run may have "written" the
			// unit file; predict the change instead of failing.
			return &Result{Changed: true, Msg: "unit " + name + " not found (yet)", Data: data}, nil
		}
		return &Result{Failed: true, Msg: "Could not find the requested service " + name, Data: data}, nil
	}
	cmds, fail := systemdCommands(a, kv, name, data)
	if fail != nil {
		return fail, nil
	}
	var diff string
	if len(cmds) == 0 {
		if skipped != "" {
			return &Result{Msg: "unchanged; daemon reload skipped: " + skipped, Data: data}, nil
		}
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	if env.Diff {
		diff = systemdDiff(name, kv, a)
	}
	// In the session's shell (no fork), each systemctl a job it waits for:
	// a start may take long, and a foreground program would defer a
	// cancellation until it ends.
	jobs := make([]string, len(cmds))
	for i, c := range cmds {
		jobs[i] = connection.Job(c)
	}
	if _, err := mustRunChange(ctx, env, strings.Join(jobs, " && "), true); err != nil {
		res, err := resultFail(err, data)
		if res != nil {
			res.Msg = "systemctl failed: " + res.Msg
			res.Changed = true
		}
		return res, err
	}
	return &Result{Changed: true, Data: data, Diff: diff}, nil
}

// enableReloads says whether the plan made from the unit's state before a
// daemon-reload (before, read with the reload question) enables the unit:
// systemctl enable reloads systemd itself once its links are made, so that
// reload is the one the task asks for, and an explicit one first would be
// a second (0.3-1 s each in a container). The plan reads what a reload
// leaves as it is: the unit files on disk (UnitFileState) and what runs
// (ActiveState). A unit systemd does not know yet is left to the reload.
func enableReloads(a cargs, before []byte, name string) bool {
	kv := parseKV(before)
	if ls := kv["LoadState"]; ls == "" || ls == "not-found" {
		return false
	}
	cmds, fail := systemdCommands(a, kv, name, map[string]any{})
	if fail != nil {
		return false
	}
	return slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "systemctl enable ") })
}

// systemdCommands plans the systemctl commands that bring unit name from
// its state kv (systemctl show) to what the task asks (masked, enabled,
// state), recording the wanted state in data; a non-nil Result is the
// task's failure.
func systemdCommands(a cargs, kv map[string]string, name string, data map[string]any) ([]string, *Result) {
	q := shq(name)
	noBlock := ""
	if a.boolean("no_block", false) {
		noBlock = "--no-block "
	}
	// -q: enable, disable, mask and unmask list the links they make on
	// stderr, which comes back base64 (a process on the host); their
	// errors still print.
	var cmds []string
	ufs := kv["UnitFileState"]
	masked := ufs == "masked" || ufs == "masked-runtime" || kv["LoadState"] == "masked"
	if a.has("masked") {
		switch want := a.boolean("masked", false); {
		case want && !masked:
			cmds = append(cmds, "systemctl mask -q -- "+q)
		case !want && masked:
			cmds = append(cmds, "systemctl unmask -q -- "+q)
			masked = false
		}
	}
	if a.has("enabled") {
		enabled := ufs == "enabled" || ufs == "enabled-runtime" || ufs == "static" || ufs == "alias" || ufs == "indirect" || ufs == "generated"
		switch want := a.boolean("enabled", false); {
		case want && !enabled:
			if masked && !a.has("masked") {
				return nil, &Result{Failed: true, Msg: "cannot enable " + name + ": it is masked", Data: data}
			}
			cmds = append(cmds, "systemctl enable -q -- "+q)
		case !want && (ufs == "enabled" || ufs == "enabled-runtime"):
			cmds = append(cmds, "systemctl disable -q -- "+q)
		}
		data["enabled"] = a.boolean("enabled", false)
	}
	active := kv["ActiveState"]
	running := active == "active" || active == "activating" || active == "reloading"
	// An enable just before folds into "systemctl enable --now": the same
	// two operations in one process (enable reloads systemd either way,
	// then the start job runs).
	start := func() {
		if n := len(cmds); n > 0 && cmds[n-1] == "systemctl enable -q -- "+q {
			cmds[n-1] = "systemctl enable -q --now " + noBlock + "-- " + q
			return
		}
		cmds = append(cmds, "systemctl start "+noBlock+"-- "+q)
	}
	if st := a.str("state"); st != "" {
		data["state"] = st
		switch st {
		case "started":
			if !running {
				start()
			}
		case "stopped":
			if running {
				cmds = append(cmds, "systemctl stop "+noBlock+"-- "+q)
			}
		case "restarted":
			cmds = append(cmds, "systemctl restart "+noBlock+"-- "+q)
		case "reloaded":
			if running {
				cmds = append(cmds, "systemctl reload "+noBlock+"-- "+q)
			} else {
				start()
			}
		}
	}
	return cmds, nil
}

// systemdDiff shows the unit's states before and as predicted after.
func systemdDiff(name string, kv map[string]string, a cargs) string {
	before := map[string]string{"active": kv["ActiveState"], "unit file": kv["UnitFileState"]}
	after := map[string]string{"active": kv["ActiveState"], "unit file": kv["UnitFileState"]}
	switch a.str("state") {
	case "started", "restarted", "reloaded":
		after["active"] = "active"
		if a.str("state") != "started" {
			after["active"] = "active (" + a.str("state") + ")"
		}
	case "stopped":
		after["active"] = "inactive"
	}
	if a.has("enabled") {
		if a.boolean("enabled", false) {
			if after["unit file"] != "static" {
				after["unit file"] = "enabled"
			}
		} else if after["unit file"] == "enabled" {
			after["unit file"] = "disabled"
		}
	}
	if a.has("masked") {
		if a.boolean("masked", false) {
			after["unit file"] = "masked"
		} else if after["unit file"] == "masked" {
			after["unit file"] = "disabled"
		}
	}
	return stateDiff(name, []string{"active", "unit file"}, before, after)
}
