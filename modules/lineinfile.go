package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// lineinfile and blockinfile probe the file's content (base64 in the probe
// output), edit it in Go and write it back atomically like copy: unchanged
// is the probe only, a change is one upload more.

type lineInFile struct{}

func (lineInFile) Spec() Spec {
	return Spec{
		Doc: "Ensures one line is in a file (or absent), replacing the line a regexp or search_string matches. The file is read by the probe, edited in Go and written back atomically.",
		Returns: map[string]string{
			"backup_file": "the backup's path (with backup)",
			"path":        "the file",
		},
		Args: map[string]Arg{
			"path":          {Type: String, Required: true, Aliases: []string{"dest", "destfile", "name"}, Doc: "File on the host."},
			"regexp":        {Type: String, Kind: Regexp, Aliases: []string{"regex"}, Doc: "Go regular expression of the line to replace (the last match) or, with state absent, of the lines to remove."},
			"search_string": {Type: String, Doc: "A literal string instead of regexp."},
			"line":          {Type: String, Aliases: []string{"value"}, Doc: "The line to put in the file."},
			"state":         {Type: String, Choices: []string{"present", "absent"}, Doc: "present: the line is there; absent: matching lines are removed.", Default: "present"},
			"insertafter":   {Type: String, Kind: Regexp, Doc: "Regexp after whose last match a new line goes, or EOF.", Default: "EOF"},
			"insertbefore":  {Type: String, Kind: Regexp, Doc: "Regexp before whose last match a new line goes, or BOF."},
			"create":        {Type: Bool, Doc: "Create the file when it does not exist.", Default: "no"},
			"backrefs":      {Type: Bool, Doc: "Expand \\1 and \\g<name> of regexp in line; no match changes nothing.", Default: "no"},
			"firstmatch":    {Type: Bool, Doc: "insertafter/insertbefore use the first match instead of the last.", Default: "no"},
			"owner":         {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":         {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"mode":          {Type: Any, Kind: Mode, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
			"backup":        {Type: Bool, Doc: "Keep the previous content beside the file (NAME.<timestamp>~) before changing it; registers backup_file.", Default: "no"},
			"validate":      {Type: String, Kind: Validate, Doc: "Command that must succeed on the new content before it replaces the file; %s is the temporary file's path."},
		},
		Exclusive:  [][]string{{"insertafter", "insertbefore"}, {"regexp", "search_string"}},
		RequiredIf: []Requirement{{If: "state", Is: "present", Need: []string{"line"}}},
	}
}

func contentProbe(a cargs) string {
	return fileProbe{content: true}.script(a.str("path"))
}

// Pipelinable: a change is one upload (or an attribute fix) whose output
// the result does not use.
func (lineInFile) Pipelinable() {}

// ProbesOnlyPaths: the probe is the file's content probe.
func (lineInFile) ProbesOnlyPaths(map[string]any) bool { return true }

func (m lineInFile) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("lineinfile", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return contentProbe(a), true
}

// editFile is the shared body: probe, edit, write.
func editFile(ctx context.Context, env *Env, a cargs, edit func(old []string, exists bool) ([]string, string, error)) (*Result, error) {
	w, err := parseAttrs(a, false)
	if err != nil {
		return nil, err
	}
	p := a.str("path")
	out, err := probeOrRun(ctx, env, contentProbe(a))
	if err != nil {
		return nil, err
	}
	st, err := parseFileState(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	data := map[string]any{"path": p}
	switch st.Type {
	case "absent":
		if a.str("state") == "absent" {
			return &Result{Msg: "file does not exist", Data: data}, nil
		}
		if !a.boolean("create", false) {
			return &Result{Failed: true, Msg: "Destination " + p + " does not exist !", Data: data}, nil
		}
	case "file":
	default:
		return &Result{Failed: true, Msg: p + " is a " + st.Type + ", not a regular file", Data: data}, nil
	}
	text := string(st.Content)
	var old []string
	if text != "" {
		old = strings.SplitAfter(text, "\n")
		if old[len(old)-1] == "" {
			old = old[:len(old)-1]
		}
	}
	lines, msg, err := edit(old, st.Type == "file")
	if err != nil {
		return nil, err
	}
	content := []byte(strings.Join(lines, ""))
	if st.Type == "file" {
		sum := sha256.Sum256(st.Content)
		st.SHA256 = hex.EncodeToString(sum[:])
	}
	res, err := writeFile(ctx, env, a, st, content, w)
	if res != nil {
		for k, v := range data {
			res.Data[k] = v
		}
		if res.Changed && !res.Failed && msg != "" {
			res.Msg = msg
		}
	}
	return res, err
}

// withNL terminates a line.
func withNL(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// ensureLastNL adds the newline the old last line lacks before appending.
func ensureLastNL(lines []string) []string {
	if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
		lines[n-1] += "\n"
	}
	return lines
}

// pythonRepl turns Python's \1 and \g<name> backreferences into Go's.
func pythonRepl(s string) string {
	pyBackref := regexp.MustCompile(`\\(\d+)|\\g<(\w+)>`)
	s = strings.ReplaceAll(s, "$", "$$")
	return pyBackref.ReplaceAllString(s, "$${$1$2}")
}

func compileArg(a cargs, key string) (*regexp.Regexp, error) {
	if !a.has(key) {
		return nil, nil
	}
	re, err := regexp.Compile(a.str(key))
	if err != nil {
		return nil, a.err(key, "bad regular expression: %v", err)
	}
	return re, nil
}

// insertIndex is where a new line or block goes: after the last (or first)
// match of insertafter, before the last (or first) match of insertbefore,
// end of file by default or when the pattern does not match.
func insertIndex(a cargs, lines []string) (int, error) {
	first := a.boolean("firstmatch", false)
	find := func(key string) (int, bool, error) {
		re, err := compileArg(a, key)
		if err != nil {
			return 0, false, err
		}
		idx := -1
		for i, l := range lines {
			if re.MatchString(strings.TrimRight(l, "\r\n")) {
				idx = i
				if first {
					break
				}
			}
		}
		return idx, idx >= 0, nil
	}
	switch {
	case a.has("insertbefore"):
		if a.str("insertbefore") == "BOF" {
			return 0, nil
		}
		i, ok, err := find("insertbefore")
		if err != nil || !ok {
			return len(lines), err
		}
		return i, nil
	case a.has("insertafter") && a.str("insertafter") != "EOF":
		i, ok, err := find("insertafter")
		if err != nil || !ok {
			return len(lines), err
		}
		return i + 1, nil
	}
	return len(lines), nil
}

func insertAt(lines []string, i int, add ...string) []string {
	out := make([]string, 0, len(lines)+len(add))
	out = append(out, lines[:i]...)
	out = append(out, add...)
	return append(out, lines[i:]...)
}

// Run is long because the argument checks and the edit that editFile
// applies to the host's lines (remove, replace at the match with or
// without backrefs, insert) share the compiled regexp and the match rule.
func (m lineInFile) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("lineinfile", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	re, err := compileArg(a, "regexp")
	if err != nil {
		return nil, err
	}
	state := a.str("state")
	if state == "" {
		state = "present"
	}
	if state == "present" && !a.has("line") {
		return nil, a.err("line", "required with state=present")
	}
	if state == "absent" && re == nil && !a.has("line") && !a.has("search_string") {
		return nil, a.err("regexp", "one of regexp, search_string, line is required with state=absent")
	}
	if a.boolean("backrefs", false) && re == nil {
		return nil, a.err("backrefs", "needs regexp")
	}
	line := a.str("line")
	search := a.str("search_string")
	matches := func(l string) bool {
		l = strings.TrimRight(l, "\r\n")
		switch {
		case re != nil:
			return re.MatchString(l)
		case search != "":
			return strings.Contains(l, search)
		}
		return false
	}
	return editFile(ctx, env, a, func(lines []string, exists bool) ([]string, string, error) {
		if state == "absent" {
			out := lines[:0:0]
			for _, l := range lines {
				if matches(l) || (re == nil && search == "" && strings.TrimRight(l, "\r\n") == line) {
					continue
				}
				out = append(out, l)
			}
			if len(out) == len(lines) {
				return lines, "", nil
			}
			return out, fmt.Sprintf("%d line(s) removed", len(lines)-len(out)), nil
		}
		idx := -1
		for i, l := range lines {
			if matches(l) {
				idx = i
				if a.boolean("firstmatch", false) {
					break
				}
			}
		}
		if idx >= 0 {
			newLine := line
			if a.boolean("backrefs", false) {
				l := strings.TrimRight(lines[idx], "\r\n")
				sub := re.FindStringSubmatchIndex(l)
				newLine = string(re.ExpandString(nil, pythonRepl(line), l, sub))
			}
			if strings.TrimRight(lines[idx], "\r\n") == newLine {
				return lines, "", nil
			}
			out := append([]string(nil), lines...)
			out[idx] = withNL(newLine)
			return out, "line replaced", nil
		}
		if a.boolean("backrefs", false) {
			return lines, "", nil
		}
		for _, l := range lines {
			if strings.TrimRight(l, "\r\n") == line {
				return lines, "", nil
			}
		}
		i, err := insertIndex(a, lines)
		if err != nil {
			return nil, "", err
		}
		out := ensureLastNL(append([]string(nil), lines...))
		return insertAt(out, i, withNL(line)), "line added", nil
	})
}

type blockInFile struct{}

func (blockInFile) Spec() Spec {
	return Spec{
		Doc: "Ensures a block of lines between marker lines is in a file (or absent); edited in Go, written atomically.",
		Returns: map[string]string{
			"backup_file": "the backup's path (with backup)",
			"path":        "the file",
		},
		Args: map[string]Arg{
			"path":         {Type: String, Required: true, Aliases: []string{"dest", "destfile", "name"}, Doc: "File on the host."},
			"block":        {Type: String, Aliases: []string{"content"}, Doc: "The lines to put between the markers."},
			"marker":       {Type: String, Doc: "Marker line template; {mark} becomes marker_begin or marker_end.", Default: "# {mark} ANSIBLE MANAGED BLOCK"},
			"marker_begin": {Type: String, Doc: "Text for {mark} in the first marker.", Default: "BEGIN"},
			"marker_end":   {Type: String, Doc: "Text for {mark} in the last marker.", Default: "END"},
			"state":        {Type: String, Choices: []string{"present", "absent"}, Doc: "present: the block is there; absent: it is removed with its markers.", Default: "present"},
			"insertafter":  {Type: String, Kind: Regexp, Doc: "Regexp after whose last match a new block goes, or EOF.", Default: "EOF"},
			"insertbefore": {Type: String, Kind: Regexp, Doc: "Regexp before whose last match a new block goes, or BOF."},
			"create":       {Type: Bool, Doc: "Create the file when it does not exist.", Default: "no"},
			"owner":        {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":        {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"mode":         {Type: Any, Kind: Mode, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
			"backup":       {Type: Bool, Doc: "Keep the previous content beside the file (NAME.<timestamp>~) before changing it; registers backup_file.", Default: "no"},
			"validate":     {Type: String, Kind: Validate, Doc: "Command that must succeed on the new content before it replaces the file; %s is the temporary file's path."},
		},
		Exclusive: [][]string{{"insertafter", "insertbefore"}},
	}
}

// Pipelinable: a change is one upload (or an attribute fix) whose output
// the result does not use.
func (blockInFile) Pipelinable() {}

// ProbesOnlyPaths: the probe is the file's content probe.
func (blockInFile) ProbesOnlyPaths(map[string]any) bool { return true }

func (m blockInFile) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("blockinfile", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return contentProbe(a), true
}

func (m blockInFile) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("blockinfile", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	// Ansible's default marker, so files it managed stay managed.
	marker := a.str("marker")
	if marker == "" {
		marker = "# {mark} ANSIBLE MANAGED BLOCK"
	}
	mb, me := a.str("marker_begin"), a.str("marker_end")
	if mb == "" {
		mb = "BEGIN"
	}
	if me == "" {
		me = "END"
	}
	begin := strings.ReplaceAll(marker, "{mark}", mb)
	end := strings.ReplaceAll(marker, "{mark}", me)
	block := a.str("block")
	remove := a.str("state") == "absent" || block == ""
	return editFile(ctx, env, a, func(lines []string, exists bool) ([]string, string, error) {
		bi, ei := -1, -1
		for i, l := range lines {
			t := strings.TrimRight(l, "\r\n")
			if t == begin && bi < 0 {
				bi = i
			} else if t == end && bi >= 0 && ei < 0 {
				ei = i
			}
		}
		var want []string
		if !remove {
			want = append(want, begin+"\n")
			for _, l := range strings.SplitAfter(strings.TrimRight(block, "\n"), "\n") {
				want = append(want, withNL(l))
			}
			want = append(want, end+"\n")
		}
		if bi >= 0 && ei >= 0 {
			out := append([]string(nil), lines[:bi]...)
			out = append(out, want...)
			out = append(out, lines[ei+1:]...)
			if remove {
				return out, "Block removed", nil
			}
			return out, "Block inserted", nil
		}
		if remove {
			return lines, "", nil
		}
		i, err := insertIndex(a, lines)
		if err != nil {
			return nil, "", err
		}
		out := ensureLastNL(append([]string(nil), lines...))
		return insertAt(out, i, want...), "Block inserted", nil
	})
}
