package inventory

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Match returns the hosts selected by an Ansible host pattern, in inventory
// order without duplicates.
//
// Terms are separated by "," or ":" (":" is not a separator inside [..] or
// when the whole pattern is an IPv6 address). A term is "all" or "*", a
// group, a host, a wildcard (node-*, shell glob syntax), "~regex" (anchored
// at the start, as Python's re.match), or "@file" (a file of patterns, one
// per line, # comments). "&term" intersects, "!term" excludes; as in Ansible
// plain terms are applied first, then "&", then "!", and a pattern of only
// "&"/"!" terms starts from all. "group[0]", "group[1:3]" (inclusive) and
// "group[-1]" pick hosts by position.
//
// A term that matches nothing is ignored, as Ansible does with a warning
// (see MatchDetail). Match returns an error only when the whole pattern
// selects no host and some term named nothing known, so a typo in a --limit
// fails loudly while an empty but existing group does not.
func (inv *Inventory) Match(pattern string) ([]string, error) {
	hosts, unknown, err := inv.MatchDetail(pattern)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 && len(unknown) > 0 {
		return nil, fmt.Errorf("pattern %q matches no host: no host or group matches %s", pattern, quoteList(unknown))
	}
	return hosts, nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// MatchDetail is Match that also returns the terms that matched no host or
// group (Ansible's "Could not match supplied host pattern" warnings) and
// never fails for them; errors are only malformed patterns and unreadable
// @files.
func (inv *Inventory) MatchDetail(pattern string) (hosts []string, unknown []string, err error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	terms, err := splitPattern(pattern)
	if err != nil {
		return nil, nil, err
	}
	var plain, and, not []string
	for _, t := range terms {
		switch t[0] {
		case '&':
			and = append(and, t[1:])
		case '!':
			not = append(not, t[1:])
		default:
			plain = append(plain, t)
		}
	}
	if len(plain) == 0 {
		plain = []string{"all"}
	}
	sel := map[string]bool{}
	eval := func(t string) (map[string]bool, error) {
		if t == "" {
			return nil, fmt.Errorf("pattern %q: empty term after & or !", pattern)
		}
		hs, known, err := inv.matchTerm(t)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pattern, err)
		}
		if !known {
			unknown = append(unknown, t)
		}
		m := make(map[string]bool, len(hs))
		for _, h := range hs {
			m[h] = true
		}
		return m, nil
	}
	for _, t := range plain {
		m, err := eval(t)
		if err != nil {
			return nil, nil, err
		}
		for h := range m {
			sel[h] = true
		}
	}
	for _, t := range and {
		m, err := eval(t)
		if err != nil {
			return nil, nil, err
		}
		for h := range sel {
			if !m[h] {
				delete(sel, h)
			}
		}
	}
	for _, t := range not {
		m, err := eval(t)
		if err != nil {
			return nil, nil, err
		}
		for h := range m {
			delete(sel, h)
		}
	}
	return inv.inOrder(sel), unknown, nil
}

// splitPattern splits on commas if there are any, otherwise on colons
// outside brackets, as Ansible's split_host_pattern; @file terms are
// replaced by the patterns in the file.
func splitPattern(pattern string) ([]string, error) {
	pattern = strings.TrimSpace(pattern)
	if pattern == "" {
		return nil, fmt.Errorf("empty host pattern")
	}
	var raw []string
	switch {
	case strings.Contains(pattern, ","):
		raw = strings.Split(pattern, ",")
	case isIPv6(pattern):
		raw = []string{pattern}
	default:
		depth, start := 0, 0
		for i := 0; i < len(pattern); i++ {
			switch pattern[i] {
			case '[':
				depth++
			case ']':
				depth--
			case ':':
				if depth <= 0 {
					raw = append(raw, pattern[start:i])
					start = i + 1
				}
			}
		}
		raw = append(raw, pattern[start:])
	}
	var out []string
	for _, t := range raw {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if file, ok := strings.CutPrefix(t, "@"); ok {
			sub, err := patternFile(file)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("host pattern %q has no terms", pattern)
	}
	return out, nil
}

func isIPv6(s string) bool {
	ip := net.ParseIP(strings.TrimPrefix(s, "!"))
	return ip != nil && strings.Contains(s, ":")
}

func patternFile(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("host pattern file: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "@") {
			return nil, fmt.Errorf("%s: nested @file patterns are not supported", file)
		}
		sub, err := splitPattern(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, sub...)
	}
	return out, nil
}

var subscriptRe = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|(-?[0-9]+):(-?[0-9]*))\]$`)

// matchTerm evaluates one term; known reports whether it named a group or
// host (or a wildcard matched something).
func (inv *Inventory) matchTerm(t string) ([]string, bool, error) {
	if t == "all" || t == "*" {
		return inv.hostOrder, true, nil
	}
	if !strings.HasPrefix(t, "~") {
		if m := subscriptRe.FindStringSubmatch(t); m != nil {
			base, known, err := inv.enumerate(m[1])
			if err != nil {
				return nil, false, err
			}
			if !known {
				// gokube extension: "node-[1:3]" names hosts by range when
				// "node-" itself matches nothing.
				if names, _, err := parseHostPattern(t); err == nil && len(names) > 1 {
					var out []string
					for _, n := range names {
						if _, ok := inv.hosts[n]; ok {
							out = append(out, n)
						}
					}
					return out, len(out) > 0, nil
				}
				return nil, false, nil
			}
			return subscript(base, m[2], m[3], m[4]), true, nil
		}
	}
	return inv.enumerate(t)
}

func subscript(hosts []string, idx, start, end string) []string {
	n := len(hosts)
	norm := func(i int) int {
		if i < 0 {
			i += n
		}
		return i
	}
	if idx != "" {
		i, _ := strconv.Atoi(idx)
		i = norm(i)
		if i < 0 || i >= n {
			return nil
		}
		return hosts[i : i+1]
	}
	s, _ := strconv.Atoi(start)
	e := n - 1
	if end != "" {
		e, _ = strconv.Atoi(end)
	}
	s, e = norm(s), norm(e)
	s = max(s, 0)
	e = min(e, n-1)
	if s > e {
		return nil
	}
	return hosts[s : e+1]
}

// enumerate mirrors Ansible's _enumerate_matches: groups first; hosts too
// when no group matched or the term is a wildcard/regex.
func (inv *Inventory) enumerate(t string) ([]string, bool, error) {
	if _, ok := inv.groups[inv.resolveGroup(t)]; ok {
		return inv.groupHosts(t), true, nil
	}
	if _, ok := inv.hosts[t]; ok {
		return []string{t}, true, nil
	}
	isRegex := strings.HasPrefix(t, "~")
	if !isRegex && !strings.ContainsAny(t, "?*[") {
		if slices.Contains(localNames, t) {
			return []string{t}, true, nil
		}
		return nil, false, nil
	}
	var re *regexp.Regexp
	var err error
	if isRegex {
		re, err = regexp.Compile(`^(?:` + t[1:] + `)`)
		if err != nil {
			return nil, false, fmt.Errorf("bad regex in %q: %w", t, err)
		}
	} else {
		re, err = regexp.Compile(globToRegex(t))
		if err != nil {
			return nil, false, fmt.Errorf("bad wildcard %q: %w", t, err)
		}
	}
	set := map[string]bool{}
	matched := false
	for _, gn := range inv.groupOrder {
		if re.MatchString(gn) {
			matched = true
			for _, h := range inv.groupHosts(gn) {
				set[h] = true
			}
		}
	}
	for _, hn := range inv.hostOrder {
		if re.MatchString(hn) {
			matched = true
			set[hn] = true
		}
	}
	return inv.inOrder(set), matched, nil
}

// globToRegex translates a shell glob like Python's fnmatch.translate.
func globToRegex(g string) string {
	var b strings.Builder
	b.WriteString("^(?:")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := i + 1
			if j < len(g) && g[j] == '!' {
				j++
			}
			if j < len(g) && g[j] == ']' {
				j++
			}
			for j < len(g) && g[j] != ']' {
				j++
			}
			if j >= len(g) {
				b.WriteString(`\[`)
				continue
			}
			body := g[i+1 : j]
			b.WriteByte('[')
			if strings.HasPrefix(body, "!") {
				b.WriteByte('^')
				body = body[1:]
			} else if strings.HasPrefix(body, "^") {
				b.WriteByte('\\')
			}
			b.WriteString(strings.ReplaceAll(body, `\`, `\\`))
			b.WriteByte(']')
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(")$")
	return b.String()
}
