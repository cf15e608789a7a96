package modules

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// srcDir reports whether copy's src names a directory on the control
// machine (searched like readSrc) and returns it as an fs.FS and root.
func srcDir(env *Env, src string) (fs.FS, string, bool) {
	if filepath.IsAbs(src) {
		if fi, err := os.Stat(src); err == nil && fi.IsDir() {
			return os.DirFS(src), ".", true
		}
		return nil, "", false
	}
	name := path.Clean(filepath.ToSlash(src))
	if !fs.ValidPath(name) {
		return nil, "", false
	}
	for _, fsys := range env.Files {
		if fi, err := fs.Stat(fsys, name); err == nil {
			return fsys, name, fi.IsDir()
		}
	}
	if env.ArtifactDir != "" {
		fsys := os.DirFS(env.ArtifactDir)
		if fi, err := fs.Stat(fsys, name); err == nil && fi.IsDir() {
			return fsys, name, true
		}
	}
	return nil, "", false
}

// copyDir copies a directory tree like Ansible: src "dir" lands in
// dest/dir, src "dir/" puts the contents into dest. One probe request
// describes every file; missing directories are made in one request; each
// changed file is one upload (or one attribute fix). The listing, the
// directories and the uploads share one probe's answer, which is why it
// is one function.
func copyDir(ctx context.Context, env *Env, a cargs, fsys fs.FS, root string, w attrs) (*Result, error) {
	if a.has("validate") {
		return nil, a.err("validate", "not supported when src is a directory")
	}
	dmode, hasDMode, err := parseMode(a, "directory_mode")
	if err != nil {
		return nil, err
	}
	base := a.str("dest")
	if !strings.HasSuffix(a.str("src"), "/") {
		base = path.Join(base, path.Base(strings.TrimSuffix(filepath.ToSlash(a.str("src")), "/")))
	}
	type entry struct {
		rel  string
		data []byte
		perm fs.FileMode
	}
	var dirs []string
	var files []entry
	err = fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if root == "." {
			rel = p
		}
		switch {
		case d.IsDir():
			if rel != "" && rel != "." {
				dirs = append(dirs, rel)
			}
		case d.Type().IsRegular():
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			perm := fs.FileMode(0o644)
			if fi, err := d.Info(); err == nil {
				perm = fi.Mode().Perm()
			}
			files = append(files, entry{rel, data, perm})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy src %s: %w", a.str("src"), err)
	}
	sort.Strings(dirs)
	const sep = "@@gokube-entry@@"
	var probe strings.Builder
	fmt.Fprintf(&probe, "[ -d %s ] || echo missing=.\n", shq(base))
	for _, d := range dirs {
		fmt.Fprintf(&probe, "[ -d %s ] || echo missing=%s\n", shq(path.Join(base, d)), d)
	}
	for _, f := range files {
		probe.WriteString("echo " + sep + "\n")
		probe.WriteString(fileProbe{sha256: true}.script(path.Join(base, f.rel)))
	}
	// The tree's listing is not known before Run, so the executor's batched
	// probe (of dest alone) does not apply: always look here.
	r, err := mustRun(ctx, env, probe.String(), true)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	parts := strings.Split(string(r.Stdout), sep+"\n")
	if len(parts) != len(files)+1 {
		return nil, fmt.Errorf("copy %s: probe returned %d entries for %d files", a.str("src"), len(parts)-1, len(files))
	}
	data := map[string]any{"dest": base, "src": a.str("src"), "files": len(files)}
	res := &Result{Data: data}
	var missing []string
	for _, line := range strings.Split(parts[0], "\n") {
		if m, ok := strings.CutPrefix(line, "missing="); ok {
			missing = append(missing, path.Join(base, m))
		}
	}
	if len(missing) > 0 {
		var b strings.Builder
		for _, d := range missing {
			b.WriteString("mkdir -p -- " + shq(d))
			dw := attrs{Owner: w.Owner, Group: w.Group, Mode: dmode, HasMode: hasDMode}
			if fix := dw.apply(shq(d)); fix != "" {
				b.WriteString(" && " + fix)
			}
			b.WriteString(" &&\n")
		}
		b.WriteString("true")
		if _, err := mustRun(ctx, env, b.String(), false); err != nil {
			return resultFail(err, data)
		}
		res.Changed = true
	}
	var changed []string
	var diffs []string
	for i, f := range files {
		st, err := parseFileState([]byte(parts[i+1]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Join(base, f.rel), err)
		}
		fw := w
		if fw.Preserve {
			fw.Mode, fw.HasMode, fw.Preserve = uint32(f.perm), true, false
		}
		r, err := writeFile(ctx, env, a, st, f.data, fw)
		if err != nil {
			return nil, err
		}
		if r.Failed {
			r.Data = data
			return r, nil
		}
		if r.Changed {
			res.Changed = true
			changed = append(changed, f.rel)
			if r.Diff != "" {
				diffs = append(diffs, r.Diff)
			}
		}
	}
	data["changed_files"] = changed
	res.Diff = strings.Join(diffs, "")
	if !res.Changed {
		res.Msg = "unchanged"
	}
	return res, nil
}
