package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"gokube/modules"
)

// parseArgs turns a module's value (mapping, k=v string or free form) into args.
func parseArgs(v *yaml.Node, file, action string, spec modules.Spec, pos map[string]Pos) (map[string]any, error) {
	p := Pos{file, v.Line}
	args := map[string]any{}
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			x, err := decodeAny(v.Content[i+1])
			if err != nil {
				return nil, errAt(Pos{file, k.Line}, "%s: %w", k.Value, err)
			}
			args[k.Value] = x
			pos[k.Value] = Pos{file, k.Line}
		}
	case yaml.ScalarNode:
		if v.Tag == "!!null" || v.Value == "" {
			return args, nil
		}
		s := v.Value
		if spec.FreeForm != "" {
			rest, kv := splitTrailingKV(s, spec)
			for k, x := range kv {
				args[k] = x
				pos[k] = p
			}
			if rest != "" {
				args[spec.FreeForm] = rest
				pos[spec.FreeForm] = p
			}
			return args, nil
		}
		toks, err := modules.SplitWords(s)
		if err != nil {
			return nil, errAt(p, "%s: %w", action, err)
		}
		for _, tok := range toks {
			k, x, ok := strings.Cut(tok, "=")
			if !ok {
				return nil, errAt(p, "%s: %q is not key=value", action, tok)
			}
			args[k] = x
			pos[k] = p
		}
	default:
		return nil, errAt(p, "%s: arguments must be a mapping or key=value string", action)
	}
	return args, nil
}

// splitTrailingKV pulls known key=value options off the end of a free-form
// command, as Ansible does (`shell: make all chdir=/src`).
func splitTrailingKV(s string, spec modules.Spec) (string, map[string]any) {
	kv := map[string]any{}
	fields := strings.Fields(s)
	end := len(fields)
	for end > 0 {
		k, v, ok := strings.Cut(fields[end-1], "=")
		if !ok || k == spec.FreeForm || !argKnown(spec, k) || strings.ContainsAny(v, "'\"") {
			break
		}
		kv[k] = v
		end--
	}
	if end == len(fields) {
		return s, kv
	}
	// Keep the command's own spacing: cut at the first removed field.
	rest := s
	idx := 0
	for i := 0; i < end; i++ {
		j := strings.Index(rest[idx:], fields[i])
		idx += j + len(fields[i])
	}
	return strings.TrimSpace(rest[:idx]), kv
}

func argKnown(spec modules.Spec, k string) bool {
	if _, ok := spec.Args[k]; ok {
		return true
	}
	for _, a := range spec.Args {
		if slices.Contains(a.Aliases, k) {
			return true
		}
	}
	return false
}

// validateArgs checks the task's arguments against the module's Spec (see
// modules.CheckArgs, which also renames aliases to canonical names) and
// names the file and line of the offending key. A module that declares no
// arguments accepts any.
func validateArgs(action string, spec modules.Spec, args map[string]any, pos map[string]Pos, tp Pos) error {
	if spec.Args == nil && spec.FreeForm == "" {
		return nil
	}
	err := modules.CheckArgs(action, spec, args)
	var ae *modules.ArgError
	if errors.As(err, &ae) {
		at := tp
		if p, ok := pos[ae.Key]; ok {
			at = p
		}
		return errAt(at, "%w", ae)
	}
	if err != nil {
		return errAt(tp, "%w", err)
	}
	// Errors found at run time name the canonical argument; point them at
	// the line of the alias the user wrote.
	for name, a := range spec.Args {
		for _, al := range a.Aliases {
			if p, ok := pos[al]; ok {
				pos[name] = p
			}
		}
	}
	return nil
}

// coerceArgs converts rendered values to the declared types so modules get
// a bool for `enabled: "{{ .x }}"` rendered as "true".
func coerceArgs(spec modules.Spec, args map[string]any) {
	for k, a := range spec.Args {
		v, ok := args[k]
		if !ok || v == nil {
			continue
		}
		switch a.Type {
		case modules.Bool:
			if b, ok := modules.AsBool(v); ok {
				args[k] = b
			}
		case modules.Int:
			if n, ok := modules.AsInt(v); ok {
				args[k] = n
			}
		case modules.String:
			switch v.(type) {
			case int, float64, bool:
				args[k] = fmt.Sprint(v)
			}
		}
	}
}

// renderArgs renders a task's arguments for this host and coerces types.
func renderArgs(sc *scope, t *Task) (map[string]any, error) {
	args := make(map[string]any, len(t.Args))
	for k, v := range t.Args {
		p := t.Pos
		if ap, ok := t.ArgPos[k]; ok {
			p = ap
		}
		if t.Action == "set_fact" || t.Action == "debug" && k == "msg" {
			args[k] = v // rendered by the action, with native types
			continue
		}
		rv, err := sc.resolve(v, p)
		if err != nil {
			return nil, err
		}
		args[k] = rv
	}
	coerceArgs(t.Spec, args)
	return args, nil
}
