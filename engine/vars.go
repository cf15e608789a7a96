package engine

import (
	"errors"
	"fmt"
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
	fm        template.FuncMap
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

func (s *scope) funcs() template.FuncMap {
	if s.fm != nil {
		return s.fm
	}
	fm := template.FuncMap{}
	for k, v := range s.r.funcs {
		fm[k] = v
	}
	inv := s.r.inv
	fm["hostsOf"] = func(group string) []string { return inv.GroupHosts(group) }
	fm["inGroup"] = func(group string) bool {
		for _, g := range s.r.hostGroups(s.host) {
			if g == group {
				return true
			}
		}
		return false
	}
	fm["groupIndex"] = func(group string) int {
		for i, h := range inv.GroupHosts(group) {
			if h == s.host {
				return i
			}
		}
		return -1
	}
	fm["hostvar"] = func(host, name string) (any, error) {
		o, err := s.other(host)
		if err != nil {
			return nil, err
		}
		v, err := o.get(name)
		if err != nil {
			if _, ok := err.(*notDefined); ok {
				return nil, fmt.Errorf("variable %q is not defined for host %s", name, host)
			}
		}
		return v, err
	}
	fm["ipOf"] = func(host string) (string, error) { return s.ipOf(host) }
	fm["defined"] = func(name string) bool { return s.has(name) }
	s.fm = fm
	return fm
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
	if v, err := o.get("ansible_host"); err == nil && fmt.Sprint(v) != "" {
		return fmt.Sprint(v), nil
	}
	if v, err := o.get("ansible_default_ipv4"); err == nil {
		if m, ok := v.(map[string]any); ok && m["address"] != nil && m["address"] != "" {
			return fmt.Sprint(m["address"]), nil
		}
	}
	return host, nil
}

// data builds the template's data map: only the variables it reads, so
// unrelated broken variables cannot fail it and missing ones still do.
func (s *scope) data(rf *refs) (map[string]any, error) {
	d := make(map[string]any, len(rf.hard)+len(rf.soft)+2)
	for name := range rf.hard {
		v, err := s.get(name)
		if err != nil {
			if _, ok := err.(*notDefined); ok {
				continue // missingkey=error reports it with the expression
			}
			return nil, err
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
				return nil, err
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
						return nil, err
					}
					m[n] = v
				}
				hv[h] = m
			}
		}
		d["hostvars"] = hv
	}
	return d, nil
}

func (s *scope) parse(pos Pos, text string) (*template.Template, error) {
	t, err := parseTemplate(text, s.funcs())
	if err != nil {
		return nil, s.wrapErr(pos, err)
	}
	return t, nil
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
	t, err := s.parse(pos, text)
	if err != nil {
		return "", err
	}
	d, err := s.data(scanRefs(t))
	if err != nil {
		return "", s.wrapErr(pos, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", s.wrapErr(pos, err)
	}
	return b.String(), nil
}

// renderNative renders text; a lone {{ expr }} keeps the value's type.
func (s *scope) renderNative(pos Pos, text string) (any, error) {
	t, err := s.parse(pos, text)
	if err != nil {
		return nil, err
	}
	expr, ok := singleExpr(t)
	if !ok {
		return s.render(pos, text)
	}
	return s.eval(pos, t, expr, text)
}

// eval evaluates one pipeline and returns its value with its type.
func (s *scope) eval(pos Pos, orig *template.Template, expr, text string) (any, error) {
	var got any
	fm := template.FuncMap{"__gkcapture": func(v any) string { got = v; return "" }}
	t, err := parseTemplate("{{ "+expr+" | __gkcapture }}", s.funcs())
	if err != nil {
		// Pipelines ending in a parenthesised form may not accept the
		// extra stage; fall back to string rendering.
		return s.render(pos, text)
	}
	t.Funcs(fm)
	d, err := s.data(scanRefs(orig))
	if err != nil {
		return nil, s.wrapErr(pos, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return nil, s.wrapErr(pos, err)
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
