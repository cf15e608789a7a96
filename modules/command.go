package modules

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"gokube/connection"
)

// commandModule is command (no shell: the words are quoted one by one),
// shell (the text is a /bin/sh script) and raw (shell without creates or
// removes; it exists so playbooks written for Ansible keep working).
type commandModule struct{ kind string }

const skipMarker = "__gokube_command_skipped__"

func (m commandModule) Spec() Spec {
	s := Spec{
		Doc: map[string]string{
			"command": "Runs a command on the host without a shell: its words are quoted one by one.",
			"shell":   "Runs a /bin/sh script on the host (pipes, redirections, variables).",
			"raw":     "Runs a /bin/sh script on the host, like shell without creates and removes (kept so playbooks written for Ansible work).",
		}[m.kind] + " Check mode skips it unless creates or removes decide.",
		Returns: map[string]string{
			"cmd":          "what ran",
			"delta":        "duration",
			"end":          "end time",
			"rc":           "exit code",
			"start":        "start time",
			"stderr":       "standard error",
			"stderr_lines": "stderr split into lines",
			"stdout":       "standard output",
			"stdout_lines": "stdout split into lines",
		},
		FreeForm: "cmd", Args: map[string]Arg{
			"cmd":   {Type: String, Doc: "The command (free form: `command: ls -l`)."},
			"chdir": {Type: String, Doc: "Directory to run in."},
			"stdin": {Type: String, Doc: "Text fed to the command's standard input."},
		}}
	if m.kind != "raw" {
		s.Args["creates"] = Arg{Type: String, Doc: "Skip (ok, unchanged) when this path exists on the host (a dangling link counts, as in Ansible; relative to chdir; a glob pattern exists when it matches). An absolute path is answered by the probe batch, so a command that is skipped sends nothing; otherwise it is checked in the command's own request."}
		s.Args["removes"] = Arg{Type: String, Doc: "Skip when this path does not exist on the host (as creates: links, chdir, patterns, probe batch)."}
		s.Args["stdin_add_newline"] = Arg{Type: Bool, Doc: "Add a newline to stdin when it has none.", Default: "yes"}
		s.Args["strip_empty_ends"] = Arg{Type: Bool, Doc: "Strip empty lines at the end of stdout and stderr.", Default: "yes"}
	}
	switch m.kind {
	case "command":
		s.Args["argv"] = Arg{Type: List, Doc: "The command as a list of words (command only), each quoted as given."}
		s.RequireOneOf = [][]string{{"cmd", "argv"}}
	case "shell":
		s.Args["executable"] = Arg{Type: String, Doc: "Shell to run the text with instead of /bin/sh."}
		s.RequireOneOf = [][]string{{"cmd"}}
	default:
		s.Args["executable"] = Arg{Type: String, Doc: "Shell to run the text with instead of /bin/sh."}
		s.RequireOneOf = [][]string{{"cmd"}}
	}
	return s
}

// script builds the text /bin/sh runs.
func (m commandModule) script(a cargs) (string, error) {
	if m.kind == "command" {
		words := a.list("argv")
		if !a.has("argv") {
			var err error
			if words, err = SplitWords(a.str("cmd")); err != nil {
				return "", a.err("cmd", "%v", err)
			}
		}
		if len(words) == 0 {
			return "", a.err("cmd", "empty command")
		}
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = shq(w)
		}
		// exec: the command's exit status and signals are its own.
		return "exec " + strings.Join(q, " "), nil
	}
	cmd := a.str("cmd")
	if strings.TrimSpace(cmd) == "" {
		return "", a.err("cmd", "empty command")
	}
	if ex := a.str("executable"); ex != "" {
		return "exec " + shq(ex) + " -c " + shq(cmd), nil
	}
	return cmd, nil
}

// guard is a shell test that is true when creates/removes say: do not run.
// A path "exists" as for Ansible's glob.glob: a dangling symlink counts,
// and a path with glob characters exists when anything matches it.
func guard(a cargs) string {
	var tests []string
	if c := a.str("creates"); c != "" {
		tests = append(tests, existsTest(c))
	}
	if r := a.str("removes"); r != "" {
		tests = append(tests, "! "+existsTest(r))
	}
	return strings.Join(tests, " || ")
}

// existsTest is a shell test, true when p exists (lexists) or, with glob
// characters, when the pattern matches a name.
func existsTest(p string) string {
	if !strings.ContainsAny(p, globChars) {
		return "{ [ -e " + shq(p) + " ] || [ -L " + shq(p) + " ]; }"
	}
	// A forked subshell (no exec): the pattern expands without word
	// splitting; with no match it stays as written and the test fails
	// unless a name is literally that.
	return "( IFS=; set -- " + globWord(p) + "; [ -e \"$1\" ] || [ -L \"$1\" ] )"
}

const globChars = "*?["

// globWord quotes p for the shell except its glob characters: * and ?,
// and a bracket expression made of plain characters ([a-z], [!.]), which
// is written as is. A bracket with anything else is quoted: a literal [.
func globWord(p string) string {
	var b strings.Builder
	for p != "" {
		i := strings.IndexAny(p, globChars)
		if i < 0 {
			b.WriteString(shq(p))
			break
		}
		if i > 0 {
			b.WriteString(shq(p[:i]))
		}
		p = p[i:]
		if p[0] != '[' {
			b.WriteByte(p[0])
			p = p[1:]
			continue
		}
		// The closing ]: not the first member ([]a] and [!]a] hold a ]).
		j := 1
		if j < len(p) && (p[j] == '!' || p[j] == '^') {
			j++
		}
		if j < len(p) && p[j] == ']' {
			j++
		}
		end := strings.IndexByte(p[j:], ']')
		if end < 0 || strings.IndexFunc(p[1:j+end], func(r rune) bool { return !bracketSafe(r) }) >= 0 {
			b.WriteString(shq("["))
			p = p[1:]
			continue
		}
		b.WriteString(p[:j+end+1])
		p = p[j+end+1:]
	}
	return b.String()
}

// bracketSafe says a character means the same unquoted inside a bracket
// expression as to the shell's parser.
func bracketSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!^]-._:,+=@%", r)
}

// guardPaths returns the host paths creates and removes name, made
// absolute with chdir, when the batch's file probes can answer for them:
// ok=false for a pattern, or a relative path without an absolute chdir.
func guardPaths(a cargs) (creates, removes string, ok bool) {
	abs := func(p string) (string, bool) {
		if p == "" {
			return "", true
		}
		// A pattern is the task's own to expand; a newline could forge
		// the probe's separator line.
		if strings.ContainsAny(p, globChars+"\n") {
			return "", false
		}
		if !path.IsAbs(p) {
			d := a.str("chdir")
			if !path.IsAbs(d) {
				return "", false
			}
			p = path.Join(d, p)
		}
		return p, true
	}
	c, ok1 := abs(a.str("creates"))
	r, ok2 := abs(a.str("removes"))
	return c, r, ok1 && ok2 && (c != "" || r != "")
}

// Probe lets a probe batch answer creates= and removes=: a command whose
// guard holds then costs no request at all (a warm run's usual case). Only
// file probes, so the answer is kept across changes to unrelated paths;
// never a batch of its own (ProbeOnlyInBatch).
func (m commandModule) Probe(args map[string]any) (string, bool) {
	if m.kind == "raw" {
		return "", false
	}
	a, err := parseArgs(m.kind, m.Spec(), args)
	if err != nil {
		return "", false
	}
	c, r, ok := guardPaths(a)
	if !ok {
		return "", false
	}
	return guardProbe(c, r), true
}

// ProbeOnlyInBatch: the command's own request tests the guard anyway, so
// its probe is worth only a batch that other tasks start.
func (commandModule) ProbeOnlyInBatch() bool { return true }

// ProbesOnlyPaths: the probe is the guard paths' file probes.
func (commandModule) ProbesOnlyPaths(map[string]any) bool { return true }

func guardProbe(creates, removes string) string {
	var b strings.Builder
	for _, p := range []string{creates, removes} {
		if p != "" {
			b.WriteString(fileProbe{}.script(p))
		}
		b.WriteString("echo " + guardSep + "\n")
	}
	return b.String()
}

const guardSep = "---gokube-guard"

// guardHolds reads a guard probe's answer: true when creates exists or
// removes does not, so the command must not run.
func guardHolds(out []byte, creates, removes string) (bool, error) {
	parts := strings.SplitN(string(out), guardSep+"\n", 3)
	if len(parts) != 3 {
		return false, fmt.Errorf("guard probe: unexpected output %q", truncate(string(out), 200))
	}
	exists := func(s string) (bool, error) {
		t := parseKV([]byte(s))["type"]
		if t == "" {
			return false, fmt.Errorf("guard probe: no type line in %q", truncate(s, 200))
		}
		return t != "absent", nil
	}
	if creates != "" {
		e, err := exists(parts[0])
		if err != nil || e {
			return e, err
		}
	}
	if removes != "" {
		e, err := exists(parts[1])
		return !e, err
	}
	return false, nil
}

// ChangeLast: the command is the module's one request that is not a
// probe, and its last.
func (commandModule) ChangeLast() {}

func (m commandModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs(m.kind, m.Spec(), args)
	if err != nil {
		return nil, err
	}
	script, err := m.script(a)
	if err != nil {
		return nil, err
	}
	display := a.str("cmd")
	if a.has("argv") {
		display = strings.Join(a.list("argv"), " ")
	}
	g := guard(a)
	skipped := func() *Result {
		return &Result{Msg: "did not run: creates/removes condition already met", Data: map[string]any{
			"cmd": display, "rc": 0, "stdout": "skipped, since creates/removes is satisfied", "stdout_lines": []string{}, "stderr": "", "stderr_lines": []string{},
		}}
	}
	if c, r, ok := guardPaths(a); ok && env.Probe != nil {
		// The probe batch answered the guard: a guard that holds costs
		// nothing more; one that does not is tested again with the command
		// below, as Ansible tests it when the task runs.
		holds, err := guardHolds(env.Probe, c, r)
		if err != nil {
			return nil, err
		}
		if holds {
			return skipped(), nil
		}
		if env.Check {
			return wouldRun(display), nil
		}
	}
	if env.Check {
		// The only module that asks about check mode: a command's effect
		// cannot be predicted, only whether creates/removes would stop it.
		if g == "" {
			return &Result{Skipped: true, Msg: "cannot predict in check mode"}, nil
		}
		r, err := env.Conn.Run(ctx, connection.Request{
			Script: g, Dir: a.str("chdir"), ReadOnly: true,
			Become: env.Become, BecomeUser: env.BecomeUser, Env: env.Environment,
		})
		if err != nil {
			return nil, err
		}
		if r.RC == 0 {
			return skipped(), nil
		}
		return wouldRun(display), nil
	}
	if g != "" {
		// One round trip: the guard and the command in one script.
		script = "if " + g + "; then echo " + skipMarker + "; exit 0; fi\n" + script
	}
	// A subshell, so exec or exit in the command end only the command,
	// whatever the connection does with the script.
	script = "(" + script + "\n)"
	var stdin []byte
	if a.has("stdin") {
		stdin = []byte(a.str("stdin"))
		if a.boolean("stdin_add_newline", true) && !strings.HasSuffix(a.str("stdin"), "\n") {
			stdin = append(stdin, '\n')
		}
	}
	start := time.Now()
	r, err := env.Conn.Run(ctx, connection.Request{
		Script: script, Stdin: stdin, Dir: a.str("chdir"),
		Become: env.Become, BecomeUser: env.BecomeUser, Env: env.Environment,
		// The user's text runs as its own /bin/sh: $$ and $0 its own, as
		// under Ansible, and a process it leaves in the background holds
		// only its output file, not the session.
		OwnShell: true,
	})
	end := time.Now()
	if err != nil {
		return nil, err
	}
	if g != "" && r.RC == 0 && strings.TrimSpace(string(r.Stdout)) == skipMarker {
		return skipped(), nil
	}
	stdout, stderr := string(r.Stdout), string(r.Stderr)
	if a.boolean("strip_empty_ends", true) {
		stdout, stderr = strings.TrimRight(stdout, "\r\n"), strings.TrimRight(stderr, "\r\n")
	}
	data := map[string]any{
		"cmd": display, "rc": r.RC,
		"stdout": stdout, "stdout_lines": lines(stdout),
		"stderr": stderr, "stderr_lines": lines(stderr),
		"start": start.Format("2006-01-02 15:04:05.000000"),
		"end":   end.Format("2006-01-02 15:04:05.000000"),
		"delta": formatDelta(end.Sub(start)),
	}
	res := &Result{Changed: true, Data: data}
	if r.RC != 0 {
		res.Failed, res.Msg = true, "non-zero return code"
	}
	return res, nil
}

func wouldRun(display string) *Result {
	return &Result{Changed: true, Msg: "would run (creates/removes not satisfied)", Data: map[string]any{"cmd": display}}
}

func lines(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

func formatDelta(d time.Duration) string {
	h := int(d / time.Hour)
	mi := int(d/time.Minute) % 60
	s := int(d/time.Second) % 60
	us := int(d/time.Microsecond) % 1e6
	return fmt.Sprintf("%d:%02d:%02d.%06d", h, mi, s, us)
}

// SplitWords splits a command line the way a POSIX shell splits words
// (single quotes, double quotes with \ escapes, backslash), without any
// expansion: command's free form must not be interpreted by a shell. It is
// the one word splitter: the engine splits k=v arguments and -e with it.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in %q", s)
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
