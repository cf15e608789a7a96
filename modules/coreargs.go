package modules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
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

func toBool(v any) (bool, bool) {
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

func toInt(v any) (int, bool) {
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
	b, _ := toBool(a.m[key])
	return b
}

func (a cargs) integer(key string, def int) int {
	if !a.has(key) {
		return def
	}
	n, _ := toInt(a.m[key])
	return n
}

func (a cargs) list(key string) []string {
	l, _ := toList(a.m[key])
	return l
}

// parseArgs checks args against spec (unknown keys, types, choices, required,
// require-one-of), resolves aliases to the canonical name and returns the
// normalised arguments. The engine checks the Spec before any host is
// contacted; Run checks again because modules are also called directly.
func parseArgs(module string, spec Spec, args map[string]any) (cargs, error) {
	a := cargs{module: module, m: make(map[string]any, len(args))}
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
				return a, a.err(k, "unknown argument (valid: %s)", strings.Join(argNames(spec), ", "))
			}
			name = canon
		}
		if other, dup := from[name]; dup {
			bad := k
			if k == name {
				bad = other
			}
			return a, a.err(bad, "given together with %q (the same argument)", name)
		}
		from[name] = k
		a.m[name] = args[k]
	}
	for _, name := range argNames(spec) {
		arg := spec.Args[name]
		v, present := a.m[name]
		if !present || v == nil {
			if arg.Required {
				return a, a.err(name, "required")
			}
			continue
		}
		switch arg.Type {
		case String:
			s, ok := toStr(v)
			if !ok {
				return a, a.err(name, "want a string, got %T", v)
			}
			if len(arg.Choices) > 0 && !contains(arg.Choices, s) {
				return a, a.err(name, "%q is not one of: %s", s, strings.Join(arg.Choices, ", "))
			}
		case Bool:
			if _, ok := toBool(v); !ok {
				return a, a.err(name, "want a boolean (yes/no/true/false), got %v", v)
			}
		case Int:
			if _, ok := toInt(v); !ok {
				return a, a.err(name, "want an integer, got %v", v)
			}
		case List:
			if _, ok := toList(v); !ok {
				return a, a.err(name, "want a list of scalars, got %T", v)
			}
		case Map:
			if _, ok := v.(map[string]any); !ok {
				return a, a.err(name, "want a map, got %T", v)
			}
		}
	}
	for _, group := range spec.RequireOneOf {
		found := false
		for _, k := range group {
			found = found || a.has(k)
		}
		if !found {
			return a, &ArgError{Module: module, Msg: "one of " + strings.Join(group, ", ") + " is required"}
		}
	}
	return a, nil
}

func argNames(spec Spec) []string {
	out := make([]string, 0, len(spec.Args))
	for k := range spec.Args {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
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
