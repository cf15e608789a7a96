package engine

import (
	"fmt"
	"regexp"
	"strings"
)

// Jinja habits: forms an Ansible user writes by reflex that Go templates
// either reject with a puzzling message or, worse, accept and render
// wrongly ({% if %} is plain text to Go; `.a and .b` parses). Each is
// refused with the Go form in the message; the README's "Coming from
// Jinja" table lists the same forms.

// jinjaError is a habit found in a template: line is 1-based within it.
type jinjaError struct {
	line int
	msg  string
}

// Error uses text/template's shape so tmplError places it at file:line.
func (e *jinjaError) Error() string { return fmt.Sprintf("template: t:%d: %s", e.line, e.msg) }

var (
	jinjaStmtRe    = regexp.MustCompile(`\{%-?\s*(\w*)`)
	jinjaCommentRe = regexp.MustCompile(`(^|[^$])\{#[^}]*#\}`)
	actionRe       = regexp.MustCompile(`(?s)\{\{(.*?)\}\}`)
	filterCallRe   = regexp.MustCompile(`\|\s*([A-Za-z_]\w*)\(`)
	isTestRe       = regexp.MustCompile(`(?:^|[^.\w$])is\s+(not\s+)?([A-Za-z_]\w*)`)
	compareOpRe    = regexp.MustCompile(`==|!=|>=|<=|<|>`)
	subscriptRe    = regexp.MustCompile(`([A-Za-z_][\w.]*)\[`)
	funcUndefRe    = regexp.MustCompile(`function "([^"]+)" not defined`)
)

// jinjaStatementHint names the Go form of a Jinja statement.
var jinjaStatementHint = map[string]string{
	"if": `{{ if .x }} … {{ else if .y }} … {{ else }} … {{ end }}`, "elif": `{{ else if .y }}`,
	"else": `{{ else }}`, "endif": `{{ end }}`, "for": `{{ range .list }} … {{ . }} … {{ end }} or {{ range $h := hostsOf "etcd" }}`,
	"endfor": `{{ end }}`, "set": `{{ $x := .y }}`, "raw": `{{ "{{" }} for a literal brace pair`,
}

// jinjaFilters maps Jinja filter names to the Go template function.
var jinjaFilters = map[string]string{
	"length": "len", "count": "len", "int": "int (or atoi)", "float": "float64", "string": "toString",
	"lower": "lower", "upper": "upper", "trim": "trim", "join": `join ", "`, "to_json": "toJson",
	"to_nice_json": "toPrettyJson", "to_yaml": "toYaml", "to_nice_yaml": "toYaml", "from_json": "fromJson",
	"from_yaml": "fromYaml", "b64encode": "b64enc", "b64decode": "b64decode", "regex_replace": "regexReplaceAll",
	"regex_search": "regexFind", "unique": "uniq", "union": "concat … | uniq", "difference": "difference",
	"bool": "bool", "mandatory": `required "message"`, "d": "default", "default": "default",
	"first": "first", "last": "last", "sort": "sortAlpha", "dict2items": "dict2items", "items2dict": "dict",
	"combine": "merge (or mergeOverwrite)", "basename": "base", "dirname": "dir", "quote": "quote",
	"map": "a range, or a helper such as hostvarsOf", "select": "a range with if", "selectattr": "a range with if",
	"min": "min", "max": "max", "abs": "abs (sprig has no abs; use if lt .x 0)", "replace": `replace "old" "new"`,
	"ipaddr": "cidrHost", "version": `version .v "<" "1.2"`, "ternary": `ternary "yes" "no" .cond`,
	"hash": "sha256sum", "password_hash": "a module argument, not a template", "split": `splitList ","`,
}

// jinjaTestHint is the Go form of `x is TEST`.
var jinjaTestHint = map[string]string{
	"defined":         `defined "x" (or .x | default …)`,
	"undefined":       `not (defined "x")`,
	"none":            `eq .x nil`,
	"version":         `version .x "<" "1.2"`,
	"version_compare": `version .x "<" "1.2"`,
	"changed":         `.r.changed`, "failed": `.r.failed`, "succeeded": `not .r.failed`, "success": `not .r.failed`,
	"skipped": `.r.skipped`, "match": `regexMatch "^re" .x`, "search": `regexFind "re" .x`,
	"in": `has .x .list`, "string": `kindIs "string" .x`, "number": `kindIs "int" .x`,
	"mapping": `kindIs "map" .x`, "iterable": `kindIs "slice" .x`, "true": `eq .x true`, "false": `eq .x false`,
}

// checkJinja looks for Jinja habits in template text (a condition is
// checked as condText wrapped it: one action).
func checkJinja(text string) error {
	// Statements and comments are looked for outside actions: a Go string
	// may hold "{%" on purpose.
	outside := actionRe.ReplaceAllStringFunc(text, func(a string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, a)
	})
	if m := jinjaStmtRe.FindStringSubmatchIndex(outside); m != nil && strings.Contains(outside[m[0]:], "%}") {
		word := outside[m[2]:m[3]]
		hint := jinjaStatementHint[word]
		if hint == "" {
			hint = `{{ if }}, {{ range }}, {{ $x := … }} … {{ end }}`
		}
		return &jinjaError{lineAt(text, m[0]), fmt.Sprintf("Jinja statement {%% %s %%} is plain text to Go templates; write %s", word, hint)}
	}
	if m := jinjaCommentRe.FindStringIndex(outside); m != nil {
		return &jinjaError{lineAt(text, m[0]), "Jinja comment {# … #} is plain text to Go templates; write {{/* … */}}"}
	}
	for _, m := range actionRe.FindAllStringSubmatchIndex(text, -1) {
		if err := checkJinjaExpr(text[m[2]:m[3]], lineAt(text, m[0])); err != nil {
			return err
		}
	}
	return nil
}

func lineAt(text string, off int) int { return 1 + strings.Count(text[:off], "\n") }

// checkJinjaExpr checks one action's content.
func checkJinjaExpr(expr string, line int) error {
	e, quoted := stripStrings(expr)
	fail := func(format string, a ...any) error {
		return &jinjaError{line, fmt.Sprintf(format, a...)}
	}
	if m := filterCallRe.FindStringSubmatch(e); m != nil {
		goName := jinjaFilters[m[1]]
		if goName == "" {
			goName = m[1]
		}
		return fail("Jinja filter call | %s(…): Go pipes take arguments without parentheses, and the value goes last: .x | %s ARG (e.g. .x | default \"y\")", m[1], firstWord(goName))
	}
	if m := isTestRe.FindStringSubmatch(e); m != nil {
		hint := jinjaTestHint[m[2]]
		if hint == "" {
			hint = "a function call such as " + m[2] + " .x"
		}
		if m[1] != "" && !strings.HasPrefix(hint, "not ") {
			hint = "not (" + hint + ")"
		}
		return fail("Jinja test `is %s%s`: write %s", m[1], m[2], hint)
	}
	if op := compareOpRe.FindString(e); op != "" {
		fn := map[string]string{"==": "eq", "!=": "ne", ">=": "ge", "<=": "le", "<": "lt", ">": "gt"}[op]
		return fail("Jinja operator %s: Go templates compare with functions: %s .a .b", op, fn)
	}
	if strings.Contains(e, "~") {
		return fail(`Jinja operator ~ (concatenation): write printf "%%s%%s" .a .b, or put the actions side by side`)
	}
	if m := subscriptRe.FindStringSubmatch(e); m != nil {
		base := strings.TrimPrefix(m[1], ".")
		switch {
		case base == "groups":
			return fail(`Jinja subscript groups[…]: write hostsOf "etcd" (or index .groups "etcd")`)
		case base == "hostvars":
			return fail(`Jinja subscript hostvars[h].x: write hostvar $h "x" (or index .hostvars $h "x")`)
		}
		return fail(`Jinja subscript %s[…]: write index .%s KEY (or .%s.key for a fixed key)`, m[1], base, base)
	}
	// and/or/in/not as infix words: `.a and .b`.
	for _, seg := range strings.FieldsFunc(e, func(r rune) bool { return r == '|' || r == '(' || r == ')' }) {
		words := commandWords(seg)
		for i, w := range words {
			if i == 0 {
				continue
			}
			switch w {
			case "and", "or":
				return fail("Jinja infix %s: Go templates write the function first: %s .a .b", w, w)
			case "in":
				return fail("Jinja infix in: write has .x .list (for a map: hasKey .m \"k\")")
			case "not":
				return fail("Jinja infix not: write not .x (with parentheses around a call: not (defined \"x\"))")
			}
		}
	}
	if quoted != "" {
		return fail("'%s': Go template strings use double quotes: %q", quoted, quoted)
	}
	return nil
}

// commandWords is a command's words without trim markers, the control
// keyword (if, range, with, else if ...) and a variable declaration.
func commandWords(seg string) []string {
	words := strings.Fields(seg)
	for len(words) > 0 {
		switch words[0] {
		case "-", "if", "else", "range", "with", "template", "block", "define":
			words = words[1:]
			continue
		}
		break
	}
	for i, w := range words {
		if w == ":=" || w == "=" {
			return words[i+1:]
		}
	}
	if n := len(words); n > 0 && words[n-1] == "-" {
		words = words[:n-1]
	}
	return words
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// stripStrings blanks Go string literals and comments out of an action so
// operators inside them are not habits; it also returns the first
// single-quoted string longer than one character (a Jinja string; Go reads
// 'x' as a character).
func stripStrings(s string) (string, string) {
	var b strings.Builder
	quoted := ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			b.WriteString(`""`)
			i = j
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return b.String(), quoted
			}
			b.WriteString(`""`)
			i += j + 1
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				b.WriteByte(c)
				continue
			}
			lit := s[i+1 : i+1+j]
			if quoted == "" && len([]rune(lit)) > 1 && !strings.HasPrefix(lit, `\`) {
				quoted = lit
			}
			b.WriteString(`""`)
			i += j + 1
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i:], "*/")
			if j < 0 {
				return b.String(), quoted
			}
			i += j + 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), quoted
}

// explainParseError turns text/template's `function "x" not defined`
// into what an Ansible user needs: x is a variable, or a Jinja filter
// with another Go name.
func explainParseError(err error) error {
	m := funcUndefRe.FindStringSubmatchIndex(err.Error())
	if m == nil {
		return err
	}
	msg := err.Error()
	name := msg[m[2]:m[3]]
	var why string
	switch {
	case name == "True" || name == "False":
		why = fmt.Sprintf("%s is Jinja/Python; Go templates write %s", name, strings.ToLower(name))
	case removedFunc(name) != "":
		why = fmt.Sprintf("%s is not available: %s", name, removedFunc(name))
	case name == "None":
		why = "None is Jinja/Python; Go templates write nil"
	case jinjaFilters[name] != "" && jinjaFilters[name] != name:
		why = fmt.Sprintf("%s is a Jinja filter; the Go function is %s", name, jinjaFilters[name])
	default:
		why = fmt.Sprintf("%s is not a function; did you mean .%s? (variables start with a dot: .%s, .item, .inventory_hostname)", name, name, name)
	}
	return &explainedError{msg: msg[:m[0]] + why + msg[m[1]:], err: err}
}

// explainedError is a parse error with a better message; the original
// stays reachable with errors.As.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }
