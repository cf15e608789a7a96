package engine

import (
	"fmt"
	"strings"

	"gokube/modules"
)

// taskScope merges the variables host sees for task t (precedence in doc.go).
func (r *run) taskScope(hs *hostState, t *Task) *scope {
	pl := r.play
	hs.mu.Lock()
	n := 32 + len(hs.inv) + len(hs.facts) + len(hs.vars) + len(r.extra)
	hs.mu.Unlock()
	if pl != nil {
		n += len(pl.Vars)
	}
	vars := make(map[string]any, n)
	put := func(m map[string]any) {
		for k, v := range m {
			vars[k] = v
		}
	}
	if pl != nil {
		for _, ro := range pl.Roles {
			put(ro.Defaults)
		}
	}
	if t != nil && t.Role != nil {
		put(t.Role.Defaults)
	}
	hs.mu.Lock()
	put(hs.inv)
	put(hs.facts)
	hs.mu.Unlock()
	if pl != nil {
		put(pl.Vars)
		for _, vf := range pl.VarsFiles {
			put(vf)
		}
		for _, ro := range pl.Roles {
			put(ro.Vars)
		}
	}
	if t != nil {
		if t.Role != nil {
			put(t.Role.Vars)
		}
		for _, bv := range t.BlockVars {
			put(bv)
		}
		put(t.Vars)
	}
	hs.mu.Lock()
	put(hs.vars)
	batch, playHosts := hs.batch, hs.playHost
	hs.mu.Unlock()
	put(r.extra)
	r.setMagicVars(vars, hs, t, batch, playHosts)
	return &scope{r: r, host: hs.name, vars: vars}
}

// setMagicVars sets the variables the engine owns (last, so nothing
// overrides them): inventory_hostname, groups, play_hosts, role_name, ...
func (r *run) setMagicVars(vars map[string]any, hs *hostState, t *Task, batch, playHosts []any) {
	pl := r.play
	vars["inventory_hostname"] = hs.name
	short, _, _ := strings.Cut(hs.name, ".")
	vars["inventory_hostname_short"] = short
	vars["groups"] = r.groups
	var gn []any
	for _, g := range hs.groups {
		if g != "all" && g != "ungrouped" {
			gn = append(gn, g)
		}
	}
	vars["group_names"] = gn
	vars["play_hosts"] = batch
	vars["ansible_play_batch"] = batch
	vars["ansible_play_hosts"] = playHosts
	vars["ansible_play_hosts_all"] = playHosts
	vars["ansible_check_mode"] = r.opts.Check
	vars["ansible_diff_mode"] = r.opts.Diff
	vars["ansible_verbosity"] = r.opts.Verbosity
	vars["playbook_dir"] = r.pb.Dir
	vars["inventory_dir"] = r.invDir
	if len(r.opts.Inventory) > 0 {
		vars["inventory_file"] = r.opts.Inventory[0]
	}
	if t != nil && t.Role != nil {
		vars["role_name"] = t.Role.Name
		// Bundled roles have no directory on disk; show where they come from.
		if t.Role.Dir.fsys == nil {
			vars["role_path"] = t.Role.Dir.path
		} else {
			vars["role_path"] = t.Role.Dir.display
		}
	}
	if pl != nil {
		vars["ansible_play_name"] = pl.Name
	}
}

// hostScope is another host's play-level variables (hostvar, hostvars).
func (r *run) hostScope(host string) *scope {
	hs, ok := r.hosts[host]
	if !ok {
		return nil
	}
	return r.taskScope(hs, nil)
}

// becomeFor is the effective become of t for this host: task/block/role,
// then play, then -b, then the inventory's ansible_become.
func (r *run) becomeFor(sc *scope, t *Task) (bool, string) {
	b := r.opts.Become
	if v, ok := sc.vars["ansible_become"]; ok {
		if x, ok := modules.AsBool(v); ok {
			b = x
		}
	}
	if r.play != nil && r.play.Become != nil {
		b = *r.play.Become
	}
	if t.Become != nil {
		b = *t.Become
	}
	u := r.opts.BecomeUser
	if v, ok := sc.vars["ansible_become_user"]; ok {
		u = fmt.Sprint(v)
	}
	if r.play != nil && r.play.BecomeUser != "" {
		u = r.play.BecomeUser
	}
	if t.BUser != nil {
		u = *t.BUser
	}
	if strings.Contains(u, "{{") {
		if x, err := sc.render(t.Pos, u); err == nil {
			u = x
		}
	}
	return b, u
}

func (r *run) checkFor(t *Task) bool {
	if t.Check != nil {
		return *t.Check
	}
	return r.opts.Check
}
