package modules

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cargs is the core modules' view of a task's arguments, after aliases are
// resolved. Values may arrive typed from YAML or as strings rendered from
// templates ("{{ .port }}" becomes "2379"), so every getter accepts both.
type cargs struct {
	module string
	m      map[string]any
}

func (a cargs) err(key, format string, v ...any) error {
	return &ArgError{Module: a.module, Key: key, Msg: fmt.Sprintf(format, v...)}
}

func (a cargs) has(key string) bool {
	v, ok := a.m[key]
	return ok && v != nil
}

func (a cargs) str(key string) string {
	s, _ := toStr(a.m[key])
	return s
}

func toStr(v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", true
	case string:
		return t, true
	case int, int64, uint64, bool:
		return fmt.Sprint(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	}
	return "", false
}

// AsBool reads a boolean the way Ansible does: YAML booleans, 0/1, and the
// strings yes/no/true/false/on/off/y/n/1/0 (a rendered template is a string).
func AsBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case int:
		return t != 0, t == 0 || t == 1
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true", "yes", "on", "1", "y":
			return true, true
		case "false", "no", "off", "0", "n", "":
			return false, true
		}
	}
	return false, false
}

// AsInt reads an integer from a YAML number or a rendered string; a float
// with a fraction is not an integer.
func AsInt(v any) (int, bool) {
	switch t := v.(type) {
	case int:
		return t, true
	case int64:
		return int(t), true
	case uint64:
		return int(t), true
	case float64:
		if t != float64(int(t)) {
			return 0, false
		}
		return int(t), true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		return n, err == nil
	}
	return 0, false
}

// KindOf names a value's YAML kind for error messages ("a mapping", not
// "map[string]interface {}").
func KindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

func toList(v any) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case []string:
		return append([]string(nil), t...), true
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := toStr(e)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case string:
		// A template renders a joined list to "a,b"; Ansible's list type
		// accepts the same.
		var out []string
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, true
	}
	return nil, false
}

func (a cargs) boolean(key string, def bool) bool {
	if !a.has(key) {
		return def
	}
	b, _ := AsBool(a.m[key])
	return b
}

func (a cargs) integer(key string, def int) int {
	if !a.has(key) {
		return def
	}
	n, _ := AsInt(a.m[key])
	return n
}

func (a cargs) list(key string) []string {
	l, _ := toList(a.m[key])
	return l
}

// argFault is one argument problem. key is the argument as the user wrote
// it (an alias stays an alias) so the engine can point at its line; "" is
// the task as a whole. msg says what is wrong with key; text, when set, is
// the whole phrase after "module: " where the key reads better inside it.
type argFault struct {
	key, msg, text string
}

// phrase is the fault phrased to follow "module: ".
func (f *argFault) phrase() string {
	if f.text != "" {
		return f.text
	}
	return fmt.Sprintf("argument %q: %s", f.key, f.msg)
}

// checkArgs is the one implementation of argument validation, shared by the
// engine's load-time check (CheckArgs) and the modules' run-time parse
// (parseArgs). It checks unknown keys, aliases given together with their
// argument, types, choices, required arguments and require-one-of groups,
// and returns the arguments under their canonical names. With templated
// set, a string containing "{{" passes the type and choice checks: it is
// rendered later and checked again by the module. A nil value counts as
// absent.
func checkArgs(spec Spec, args map[string]any, templated bool) (map[string]any, *argFault) {
	out := make(map[string]any, len(args))
	alias := map[string]string{}
	for name, arg := range spec.Args {
		for _, al := range arg.Aliases {
			alias[al] = name
		}
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error for several bad keys
	from := map[string]string{}
	for _, k := range keys {
		name := k
		if _, ok := spec.Args[k]; !ok {
			canon, ok := alias[k]
			if !ok {
				known := strings.Join(argNames(spec), ", ")
				return nil, &argFault{k, "unknown argument (known: " + known + ")", fmt.Sprintf("unknown argument %q (known: %s)", k, known)}
			}
			name = canon
		}
		if other, dup := from[name]; dup {
			bad := k
			if k == name {
				bad = other
			}
			return nil, &argFault{bad, fmt.Sprintf("given together with %q (the same argument)", name), fmt.Sprintf("argument %q given twice (as %q too)", name, bad)}
		}
		from[name] = k
		v := args[k]
		out[name] = v
		if v == nil {
			continue
		}
		if s, ok := v.(string); ok && templated && strings.Contains(s, "{{") {
			continue
		}
		if msg := checkType(spec.Args[name], v); msg != "" {
			return nil, &argFault{key: k, msg: msg}
		}
	}
	for _, name := range argNames(spec) {
		if spec.Args[name].Required && out[name] == nil {
			return nil, &argFault{name, "required", fmt.Sprintf("missing required argument %q", name)}
		}
	}
	for _, group := range spec.RequireOneOf {
		found := false
		for _, k := range group {
			found = found || out[k] != nil
		}
		if !found {
			msg := "one of " + strings.Join(group, ", ") + " is required"
			return nil, &argFault{"", msg, msg}
		}
	}
	return out, nil
}

// checkType returns why v is not a valid value of arg, or "".
func checkType(arg Arg, v any) string {
	switch arg.Type {
	case String:
		s, ok := toStr(v)
		if !ok {
			return "want a string, got " + KindOf(v)
		}
		if len(arg.Choices) > 0 && !slices.Contains(arg.Choices, s) {
			return fmt.Sprintf("%q is not one of %s", s, strings.Join(arg.Choices, ", "))
		}
	case Bool:
		if _, ok := AsBool(v); !ok {
			return fmt.Sprintf("want a boolean (yes/no/true/false), got %v", v)
		}
	case Int:
		if _, ok := AsInt(v); !ok {
			return fmt.Sprintf("want an integer, got %v", v)
		}
	case List:
		if _, ok := toList(v); !ok {
			return "want a list of scalars, got " + KindOf(v)
		}
	case Map:
		if _, ok := v.(map[string]any); !ok {
			return "want a mapping, got " + KindOf(v)
		}
	}
	return ""
}

// CheckArgs is the engine's load-time check of a task's arguments against
// the module's Spec, before any host is contacted. It renames aliases to
// their canonical names in args. Values containing "{{" pass the type and
// choice checks (they are rendered later and checked again at run time).
// The error is an *ArgError whose Key names the argument as written.
func CheckArgs(module string, spec Spec, args map[string]any) error {
	out, f := checkArgs(spec, args, true)
	if f != nil {
		return &ArgError{Module: module, Key: f.key, Msg: f.msg, Phrase: f.phrase()}
	}
	for k := range args {
		delete(args, k)
	}
	for k, v := range out {
		args[k] = v
	}
	return nil
}

// parseArgs checks args against spec like CheckArgs, but for rendered
// values, and returns the arguments under their canonical names. The engine
// checks the Spec before any host is contacted; Run checks again because
// modules are also called directly.
func parseArgs(module string, spec Spec, args map[string]any) (cargs, error) {
	out, f := checkArgs(spec, args, false)
	if f != nil {
		return cargs{module: module}, &ArgError{Module: module, Key: f.key, Msg: f.msg}
	}
	return cargs{module: module, m: out}, nil
}

func argNames(spec Spec) []string {
	out := make([]string, 0, len(spec.Args))
	for k := range spec.Args {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// parseMode reads a permission mode. YAML `mode: 0644` arrives as the int
// 420 (already octal-decoded), a quoted or templated "0644" as a string
// that is read as octal, like Ansible does.
func parseMode(a cargs, key string) (uint32, bool, error) {
	if !a.has(key) {
		return 0, false, nil
	}
	v := a.m[key]
	if n, ok := v.(int); ok {
		if n < 0 || n > 0o7777 {
			return 0, false, a.err(key, "mode %d out of range", n)
		}
		return uint32(n), true, nil
	}
	s, ok := toStr(v)
	if !ok {
		return 0, false, a.err(key, "want an octal mode like \"0644\", got %T", v)
	}
	s = strings.TrimPrefix(strings.TrimSpace(s), "0o")
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, false, a.err(key, "want an octal mode like \"0644\", got %q", s)
	}
	return uint32(n), true, nil
}

// modeString renders a mode the way Ansible registers it: "0644".
func modeString(m uint32) string { return fmt.Sprintf("%04o", m) }

// strOr is str with a default for an absent argument.
func (a cargs) strOr(key, def string) string {
	if !a.has(key) {
		return def
	}
	return a.str(key)
}

// seconds reads a timeout in whole seconds; it must be positive.
func (a cargs) seconds(key string, def time.Duration) (time.Duration, error) {
	if !a.has(key) {
		return def, nil
	}
	n, ok := AsInt(a.m[key])
	if !ok {
		return 0, a.err(key, "want seconds, got %v", a.m[key])
	}
	if n <= 0 {
		return 0, a.err(key, "must be positive, got %d", n)
	}
	return time.Duration(n) * time.Second, nil
}

// stringMap reads a map of scalars (HTTP headers).
func (a cargs) stringMap(key string) (map[string]string, error) {
	if !a.has(key) {
		return nil, nil
	}
	out := map[string]string{}
	switch t := a.m[key].(type) {
	case map[string]string:
		for k, s := range t {
			out[k] = s
		}
	case map[string]any:
		for k, e := range t {
			s, ok := toStr(e)
			if !ok || e == nil {
				return nil, a.err(key, "%s: want a scalar, got %s", k, KindOf(e))
			}
			out[k] = s
		}
	default:
		return nil, a.err(key, "want a mapping, got %s", KindOf(a.m[key]))
	}
	return out, nil
}
