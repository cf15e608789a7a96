package modules

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

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
// absent. It is long because it applies the Spec's rules in the order an
// operator should hear about them, returning the first fault, so the
// error for several bad keys is deterministic.
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
		if msg := checkKind(spec.Args[name], v, templated); msg != "" {
			return nil, &argFault{key: k, msg: msg}
		}
	}
	for _, name := range argNames(spec) {
		if spec.Args[name].Required && out[name] == nil {
			return nil, &argFault{name, "required", fmt.Sprintf("missing required argument %q", name)}
		}
	}
	for _, group := range spec.Exclusive {
		var given []string
		for _, name := range group {
			if out[name] != nil {
				given = append(given, from[name])
			}
		}
		if len(given) > 1 {
			msg := fmt.Sprintf("%s are mutually exclusive (give one)", strings.Join(given, " and "))
			return nil, &argFault{given[1], msg, msg}
		}
	}
	for _, r := range spec.RequiredIf {
		v, dflt := out[r.If], false
		if v == nil {
			v, dflt = spec.Args[r.If].Default, true
		}
		if s, ok := toStr(v); !ok || s != r.Is {
			continue // another value, or templated (decided at run time)
		}
		for _, name := range r.Need {
			if out[name] == nil {
				msg := fmt.Sprintf("%s=%s needs %q", r.If, r.Is, name)
				if dflt {
					msg = fmt.Sprintf("%s=%s (the default) needs %q", r.If, r.Is, name)
				}
				return nil, &argFault{name, msg, msg}
			}
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
		l, ok := toList(v)
		if !ok {
			return "want a list of scalars, got " + KindOf(v)
		}
		for _, s := range l {
			if len(arg.Choices) > 0 && !slices.Contains(arg.Choices, s) && !strings.Contains(s, "{{") {
				return fmt.Sprintf("%q is not one of %s", s, strings.Join(arg.Choices, ", "))
			}
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
