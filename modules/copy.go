package modules

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// copyModule is copy and, with template set, template: both place a file
// whose content is known on the control machine, comparing sha256, mode,
// owner and group first. Unchanged costs the probe (one round trip, none
// when the executor batched it); a change costs one upload more.
type copyModule struct{ template bool }

func (m copyModule) name() string {
	if m.template {
		return "template"
	}
	return "copy"
}

func (m copyModule) Spec() Spec {
	s := Spec{
		Doc: map[bool]string{
			false: "Places a file from the control machine (src, or content) on the host; a directory src copies the tree.",
			true:  "Renders src (Go text/template with sprig and the host's variables) on the control machine and places the result on the host.",
		}[m.template] + " Compares sha256, mode, owner and group first; unchanged costs the probe, a change one atomic upload more.",
		Returns: map[string]string{
			"backup_file": "the backup's path (with backup)",
			"checksum":    "sha1 of the content",
			"dest":        "the file's path",
			"rc":          "validate's exit code, when it failed",
			"sha256":      "sha256 of the content",
			"size":        "size in bytes",
			"src":         "the source path (remote_src)",
			"state":       "file",
			"stderr":      "validate's error output, when it failed",
			"stdout":      "validate's output, when it failed",
		},
		Args: map[string]Arg{
			"src":      {Type: String, Required: m.template, Doc: "Control-machine file (or directory, for copy) searched in the role's files/ or templates/, the playbook directory and the artifact cache, or an absolute path; with remote_src a path on the host."},
			"dest":     {Type: String, Required: true, Aliases: []string{"path"}, Doc: "Path on the host; for copy a directory (or a path ending in /) receives src's base name."},
			"owner":    {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":    {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"mode":     {Type: Any, Kind: ModeOrPreserve, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
			"backup":   {Type: Bool, Doc: "Keep the previous content beside the file (NAME.<timestamp>~) before changing it; registers backup_file.", Default: "no"},
			"force":    {Type: Bool, Doc: "Replace a file whose content differs; no only creates missing files.", Default: "yes"},
			"validate": {Type: String, Kind: Validate, Doc: "Command that must succeed on the new content before it replaces the file; %s is the temporary file's path."},
		}}
	if !m.template {
		s.Args["directory_mode"] = Arg{Type: Any, Kind: Mode, Doc: "Mode of the directories made when copying a directory tree."}
		s.Args["content"] = Arg{Type: String, Doc: "The file's content, instead of src."}
		s.Args["remote_src"] = Arg{Type: Bool, Doc: "src is a file on the host: copied there, atomically.", Default: "no"}
		s.RequireOneOf = [][]string{{"content", "src"}}
		s.Exclusive = [][]string{{"content", "src"}}
	}
	return s
}

// dirBase is the name copied into dest when dest is a directory.
func (m copyModule) dirBase(a cargs) string {
	if a.has("src") && !a.has("content") {
		return path.Base(a.str("src"))
	}
	return ""
}

func (m copyModule) probeSpec(a cargs) fileProbe {
	return fileProbe{dirBase: m.dirBase(a), sha256: true}
}

func (m copyModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs(m.name(), m.Spec(), args)
	if err != nil || a.boolean("remote_src", false) {
		return "", false
	}
	return m.probeSpec(a).script(a.str("dest")), true
}

// Pipelinable: a change is one upload or attribute fix (or one copy on
// the host) whose output the result does not use.
func (copyModule) Pipelinable() {}

// ProbesOnlyPaths: the probe is dest's file probe.
func (m copyModule) ProbesOnlyPaths(map[string]any) bool { return true }

func (m copyModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs(m.name(), m.Spec(), args)
	if err != nil {
		return nil, err
	}
	if a.boolean("remote_src", false) {
		return copyRemote(ctx, env, a)
	}
	w, err := parseAttrs(a, true)
	if err != nil {
		return nil, err
	}
	var content []byte
	switch {
	case a.has("content") && w.Preserve:
		return nil, a.err("mode", "preserve needs src, not content")
	case a.has("content"):
		content = []byte(a.str("content"))
	case !m.template:
		if fsys, root, ok := srcDir(env, a.str("src")); ok {
			return copyDir(ctx, env, a, fsys, root, w)
		}
		fallthrough
	default:
		data, name, perm, err := readSrc(env, a.str("src"))
		if err != nil {
			if env.Check && errors.Is(err, fs.ErrNotExist) {
				// Files made on the control machine by an earlier task (the
				// x509 module's certificates) do not exist in a check run
				// on a fresh cluster; predict instead of failing.
				return &Result{Changed: true, Msg: "src " + a.str("src") + " does not exist yet; it would be copied", Data: map[string]any{"dest": a.str("dest")}}, nil
			}
			return nil, &ArgError{Module: m.name(), Key: "src", Msg: err.Error()}
		}
		content = data
		if w.Preserve {
			w.Mode, w.HasMode, w.Preserve = uint32(perm.Perm()), true, false
		}
		if m.template {
			if env.Render == nil {
				return nil, fmt.Errorf("template: no renderer in this environment")
			}
			out, err := env.Render(name, string(data))
			if err != nil {
				return nil, err // Render names the file and line (Env.Render)
			}
			content = []byte(out)
		}
	}
	return placeFile(ctx, env, a, m.probeSpec(a), content, w)
}

// placeFile is the shared tail of copy and template (and of get_url from
// the control machine): probe, compare, then fix attributes or upload.
func placeFile(ctx context.Context, env *Env, a cargs, probe fileProbe, content []byte, w attrs) (*Result, error) {
	dest := a.str("dest")
	out, err := probeOrRun(ctx, env, probe.script(dest))
	if err != nil {
		return nil, err
	}
	st, err := parseFileState(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	return writeFile(ctx, env, a, st, content, w)
}

// writeFile brings the file the probe described (st) to content and
// attributes: nothing, one attribute fix, or one atomic upload (plus a
// backup copy, the old content under --diff, a validation run on request).
func writeFile(ctx context.Context, env *Env, a cargs, st *fileState, content []byte, w attrs) (*Result, error) {
	var err error
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	s1 := sha1.Sum(content)
	data := map[string]any{
		"dest": st.Path, "checksum": hex.EncodeToString(s1[:]), "sha256": want,
		"size": len(content), "state": "file",
	}
	if st.Type == "directory" {
		return &Result{Failed: true, Msg: "dest " + st.Path + " is a directory", Data: data}, nil
	}
	if st.Type == "file" && (st.SHA256 == want || !a.boolean("force", true)) {
		fix := w.fix(st)
		if fix == "" {
			return &Result{Msg: "unchanged", Data: data}, nil
		}
		if _, err := mustRun(ctx, env, fix, false); err != nil {
			return resultFail(err, data)
		}
		return &Result{Changed: true, Msg: "attributes changed", Data: data}, nil
	}

	res := &Result{Changed: true, Data: data}
	if env.Diff {
		var before []byte
		if st.HasData {
			before = st.Content
		} else if st.Type == "file" && st.Size <= maxDiffSize {
			before, err = env.Conn.Get(ctx, st.Path, env.Become)
			if err != nil {
				return nil, fmt.Errorf("diff: read %s: %w", st.Path, err)
			}
		}
		if len(content) <= maxDiffSize {
			res.Diff = unifiedDiff(st.Path, before, content)
		}
	}
	if a.boolean("backup", false) && st.Type == "file" {
		script, name := backupScript(st.Path, time.Now())
		if _, err := mustRun(ctx, env, script, false); err != nil {
			return resultFail(err, data)
		}
		data["backup_file"] = name
		res.Touched = append(res.Touched, name)
	}
	if v := a.str("validate"); v != "" {
		// The temporary file keeps dest's name as suffix so validators
		// that look at the name (systemd-analyze verify x.service) work,
		// and sits beside dest so the final mv is an atomic rename.
		tmp := path.Join(path.Dir(st.Path), ".gokube-"+randHex()+"-"+path.Base(st.Path))
		if err := upload(ctx, env, tmp, content, w, st); err != nil {
			return nil, fmt.Errorf("upload %s: %w", tmp, err)
		}
		script := fmt.Sprintf("%s && mv -f -- %s %s || { rc=$?; rm -f -- %s; exit $rc; }",
			strings.ReplaceAll(v, "%s", shq(tmp)), shq(tmp), shq(st.Path), shq(tmp))
		r, err := run(ctx, env, script, false)
		if err != nil {
			return nil, err
		}
		if r.RC != 0 {
			data["stdout"], data["stderr"], data["rc"] = string(r.Stdout), string(r.Stderr), r.RC
			res.Changed, res.Failed = false, true
			res.Msg = "failed to validate: " + strings.TrimSpace(string(r.Stderr)+" "+string(r.Stdout))
			return res, nil
		}
		res.Touched = append(res.Touched, st.Path, tmp)
		return res, nil
	}
	if err := upload(ctx, env, st.Path, content, w, st); err != nil {
		return nil, fmt.Errorf("upload %s: %w", st.Path, err)
	}
	res.Touched = append(res.Touched, st.Path)
	return res, nil
}

// copyRemote copies a file that is already on the host (remote_src).
func copyRemote(ctx context.Context, env *Env, a cargs) (*Result, error) {
	w, err := parseAttrs(a, true)
	if err != nil {
		return nil, err
	}
	src, dest := a.str("src"), a.str("dest")
	probe := fileProbe{sha256: true}
	script := probe.script(src) + "echo ---\n" + fileProbe{dirBase: path.Base(src), sha256: true}.script(dest)
	out, err := probeOrRun(ctx, env, script)
	if err != nil {
		return nil, err
	}
	first, second, _ := strings.Cut(string(out), "\n---\n")
	sst, err := parseFileState([]byte(first))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if sst.Type != "file" {
		return &Result{Failed: true, Msg: "src " + src + " is not a regular file on the host"}, nil
	}
	dst, err := parseFileState([]byte(second))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	data := map[string]any{"dest": dst.Path, "src": src, "sha256": sst.SHA256, "size": sst.Size, "state": "file"}
	if dst.Type == "file" && (dst.SHA256 == sst.SHA256 || !a.boolean("force", true)) {
		fix := w.fix(dst)
		if fix == "" {
			return &Result{Msg: "unchanged", Data: data}, nil
		}
		if _, err := mustRun(ctx, env, fix, false); err != nil {
			return resultFail(err, data)
		}
		return &Result{Changed: true, Msg: "attributes changed", Data: data}, nil
	}
	if w.Owner == "" && dst.Type == "file" {
		w.Owner = dst.Owner
	}
	if w.Group == "" && dst.Type == "file" {
		w.Group = dst.Group
	}
	if w.Preserve || !w.modeSet() {
		w.Mode, w.HasMode, w.Sym = sst.Mode, true, ""
		if dst.Type == "file" && !w.Preserve {
			w.Mode = dst.Mode
		}
	}
	tmp := path.Join(path.Dir(dst.Path), ".gokube-"+randHex()+"-"+path.Base(dst.Path))
	var b strings.Builder
	if a.boolean("backup", false) && dst.Type == "file" {
		bs, name := backupScript(dst.Path, time.Now())
		b.WriteString(bs + " && ")
		data["backup_file"] = name
	}
	fmt.Fprintf(&b, "cp -- %s %s", shq(src), shq(tmp))
	if fix := w.apply(shq(tmp)); fix != "" {
		b.WriteString(" && " + fix)
	}
	if v := a.str("validate"); v != "" {
		b.WriteString(" && " + strings.ReplaceAll(v, "%s", shq(tmp)))
	}
	fmt.Fprintf(&b, " && mv -f -- %s %s || { rc=$?; rm -f -- %s; exit $rc; }", shq(tmp), shq(dst.Path), shq(tmp))
	if _, err := mustRun(ctx, env, b.String(), false); err != nil {
		return resultFail(err, data)
	}
	return &Result{Changed: true, Data: data}, nil
}

// randHex names temporary files; collisions only matter within one
// directory at one moment.
func randHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
