package engine

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// RenderFor shows, offline, what a run would give host: a template file
// rendered (target is a file), or a variable's value as YAML with where it
// was set (target is a name). The variables and their precedence are a
// run's; with opts.Playbook, the first play whose hosts include host adds
// its vars, vars_files and its roles' defaults and vars. No host is
// contacted, so facts are absent: a template that reads one fails naming
// it.
func RenderFor(w io.Writer, opts Options, host, target string) error {
	pb, inv, err := Load(opts)
	if err != nil {
		return err
	}
	extra, err := ParseExtraVars(opts.ExtraVars, opts.Vault)
	if err != nil {
		return &UsageError{err}
	}
	if pb == nil {
		pb = &Playbook{}
	}
	r := newRun(opts, pb, inv, extra)
	hs, ok := r.hosts[host]
	if !ok {
		return &UsageError{fmt.Errorf("host %q is not in the inventory", host)}
	}
	for _, pl := range pb.Plays {
		if hosts, err := inv.Match(pl.Hosts); err == nil && slices.Contains(hosts, host) {
			r.play = pl
			break
		}
	}
	sc := r.taskScope(hs, nil)
	if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
		b, err := os.ReadFile(target)
		if err != nil {
			return &UsageError{err}
		}
		out, err := sc.render(Pos{File: displayPath(target), Line: 1}, string(b))
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, out)
		return err
	}
	if !sc.has(target) {
		return &UsageError{fmt.Errorf("%s is neither a file nor a variable of host %s", target, host)}
	}
	v, err := sc.get(target)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(map[string]any{target: v})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s# set by %s\n", b, r.varSource(host, target))
	return nil
}

// varSource names the layer (and file, where known) whose value of key
// wins for host, walking taskScope's precedence from the top.
func (r *run) varSource(host, key string) string {
	src, _ := r.varLayer(host, key)
	return src
}

// varLayer is varSource with the raw value that layer holds.
func (r *run) varLayer(host, key string) (string, any) {
	switch key {
	case "inventory_hostname", "inventory_hostname_short", "groups", "group_names", "play_hosts",
		"ansible_play_batch", "ansible_play_hosts", "ansible_play_hosts_all", "ansible_check_mode",
		"ansible_diff_mode", "ansible_verbosity", "playbook_dir", "inventory_dir", "inventory_file":
		return "gokube (a magic variable)", nil
	}
	if v, ok := r.extra[key]; ok {
		return "-e", v
	}
	hs := r.hosts[host]
	if hs != nil {
		hs.mu.Lock()
		v, ok := hs.vars[key]
		hs.mu.Unlock()
		if ok {
			return "set_fact or register", v
		}
	}
	pl := r.play
	if pl != nil {
		for i := len(pl.Roles) - 1; i >= 0; i-- {
			if v, ok := pl.Roles[i].Vars[key]; ok {
				return roleFile(pl.Roles[i].Dir.join("vars/main.yml"), "role vars"), v
			}
		}
		for i := len(pl.VarsFiles) - 1; i >= 0; i-- {
			if v, ok := pl.VarsFiles[i][key]; ok {
				return fmt.Sprintf("vars_files of the play at %s", pl.Pos), v
			}
		}
		if v, ok := pl.Vars[key]; ok {
			return fmt.Sprintf("vars of the play at %s", pl.Pos), v
		}
	}
	if hs != nil {
		if v, ok := hs.inv[key]; ok {
			if src := r.inv.VarSource(host, key); src != "" {
				return src + " (inventory)", v
			}
			return "the inventory", v
		}
	}
	if pl != nil {
		for i := len(pl.Roles) - 1; i >= 0; i-- {
			if v, ok := pl.Roles[i].Defaults[key]; ok {
				return roleFile(pl.Roles[i].Dir.join("defaults/main.yml"), "role defaults"), v
			}
		}
	}
	return "unknown", nil
}

// sourceOf names the file that set a variable of this scope, for error
// messages; "" when the layer that wins here is not one varLayer knows
// (task or block vars) or holds another value.
func (s *scope) sourceOf(name string) string {
	src, v := s.r.varLayer(s.host, name)
	if src == "unknown" || strings.HasPrefix(src, "gokube") || !reflect.DeepEqual(v, s.vars[name]) {
		return ""
	}
	return src
}

// roleFile names a role's vars or defaults file and its layer:
// "roles/etcd/defaults/main.yml (bundled role defaults)".
func roleFile(f src, layer string) string {
	if f.fsys != nil {
		return f.display + " (bundled " + layer + ")"
	}
	return f.display + " (" + layer + ")"
}
