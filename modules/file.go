package modules

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// fileModule manages a path's kind and attributes. The probe tells
// everything needed; a change is one more request.
type fileModule struct{}

func (fileModule) Spec() Spec {
	return Spec{
		Doc: "Sets a path's kind (file, directory, link, hard link, touched, absent) and its owner, group and mode. The probe tells everything; a change is one request.",
		Returns: map[string]string{
			"gid":   "gid",
			"group": "group",
			"mode":  "mode (\"0755\")",
			"owner": "owner",
			"path":  "the path",
			"size":  "size",
			"src":   "a link's target",
			"state": "its kind after the task",
			"uid":   "uid",
		},
		Args: map[string]Arg{
			"path":    {Type: String, Required: true, Aliases: []string{"dest", "name"}, Doc: "Path on the host."},
			"state":   {Type: String, Choices: []string{"file", "directory", "link", "hard", "touch", "absent"}, Doc: "file: must exist (attributes only); directory: made with parents; link/hard: a symbolic/hard link to src; touch: created or its times updated; absent: removed (recursively for a directory). Default: the path's current kind, or file."},
			"owner":   {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":   {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"mode":    {Type: Any, Kind: Mode, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
			"recurse": {Type: Bool, Doc: "With state directory: apply owner, group and mode to everything below.", Default: "no"},
			"src":     {Type: String, Doc: "Target of a link (state link or hard)."},
			"force":   {Type: Bool, Doc: "Replace a file by a link, or a link whose target differs.", Default: "no"},
			"follow":  {Type: Bool, Doc: "Attributes apply to a symlink's target rather than the link.", Default: "yes"},
		},
		RequiredIf: []Requirement{{If: "state", Is: "link", Need: []string{"src"}}, {If: "state", Is: "hard", Need: []string{"src"}}},
	}
}

func (m fileModule) probeScript(a cargs) string {
	p := a.str("path")
	st := a.str("state")
	follow := a.boolean("follow", true) && st != "link" && st != "hard" && st != "absent"
	s := fileProbe{follow: follow}.script(p)
	if a.boolean("recurse", false) {
		// Anything below the directory that differs from the wanted
		// owner, group or mode makes the recursive fix necessary.
		var conds []string
		if o := a.str("owner"); o != "" {
			conds = append(conds, "! -user "+shq(o))
		}
		if g := a.str("group"); g != "" {
			conds = append(conds, "! -group "+shq(g))
		}
		if md, ok, _ := parseMode(a, "mode"); ok {
			conds = append(conds, "! -perm "+modeString(md))
		}
		if len(conds) > 0 {
			s += fmt.Sprintf("if [ -d %s ]; then n=$(find -H %s -mindepth 1 \\( %s \\) -print -quit 2>&1); if [ -n \"$n\" ]; then echo recurse=1; fi; fi\n",
				shq(p), shq(p), strings.Join(conds, " -o "))
		}
	}
	if a.str("state") == "hard" && a.has("src") {
		s += "printf 'srcino=%s\\n' \"$(stat -c %d:%i -- " + shq(m.linkSrc(a)) + " 2>/dev/null)\"\n"
	}
	return s
}

// linkSrc resolves a relative hard link source against the link's dir.
func (fileModule) linkSrc(a cargs) string {
	src := a.str("src")
	if a.str("state") == "hard" && !path.IsAbs(src) {
		return path.Join(path.Dir(a.str("path")), src)
	}
	return src
}

// Pipelinable: a change is one write (a mkdir, a link, an attribute fix)
// whose output the result does not use.
func (fileModule) Pipelinable() {}

// ProbesOnlyPaths: the probe is the path's file probe, unless a recursive
// fix looks below it (find) or a hard link compares its source's inode.
func (m fileModule) ProbesOnlyPaths(args map[string]any) bool {
	a, err := parseArgs("file", m.Spec(), args)
	return err == nil && !a.boolean("recurse", false) && a.str("state") != "hard"
}

func (m fileModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("file", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return m.probeScript(a), true
}

// Run is long because it is one probe of the path and one switch over the
// state (absent, file, directory, touch, link, hard) that builds one
// script; the cases share the probe, the temporary name and the attribute
// fixing, and read best side by side.
func (m fileModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("file", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	w, err := parseAttrs(a, false)
	if err != nil {
		return nil, err
	}
	if w.Sym != "" && a.boolean("recurse", false) {
		return nil, a.err("mode", "recurse needs an octal mode (a symbolic one cannot be checked for the whole tree in one probe)")
	}
	p := a.str("path")
	state := a.str("state")
	out, err := probeOrRun(ctx, env, m.probeScript(a))
	if err != nil {
		return nil, err
	}
	st, err := parseFileState(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	kv := parseKV(out)
	if state == "" {
		state = "file"
		if st.Type == "directory" || st.Type == "link" {
			state = st.Type
		}
	}
	data := map[string]any{"path": p, "state": state}
	fail := func(format string, v ...any) (*Result, error) {
		return &Result{Failed: true, Msg: fmt.Sprintf(format, v...), Data: data}, nil
	}
	var script string
	recursive := false
	// touched: the paths the script creates or removes (Result.Touched);
	// nil where it edits an existing inode. newDirs: Result.NewDirs.
	var touched, newDirs []string
	qp := shq(p)
	tmpPath := path.Join(path.Dir(p), ".gokube-"+randHex()+"-"+path.Base(p))
	tmp := shq(tmpPath)
	// withAttrs appends the attributes for a path the script creates.
	withAttrs := func(s string) string {
		if fix := w.apply(qp); fix != "" {
			return s + " && " + fix
		}
		return s
	}
	switch state {
	case "absent":
		data["state"] = "absent"
		if st.Type != "absent" {
			script = "rm -rf -- " + qp
			touched = []string{p}
		}
	case "file":
		switch st.Type {
		case "absent":
			return fail("file (%s) is absent, cannot continue", p)
		case "directory":
			return fail("%s is a directory, not a file", p)
		}
		script = w.fix(st)
	case "directory":
		switch st.Type {
		case "absent":
			touched, newDirs = []string{p}, []string{p}
			switch {
			case w.HasMode && w.Mode&0o7000 == 0:
				// One process less: mkdir sets an octal mode itself (a
				// symbolic one is relative to the new directory's mode,
				// which chmod after mkdir gives; special bits are set
				// after chown, which may clear them).
				script = "mkdir -p -m " + modeString(w.Mode) + " -- " + qp
				if fix := (attrs{Owner: w.Owner, Group: w.Group}).apply(qp); fix != "" {
					// Where the parent exists, install -d makes the
					// directory with its owner, group and mode in one
					// process, not two (an unknown owner fails it before
					// anything is made). Missing parents it would make
					// 0755 whatever the umask: mkdir -p makes those.
					inst := "install -d -m " + modeString(w.Mode)
					if w.Owner != "" {
						inst += " -o " + shq(w.Owner)
					}
					if w.Group != "" {
						inst += " -g " + shq(w.Group)
					}
					script = "if [ -d " + shq(path.Dir(p)) + " ]; then " + inst + " -- " + qp + "; else " + script + " && " + fix + "; fi"
				}
			default:
				script = withAttrs("mkdir -p -- " + qp)
			}
		case "directory":
			script = w.fix(st)
			if a.boolean("recurse", false) && kv["recurse"] == "1" {
				script, recursive = recurseFix(w, st.Path), true
			}
		default:
			return fail("%s exists and is a %s, not a directory", p, st.Type)
		}
	case "touch":
		// Like Ansible: touch always updates the times, so it is changed.
		script = withAttrs("touch -- " + qp)
		if st.Type == "absent" {
			touched = []string{p}
		}
	case "link":
		src := a.str("src")
		data["src"] = src
		switch {
		case st.Type == "link" && st.Target == src:
			script = attrs{Owner: w.Owner, Group: w.Group}.fix(st)
		case st.Type == "absent" || st.Type == "link" || a.boolean("force", false) && st.Type == "file":
			if st.Type == "absent" {
				// symlink(2) makes the link whole or not at all: nothing
				// to rename over (one process less).
				script = fmt.Sprintf("ln -s -- %s %s", shq(src), qp)
				touched = []string{p}
			} else {
				script = fmt.Sprintf("ln -s -- %s %s && mv -Tf -- %s %s", shq(src), tmp, tmp, qp)
				touched = []string{p, tmpPath}
			}
			if w.Owner != "" || w.Group != "" {
				script += " && " + attrs{Owner: w.Owner, Group: w.Group}.apply(qp)
			}
		default:
			return fail("refusing to convert %s from %s to link (force=yes replaces a file)", p, st.Type)
		}
	case "hard":
		src := m.linkSrc(a)
		data["src"] = src
		if kv["srcino"] == "" && !env.Check {
			return fail("hard link source %s does not exist", src)
		}
		switch {
		case st.Type == "file" && st.Ino != "" && st.Ino == kv["srcino"]:
			script = w.fix(st)
		case st.Type == "absent" || st.Type == "file" && a.boolean("force", false) || st.Type == "link":
			script = withAttrs(fmt.Sprintf("ln -- %s %s && mv -f -- %s %s", shq(src), tmp, tmp, qp))
		default:
			return fail("refusing to replace %s (%s) with a hard link (force=yes replaces a file)", p, st.Type)
		}
	}
	if script == "" {
		fillStat(data, st)
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	// Short programs on the path alone, but a recursive change may walk a
	// large tree: that one stays in a subshell the cancellation kills.
	if _, err := mustRunChange(ctx, env, script, !recursive); err != nil {
		return resultFail(err, data)
	}
	if w.modeSet() {
		data["mode"] = w.modeArg()
	}
	res := &Result{Changed: true, Data: data, Touched: touched, NewDirs: newDirs}
	if env.Diff {
		res.Diff = fileDiff(st, state, w, a.str("src"))
	}
	return res, nil
}

// fileDiff describes the change of a path's kind and attributes.
func fileDiff(st *fileState, state string, w attrs, src string) string {
	before := map[string]string{"state": st.Type}
	after := map[string]string{"state": state}
	if state == "hard" {
		after["state"] = "file"
	}
	if st.Type != "absent" {
		before["mode"], before["owner"], before["group"] = modeString(st.Mode), st.Owner, st.Group
		if st.Type == "link" {
			before["src"] = st.Target
		}
	}
	if state != "absent" {
		base := st.Mode
		if st.Type == "absent" {
			base = 0o644
			if state == "directory" {
				base = 0o755
			}
		}
		if m, ok := w.want(base, state == "directory"); ok {
			after["mode"] = modeString(m)
		} else if st.Type != "absent" {
			after["mode"] = before["mode"]
		}
		after["owner"], after["group"] = before["owner"], before["group"]
		if w.Owner != "" {
			after["owner"] = w.Owner
		}
		if w.Group != "" {
			after["group"] = w.Group
		}
		if state == "link" {
			after["src"] = src
		}
	}
	return stateDiff(st.Path, []string{"state", "src", "mode", "owner", "group"}, before, after)
}

func recurseFix(w attrs, p string) string {
	var cmds []string
	switch {
	case w.Owner != "" && w.Group != "":
		cmds = append(cmds, "chown -R -- "+shq(w.Owner+":"+w.Group)+" "+shq(p))
	case w.Owner != "":
		cmds = append(cmds, "chown -R -- "+shq(w.Owner)+" "+shq(p))
	case w.Group != "":
		cmds = append(cmds, "chgrp -R -- "+shq(w.Group)+" "+shq(p))
	}
	if w.modeSet() {
		cmds = append(cmds, "chmod -R -- "+w.chmodArg()+" "+shq(p))
	}
	return strings.Join(cmds, " && ")
}

// fillStat adds what the probe saw to registered data.
func fillStat(data map[string]any, st *fileState) {
	if st.Type == "absent" {
		return
	}
	data["mode"] = modeString(st.Mode)
	data["owner"], data["group"] = st.Owner, st.Group
	data["uid"], data["gid"] = st.UID, st.GID
	data["size"] = st.Size
}
