package inventory

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"gokube/internal/vault"
)

// Host is one inventory host as the engine sees it.
type Host struct {
	Name   string
	Vars   map[string]any // merged: all < parent group < child group < host (incl. group_vars/host_vars files)
	Groups []string       // every group it belongs to, incl. "all" and ancestors, sorted
}

// GroupNames returns the host's groups without "all" and "ungrouped":
// Ansible's group_names magic variable.
func (h *Host) GroupNames() []string {
	out := make([]string, 0, len(h.Groups))
	for _, g := range h.Groups {
		if g != "all" && g != "ungrouped" {
			out = append(out, g)
		}
	}
	return out
}

// LoadOptions change how LoadWith reads an inventory.
type LoadOptions struct {
	// AllowPasswords accepts literal passwords (ansible_password,
	// ansible_ssh_pass, ansible_become_password, ansible_become_pass)
	// written in inventory and vars files. Without it such a password is an
	// error naming the file and line, because inventories end up in git.
	AllowPasswords bool
	// Vault decrypts Ansible Vault vars files and `!vault` values; nil
	// means no vault password was given, and vault data is an error.
	Vault *vault.Keyring
}

// Error is a problem in an inventory or vars file, located by file and line.
type Error struct {
	File string
	Line int // 0 when the problem concerns the whole file
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func errAt(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

type group struct {
	name     string
	order    int
	hosts    []string // direct members, order of addition
	hostSet  map[string]bool
	children []string
	parents  []string
	vars     [numLayers]varSet

	depth    int
	ancestry []string // self and every ancestor
}

type hostRec struct {
	name   string
	order  int
	groups []string // direct groups, order of addition
	vars   [numLayers]varSet
}

// Inventory is a loaded inventory. Readers may run concurrently; AddVarsDir
// takes a write lock.
type Inventory struct {
	mu sync.RWMutex

	path    string
	dir     string
	opts    LoadOptions
	playDir []string

	hosts      map[string]*hostRec
	hostOrder  []string
	groups     map[string]*group
	groupOrder []string

	merged   map[string]*Host
	warnings []string
}

// Implicit localhost names, as Ansible: a play or pattern naming one of these
// works without an inventory entry and runs with the local connection.
var localNames = []string{"localhost", "127.0.0.1", "::1"}

// Load reads an INI or YAML inventory (detected by extension, then content)
// and the group_vars/ host_vars/ beside it. path may be a directory of
// inventory files, whose group_vars/ host_vars/ are inside it.
func Load(path string) (*Inventory, error) { return LoadWith(path, LoadOptions{}) }

// LoadWith is Load with options.
func LoadWith(path string, opts LoadOptions) (*Inventory, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv := newInventory(path, opts)
	files := []string{path}
	if st.IsDir() {
		// A directory is read as Ansible reads one: every inventory file
		// in it, in lexical order, with group_vars/ host_vars/ inside it.
		inv.dir = path
		if files, err = dirInventoryFiles(path); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		if err := inv.parse(f, data); err != nil {
			return nil, err
		}
	}
	if err := inv.finishStructure(); err != nil {
		return nil, err
	}
	if err := inv.loadVarsDir(inv.dir, layerInvFiles); err != nil {
		return nil, err
	}
	if err := inv.recompute(); err != nil {
		return nil, err
	}
	return inv, nil
}

// dirInventoryFiles lists the inventory files of a directory, skipping what
// Ansible's INVENTORY_IGNORE_EXTS and ignore patterns skip.
func dirInventoryFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		switch strings.ToLower(filepath.Ext(n)) {
		case ".orig", ".cfg", ".retry", ".pyc", ".pyo", ".swp", ".bak", ".rpm", ".md", ".txt", ".rst":
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("inventory: %s: no inventory file in this directory", dir)
	}
	return out, nil
}

// Parse builds an inventory from bytes; name is used in messages and to pick
// the format (".yml", ".yaml", ".json" mean YAML). No vars directories are read.
func Parse(name string, data []byte, opts LoadOptions) (*Inventory, error) {
	inv := newInventory(name, opts)
	if err := inv.parse(name, data); err != nil {
		return nil, err
	}
	if err := inv.finishStructure(); err != nil {
		return nil, err
	}
	if err := inv.recompute(); err != nil {
		return nil, err
	}
	return inv, nil
}

func newInventory(path string, opts LoadOptions) *Inventory {
	inv := &Inventory{
		path:   path,
		dir:    filepath.Dir(path),
		opts:   opts,
		hosts:  map[string]*hostRec{},
		groups: map[string]*group{},
	}
	inv.addGroup("all")
	inv.addGroup("ungrouped")
	return inv
}

func (inv *Inventory) parse(name string, data []byte) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if isYAML(name, data) {
		return inv.parseYAML(name, data)
	}
	return inv.parseINI(name, data)
}

// isYAML decides the format: the extension when it says so, otherwise the
// first meaningful line (a "key:" mapping or "---" means YAML; INI starts
// with a [section] or a host line).
func isYAML(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yml", ".yaml", ".json":
		return true
	case ".ini", ".cfg":
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line == "---" || line[0] == '{' {
			return true
		}
		if line[0] == '[' {
			return false
		}
		if i := strings.IndexByte(line, ':'); i > 0 && (i == len(line)-1 || line[i+1] == ' ' || line[i+1] == '\t') &&
			!strings.ContainsAny(line[:i], " \t=") {
			return true
		}
		return false
	}
	return false
}

func (inv *Inventory) addGroup(name string) *group {
	if g, ok := inv.groups[name]; ok {
		return g
	}
	g := &group{name: name, order: len(inv.groupOrder), hostSet: map[string]bool{}}
	inv.groups[name] = g
	inv.groupOrder = append(inv.groupOrder, name)
	return g
}

func (inv *Inventory) addHost(name, groupName string) *hostRec {
	h, ok := inv.hosts[name]
	if !ok {
		h = &hostRec{name: name, order: len(inv.hostOrder)}
		inv.hosts[name] = h
		inv.hostOrder = append(inv.hostOrder, name)
	}
	g := inv.addGroup(groupName)
	if !g.hostSet[name] {
		g.hostSet[name] = true
		g.hosts = append(g.hosts, name)
		h.groups = append(h.groups, groupName)
	}
	return h
}

// addChild links child under parent, refusing links that would make the
// group graph cyclic (Ansible refuses them too: variable inheritance would
// never end).
func (inv *Inventory) addChild(parent, child, file string, line int) error {
	p := inv.addGroup(parent)
	c := inv.addGroup(child)
	if slices.Contains(p.children, child) {
		return nil
	}
	if child == "all" {
		return errAt(file, line, "group %q cannot be a child of %q: \"all\" contains every group", child, parent)
	}
	if path := inv.groupPath(child, parent); path != nil {
		return errAt(file, line, "making %q a child of %q creates a cycle: %s", child, parent,
			strings.Join(append([]string{parent}, path...), " -> "))
	}
	p.children = append(p.children, child)
	c.parents = append(c.parents, parent)
	return nil
}

// groupPath returns the chain of children from "from" down to "to", or nil.
func (inv *Inventory) groupPath(from, to string) []string {
	seen := map[string]bool{}
	var walk func(string) []string
	walk = func(n string) []string {
		if n == to {
			return []string{n}
		}
		if seen[n] {
			return nil
		}
		seen[n] = true
		g := inv.groups[n]
		if g == nil {
			return nil
		}
		for _, c := range g.children {
			if p := walk(c); p != nil {
				return append([]string{n}, p...)
			}
		}
		return nil
	}
	return walk(from)
}

// finishStructure applies Ansible's reconcile rules: every parentless group
// hangs under "all", and a host belongs to "ungrouped" exactly when it is in
// no group besides all/ungrouped. Then it computes depths and ancestries.
func (inv *Inventory) finishStructure() error {
	for _, name := range inv.groupOrder {
		g := inv.groups[name]
		if name != "all" && len(g.parents) == 0 {
			if err := inv.addChild("all", name, inv.path, 0); err != nil {
				return err
			}
		}
	}
	// Keep "ungrouped" first among all's children, as Ansible creates it first.
	ung := inv.groups["ungrouped"]
	for _, hn := range inv.hostOrder {
		h := inv.hosts[hn]
		other := false
		for _, gn := range h.groups {
			if gn != "all" && gn != "ungrouped" {
				other = true
				break
			}
		}
		if other && ung.hostSet[hn] {
			delete(ung.hostSet, hn)
			ung.hosts = slices.DeleteFunc(ung.hosts, func(s string) bool { return s == hn })
			h.groups = slices.DeleteFunc(h.groups, func(s string) bool { return s == "ungrouped" })
		} else if !other && !ung.hostSet[hn] {
			ung.hostSet[hn] = true
			ung.hosts = append(ung.hosts, hn)
			h.groups = append(h.groups, "ungrouped")
		}
	}
	memo := map[string]int{}
	var depth func(string) int
	depth = func(name string) int {
		if d, ok := memo[name]; ok {
			return d
		}
		d := 0
		for _, p := range inv.groups[name].parents {
			d = max(d, depth(p)+1)
		}
		memo[name] = d
		return d
	}
	for _, name := range inv.groupOrder {
		g := inv.groups[name]
		g.depth = depth(name)
		seen := map[string]bool{}
		var walk func(string)
		walk = func(n string) {
			if seen[n] {
				return
			}
			seen[n] = true
			for _, p := range inv.groups[n].parents {
				walk(p)
			}
		}
		walk(name)
		g.ancestry = slices.Sorted(maps.Keys(seen))
	}
	return nil
}

// hostGroups returns every group of a host (direct and ancestors), sorted.
func (inv *Inventory) hostGroups(h *hostRec) []string {
	set := map[string]bool{"all": true}
	for _, gn := range h.groups {
		for _, a := range inv.groups[gn].ancestry {
			set[a] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Warnings returns notes that are not errors, e.g. a group_vars file whose
// name matches no group (Ansible ignores it silently; it is usually a typo).
func (inv *Inventory) Warnings() []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, w := range inv.warnings {
		if !seen[w] { // a range of hosts repeats the same note
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// Path is the inventory file this was loaded from.
func (inv *Inventory) Path() string { return inv.path }

// Host returns a deep copy of the named host with merged vars; the caller
// may modify it. "localhost" (also 127.0.0.1, ::1) not in the inventory is
// returned as Ansible's implicit localhost: the "all" group's vars plus
// ansible_connection=local, in no group.
func (inv *Inventory) Host(name string) (*Host, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if h, ok := inv.merged[name]; ok {
		return &Host{Name: h.Name, Vars: deepCopyMap(h.Vars), Groups: slices.Clone(h.Groups)}, true
	}
	if slices.Contains(localNames, name) {
		return inv.implicitLocal(name), true
	}
	return nil, false
}

func (inv *Inventory) implicitLocal(name string) *Host {
	vars := map[string]any{}
	all := inv.groups["all"]
	for l := range numLayers {
		for k, v := range all.vars[l].vals {
			vars[k] = deepCopy(v)
		}
	}
	vars["ansible_connection"] = "local"
	return &Host{Name: name, Vars: vars, Groups: []string{}}
}

// HostNames returns every host in inventory order (order of first appearance).
func (inv *Inventory) HostNames() []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return slices.Clone(inv.hostOrder)
}

// GroupNames returns every group name (including "all" and "ungrouped"), sorted.
func (inv *Inventory) GroupNames() []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return slices.Sorted(maps.Keys(inv.groups))
}

// GroupHosts returns all hosts of a group incl. its children, in inventory
// order; nil for an unknown group. A renamed group's other name works
// (GroupAlias).
func (inv *Inventory) GroupHosts(group string) []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.groupHosts(group)
}

func (inv *Inventory) groupHosts(name string) []string {
	name = inv.resolveGroup(name)
	g, ok := inv.groups[name]
	if !ok {
		return nil
	}
	if name == "all" {
		return slices.Clone(inv.hostOrder)
	}
	set := map[string]bool{}
	var walk func(*group)
	seen := map[string]bool{}
	walk = func(g *group) {
		if seen[g.name] {
			return
		}
		seen[g.name] = true
		for _, h := range g.hosts {
			set[h] = true
		}
		for _, c := range g.children {
			walk(inv.groups[c])
		}
	}
	walk(g)
	return inv.inOrder(set)
}

// inOrder lists the set's hosts in inventory order.
func (inv *Inventory) inOrder(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	if len(set) > len(inv.hostOrder)/8 {
		for _, h := range inv.hostOrder {
			if set[h] {
				out = append(out, h)
			}
		}
		if len(out) == len(set) {
			return out
		}
		out = out[:0]
	}
	for h := range set {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		oi, oj := inv.orderOf(out[i]), inv.orderOf(out[j])
		if oi != oj {
			return oi < oj
		}
		return out[i] < out[j]
	})
	return out
}

func (inv *Inventory) orderOf(name string) int {
	if h, ok := inv.hosts[name]; ok {
		return h.order
	}
	return len(inv.hostOrder) // implicit localhost sorts last
}
