package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// scope is the variables one host sees for one task, merged by precedence
// (see doc.go). Values that contain "{{" are rendered when first used and
// then cached, so a variable may refer to others in any order; a cycle is
// reported with its chain.
type scope struct {
	r         *run
	host      string
	vars      map[string]any // raw, precedence applied
	cache     map[string]any
	resolving []string
	others    map[string]*scope // other hosts, for hostvar/hostvars
}

type notDefined struct{ name string }

func (e *notDefined) Error() string { return "." + e.name + " is not defined" }

func (s *scope) has(name string) bool {
	_, ok := s.vars[name]
	return ok
}

// get returns a variable, rendered.
func (s *scope) get(name string) (any, error) {
	if v, ok := s.cache[name]; ok {
		return v, nil
	}
	raw, ok := s.vars[name]
	if !ok {
		return nil, &notDefined{name}
	}
	for i, n := range s.resolving {
		if n == name {
			chain := append(append([]string(nil), s.resolving[i:]...), name)
			return nil, &TemplateError{Pos: Pos{File: varPos + s.resolving[0]}, Host: s.host,
				Msg: "variable cycle: " + strings.Join(chain, " -> "), cycle: true}
		}
	}
	s.resolving = append(s.resolving, name)
	v, err := s.resolve(raw, Pos{File: varPos + name})
	s.resolving = s.resolving[:len(s.resolving)-1]
	if err != nil {
		var te *TemplateError
		if errors.As(err, &te) && !te.cycle {
			if len(te.Via) == 0 {
				te.ViaSource = s.sourceOf(name) // the variable whose own template failed
			}
			te.Via = append([]string{name}, te.Via...)
		}
		return nil, err
	}
	if s.cache == nil {
		s.cache = map[string]any{}
	}
	s.cache[name] = v
	return v, nil
}

// resolve renders every template string inside v (deep).
func (s *scope) resolve(v any, pos Pos) (any, error) {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") {
			return x, nil
		}
		return s.renderNative(pos, x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := s.resolve(e, pos)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := s.resolve(e, pos)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

// hostFuncs binds the host-dependent helpers to inst: each call uses the
// scope the instance is executing for.
func hostFuncs(inst *tmplInst) template.FuncMap {
	return template.FuncMap{
		"hostsOf": func(group string) []string { return inst.cur.r.inv.GroupHosts(group) },
		"inGroup": func(group string) bool {
			real := inst.cur.r.inv.ResolveGroup(group) // kube-master on a kubespray inventory
			for _, g := range inst.cur.r.hostGroups(inst.cur.host) {
				if g == group || g == real {
					return true
				}
			}
			return false
		},
		"groupIndex": func(group string) int {
			for i, h := range inst.cur.r.inv.GroupHosts(group) {
				if h == inst.cur.host {
					return i
				}
			}
			return -1
		},
		// hostvar H NAME [DEFAULT]: another host's variable; DEFAULT (or a
		// default/coalesce around the call) when H does not define it.
		"hostvar": func(host, name string, def ...any) (any, error) {
			v, err := inst.cur.hostvar(host, name)
			if _, ok := err.(*notDefined); ok {
				if len(def) > 0 {
					return def[0], nil
				}
				return nil, fmt.Errorf("variable %q is not defined for host %s", name, host)
			}
			return v, err
		},
		fnSoftHVar: func(host, name string, def ...any) (any, error) {
			v, err := inst.cur.hostvar(host, name)
			if _, ok := err.(*notDefined); ok {
				if len(def) > 0 {
					return def[0], nil
				}
				return nil, nil
			}
			return v, err
		},
		// hostvarsOf "kube-master" "kube_apiserver_url" maps each host of
		// the group to its value of the variable: roles pass a group's
		// values to a module without looping in a template. With a third
		// argument, a host without the variable maps to it instead of being
		// an error (a result registered only where the host was reached).
		"hostvarsOf": func(group, name string, def ...any) (map[string]any, error) {
			out := map[string]any{}
			for _, h := range inst.cur.r.inv.GroupHosts(group) {
				o, err := inst.cur.other(h)
				if err != nil {
					return nil, err
				}
				v, err := o.get(name)
				if _, ok := err.(*notDefined); ok {
					if len(def) > 0 {
						out[h] = def[0]
						continue
					}
					return nil, fmt.Errorf("variable %q is not defined for host %s", name, h)
				}
				if err != nil {
					return nil, err
				}
				out[h] = v
			}
			return out, nil
		},
		"ipOf":        func(host string) (string, error) { return inst.cur.ipOf(host) },
		"defined":     func(path string) (bool, error) { return inst.cur.defined(path) },
		"__gkcapture": func(v any) string { inst.got = v; return "" },
	}
}

func (s *scope) hostvar(host, name string) (any, error) {
	o, err := s.other(host)
	if err != nil {
		return nil, err
	}
	return o.get(name)
}

// defined reports whether a variable, or a key path inside one
// ("etcd.name"), exists. A variable that fails to render is an error, not
// false.
func (s *scope) defined(path string) (bool, error) {
	name, rest, nested := strings.Cut(path, ".")
	if !s.has(name) {
		return false, nil
	}
	if !nested {
		return true, nil
	}
	v, err := s.get(name)
	if err != nil {
		return false, err
	}
	for _, k := range strings.Split(rest, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false, nil
		}
		if v, ok = m[k]; !ok {
			return false, nil
		}
	}
	return true, nil
}

func (s *scope) other(host string) (*scope, error) {
	if host == s.host {
		return s, nil
	}
	if o, ok := s.others[host]; ok {
		return o, nil
	}
	o := s.r.hostScope(host)
	if o == nil {
		return nil, fmt.Errorf("host %q is not in the inventory", host)
	}
	if s.others == nil {
		s.others = map[string]*scope{}
	}
	s.others[host] = o
	return o, nil
}

// ipOf is the address other hosts use to reach host: ansible_host, else
// the default IPv4 address from its facts, else its name.
func (s *scope) ipOf(host string) (string, error) {
	o, err := s.other(host)
	if err != nil {
		return "", err
	}
	// ansible_ssh_host is the pre-2.0 name kubespray's old inventories use.
	for _, name := range []string{"ansible_host", "ansible_ssh_host"} {
		if v, err := o.get(name); err == nil && fmt.Sprint(v) != "" {
			return fmt.Sprint(v), nil
		}
	}
	if v, err := o.get("ansible_default_ipv4"); err == nil {
		if m, ok := v.(map[string]any); ok && m["address"] != nil && m["address"] != "" {
			return fmt.Sprint(m["address"]), nil
		}
	}
	return host, nil
}

// data builds the template's data map: only the variables it reads, so
// unrelated broken variables cannot fail it and missing ones still do. A
// variable whose own value fails to render is left out and its error kept
// in deferred: a branch not taken does not read it (Jinja does not evaluate
// one either), and one that does gets that error back (deferredErr).
func (s *scope) data(rf *refs) (d map[string]any, deferred map[string]error, err error) {
	d = make(map[string]any, len(rf.hard)+len(rf.soft)+2)
	for name := range rf.hard {
		v, err := s.get(name)
		if err != nil {
			if _, ok := err.(*notDefined); ok {
				continue // missingkey=error reports it with the expression
			}
			if deferred == nil {
				deferred = map[string]error{}
			}
			deferred[name] = err
			continue
		}
		d[name] = v
	}
	for name := range rf.soft {
		if _, done := d[name]; done {
			continue
		}
		v, err := s.get(name)
		if err != nil {
			if _, ok := err.(*notDefined); !ok {
				return nil, nil, err
			}
			v = nil
		}
		d[name] = v
	}
	for name := range rf.inner {
		if _, done := d[name]; done {
			continue
		}
		if v, err := s.get(name); err == nil {
			d[name] = v
		}
	}
	if rf.allHV || len(rf.hostvar) > 0 {
		hv := map[string]any{}
		if rf.allHV {
			for _, h := range s.r.inv.HostNames() {
				o, err := s.other(h)
				if err != nil {
					continue
				}
				m := map[string]any{}
				for k := range o.vars {
					if v, err := o.get(k); err == nil {
						m[k] = v
					}
				}
				hv[h] = m
			}
		} else {
			for h, names := range rf.hostvar {
				o, err := s.other(h)
				if err != nil {
					continue // missingkey=error names it
				}
				m := map[string]any{}
				for _, n := range names {
					v, err := o.get(n)
					if err != nil {
						if _, ok := err.(*notDefined); ok {
							continue
						}
						return nil, nil, err
					}
					m[n] = v
				}
				hv[h] = m
			}
		}
		d["hostvars"] = hv
	}
	return d, deferred, nil
}

// execErr is a template's execution error; when the template failed for
// reading a variable data left out, that variable's own rendering error,
// placed at the line of the template that read it.
func (s *scope) execErr(pos Pos, err error, deferred map[string]error) error {
	for name, derr := range deferred {
		if !strings.Contains(err.Error(), fmt.Sprintf("map has no entry for key %q", name)) {
			continue
		}
		if m := tmplErrRe.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			if pos.Line > 0 {
				pos.Line += line - 1
			} else {
				pos.Line = line
			}
		}
		return s.wrapErr(pos, derr)
	}
	return s.wrapErr(pos, err)
}

func (s *scope) parse(pos Pos, text string) (*tmplEntry, error) {
	e := s.r.tmpl.entry(text)
	if e.err != nil {
		return nil, s.wrapErr(pos, e.err)
	}
	return e, nil
}

// varPos marks positions inside a variable's value; the template that used
// the variable replaces it with its own file:line.
const varPos = "variable "

func (s *scope) wrapErr(pos Pos, err error) error {
	e := tmplError(pos, s.host, err)
	var te *TemplateError
	if errors.As(e, &te) && strings.HasPrefix(te.Pos.File, varPos) && !strings.HasPrefix(pos.File, varPos) {
		te.Pos = pos
	}
	return e
}

// render renders text as a string.
func (s *scope) render(pos Pos, text string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	e, err := s.parse(pos, text)
	if err != nil {
		return "", err
	}
	d, deferred, err := s.data(e.refs)
	if err != nil {
		return "", s.wrapErr(pos, err)
	}
	out, _, err := s.r.tmpl.exec(e, s, d)
	if err != nil {
		return "", s.execErr(pos, err, deferred)
	}
	return out, nil
}

// renderNative renders text; a lone {{ expr }} keeps the value's type.
func (s *scope) renderNative(pos Pos, text string) (any, error) {
	e, err := s.parse(pos, text)
	if err != nil {
		return nil, err
	}
	if !e.isOne {
		return s.render(pos, text)
	}
	ne := s.r.tmpl.entry("{{ " + e.single + " | __gkcapture }}")
	if ne.err != nil {
		// A pipeline that does not accept another stage renders as text.
		return s.render(pos, text)
	}
	d, deferred, err := s.data(e.refs)
	if err != nil {
		return nil, s.wrapErr(pos, err)
	}
	_, got, err := s.r.tmpl.exec(ne, s, d)
	if err != nil {
		return nil, s.execErr(pos, err, deferred)
	}
	return got, nil
}

// cond evaluates a when/until/changed_when/failed_when expression.
func (s *scope) cond(c Cond) (bool, error) {
	v, err := s.renderNative(c.Pos, condText(c.Expr))
	if err != nil {
		return false, err
	}
	return truthy(v), nil
}

// conds holds when every condition holds.
func (s *scope) conds(cs []Cond) (bool, error) {
	for _, c := range cs {
		ok, err := s.cond(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// with returns a child scope with extra variables on top (loop vars,
// registered results for changed_when); cached renders are dropped because
// they may depend on what changed.
func (s *scope) with(extra map[string]any) *scope {
	vars := make(map[string]any, len(s.vars)+len(extra))
	for k, v := range s.vars {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	return &scope{r: s.r, host: s.host, vars: vars, others: s.others}
}
