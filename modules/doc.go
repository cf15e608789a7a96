package modules

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Documentation is generated from the Specs the engine validates tasks
// against, so `gokube doc` cannot describe an argument the code does not
// take, nor miss one it does (TestEveryArgDocumented).

func (t ArgType) String() string {
	switch t {
	case String:
		return "str"
	case Bool:
		return "bool"
	case Int:
		return "int"
	case List:
		return "list"
	case Map:
		return "dict"
	}
	return "any"
}

// DocProblems lists what a Spec leaves undocumented: the module's Doc and
// each argument's Doc.
func DocProblems(name string, s Spec) []string {
	var out []string
	if strings.TrimSpace(s.Doc) == "" {
		out = append(out, name+": module has no Doc")
	}
	for _, k := range argNames(s) {
		if strings.TrimSpace(s.Args[k].Doc) == "" {
			out = append(out, fmt.Sprintf("%s: argument %q has no Doc", name, k))
		}
	}
	// A rule naming an argument the Spec does not declare never fires.
	var named []string
	for _, g := range append(append([][]string{}, s.RequireOneOf...), s.Exclusive...) {
		named = append(named, g...)
	}
	for _, r := range s.RequiredIf {
		named = append(named, r.If)
		named = append(named, r.Need...)
		if a, ok := s.Args[r.If]; ok && len(a.Choices) > 0 && !slices.Contains(a.Choices, r.Is) {
			out = append(out, fmt.Sprintf("%s: rule on %s=%s: not one of its choices", name, r.If, r.Is))
		}
	}
	for _, k := range named {
		if _, ok := s.Args[k]; !ok {
			out = append(out, fmt.Sprintf("%s: a rule names %q, which is not an argument", name, k))
		}
	}
	return out
}

// Summary is the first sentence of a module's Doc, for `gokube doc --list`.
func Summary(s Spec) string {
	d := strings.TrimSpace(s.Doc)
	if i := strings.Index(d, ". "); i >= 0 {
		d = d[:i+1]
	}
	return d
}

// RenderDoc is `gokube doc NAME`: the description, then every argument
// with its type, whether it is required, its default, choices and
// aliases, then the values `register` stores. also lists the other names
// the same module is registered under.
func RenderDoc(name string, s Spec, also []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "> %s\n\n", strings.ToUpper(name))
	b.WriteString(wrap(s.Doc, "  ", 78))
	if len(also) > 0 {
		fmt.Fprintf(&b, "\n  Also available as: %s\n", strings.Join(also, ", "))
	}
	if s.FreeForm != "" {
		fmt.Fprintf(&b, "\n  Free form: `%s: TEXT` sets %s.\n", name, s.FreeForm)
	}
	for _, g := range s.RequireOneOf {
		if len(g) == 1 {
			fmt.Fprintf(&b, "\n  %s is required.\n", g[0])
		} else {
			fmt.Fprintf(&b, "\n  One of %s is required.\n", strings.Join(g, ", "))
		}
	}
	for _, g := range s.Exclusive {
		fmt.Fprintf(&b, "\n  At most one of %s.\n", strings.Join(g, ", "))
	}
	for _, r := range s.RequiredIf {
		fmt.Fprintf(&b, "\n  %s=%s needs %s.\n", r.If, r.Is, strings.Join(r.Need, ", "))
	}
	if len(s.Args) > 0 {
		b.WriteString("\nOPTIONS (= is mandatory):\n")
	}
	for _, k := range argNames(s) {
		a := s.Args[k]
		mark := "-"
		if a.Required {
			mark = "="
		}
		fmt.Fprintf(&b, "\n%s %s\n", mark, k)
		b.WriteString(wrap(a.Doc, "        ", 78))
		if len(a.Aliases) > 0 {
			fmt.Fprintf(&b, "        aliases: %s\n", strings.Join(a.Aliases, ", "))
		}
		if len(a.Choices) > 0 {
			fmt.Fprintf(&b, "        choices: %s\n", strings.Join(a.Choices, ", "))
		}
		if a.Default != "" {
			fmt.Fprintf(&b, "        default: %s\n", a.Default)
		}
		fmt.Fprintf(&b, "        type: %s\n", a.Type)
		if a.Kind != Plain {
			fmt.Fprintf(&b, "        checked as: %s\n", a.Kind)
		}
	}
	if len(s.Returns) > 0 {
		b.WriteString("\nRETURN VALUES (what register stores besides changed, failed, msg):\n\n")
		keys := make([]string, 0, len(s.Returns))
		for k := range s.Returns {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w := 0
		for _, k := range keys {
			w = max(w, len(k))
		}
		for _, k := range keys {
			fmt.Fprintf(&b, "  %-*s  %s\n", w, k, s.Returns[k])
		}
	}
	return b.String()
}

// wrap fills text into lines of at most width columns after indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
	return b.String()
}
