package modules

// A file's wanted owner, group and mode (the file-like modules' common
// arguments): parsed, compared with what a probe found, and applied.

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"gokube/connection"
)

// attrs are the wanted owner, group and mode; empty/unset leave a file's
// current value alone.
type attrs struct {
	Owner   string
	Group   string
	Mode    uint32
	HasMode bool
	// Sym is a symbolic mode ("u=rw,g=r,o="), applied to the current mode.
	Sym string
	// Preserve (copy, template): the mode of the source file.
	Preserve bool
}

// parseAttrs reads owner, group and mode (octal, symbolic, or "preserve"
// where preserveOK).
func parseAttrs(a cargs, preserveOK bool) (attrs, error) {
	w := attrs{Owner: a.str("owner"), Group: a.str("group")}
	if s, ok := a.m["mode"].(string); ok {
		s = strings.TrimSpace(s)
		if s == "preserve" {
			if !preserveOK {
				return w, a.err("mode", "preserve is only valid for copy and template")
			}
			w.Preserve = true
			return w, nil
		}
		if s != "" && strings.Trim(s, "01234567") != "" && !strings.HasPrefix(s, "0o") {
			if _, err := applySymbolic(0, false, s); err != nil {
				return w, a.err("mode", "want an octal mode like \"0644\" or a symbolic one like \"u=rw,g=r,o=\": %v", err)
			}
			w.Sym = s
			return w, nil
		}
	}
	m, has, err := parseMode(a, "mode")
	if err != nil {
		return w, err
	}
	w.Mode, w.HasMode = m, has
	return w, nil
}

func (w attrs) modeSet() bool { return w.HasMode || w.Sym != "" }

// want is the mode a path whose mode is cur must get; ok=false when the
// task does not set a mode.
func (w attrs) want(cur uint32, isDir bool) (uint32, bool) {
	if w.HasMode {
		return w.Mode, true
	}
	if w.Sym != "" {
		m, err := applySymbolic(cur, isDir, w.Sym)
		return m, err == nil // validated by parseAttrs
	}
	return 0, false
}

// modeArg is the mode as chmod takes it; chmodArg is it quoted.
func (w attrs) modeArg() string {
	if w.HasMode {
		return modeString(w.Mode)
	}
	return w.Sym
}

func (w attrs) chmodArg() string {
	if w.HasMode {
		return modeString(w.Mode)
	}
	return shq(w.Sym)
}

// apply returns the commands that set every wanted attribute on a path
// this task creates (quoted is the path already quoted for the shell).
func (w attrs) apply(quoted string) string {
	var cmds []string
	switch {
	case w.Owner != "" && w.Group != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner+":"+w.Group)+" "+quoted)
	case w.Owner != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner)+" "+quoted)
	case w.Group != "":
		cmds = append(cmds, "chgrp -h -- "+shq(w.Group)+" "+quoted)
	}
	if w.modeSet() {
		cmds = append(cmds, "chmod -- "+w.chmodArg()+" "+quoted)
	}
	return strings.Join(cmds, " && ")
}

// ownerMatches compares a wanted user or group (name or number) with what
// the probe saw.
func ownerMatches(want, name string, id int) bool {
	if want == "" {
		return true
	}
	if n, err := strconv.Atoi(want); err == nil {
		return n == id
	}
	return want == name
}

// fix returns the shell commands that bring an existing path to these
// attributes, or "" when it already has them.
func (w attrs) fix(st *fileState) string {
	var cmds []string
	ownOK := ownerMatches(w.Owner, st.Owner, st.UID)
	grpOK := ownerMatches(w.Group, st.Group, st.GID)
	switch {
	case !ownOK && w.Group != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner+":"+w.Group)+" "+shq(st.Path))
	case !ownOK:
		cmds = append(cmds, "chown -h -- "+shq(w.Owner)+" "+shq(st.Path))
	case !grpOK:
		cmds = append(cmds, "chgrp -h -- "+shq(w.Group)+" "+shq(st.Path))
	}
	// chmod on a link would change its target; Linux links have no mode.
	if m, ok := w.want(st.Mode, st.Type == "directory"); ok && st.Mode != m && st.Type != "link" {
		cmds = append(cmds, "chmod -- "+modeString(m)+" "+shq(st.Path))
	}
	return strings.Join(cmds, " && ")
}

// upload places content at p atomically with the wanted attributes; unset
// ones keep the old file's values so a rewrite does not change ownership.
func upload(ctx context.Context, env *Env, p string, content []byte, w attrs, old *fileState) error {
	// Unset owner and group stay "": Put keeps the replaced file's then,
	// and starts no chown when the writer's are the same.
	mode, owner, group := uint32(0o644), w.Owner, w.Group
	if old != nil && old.Type == "file" {
		mode = old.Mode
	}
	if m, ok := w.want(mode, false); ok {
		mode = m
	}
	return env.Conn.Put(ctx, connection.Upload{
		Path: p, Content: bytes.NewReader(content), Size: int64(len(content)),
		Mode: mode, Owner: owner, Group: group,
		Become: env.Become, BecomeUser: env.BecomeUser,
	})
}
