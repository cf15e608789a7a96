package inventory

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return deepCopyMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

func deepCopyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

func toInt(v any) (int, bool) {
	switch t := v.(type) {
	case int:
		return t, true
	case int64:
		return int(t), true
	case float64:
		if t == float64(int(t)) {
			return int(t), true
		}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		return n, err == nil
	}
	return 0, false
}

// parseBool follows Ansible's boolean(): the YAML 1.1 words plus 1/0.
func parseBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case int:
		if t == 0 || t == 1 {
			return t == 1, true
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "yes", "on", "1", "true", "y", "t":
			return true, true
		case "no", "off", "0", "false", "n", "f", "":
			return false, true
		}
	}
	return false, false
}

func truthy(v any) bool {
	b, ok := parseBool(v)
	return ok && b
}

func toString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	default:
		return fmt.Sprint(t)
	}
}

// iniValue converts an unquoted INI value. Ansible passes INI values through
// Python's literal_eval; gokube keeps the useful part of that without
// Python's surprises: integers become int, true/false (any of true, True,
// TRUE) become bool, None becomes nil, [..] and {..} are parsed as YAML flow
// collections; everything else, floats and versions such as 1.30 included,
// stays a string. Quoted values never reach here: they are always strings.
func iniValue(s string) any {
	switch s {
	case "true", "True", "TRUE":
		return true
	case "false", "False", "FALSE":
		return false
	case "None":
		return nil
	}
	if isDecimalInt(s) {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	if isCollection(s) && !isTemplate(s) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err == nil && len(n.Content) == 1 {
			if v, err := nodeValue(n.Content[0], 0); err == nil {
				return v
			}
		}
	}
	return s
}

func isCollection(s string) bool {
	return len(s) > 1 && (s[0] == '[' && s[len(s)-1] == ']' || s[0] == '{' && s[len(s)-1] == '}')
}

// isDecimalInt accepts what Python's literal_eval reads as an int: no
// leading zeros ("01" stays a string, as in Ansible).
func isDecimalInt(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// nodeValue converts a YAML node into plain Go values: map[string]any,
// []any, string, int, float64, bool, nil. Timestamps and other exotic tags
// stay strings so --list prints what the operator wrote.
func nodeValue(n *yaml.Node, depth int) (any, error) {
	if depth > 100 {
		return nil, fmt.Errorf("line %d: nesting too deep", n.Line)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeValue(n.Content[0], depth+1)
	case yaml.AliasNode:
		return nodeValue(n.Alias, depth+1)
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			var i int
			if err := n.Decode(&i); err == nil {
				return i, nil
			}
			var f float64
			if err := n.Decode(&f); err == nil {
				return f, nil
			}
			return n.Value, nil
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return n.Value, nil
			}
			return f, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return n.Value, nil
			}
			return b, nil
		case "!!null":
			return nil, nil
		default:
			return n.Value, nil
		}
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag != "!!str" {
				if err := mergeInto(out, v, depth); err != nil {
					return nil, err
				}
				continue
			}
			val, err := nodeValue(v, depth+1)
			if err != nil {
				return nil, err
			}
			out[keyString(k)] = val
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

// mergeInto applies a YAML merge key ("<<: *anchor"); explicit keys of the
// mapping win, so only missing keys are filled in.
func mergeInto(out map[string]any, v *yaml.Node, depth int) error {
	srcs := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		srcs = v.Content
	}
	for _, s := range srcs {
		m, err := nodeValue(s, depth+1)
		if err != nil {
			return err
		}
		mm, ok := m.(map[string]any)
		if !ok {
			return fmt.Errorf("line %d: merge key needs a mapping", v.Line)
		}
		for k, val := range mm {
			if _, ok := out[k]; !ok {
				out[k] = val
			}
		}
	}
	return nil
}

func keyString(k *yaml.Node) string {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind == yaml.ScalarNode {
		return k.Value
	}
	return fmt.Sprintf("line%d", k.Line)
}
