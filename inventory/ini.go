package inventory

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// sectionRe is Ansible's: no spaces, colons or brackets in a group name.
var sectionRe = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$`)

type pendingDecl struct {
	line   int
	state  string
	parent string
}

// maxExpand bounds one host range so a typo like [1:999999999] is an error,
// not an out-of-memory.
const maxExpand = 100000

// parseINI reads an INI inventory in one pass over its lines. It is long
// because it is one small state machine (the current section's kind and
// group, the groups declared and those only referred to so far); split,
// that state would travel through every piece.
func (inv *Inventory) parseINI(file string, data []byte) error {
	state, cur := "hosts", "ungrouped"
	declared := map[string]bool{"all": true, "ungrouped": true}
	pending := map[string]pendingDecl{}
	var pendingOrder []string
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		ln := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			m := sectionRe.FindStringSubmatch(line)
			if m == nil {
				return errAt(file, ln, "invalid section %q: a group name has no spaces, colons or brackets", line)
			}
			name, kind := m[1], m[2]
			if kind == "" {
				kind = "hosts"
			}
			switch kind {
			case "hosts", "children", "vars":
			default:
				return errAt(file, ln, "section [%s:%s] has unknown type %q (want hosts, children or vars)", name, kind, kind)
			}
			state, cur = kind, name
			inv.addGroup(name)
			if kind == "vars" {
				if !declared[name] {
					if _, ok := pending[name]; !ok {
						pending[name] = pendingDecl{line: ln, state: "vars"}
						pendingOrder = append(pendingOrder, name)
					}
				}
			} else {
				declared[name] = true
				delete(pending, name)
			}
			continue
		}
		src := fmt.Sprintf("%s:%d", file, ln)
		switch state {
		case "hosts":
			if err := inv.iniHostLine(file, ln, src, line, cur); err != nil {
				return err
			}
		case "children":
			child, rest := cutField(line)
			if rest != "" && rest[0] != '#' && rest[0] != ';' {
				return errAt(file, ln, "[%s:children] takes one group name per line, got %q", cur, line)
			}
			if strings.ContainsAny(child, ":[]") {
				return errAt(file, ln, "invalid group name %q in [%s:children]", child, cur)
			}
			if !declared[child] {
				if _, ok := pending[child]; !ok {
					pending[child] = pendingDecl{line: ln, state: "children", parent: cur}
					pendingOrder = append(pendingOrder, child)
				}
			}
			if err := inv.addChild(cur, child, file, ln); err != nil {
				return err
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" || strings.ContainsAny(k, " \t") {
				return errAt(file, ln, "[%s:vars] expects key=value, got %q", cur, line)
			}
			val, err := iniVarsValue(strings.TrimSpace(v))
			if err != nil {
				return errAt(file, ln, "%s: %v", k, err)
			}
			inv.groups[cur].vars[layerInventory].set(k, val, src)
		}
	}
	// Like Ansible: a group used in [x:children] or [x:vars] must be
	// declared somewhere with its own [x] or [x:children] section, which
	// catches misspelt group names.
	for _, name := range pendingOrder {
		d, ok := pending[name]
		if !ok {
			continue
		}
		if d.state == "vars" {
			return errAt(file, d.line, "section [%s:vars] is for group %q, which is never declared", name, name)
		}
		return errAt(file, d.line, "section [%s:children] includes group %q, which is never declared", d.parent, name)
	}
	return nil
}

func cutField(s string) (string, string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// iniHostLine parses "name[:port] key=value ...". Tokens are split like
// Python's shlex (which Ansible uses): quotes group words, backslash
// escapes, an unquoted # starts a comment.
func (inv *Inventory) iniHostLine(file string, ln int, src, line, grp string) error {
	toks, err := shlexSplit(line)
	if err != nil {
		return errAt(file, ln, "%v", err)
	}
	if len(toks) == 0 {
		return nil
	}
	names, port, err := parseHostPattern(toks[0].text)
	if err != nil {
		return errAt(file, ln, "%v", err)
	}
	type kv struct {
		k string
		v any
	}
	var vars []kv
	for _, t := range toks[1:] {
		k, v, ok := strings.Cut(t.text, "=")
		if !ok || k == "" {
			return errAt(file, ln, "expected key=value after host %q, got %q", toks[0].text, t.text)
		}
		var val any = v
		if !t.quoted || isCollection(v) {
			// Quotes keep a scalar a string, but a [list] or {dict}
			// needs them to hold spaces, so those are still parsed.
			val = iniValue(v)
		}
		vars = append(vars, kv{k, val})
	}
	for _, n := range names {
		h := inv.addHost(n, grp)
		if port > 0 {
			h.vars[layerInventory].set("ansible_port", port, src)
		}
		for _, e := range vars {
			h.vars[layerInventory].set(e.k, e.v, src)
		}
	}
	return nil
}

// iniVarsValue converts the value of a [group:vars] line: a trailing
// " # comment" is dropped, a fully quoted value is an unquoted string,
// anything else goes through iniValue.
func iniVarsValue(v string) (any, error) {
	// Strip a comment that starts after whitespace, outside quotes.
	var q byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case q != 0:
			if c == '\\' && q == '"' {
				i++
			} else if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case (c == '#' || c == ';') && i > 0 && (v[i-1] == ' ' || v[i-1] == '\t'):
			v = strings.TrimSpace(v[:i])
		}
	}
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
		if v[len(v)-1] != v[0] {
			return nil, fmt.Errorf("unterminated quote in %q", v)
		}
		return unquote(v)
	}
	return iniValue(v), nil
}

// unquote removes one level of quotes. Inside double quotes \\ \" \n \t are
// escapes; inside single quotes only \\ and \'.
func unquote(v string) (string, error) {
	q := v[0]
	body := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == q {
			return "", fmt.Errorf("unexpected %c inside quoted value %s", q, v)
		}
		if c == '\\' && i+1 < len(body) {
			n := body[i+1]
			switch {
			case n == '\\' || n == q:
				b.WriteByte(n)
				i++
				continue
			case q == '"' && n == 'n':
				b.WriteByte('\n')
				i++
				continue
			case q == '"' && n == 't':
				b.WriteByte('\t')
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

type token struct {
	text   string
	quoted bool // some part was quoted: the value stays a string
}

// shlexSplit mirrors shlex.split(line, comments=True) in POSIX mode.
func shlexSplit(s string) ([]token, error) {
	var out []token
	var cur strings.Builder
	inTok, quoted := false, false
	emit := func() {
		if inTok {
			out = append(out, token{cur.String(), quoted})
		}
		cur.Reset()
		inTok, quoted = false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			emit()
		case c == '#':
			emit()
			return out, nil
		case c == '\\':
			inTok = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case c == '\'' || c == '"':
			inTok, quoted = true, true
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			i = j
		default:
			inTok = true
			cur.WriteByte(c)
		}
	}
	emit()
	return out, nil
}

// parseHostPattern splits "name[:port]" and expands ranges such as
// node-[1:3], node-[01:10], 10.0.0.[1:9], db-[a:c], node-[0:10:2].
// IPv6 addresses are kept whole; "[v6]:port" gives a port.
func parseHostPattern(s string) ([]string, int, error) {
	name, port := s, 0
	if strings.HasPrefix(s, "[") && !rangeRe.MatchString(s) {
		// [ipv6] or [ipv6]:port
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, 0, fmt.Errorf("host %q: missing ]", s)
		}
		name = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			n, err := strconv.Atoi(p)
			if !ok || err != nil || n <= 0 || n > 65535 {
				return nil, 0, fmt.Errorf("host %q: bad port %q", s, rest)
			}
			port = n
		}
		return []string{name}, port, nil
	}
	// Colons outside brackets: one means name:port, more mean a bare IPv6 address.
	depth, colons, last := 0, 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				colons++
				last = i
			}
		}
	}
	if colons == 1 {
		p := s[last+1:]
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, 0, fmt.Errorf("host %q: bad port %q", s, p)
		}
		name, port = s[:last], n
	} else if colons > 1 {
		return []string{s}, 0, nil
	}
	if name == "" {
		return nil, 0, fmt.Errorf("empty host name in %q", s)
	}
	names, err := expandRange(name)
	if err != nil {
		return nil, 0, fmt.Errorf("host %q: %w", s, err)
	}
	return names, port, nil
}

var rangeRe = regexp.MustCompile(`\[([a-zA-Z0-9]*):([a-zA-Z0-9]*)(?::(-?[0-9]+))?\]`)

func expandRange(name string) ([]string, error) {
	loc := rangeRe.FindStringSubmatchIndex(name)
	if loc == nil {
		if strings.ContainsAny(name, "[]") {
			return nil, fmt.Errorf("malformed range (want [start:end] or [start:end:step])")
		}
		return []string{name}, nil
	}
	head, tail := name[:loc[0]], name[loc[1]:]
	if strings.ContainsAny(head, "[]") {
		return nil, fmt.Errorf("malformed range (want [start:end] or [start:end:step])")
	}
	beg, end := name[loc[2]:loc[3]], name[loc[4]:loc[5]]
	step := 1
	if loc[6] >= 0 {
		n, err := strconv.Atoi(name[loc[6]:loc[7]])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("range step must be a positive number")
		}
		step = n
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return nil, fmt.Errorf("range must specify an end value")
	}
	var seq []string
	if isLetter(beg) && isLetter(end) {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		bi, ei := strings.IndexByte(letters, beg[0]), strings.IndexByte(letters, end[0])
		if bi > ei {
			return nil, fmt.Errorf("range [%s:%s] must have begin <= end", beg, end)
		}
		for i := bi; i <= ei; i += step {
			seq = append(seq, letters[i:i+1])
		}
	} else {
		b, err1 := strconv.Atoi(beg)
		e, err2 := strconv.Atoi(end)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("range [%s:%s] mixes letters and numbers or is not a number", beg, end)
		}
		if b > e {
			return nil, fmt.Errorf("range [%s:%s] must have begin <= end", beg, end)
		}
		if (e-b)/step+1 > maxExpand {
			return nil, fmt.Errorf("range [%s:%s] expands to more than %d hosts", beg, end, maxExpand)
		}
		width := 0
		if len(beg) > 1 && beg[0] == '0' {
			if len(beg) != len(end) {
				return nil, fmt.Errorf("zero-padded range [%s:%s] needs begin and end of equal length", beg, end)
			}
			width = len(beg)
		}
		for i := b; i <= e; i += step {
			seq = append(seq, fmt.Sprintf("%0*d", width, i))
		}
	}
	var out []string
	for _, s := range seq {
		rest, err := expandRange(s + tail)
		if err != nil {
			return nil, err
		}
		for _, r := range rest {
			out = append(out, head+r)
		}
		if len(out) > maxExpand {
			return nil, fmt.Errorf("ranges expand to more than %d hosts", maxExpand)
		}
	}
	return out, nil
}

func isLetter(s string) bool {
	return len(s) == 1 && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}
