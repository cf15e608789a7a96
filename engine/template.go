package engine

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v3"
)

// TemplateError is a template that failed to parse or render. It names the
// file and line, the expression and, for undefined variables, the host.
type TemplateError struct {
	Pos     Pos
	Expr    string // the expression, e.g. ".etcd_peer_port"
	Missing bool   // an undefined variable
	Host    string
	Msg     string
	Via     []string // variables being resolved when it failed, outermost first
	// ViaSource is where the innermost of Via was set (a vars file, the
	// inventory, -e), when known.
	ViaSource string
	Err       error // the text/template or helper error underneath, if any
	cycle     bool
}

func (e *TemplateError) Unwrap() error { return e.Err }

func (e *TemplateError) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	switch {
	case e.Missing:
		fmt.Fprintf(&b, "%s is not defined", e.Expr)
	case e.Expr != "":
		fmt.Fprintf(&b, "%s: %s", e.Expr, e.Msg)
	default:
		b.WriteString(e.Msg)
	}
	if e.Host != "" {
		fmt.Fprintf(&b, " (host %s)", e.Host)
	}
	if len(e.Via) > 0 && !e.cycle {
		fmt.Fprintf(&b, " (while rendering variable %s", strings.Join(e.Via, " -> "))
		if e.ViaSource != "" {
			fmt.Fprintf(&b, ", set in %s", e.ViaSource)
		}
		b.WriteString(")")
	}
	return b.String()
}

// ExitCode: a template error in a task fails the host (2); the CLI only
// sees it directly when it is a load-time syntax error.
func (e *TemplateError) ExitCode() int { return 2 }

// baseFuncs is sprig's text function map without the functions that read
// the control machine's environment, plus gokube's host-independent helpers.
// removedFunc says why sprig's function name is not in the template
// function set ("" when it is): a value that differs on every rendering
// makes every run report changed, and check mode predict a change the run
// then makes differently; a DNS lookup on the control machine answers for
// the control machine, not the host.
func removedFunc(name string) string {
	switch name {
	case "randAlphaNum", "randAlpha", "randNumeric", "randAscii", "randInt", "randBytes", "shuffle", "uuidv4":
		return "it gives a different value on every run, so a task using it reports changed every time and check mode cannot predict it; generate the value once (a file on the control machine, a vars file) and read it"
	case "genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert", "genSelfSignedCertWithKey", "genSignedCert", "genSignedCertWithKey", "buildCustomCert":
		return "it makes a new key or certificate on every run; the pki module issues them once and keeps them"
	case "htpasswd", "bcrypt", "encryptAES":
		return "its random salt or IV makes a different value on every run, so a task using it reports changed every time"
	case "getHostByName":
		return "it resolves on the control machine, while the run acts on the host, and its answer can change between runs; use the inventory's ansible_host or a fact"
	}
	return ""
}

func baseFuncs() template.FuncMap {
	fm := sprig.TxtFuncMap()
	delete(fm, "env")
	delete(fm, "expandenv")
	for name := range fm {
		if removedFunc(name) != "" {
			delete(fm, name)
		}
	}
	fm["bool"] = truthy
	fm["toYaml"] = func(v any) (string, error) {
		b, err := yaml.Marshal(v)
		return strings.TrimSuffix(string(b), "\n"), err
	}
	fm["fromYaml"] = func(s string) (any, error) {
		var v any
		err := yaml.Unmarshal([]byte(s), &v)
		return normalize(v), err
	}
	fm["b64decode"] = func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		return string(b), err
	}
	fm["required"] = func(msg string, v any) (any, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	fm["dict2items"] = func(m map[string]any) []any {
		out := make([]any, 0, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out = append(out, map[string]any{"key": k, "value": m[k]})
		}
		return out
	}
	fm["joinHostPort"] = func(h string, port any) string { return net.JoinHostPort(h, fmt.Sprint(port)) }
	ansibleFuncs(fm)
	// cidrHost "10.233.0.0/18" 1 is "10.233.0.1": the n-th address of a
	// range (Ansible's ipaddr filter, Terraform's cidrhost), e.g. the
	// kubernetes service's address, which apiserver certificates must name.
	fm["cidrHost"] = cidrHost
	// cidrSubnet "10.233.64.0/18" 6 1 is "10.233.65.0/24": the n-th range
	// of a range split newbits further (Terraform's cidrsubnet), e.g. each
	// node's pod range.
	fm["cidrSubnet"] = cidrSubnet
	// routesVia (hostvarsOf G "range") (hostvarsOf G "address") .inventory_hostname:
	// the other hosts' ranges and their addresses, as {host, dst, via}
	// (a host-gw network's static routes).
	fm["routesVia"] = routesVia
	// difference A B: the items of A not in B, A's order kept (Ansible's
	// difference filter), e.g. the masters that stay.
	fm["difference"] = func(a, b any) ([]any, error) {
		la, err := toList(a)
		if err != nil {
			return nil, fmt.Errorf("difference: %w", err)
		}
		lb, err := toList(b)
		if err != nil {
			return nil, fmt.Errorf("difference: %w", err)
		}
		out := []any{}
		for _, x := range la {
			if !slices.ContainsFunc(lb, func(y any) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
				out = append(out, x)
			}
		}
		return out, nil
	}
	// Placeholders so templates parse at load time; each render binds the
	// host's own versions.
	for _, n := range []string{"hostsOf", "hostvar", "hostvarsOf", fnSoftHVar, "inGroup", "groupIndex", "ipOf", "defined", "__gkcapture"} {
		fm[n] = func(...any) any { return nil }
	}
	return fm
}

// softFuncs are the functions whose arguments may be undefined: `default "x"
// .maybe` must not fail with missingkey=error before default sees it.
// Their arguments' missing map keys read as nil too (see rewriteTree).
var softFuncs = map[string]bool{"default": true, "coalesce": true, "empty": true, "required": true, "get": true}

// templateSyntax checks template texts at load time, where nothing is
// executed: parse.Parse needs only the functions' names, so no function
// table is built (text/template's Funcs checks each of ~200 functions by
// reflection, a third of loading a playbook when every text paid it).
type templateSyntax struct{ names map[string]any }

func newTemplateSyntax() templateSyntax { return templateSyntax{names: baseFuncs()} }

// check is the run's own parse (parseTrees), so it accepts exactly what a
// run will.
func (s templateSyntax) check(text string) error {
	_, err := parseTrees(text, s.names)
	return err
}

// builtinNames are text/template's predefined functions (its builtins),
// which parse.Parse must be told about like any other function.
var builtinNames = map[string]any{
	"and": true, "call": true, "html": true, "index": true, "slice": true, "js": true, "len": true,
	"not": true, "or": true, "print": true, "printf": true, "println": true, "urlquery": true,
	"eq": true, "ge": true, "gt": true, "le": true, "lt": true, "ne": true,
}

// The executing template is "t<n>" in a template set (tmplCache), or a
// template the text defines; the position always says "t".
var tmplErrRe = regexp.MustCompile(`^template: t:(\d+)(?::\d+)?: (?:executing "[^"]*" at <(.*?)>: )?(.*)$`)
var tmplLineRe = regexp.MustCompile(`at t:\d+`)
var missingRe = regexp.MustCompile(`^map has no entry for key "(.*)"$`)

// tmplError turns a text/template error into a TemplateError at pos.
func tmplError(pos Pos, host string, err error) error {
	var te *TemplateError
	if errors.As(err, &te) {
		// Raised by a nested render (a variable whose value calls
		// hostvarsOf, say): its own position and message, not the chain of
		// "executing … error calling …" around it.
		return te
	}
	msg := err.Error()
	out := &TemplateError{Pos: pos, Host: host, Msg: msg, Err: err}
	if m := tmplErrRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if pos.Line > 0 {
			out.Pos.Line = pos.Line + line - 1
		} else {
			out.Pos.Line = line
		}
		out.Expr, out.Msg = m[2], m[3]
		// "unclosed action started at t:3": the line in the file.
		out.Msg = tmplLineRe.ReplaceAllStringFunc(out.Msg, func(s string) string {
			n, _ := strconv.Atoi(s[len("at t:"):])
			if pos.Line > 0 {
				n += pos.Line - 1
			}
			return "at line " + strconv.Itoa(n)
		})
		if missingRe.MatchString(m[3]) {
			out.Missing = true
		}
		// An error raised by a nested render keeps its own position.
		if i := strings.Index(out.Msg, "error calling "); i >= 0 {
			var inner *TemplateError
			if errors.As(err, &inner) {
				return inner
			}
		}
	}
	return out
}

// singleExpr returns the pipeline text when text is exactly one {{ action }}
// so its value keeps its type (list, map, bool, int), like Ansible's native
// types.
func singleExpr(t *parse.Tree) (string, bool) {
	if t == nil || t.Root == nil {
		return "", false
	}
	// Only a value that is exactly one action: "{{ .key }}\n" is text and
	// keeps its newline.
	if len(t.Root.Nodes) != 1 {
		return "", false
	}
	act, ok := t.Root.Nodes[0].(*parse.ActionNode)
	if !ok || len(act.Pipe.Decl) > 0 {
		return "", false
	}
	return act.Pipe.String(), true
}

// truthy is Ansible-like truthiness: false, nil, 0, empty strings, lists and
// maps are false, and so are the strings "false", "no", "off", "0", "n".
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "", "false", "no", "off", "0", "n", "none", "<no value>":
			return false
		}
		return true
	case int:
		return t != 0
	case int64:
		return t != 0
	case uint64:
		return t != 0
	case float64:
		return t != 0
	case []any:
		return len(t) > 0
	case []string:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	}
	return true
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// condText turns a condition into template text: a bare pipeline is
// wrapped in {{ }} and truth-tested like {{ if }} (and/or operands too);
// a bare variable path (Ansible style: flag, r.changed, not r.changed)
// becomes .flag, .r.changed.
func condText(expr string) string {
	e := strings.TrimSpace(expr)
	if strings.Contains(e, "{{") {
		return e
	}
	e = dotPath(e)
	if rest, ok := strings.CutPrefix(e, "not "); ok {
		e = "not " + dotPath(strings.TrimSpace(rest))
	}
	return "{{ " + e + " | " + fnTruth + " }}"
}

func dotPath(e string) string {
	if identRe.MatchString(e) && e != "true" && e != "false" && e != "nil" {
		return "." + e
	}
	return e
}

// checkTemplates parses every template in a task at load time so syntax
// errors surface before any host is contacted.
func checkTemplates(t *Task, syn templateSyntax) error {
	var errs errList
	for _, err := range checkTemplates1(t, syn) {
		var te *TemplateError
		if errors.As(err, &te) {
			te.Host = ""
			msg := strings.TrimPrefix(te.Error(), te.Pos.String()+": ")
			err = &LoadError{Pos: te.Pos, Msg: msg, Err: te}
		}
		errs.add(err)
	}
	return errs.err()
}

// checkTemplateFile parses the file a template task renders (found the
// way the module finds it), so a syntax error or a Jinja habit in it is a
// load error with its line. A file not found is left to the module.
func (l *loader) checkTemplateFile(t *Task) error {
	name, ok := t.Args["src"].(string)
	if t.Action != "template" || !ok || strings.Contains(name, "{{") {
		return nil
	}
	var dirs []src
	if t.Role != nil {
		dirs = append(dirs, t.Role.Dir.join("templates"), t.Role.Dir.join("files"))
	}
	if l.play != nil {
		dirs = append(dirs, l.play.Dir.join("templates"), l.play.Dir)
	}
	for _, d := range dirs {
		f := d.join(name)
		if !f.exists() {
			continue
		}
		b, err := f.read()
		if err != nil {
			return errAt(t.Pos, "template %s: %v", f.where(), err)
		}
		if err := l.syntax().check(string(b)); err != nil {
			var te *TemplateError
			if errors.As(tmplError(Pos{File: f.where(), Line: 1}, "", err), &te) {
				return &LoadError{Pos: te.Pos, Msg: strings.TrimPrefix(te.Error(), te.Pos.String()+": "), Err: te}
			}
			return errAt(Pos{File: f.where(), Line: 1}, "%w", err)
		}
		return nil
	}
	return nil
}

// checkTemplates1 lists every template error in t: its arguments, its
// conditions, assert's that and its loop.
func checkTemplates1(t *Task, syn templateSyntax) []error {
	var errs []error
	var walk func(v any, p Pos)
	walk = func(v any, p Pos) {
		switch x := v.(type) {
		case string:
			if strings.Contains(x, "{{") {
				if err := syn.check(x); err != nil {
					errs = append(errs, tmplError(p, "", err))
				}
			} else if err := checkJinja(x); err != nil {
				errs = append(errs, tmplError(p, "", err))
			}
		case []any:
			for _, e := range x {
				walk(e, p)
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k], p)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.Args)) {
		p := t.Pos
		if ap, ok := t.ArgPos[k]; ok {
			p = ap
		}
		walk(t.Args[k], p)
	}
	cond := func(c Cond) {
		if err := syn.check(condText(c.Expr)); err != nil {
			errs = append(errs, tmplError(c.Pos, "", err))
		}
	}
	for _, cs := range [][]Cond{t.When, t.Until, t.Changed, t.Failed} {
		for _, c := range cs {
			cond(c)
		}
	}
	if t.Action == "assert" {
		for _, c := range assertConds(t.Args["that"], t.Pos) {
			cond(c)
		}
	}
	if t.HasLoop {
		walk(t.Loop, t.LoopPos)
	}
	return errs
}

func assertConds(v any, p Pos) []Cond {
	switch x := v.(type) {
	case string:
		return []Cond{{Expr: x, Pos: p}}
	case []any:
		var out []Cond
		for _, e := range x {
			out = append(out, Cond{Expr: fmt.Sprint(e), Pos: p})
		}
		return out
	case bool:
		return []Cond{{Expr: strconv.FormatBool(x), Pos: p}}
	}
	return nil
}

func cidrHost(cidr string, n any) (string, error) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return "", fmt.Errorf("cidrHost: %w", err)
	}
	k, err := strconv.Atoi(fmt.Sprint(n))
	if err != nil || k < 0 {
		return "", fmt.Errorf("cidrHost: %v is not a host number", n)
	}
	a := pfx.Masked().Addr()
	for i := 0; i < k; i++ {
		a = a.Next()
	}
	if !pfx.Contains(a) {
		return "", fmt.Errorf("cidrHost: %s has no host %d", cidr, k)
	}
	return a.String(), nil
}

func cidrSubnet(cidr string, newbits, n any) (string, error) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return "", fmt.Errorf("cidrSubnet: %w", err)
	}
	nb, err1 := strconv.Atoi(fmt.Sprint(newbits))
	k, err2 := strconv.Atoi(fmt.Sprint(n))
	bits := pfx.Bits() + nb
	if err1 != nil || err2 != nil || nb < 0 || k < 0 || !pfx.Addr().Is4() || bits > 32 || (nb < 31 && k >= 1<<nb) {
		return "", fmt.Errorf("cidrSubnet: %s has no subnet %v of %v more bits (IPv4 only)", cidr, n, newbits)
	}
	a := pfx.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32(k) << (32 - bits)
	out := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
	return out.String(), nil
}

// toList accepts the list shapes templates produce ([]any, []string).
func toList(v any) ([]any, error) {
	switch l := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return l, nil
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list, got %T", v)
}
