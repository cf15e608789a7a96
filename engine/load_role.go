package engine

import (
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// playRole loads a `roles:` entry (with its dependencies) into tasks.
func (l *loader) playRole(rn *yaml.Node, s src, inh inherit, seen map[*Role]bool) ([]*Task, error) {
	p := Pos{s.where(), rn.Line}
	e := &roleEntry{name: rn.Value, in: inh, file: s.where()}
	if rn.Kind == yaml.MappingNode {
		e.params = map[string]any{}
		for i := 0; i+1 < len(rn.Content); i += 2 {
			k, v := rn.Content[i], rn.Content[i+1]
			kp := Pos{s.where(), k.Line}
			if kw, ok := roleEntryKeywords[k.Value]; ok {
				if err := kw(e, v, kp); err != nil {
					return nil, err
				}
				continue
			}
			// Any other key is a role parameter, as in Ansible.
			x, err := decodeAny(v)
			if err != nil {
				return nil, errAt(kp, "%s: %w", k.Value, err)
			}
			e.params[k.Value] = x
		}
	} else if rn.Kind != yaml.ScalarNode {
		return nil, errAt(p, "a role entry is a name or a mapping")
	}
	if e.name == "" {
		return nil, errAt(p, "role entry without a role name")
	}
	return l.roleTasks(e.name, "main", p, e.in, e.params, seen)
}

// roleTasks returns the tasks of a role preceded by those of its
// dependencies (each role at most once per play unless it has params).
func (l *loader) roleTasks(name, tasksFrom string, p Pos, in inherit, params map[string]any, seen map[*Role]bool) ([]*Task, error) {
	// A role with errors in its defaults, vars, meta or handlers still has
	// its tasks checked: one run reports every error.
	var errs errList
	r, err := l.loadRole(name, p)
	if r == nil {
		return nil, err
	}
	errs.add(err)
	var out []*Task
	for _, d := range r.Deps {
		if seen[d] {
			continue
		}
		dt, err := l.roleTasks(d.Name, "main", p, in, nil, seen)
		errs.add(err)
		out = append(out, dt...)
	}
	if seen[r] && len(params) == 0 && tasksFrom == "main" {
		return out, errs.err()
	}
	seen[r] = true
	tf := r.Dir.join("tasks/" + tasksFrom + ".yml")
	if !tf.exists() {
		if alt := r.Dir.join("tasks/" + tasksFrom + ".yaml"); alt.exists() {
			tf = alt
		} else if tasksFrom != "main" {
			errs.add(errAt(p, "role %s has no tasks/%s.yml", name, tasksFrom))
			return nil, errs.err()
		} else {
			return out, errs.err()
		}
	}
	in.role = r
	if len(params) > 0 {
		in.blockVars = append(append([]map[string]any(nil), in.blockVars...), params)
	}
	ts, err := l.loadTaskFile(tf, r.Dir.join("tasks"), in)
	errs.add(err)
	return append(out, ts...), errs.err()
}

func (l *loader) findRole(name string) (src, bool) {
	if filepath.IsAbs(name) || strings.Contains(name, "/") {
		d := l.pbDir.join(name)
		return d, d.exists()
	}
	d := l.pbDir.join("roles").join(name)
	if d.exists() {
		return d, true
	}
	for _, dir := range l.rolesPath {
		if d := (src{path: filepath.Join(dir, name), display: filepath.Join(dir, name), vault: l.vault}); d.exists() {
			return d, true
		}
	}
	if l.bundled != nil {
		for _, p := range []string{name, "roles/" + name} {
			if _, err := fs.Stat(l.bundled, p); err == nil {
				return src{fsys: l.bundled, path: p, display: "roles/" + name, vault: l.vault}, true
			}
		}
	}
	return src{}, false
}

// loadRole loads a role once per playbook. A role that was found comes
// back even with errors (in its defaults, vars, meta or handlers), so its
// tasks are checked too; nil means it was not found or is a cycle.
func (l *loader) loadRole(name string, p Pos) (*Role, error) {
	for _, s := range l.stack {
		if s == name {
			return nil, errAt(p, "role dependency cycle: %s -> %s", strings.Join(l.stack, " -> "), name)
		}
	}
	if r, ok := l.roleMemo[name]; ok {
		addRole(l.play, r)
		return r, nil
	}
	dir, ok := l.findRole(name)
	if !ok {
		return nil, errAt(p, "role %q not found (looked in %s and the bundled roles)", name, strings.Join(append([]string{l.pbDir.join("roles").display}, l.rolesPath...), ", "))
	}
	l.stack = append(l.stack, name)
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()
	r := &Role{Name: path.Base(filepath.ToSlash(name)), Dir: dir, Defaults: map[string]any{}, Vars: map[string]any{}}
	var errs errList
	for _, d := range []struct {
		sub string
		dst *map[string]any
	}{{"defaults/main", &r.Defaults}, {"vars/main", &r.Vars}} {
		for _, ext := range []string{".yml", ".yaml"} {
			f := dir.join(d.sub + ext)
			if f.exists() {
				m, err := loadVarsFile(f, p)
				if !errs.add(err) {
					*d.dst = m
				}
				break
			}
		}
	}
	errs.add(l.loadRoleMeta(r))
	for _, ext := range []string{".yml", ".yaml"} {
		f := dir.join("handlers/main" + ext)
		if f.exists() {
			hs, err := l.loadTaskFile(f, dir.join("tasks"), inherit{role: r})
			errs.add(err)
			r.Handlers = hs
			break
		}
	}
	l.roleMemo[name] = r
	addRole(l.play, r)
	return r, errs.err()
}

// loadRoleMeta loads meta/main.yml: the role's dependencies (loaded now,
// so a cycle is found at load time); galaxy_info is accepted (it only
// describes the role) and anything else refused.
func (l *loader) loadRoleMeta(r *Role) error {
	for _, ext := range []string{".yml", ".yaml"} {
		f := r.Dir.join("meta/main" + ext)
		if !f.exists() {
			continue
		}
		root, err := parseYAML(f)
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			switch k.Value {
			case "dependencies":
				for _, dn := range v.Content {
					dname := dn.Value
					if dn.Kind == yaml.MappingNode {
						// Only the name is read: when, tags, vars or params on a
						// dependency would be parsed and ignored, so they are refused.
						for j := 0; j+1 < len(dn.Content); j += 2 {
							if dk := dn.Content[j]; dk.Value != "role" && dk.Value != "name" {
								return errAt(Pos{f.where(), dk.Line}, "%q on a role dependency is not supported (only role: or name:); put it on the role's tasks or on the play's roles: entry", dk.Value)
							}
						}
						if x := mapGet(dn, "role"); x != nil {
							dname = x.Value
						} else if x := mapGet(dn, "name"); x != nil {
							dname = x.Value
						}
					}
					dep, err := l.loadRole(dname, Pos{f.where(), dn.Line})
					if dep != nil {
						r.Deps = append(r.Deps, dep)
					}
					if err != nil {
						return err
					}
				}
			case "galaxy_info": // descriptive only
			case "allow_duplicates", "argument_specs":
				return errAt(Pos{f.where(), k.Line}, "%q in role meta is not supported by gokube (it would be ignored)", k.Value)
			default:
				return errAt(Pos{f.where(), k.Line}, "unknown key %q in role meta", k.Value)
			}
		}
		break
	}
	return nil
}

func addRole(pl *Play, r *Role) {
	for _, x := range pl.Roles {
		if x == r {
			return
		}
	}
	pl.Roles = append(pl.Roles, r)
}
