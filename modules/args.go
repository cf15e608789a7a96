package modules

import (
	"fmt"
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

// strOr is str with a default for an absent argument.
func (a cargs) strOr(key, def string) string {
	if !a.has(key) {
		return def
	}
	return a.str(key)
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
