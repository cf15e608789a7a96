package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"gokube/connection"
)

// shq quotes s for /bin/sh.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run sends one request with the task's become settings and environment.
func run(ctx context.Context, env *Env, script string, readOnly bool) (connection.Result, error) {
	return env.Conn.Run(ctx, request(env, script, readOnly))
}

func request(env *Env, script string, readOnly bool) connection.Request {
	return connection.Request{
		Script:     script,
		Become:     env.Become,
		BecomeUser: env.BecomeUser,
		Env:        env.Environment,
		ReadOnly:   readOnly,
	}
}

// mustRun is run for scripts whose non-zero exit is a failure of the task.
func mustRun(ctx context.Context, env *Env, script string, readOnly bool) (connection.Result, error) {
	return mustRunReq(ctx, env, request(env, script, readOnly))
}

// mustRunChange is mustRun for a change. inline: a change made of short
// programs on local files (mkdir, install, ln, chown, useradd) runs in
// the session's shell (connection.Request.Inline), a fork less; such a
// script must not exit or change the shell, and nothing in it may run
// long: the shell defers a cancellation until a foreground program ends.
func mustRunChange(ctx context.Context, env *Env, script string, inline bool) (connection.Result, error) {
	req := request(env, script, false)
	req.Inline = inline
	return mustRunReq(ctx, env, req)
}

func mustRunReq(ctx context.Context, env *Env, req connection.Request) (connection.Result, error) {
	script := req.Script
	res, err := env.Conn.Run(ctx, req)
	if err != nil {
		return res, err
	}
	if res.RC != 0 {
		return res, &connection.ExitError{Host: env.Conn.Host(), Cmd: script, RC: res.RC, Stderr: strings.TrimSpace(string(res.Stderr))}
	}
	return res, nil
}

// probeOrRun returns the executor's batched probe output when there is one
// and runs the probe script otherwise, so both paths parse the same text.
func probeOrRun(ctx context.Context, env *Env, script string) ([]byte, error) {
	if env.Probe != nil {
		return env.Probe, nil
	}
	res, err := mustRun(ctx, env, script, true)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return res.Stdout, nil
}

// fileProbe says what the probe of one path prints.
type fileProbe struct {
	// dirBase: when the path is a directory (or ends in /), look at
	// path/dirBase instead (copy's dest-is-a-directory rule).
	dirBase string
	sha256  bool
	sha1    bool
	content bool // base64 of the content, for modules that edit in Go
	// follow: a symlink that points somewhere is described by its target
	// (file: mode etc. apply to what the link points to, as in Ansible).
	follow bool
}

// script returns a read-only POSIX sh script that prints key=value lines
// about one path: path, type (absent/file/directory/link/other), mode,
// uid, gid, owner, group, size, mtime, target (links), sha256/sha1/content
// (regular files, on request), readable=0 when it cannot be read.
// It is a brace group, not a subshell (a fork less per probe); it sets
// only p, t and h, each before use, so probes concatenate safely.
func (o fileProbe) script(p string) string {
	var b strings.Builder
	// The declarations let ProbePrelude stat and hash every path of a
	// batch in one process each; gk_stat/gk_sha256 fall back to their own
	// process when run alone or when the path turned out different.
	decl := func(p string) {
		fmt.Fprintf(&b, "%s%s %s\n", probeDecl, base64.StdEncoding.EncodeToString([]byte(p)), o.sumFlag())
	}
	decl(p)
	if o.dirBase != "" {
		decl(strings.TrimSuffix(p, "/") + "/" + o.dirBase)
	}
	b.WriteString(probeFallbacks)
	b.WriteString("{ p=" + shq(p) + "\n")
	if o.dirBase != "" {
		fmt.Fprintf(&b, "case \"$p\" in */) p=\"$p\"%s;; *) if [ -d \"$p\" ] && [ ! -L \"$p\" ]; then p=\"$p\"/%s; fi;; esac\n", shq(o.dirBase), shq(o.dirBase))
	}
	if o.follow {
		b.WriteString("if [ -L \"$p\" ] && [ -e \"$p\" ]; then p=$(readlink -f -- \"$p\"); fi\n")
	}
	b.WriteString(`printf 'path=%s\n' "$p"
if [ -L "$p" ]; then t=link; elif [ -d "$p" ]; then t=directory; elif [ -f "$p" ]; then t=file; elif [ -e "$p" ]; then t=other; else t=absent; fi
echo "type=$t"
if [ "$t" != absent ]; then
gk_stat "$p"
if [ "$t" = link ]; then gk_target "$p"; fi
fi
if [ "$t" = file ]; then
if [ ! -r "$p" ]; then echo readable=0; else :
`)
	if o.sha256 {
		b.WriteString("gk_sha256 \"$p\"\n")
	}
	if o.sha1 {
		b.WriteString("gk_sha1 \"$p\"\n")
	}
	if o.content {
		b.WriteString("gk_content \"$p\"\n")
	}
	b.WriteString("fi\nfi\n}\n")
	return b.String()
}

// sumFlag is the checksum a declaration asks the prelude for: sha256
// (copy, template, get_url), sha1 (stat's default) or none. A probe
// asking for both declares sha256, and its sha1 is hashed on its own.
func (o fileProbe) sumFlag() string {
	switch {
	case o.sha256:
		return sumSHA256
	case o.sha1:
		return sumSHA1
	}
	return "0"
}

const (
	sumSHA256 = "1"
	sumSHA1   = "sha1"
)

// contentReadMax is the largest file whose content a probe batch reads
// with the shell's read (a byte per system call) rather than base64 (a
// process): a config file that lineinfile edits, not a binary.
const contentReadMax = 16 << 10

// statFormat is what a file probe prints about a path that exists.
const statFormat = `mode=%a\nuid=%u\ngid=%g\nowner=%U\ngroup=%G\nsize=%s\nmtime=%Y\nino=%d:%i\n`

// probeDecl starts the comment line by which a file probe declares a path
// (base64) and the checksum it wants (sumFlag).
const probeDecl = "# gokube-probe-path "

// probeFallbacks defines gk_stat and gk_sha256 unless a batch prelude did.
const probeFallbacks = `command -v gk_stat >/dev/null 2>&1 || gk_stat() { stat --printf='` + statFormat + `' -- "$1"; }
command -v gk_target >/dev/null 2>&1 || gk_target() { printf 'target=%s\n' "$(readlink -- "$1")"; }
command -v gk_content >/dev/null 2>&1 || gk_content() { printf 'content='; base64 -w0 < "$1"; echo; }
command -v gk_sha256 >/dev/null 2>&1 || gk_sha256() { h=$(sha256sum < "$1") && echo "sha256=${h%% *}"; }
command -v gk_sha1 >/dev/null 2>&1 || gk_sha1() { h=$(sha1sum < "$1") && echo "sha1=${h%% *}"; }
`

// ProbeNamesOwner says whether a path probe's answer names an owner or a
// group (a path that exists): a change of the account databases may make
// that name read differently (Result.AccountsOnly).
func ProbeNamesOwner(out []byte) bool {
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("owner=")) || bytes.HasPrefix(line, []byte("group=")) || bytes.HasPrefix(line, []byte("uid=")) || bytes.HasPrefix(line, []byte("gid=")) {
			return true
		}
	}
	return false
}

// ProbeOwnersNamed says whether every owner and group a path probe's
// answer names has a name (stat prints UNKNOWN for an id without one):
// adding an account cannot rename those (Result.Added).
func ProbeOwnersNamed(out []byte) bool {
	for _, line := range bytes.Split(out, []byte("\n")) {
		v, ok := bytes.CutPrefix(line, []byte("owner="))
		if !ok {
			v, ok = bytes.CutPrefix(line, []byte("group="))
		}
		if ok && (string(v) == "UNKNOWN" || len(bytes.Trim(v, "0123456789")) == 0) {
			return false
		}
	}
	return true
}

// AccountAbsent says whether a user or group probe's answer says the
// account does not exist.
func AccountAbsent(out []byte) bool {
	kv := parseKV(out)
	if v, ok := kv["passwd"]; ok {
		return v == ""
	}
	v, ok := kv["group"]
	return ok && v == ""
}

// ProbePaths returns the paths a probe script's file probes declared, in
// order, without repeats.
func ProbePaths(script string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range probeDecls(script) {
		if !seen[d.path] {
			seen[d.path] = true
			out = append(out, d.path)
		}
	}
	return out
}

// probeDeclared is one file probe's declaration in a batch: its path and
// the checksum it wants (sumFlag).
type probeDeclared struct {
	path string
	sum  string
}

// probeDecls returns the file probes a script declared, in order, repeats
// included; a declaration that does not decode is left out.
func probeDecls(script string) []probeDeclared {
	var out []probeDeclared
	for _, line := range strings.Split(script, "\n") {
		rest, ok := strings.CutPrefix(line, probeDecl)
		if !ok {
			continue
		}
		enc, flag, _ := strings.Cut(rest, " ")
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(raw) == 0 {
			continue
		}
		out = append(out, probeDeclared{path: string(raw), sum: flag})
	}
	return out
}

// fileState is a parsed file probe.
type fileState struct {
	Path    string
	Type    string // absent file directory link other
	Mode    uint32
	UID     int
	GID     int
	Owner   string
	Group   string
	Size    int64
	Mtime   int64
	Target  string
	Ino     string // device:inode, for hard links
	SHA256  string
	SHA1    string
	Content []byte
	HasData bool // content was probed
}

func parseFileState(out []byte) (*fileState, error) {
	kv := parseKV(out)
	st := &fileState{Path: kv["path"], Type: kv["type"]}
	if st.Type == "" {
		return nil, fmt.Errorf("probe output has no type line: %q", truncate(string(out), 200))
	}
	if kv["readable"] == "0" {
		return nil, fmt.Errorf("%s: not readable (become needed?)", st.Path)
	}
	if st.Type == "absent" {
		return st, nil
	}
	m, err := strconv.ParseUint(kv["mode"], 8, 32)
	if err != nil {
		return nil, fmt.Errorf("probe: bad mode %q: %w", kv["mode"], err)
	}
	st.Mode = uint32(m)
	st.UID, _ = strconv.Atoi(kv["uid"])
	st.GID, _ = strconv.Atoi(kv["gid"])
	st.Owner, st.Group = kv["owner"], kv["group"]
	st.Size, _ = strconv.ParseInt(kv["size"], 10, 64)
	st.Mtime, _ = strconv.ParseInt(kv["mtime"], 10, 64)
	st.Target, st.Ino = kv["target"], kv["ino"]
	st.SHA256, st.SHA1 = kv["sha256"], kv["sha1"]
	if c, ok := kv["content"]; ok {
		data, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("probe: bad content encoding: %w", err)
		}
		st.Content, st.HasData = data, true
	} else if data, ok := contentLines(out); ok {
		if int64(len(data)) != st.Size {
			return nil, fmt.Errorf("%s: probe read %d bytes of content, stat said %d", st.Path, len(data), st.Size)
		}
		st.Content, st.HasData = data, true
	}
	return st, nil
}

// contentLines is the content a batch's gk_content printed line by line:
// every content-line with its newline, then content-tail (the last line
// when it has no newline, else empty). ok is false without a tail.
func contentLines(out []byte) (data []byte, ok bool) {
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if rest, found := bytes.CutPrefix(line, []byte("content-line=")); found {
			data = append(data, rest...)
			continue
		}
		if rest, found := bytes.CutPrefix(line, []byte("content-tail=")); found {
			return append(data, bytes.TrimSuffix(rest, []byte("\n"))...), true
		}
	}
	return nil, false
}

// parseKV reads key=value lines; the first = splits.
func parseKV(out []byte) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, seen := kv[k]; !seen {
				kv[k] = v
			}
		}
	}
	return kv
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// backupScript copies p aside the way Ansible names backups.
func backupScript(p string, now time.Time) (script, name string) {
	name = p + "." + now.UTC().Format("2006-01-02@15:04:05") + "~"
	return "cp -p -- " + shq(p) + " " + shq(name), name
}

// unifiedDiff renders Ansible-style before/after diff text.
func unifiedDiff(p string, before, after []byte) string {
	if bytes.IndexByte(before, 0) >= 0 || bytes.IndexByte(after, 0) >= 0 {
		return fmt.Sprintf("Binary files before: %s and after: %s differ\n", p, p)
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(string(before)), B: diffLines(string(after)),
		FromFile: "before: " + p, ToFile: "after: " + p, Context: 3,
	})
	if err != nil {
		return ""
	}
	return text
}

// diffLines splits text for difflib without the phantom empty last line
// difflib.SplitLines adds after a final newline.
func diffLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		return lines[:len(lines)-1]
	}
	lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	return lines
}

// stateDiff renders a change of a path's or unit's state (no content) as
// a unified diff of "key: value" lines, like Ansible's before/after.
func stateDiff(name string, keys []string, before, after map[string]string) string {
	var b, a strings.Builder
	for _, k := range keys {
		if v, ok := before[k]; ok {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
		if v, ok := after[k]; ok {
			fmt.Fprintf(&a, "%s: %s\n", k, v)
		}
	}
	return unifiedDiff(name, []byte(b.String()), []byte(a.String()))
}

// maxDiffSize keeps --diff from fetching huge files.
const maxDiffSize = 1 << 20

// readSrc finds a control-machine file: in env.Files in order (role files/
// or templates/ first, then the playbook dir), or as an absolute path, or
// in the artifact cache. It returns the content, the name for messages and
// the file's permissions (for mode: preserve).
func readSrc(env *Env, src string) ([]byte, string, fs.FileMode, error) {
	if filepath.IsAbs(src) {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, "", 0, fmt.Errorf("src: %w", err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, "", 0, fmt.Errorf("src: %w", err)
		}
		return data, src, fi.Mode(), nil
	}
	name := path.Clean(filepath.ToSlash(src))
	if !fs.ValidPath(name) {
		return nil, "", 0, fmt.Errorf("src %q: must be a relative path inside the files/ directories or an absolute path", src)
	}
	for _, fsys := range env.Files {
		data, err := fs.ReadFile(fsys, name)
		if err == nil {
			perm := fs.FileMode(0o644)
			if fi, err := fs.Stat(fsys, name); err == nil {
				perm = fi.Mode()
			}
			return data, name, perm, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", 0, fmt.Errorf("src %q: %w", src, err)
		}
	}
	if env.ArtifactDir != "" {
		p := filepath.Join(env.ArtifactDir, filepath.FromSlash(name))
		if data, err := os.ReadFile(p); err == nil {
			perm := fs.FileMode(0o644)
			if fi, err := os.Stat(p); err == nil {
				perm = fi.Mode()
			}
			return data, name, perm, nil
		}
	}
	return nil, "", 0, fmt.Errorf("src %q: not found in %d search directories (role files/ or templates/, playbook dir, artifact cache): %w", src, len(env.Files), fs.ErrNotExist)
}

// resultFail turns an error of the host's side (a command that failed) into
// a failed result, and passes transport errors on.
func resultFail(err error, data map[string]any) (*Result, error) {
	var ee *connection.ExitError
	if errors.As(err, &ee) {
		if data == nil {
			data = map[string]any{}
		}
		data["rc"] = ee.RC
		data["stderr"] = ee.Stderr
		return &Result{Failed: true, Msg: fmt.Sprintf("%s (rc=%d)", strings.TrimSpace(ee.Stderr), ee.RC), Data: data}, nil
	}
	return nil, err
}
