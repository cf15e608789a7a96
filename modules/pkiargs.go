package modules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// pkiArgs reads the arguments of the pki modules (x509, uri, etcd,
// kube_health). Values may arrive typed from YAML or as strings rendered from
// templates ("{{ .days }}" becomes "825"), so every getter accepts both.
// It is a separate type, not shared helpers, so the core modules' helpers in
// the same package can evolve without name clashes.
type pkiArgs struct {
	module string
	m      map[string]any
}

func (a pkiArgs) err(key, format string, v ...any) error {
	return &ArgError{Module: a.module, Key: key, Msg: fmt.Sprintf(format, v...)}
}

func (a pkiArgs) has(key string) bool {
	v, ok := a.m[key]
	return ok && v != nil
}

func (a pkiArgs) str(key, def string) (string, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return def, nil
	}
	switch t := v.(type) {
	case string:
		return t, nil
	case int, int64, float64, bool:
		return fmt.Sprint(t), nil
	}
	return "", a.err(key, "want a string, got %T", v)
}

func (a pkiArgs) boolean(key string, def bool) (bool, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return def, nil
	}
	switch t := v.(type) {
	case bool:
		return t, nil
	case int:
		if t == 0 || t == 1 {
			return t == 1, nil
		}
	case string:
		// The same spellings the engine accepts for a Bool argument.
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true", "yes", "on", "1", "y":
			return true, nil
		case "false", "no", "off", "0", "n", "":
			return false, nil
		}
	}
	return false, a.err(key, "want a boolean, got %v", v)
}

func (a pkiArgs) integer(key string, def int) (int, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return def, nil
	}
	n, ok := pkiToInt(v)
	if !ok {
		return 0, a.err(key, "want an integer, got %v", v)
	}
	return n, nil
}

func pkiToInt(v any) (int, bool) {
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

// list accepts a YAML list or a comma-separated string (what a template
// renders a joined list to).
func (a pkiArgs) list(key string) ([]string, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return nil, nil
	}
	switch t := v.(type) {
	case []string:
		return append([]string(nil), t...), nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			switch e.(type) {
			case string, int, int64, float64, bool:
				out = append(out, fmt.Sprint(e))
			default:
				return nil, a.err(key, "item %d: want a scalar, got %T", i, e)
			}
		}
		return out, nil
	case string:
		var out []string
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, a.err(key, "want a list, got %T", v)
}

func (a pkiArgs) choice(key, def string, choices ...string) (string, error) {
	s, err := a.str(key, def)
	if err != nil {
		return "", err
	}
	for _, c := range choices {
		if s == c {
			return s, nil
		}
	}
	return "", a.err(key, "%q is not one of %s", s, strings.Join(choices, ", "))
}

// seconds reads a timeout in seconds (an integer, or a Go duration string
// such as "1m30s").
func (a pkiArgs) seconds(key string, def time.Duration) (time.Duration, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return def, nil
	}
	if n, ok := pkiToInt(v); ok {
		if n <= 0 {
			return 0, a.err(key, "must be positive, got %d", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	if s, ok := v.(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d, nil
		}
	}
	return 0, a.err(key, "want seconds, got %v", v)
}

// stringMap reads a map of scalars (HTTP headers).
func (a pkiArgs) stringMap(key string) (map[string]string, error) {
	v, ok := a.m[key]
	if !ok || v == nil {
		return nil, nil
	}
	out := map[string]string{}
	switch t := v.(type) {
	case map[string]string:
		for k, s := range t {
			out[k] = s
		}
	case map[string]any:
		for k, e := range t {
			switch e.(type) {
			case string, int, int64, float64, bool:
				out[k] = fmt.Sprint(e)
			default:
				return nil, a.err(key, "%s: want a scalar, got %T", k, e)
			}
		}
	default:
		return nil, a.err(key, "want a map, got %T", v)
	}
	return out, nil
}

// unknown reports arguments that the spec does not declare; the engine checks
// this too, but modules are also called directly (tests, other modules).
func (a pkiArgs) unknown(spec Spec) error {
	for k := range a.m {
		if _, ok := spec.Args[k]; ok {
			continue
		}
		alias := false
		for _, arg := range spec.Args {
			for _, al := range arg.Aliases {
				if al == k {
					alias = true
				}
			}
		}
		if !alias {
			return a.err(k, "unknown argument")
		}
	}
	return nil
}

// resolveAliases copies each alias's value to its canonical name so the
// module reads one key.
func (a pkiArgs) resolveAliases(spec Spec) pkiArgs {
	out := make(map[string]any, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	for name, arg := range spec.Args {
		if _, ok := out[name]; ok {
			continue
		}
		for _, al := range arg.Aliases {
			if v, ok := out[al]; ok {
				out[name] = v
				break
			}
		}
	}
	return pkiArgs{module: a.module, m: out}
}

// pkiParse checks args against spec and resolves aliases.
func pkiParse(module string, spec Spec, args map[string]any) (pkiArgs, error) {
	a := pkiArgs{module: module, m: args}
	if err := a.unknown(spec); err != nil {
		return a, err
	}
	a = a.resolveAliases(spec)
	for name, arg := range spec.Args {
		if arg.Required && !a.has(name) {
			return a, a.err(name, "required")
		}
	}
	for _, group := range spec.RequireOneOf {
		found := false
		for _, k := range group {
			if a.has(k) {
				found = true
			}
		}
		if !found {
			return a, &ArgError{Module: module, Msg: "one of " + strings.Join(group, ", ") + " is required"}
		}
	}
	return a, nil
}
