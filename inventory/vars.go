package inventory

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Layers of variables inside one group or host, lowest first: the inventory
// file itself, group_vars/host_vars beside the inventory, and those beside
// the playbook (AddVarsDir).
const (
	layerInventory = iota
	layerInvFiles
	layerPlayFiles
	numLayers
)

// varSet holds variables of one layer with where each was defined, so a
// refused or invalid value can be reported at its file and line.
type varSet struct {
	vals map[string]any
	src  map[string]string
}

func (v *varSet) set(key string, val any, src string) {
	if v.vals == nil {
		v.vals = map[string]any{}
		v.src = map[string]string{}
	}
	v.vals[key] = val
	v.src[key] = src
}

// groupPriority reads ansible_group_priority: Ansible orders groups of equal
// depth by (priority, name) when merging their vars.
func (g *group) priority() int {
	for l := numLayers - 1; l >= 0; l-- {
		if v, ok := g.vars[l].vals["ansible_group_priority"]; ok {
			if n, ok := toInt(v); ok {
				return n
			}
		}
	}
	return 1
}

// mergeOrder lists a host's groups lowest precedence first: by depth,
// then ansible_group_priority, then name, as Ansible's sort_groups.
func (inv *Inventory) mergeOrder(h *hostRec) ([]string, []*group) {
	names := inv.hostGroups(h)
	gs := make([]*group, len(names))
	for i, n := range names {
		gs[i] = inv.groups[n]
	}
	sort.SliceStable(gs, func(i, j int) bool {
		if gs[i].depth != gs[j].depth {
			return gs[i].depth < gs[j].depth
		}
		pi, pj := gs[i].priority(), gs[j].priority()
		if pi != pj {
			return pi < pj
		}
		return gs[i].name < gs[j].name
	})
	return names, gs
}

// mergeHost computes a host's vars: its groups in merge order, each
// group's layers low to high, then the host's layers. Top-level keys
// replace (Ansible's hash_behaviour=replace); values are deep-copied so
// hosts never share maps or slices.
func (inv *Inventory) mergeHost(h *hostRec) *Host {
	names, gs := inv.mergeOrder(h)
	n := len(h.vars[layerInventory].vals)
	for _, g := range gs {
		n += len(g.vars[layerInventory].vals) + len(g.vars[layerInvFiles].vals)
	}
	vars := make(map[string]any, n)
	apply := func(vs *varSet) {
		for k, v := range vs.vals {
			vars[k] = deepCopy(v)
		}
	}
	for _, g := range gs {
		for l := range numLayers {
			apply(&g.vars[l])
		}
	}
	for l := range numLayers {
		apply(&h.vars[l])
	}
	return &Host{Name: h.name, Vars: vars, Groups: names}
}

// varSource finds where the winning value of key was defined, walking the
// merge order backwards. Only errors and VarSource need it, so it is not
// kept per host.
func (inv *Inventory) varSource(h *hostRec, key string) string {
	for l := numLayers - 1; l >= 0; l-- {
		if src, ok := h.vars[l].src[key]; ok {
			return src
		}
	}
	_, gs := inv.mergeOrder(h)
	for i := len(gs) - 1; i >= 0; i-- {
		for l := numLayers - 1; l >= 0; l-- {
			if src, ok := gs[i].vars[l].src[key]; ok {
				return src
			}
		}
	}
	return ""
}

// VarSource returns "file:line" where the winning value of a host's var was
// defined, or "" when unknown.
func (inv *Inventory) VarSource(host, key string) string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	h, ok := inv.hosts[host]
	if !ok {
		return ""
	}
	return inv.varSource(h, key)
}

// recompute merges every host and validates what the engine will rely on:
// no literal passwords in files unless allowed, parseable connection vars.
func (inv *Inventory) recompute() error {
	merged := make(map[string]*Host, len(inv.hosts))
	var errs []error
	seen := map[string]bool{}
	for _, hn := range inv.hostOrder {
		rec := inv.hosts[hn]
		h := inv.mergeHost(rec)
		merged[hn] = h
		for _, err := range inv.validateHost(rec, h) {
			if !seen[err.Error()] {
				seen[err.Error()] = true
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	inv.merged = merged
	return nil
}

var passwordKeys = []string{"ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass"}

func (inv *Inventory) validateHost(rec *hostRec, h *Host) []error {
	var errs []error
	if !inv.opts.AllowPasswords && !truthy(h.Vars["gokube_allow_inventory_passwords"]) {
		for _, k := range passwordKeys {
			v, ok := h.Vars[k]
			if !ok || v == nil {
				continue
			}
			// A numeric password is still a password (1234 parses as int).
			if s := toString(v); s == "" || isTemplate(s) {
				continue
			}
			errs = append(errs, locErr(inv.varSource(rec, k), fmt.Sprintf(
				"%s: a literal password in an inventory or vars file is refused (host %s); use SSH keys, or set gokube_allow_inventory_passwords=true to accept it",
				k, h.Name)))
		}
	}
	_, kerrs := parseConnVars(h.Name, h.Vars, true)
	for _, ke := range kerrs {
		errs = append(errs, locErr(inv.varSource(rec, ke.key), fmt.Sprintf("%s (host %s)", ke.msg, h.Name)))
	}
	return errs
}

// locErr turns a "file:line" source into an *Error.
func locErr(src, msg string) error {
	file, line := splitSrc(src)
	return &Error{File: file, Line: line, Msg: msg}
}

func splitSrc(src string) (string, int) {
	i := strings.LastIndexByte(src, ':')
	if i < 0 {
		return src, 0
	}
	n := 0
	for _, c := range src[i+1:] {
		if c < '0' || c > '9' {
			return src, 0
		}
		n = n*10 + int(c-'0')
	}
	return src[:i], n
}

func isTemplate(s string) bool { return strings.Contains(s, "{{") || strings.Contains(s, "{%") }

// AddVarsDir adds group_vars/ and host_vars/ found in dir (the playbook's
// directory); they win over the inventory-side ones at the same level.
// On error the inventory is left as it was.
func (inv *Inventory) AddVarsDir(dir string) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if sameDir(dir, inv.dir) {
		// Same files already loaded at the inventory layer; loading them
		// again would change nothing but the reported precedence.
		return nil
	}
	saveG := map[string]varSet{}
	for n, g := range inv.groups {
		saveG[n] = copyVarSet(g.vars[layerPlayFiles])
	}
	saveH := map[string]varSet{}
	for n, h := range inv.hosts {
		saveH[n] = copyVarSet(h.vars[layerPlayFiles])
	}
	nwarn := len(inv.warnings)
	restore := func() {
		for n, g := range inv.groups {
			g.vars[layerPlayFiles] = saveG[n]
		}
		for n, h := range inv.hosts {
			h.vars[layerPlayFiles] = saveH[n]
		}
		inv.warnings = inv.warnings[:nwarn]
	}
	if err := inv.loadVarsDir(dir, layerPlayFiles); err != nil {
		restore()
		return err
	}
	if err := inv.recompute(); err != nil {
		restore()
		return err
	}
	inv.playDir = append(inv.playDir, dir)
	return nil
}

func copyVarSet(v varSet) varSet {
	var out varSet
	for k, val := range v.vals {
		out.set(k, val, v.src[k])
	}
	return out
}

func sameDir(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}
