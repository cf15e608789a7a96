package modules

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"gokube/connection"
)

// probeFile builds what the file probe prints for an existing regular file.
func probeFile(path string, content string, mode uint32, owner string) string {
	sum := sha256.Sum256([]byte(content))
	return fmt.Sprintf("path=%s\ntype=file\nmode=%o\nuid=0\ngid=0\nowner=%s\ngroup=%s\nsize=%d\nmtime=1700000000\nino=2049:77\nsha256=%s\ncontent=%s\n",
		path, mode, owner, owner, len(content), hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString([]byte(content)))
}

func probeAbsent(path string) string { return "path=" + path + "\ntype=absent\n" }

const probeMark = "printf 'path=%s"

func newEnv(c connection.Conn) *Env {
	return &Env{Conn: c, Host: "h1", Become: true, Render: func(name, text string) (string, error) {
		return strings.ReplaceAll(text, "{{ .x }}", "X"), nil
	}}
}

func mustRunModule(t *testing.T, m Module, env *Env, args map[string]any) *Result {
	t.Helper()
	res, err := m.Run(context.Background(), env, args)
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return res
}

// mutating returns the requests of a fake that were not read-only.
func mutating(f *connection.Fake) []connection.Request {
	var out []connection.Request
	for _, r := range f.Requests() {
		if !r.ReadOnly {
			out = append(out, r)
		}
	}
	return out
}

func TestCopyRoundTrips(t *testing.T) {
	args := map[string]any{"content": "hello\n", "dest": "/etc/x.conf", "mode": "0644"}
	t.Run("unchanged costs one read-only request", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/x.conf", "hello\n", 0o644, "root"))})
		res := mustRunModule(t, copyModule{}, newEnv(f), args)
		if res.Changed || res.Failed {
			t.Fatalf("want unchanged, got %+v", res)
		}
		if f.RoundTrips() != 1 || len(f.Uploads()) != 0 || len(mutating(f)) != 0 {
			t.Fatalf("round trips %d uploads %d mutating %d", f.RoundTrips(), len(f.Uploads()), len(mutating(f)))
		}
		if r := f.Requests()[0]; !r.ReadOnly || !r.Become {
			t.Fatalf("probe must be read-only with become: %+v", r)
		}
	})
	t.Run("unchanged with batched probe costs nothing", func(t *testing.T) {
		f := connection.NewFake("h1")
		script, ok := copyModule{}.Probe(args)
		if !ok || !strings.Contains(script, "sha256sum") {
			t.Fatalf("probe %q %v", script, ok)
		}
		env := newEnv(f)
		env.Probe = []byte(probeFile("/etc/x.conf", "hello\n", 0o644, "root"))
		if res := mustRunModule(t, copyModule{}, env, args); res.Changed {
			t.Fatal("changed")
		}
		if f.RoundTrips() != 0 {
			t.Fatalf("round trips %d, want 0", f.RoundTrips())
		}
	})
	t.Run("changed content costs one upload more", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/x.conf", "old\n", 0o600, "etcd"))})
		res := mustRunModule(t, copyModule{}, newEnv(f), map[string]any{"content": "hello\n", "dest": "/etc/x.conf"})
		if !res.Changed {
			t.Fatal("not changed")
		}
		ups := f.Uploads()
		if f.RoundTrips() != 2 || len(ups) != 1 {
			t.Fatalf("round trips %d uploads %d", f.RoundTrips(), len(ups))
		}
		// Unset mode keeps the old file's; unset owner is left to Put,
		// which keeps the replaced file's (no chown when it is the writer's).
		if u := ups[0]; string(u.Data) != "hello\n" || u.Mode != 0o600 || u.Owner != "" || !u.Become || u.Path != "/etc/x.conf" {
			t.Fatalf("upload %+v", u)
		}
	})
	t.Run("mode only costs one chmod", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/x.conf", "hello\n", 0o600, "root"))})
		res := mustRunModule(t, copyModule{}, newEnv(f), args)
		if !res.Changed || f.RoundTrips() != 2 || len(f.Uploads()) != 0 {
			t.Fatalf("changed %v round trips %d uploads %d", res.Changed, f.RoundTrips(), len(f.Uploads()))
		}
		if s := f.Requests()[1].Script; !strings.Contains(s, "chmod -- 0644 '/etc/x.conf'") {
			t.Fatalf("script %q", s)
		}
	})
	t.Run("become user reaches probe and upload", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/home/app/x"))})
		env := newEnv(f)
		env.BecomeUser = "app"
		mustRunModule(t, copyModule{}, env, map[string]any{"content": "a", "dest": "/home/app/x"})
		if r, u := f.Requests()[0], f.Uploads()[0]; r.BecomeUser != "app" || !r.Become || u.BecomeUser != "app" || !u.Become {
			t.Fatalf("request %+v upload %+v", r, u.Upload)
		}
	})
	t.Run("absent dest gets 0644", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/etc/x.conf"))})
		mustRunModule(t, copyModule{}, newEnv(f), map[string]any{"content": "a", "dest": "/etc/x.conf", "owner": "etcd"})
		if u := f.Uploads()[0]; u.Mode != 0o644 || u.Owner != "etcd" {
			t.Fatalf("upload %+v", u)
		}
	})
	t.Run("check mode predicts without writing", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/x.conf", "old\n", 0o644, "root"))})
		dry := connection.NewDry(f)
		env := newEnv(dry)
		env.Check = true
		res := mustRunModule(t, copyModule{}, env, args)
		if !res.Changed {
			t.Fatal("prediction: want changed")
		}
		if len(f.Uploads()) != 0 || len(mutating(f)) != 0 {
			t.Fatalf("check mode reached the host: %v %v", f.Uploads(), mutating(f))
		}
		if rec := dry.Recorded(); len(rec) != 1 || !strings.Contains(rec[0], "put (as root): /etc/x.conf") {
			t.Fatalf("recorded %q", rec)
		}
	})
	t.Run("diff fetches old content once", func(t *testing.T) {
		noContent := strings.Split(probeFile("/etc/x.conf", "old\n", 0o644, "root"), "content=")[0]
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(noContent)})
		f.SetFile("/etc/x.conf", []byte("old\n"), 0o644)
		env := newEnv(f)
		env.Diff = true
		res := mustRunModule(t, copyModule{}, env, args)
		if f.RoundTrips() != 3 {
			t.Fatalf("round trips %d, want 3 (probe, get, put)", f.RoundTrips())
		}
		if !strings.HasSuffix(res.Diff, "@@ -1 +1 @@\n-old\n+hello\n") {
			t.Fatalf("diff:\n%s", res.Diff)
		}
		for _, want := range []string{"--- before: /etc/x.conf", "+++ after: /etc/x.conf", "-old", "+hello"} {
			if !strings.Contains(res.Diff, want) {
				t.Fatalf("diff lacks %q:\n%s", want, res.Diff)
			}
		}
	})
	t.Run("dest directory takes basename of src", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/opt/bin/tool"))})
		env := newEnv(f)
		env.Files = []fs.FS{fstest.MapFS{"sub/tool": {Data: []byte("bin")}}}
		mustRunModule(t, copyModule{}, env, map[string]any{"src": "sub/tool", "dest": "/opt/bin/"})
		if s := f.Requests()[0].Script; !strings.Contains(s, `p="$p"'tool'`) {
			t.Fatalf("probe does not look into the directory: %s", s)
		}
		if u := f.Uploads()[0]; u.Path != "/opt/bin/tool" || string(u.Data) != "bin" {
			t.Fatalf("upload %+v", u)
		}
	})
	t.Run("missing src fails, but is predicted in check mode", func(t *testing.T) {
		f := connection.NewFake("h1")
		args := map[string]any{"src": "/nonexistent/pki/ca.pem", "dest": "/etc/ca.pem"}
		var ae *ArgError
		if _, err := (copyModule{}).Run(context.Background(), newEnv(f), args); !errors.As(err, &ae) || ae.Key != "src" {
			t.Fatalf("err %v", err)
		}
		env := newEnv(connection.NewDry(f))
		env.Check = true
		if res := mustRunModule(t, copyModule{}, env, args); !res.Changed || f.RoundTrips() != 0 {
			t.Fatalf("check: %+v", res)
		}
	})
	t.Run("src from the artifact cache", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "tool"), []byte("T"), 0o644)
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/x"))})
		env := newEnv(f)
		env.ArtifactDir = dir
		mustRunModule(t, copyModule{}, env, map[string]any{"src": "tool", "dest": "/x"})
		if string(f.Uploads()[0].Data) != "T" {
			t.Fatal("artifact not used")
		}
	})
	t.Run("backup copies before upload", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/x.conf", "old\n", 0o644, "root"))})
		res := mustRunModule(t, copyModule{}, newEnv(f), map[string]any{"content": "new", "dest": "/etc/x.conf", "backup": true})
		if m := mutating(f); len(m) != 1 || !strings.HasPrefix(m[0].Script, "cp -p -- '/etc/x.conf' '/etc/x.conf.") {
			t.Fatalf("backup %+v", m)
		}
		if res.Data["backup_file"] == nil {
			t.Fatal("no backup_file")
		}
	})
}

func TestTemplate(t *testing.T) {
	files := []fs.FS{fstest.MapFS{"unit.service.j2": {Data: []byte("ExecStart={{ .x }}\n")}}, fstest.MapFS{"unit.service.j2": {Data: []byte("second")}}}
	rendered := "ExecStart=X\n"
	t.Run("unchanged", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/u.service", rendered, 0o644, "root"))})
		env := newEnv(f)
		env.Files = files
		res := mustRunModule(t, copyModule{template: true}, env, map[string]any{"src": "unit.service.j2", "dest": "/etc/u.service"})
		if res.Changed || f.RoundTrips() != 1 {
			t.Fatalf("changed %v rt %d", res.Changed, f.RoundTrips())
		}
	})
	t.Run("validate runs on a temp file then moves it", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/etc/u.service"))})
		env := newEnv(f)
		env.Files = files
		res := mustRunModule(t, copyModule{template: true}, env, map[string]any{"src": "unit.service.j2", "dest": "/etc/u.service", "validate": "systemd-analyze verify %s"})
		if !res.Changed || res.Failed {
			t.Fatalf("%+v", res)
		}
		up := f.Uploads()[0]
		if !strings.HasPrefix(up.Path, "/etc/.gokube-") || !strings.HasSuffix(up.Path, "-u.service") || string(up.Data) != rendered {
			t.Fatalf("upload %+v", up)
		}
		s := mutating(f)[0].Script
		if !strings.Contains(s, "systemd-analyze verify '"+up.Path+"' && mv -f -- '"+up.Path+"' '/etc/u.service'") {
			t.Fatalf("validate script %q", s)
		}
	})
	t.Run("failed validation fails the task", func(t *testing.T) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/etc/u.service"))}).
			On("systemd-analyze", connection.Result{RC: 1, Stderr: []byte("bad unit")})
		env := newEnv(f)
		env.Files = files
		res := mustRunModule(t, copyModule{template: true}, env, map[string]any{"src": "unit.service.j2", "dest": "/etc/u.service", "validate": "systemd-analyze verify %s"})
		if !res.Failed || res.Changed || !strings.Contains(res.Msg, "bad unit") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("render error names the file", func(t *testing.T) {
		env := newEnv(connection.NewFake("h1"))
		env.Files = files
		env.Render = func(name, text string) (string, error) { return "", fmt.Errorf("%s:1: no such key", name) }
		_, err := copyModule{template: true}.Run(context.Background(), env, map[string]any{"src": "unit.service.j2", "dest": "/etc/u"})
		if err == nil || !strings.Contains(err.Error(), "unit.service.j2:1") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("missing src is an argument error", func(t *testing.T) {
		env := newEnv(connection.NewFake("h1"))
		env.Files = files
		_, err := copyModule{template: true}.Run(context.Background(), env, map[string]any{"src": "nope.j2", "dest": "/etc/u"})
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != "src" {
			t.Fatalf("err %v", err)
		}
	})
}

func TestFileRoundTrips(t *testing.T) {
	dirProbe := "path=/var/lib/etcd\ntype=directory\nmode=700\nuid=0\ngid=0\nowner=root\ngroup=root\nsize=4096\nmtime=1\nino=1:2\n"
	args := map[string]any{"path": "/var/lib/etcd", "state": "directory", "mode": "0700", "owner": "root"}
	f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(dirProbe)})
	if res := mustRunModule(t, fileModule{}, newEnv(f), args); res.Changed || f.RoundTrips() != 1 {
		t.Fatalf("unchanged dir: changed %v rt %d", res.Changed, f.RoundTrips())
	}
	f = connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/var/lib/etcd"))})
	res := mustRunModule(t, fileModule{}, newEnv(f), args)
	m := mutating(f)
	if !res.Changed || f.RoundTrips() != 2 || len(m) != 1 || m[0].Script != "if [ -d '/var/lib' ]; then install -d -m 0700 -o 'root' -- '/var/lib/etcd'; else mkdir -p -m 0700 -- '/var/lib/etcd' && chown -h -- 'root' '/var/lib/etcd'; fi" {
		t.Fatalf("create dir: %v rt %d %+v", res.Changed, f.RoundTrips(), m)
	}
	// Check mode: same prediction, nothing mutating reaches the host.
	f.Reset()
	env := newEnv(connection.NewDry(f))
	env.Check = true
	if res := mustRunModule(t, fileModule{}, env, args); !res.Changed || len(mutating(f)) != 0 {
		t.Fatalf("check: %v %v", res.Changed, mutating(f))
	}
	// A file where a directory is wanted fails, without touching it.
	f = connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/var/lib/etcd", "x", 0o644, "root"))})
	if res := mustRunModule(t, fileModule{}, newEnv(f), args); !res.Failed || len(mutating(f)) != 0 {
		t.Fatalf("file as dir: %+v", res)
	}
}

func TestStateDiffs(t *testing.T) {
	f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/d"))})
	env := newEnv(f)
	env.Diff = true
	res := mustRunModule(t, fileModule{}, env, map[string]any{"path": "/d", "state": "directory", "mode": "0750", "owner": "etcd"})
	for _, want := range []string{"-state: absent\n", "+state: directory\n", "+mode: 0750\n", "+owner: etcd\n"} {
		if !strings.Contains(res.Diff, want) {
			t.Fatalf("file diff lacks %q:\n%s", want, res.Diff)
		}
	}
	f = connection.NewFake("h1").On("systemctl show", connection.Result{Stdout: []byte("LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n")})
	env = newEnv(f)
	env.Diff = true
	res = mustRunModule(t, systemdModule{alias: "systemd"}, env, map[string]any{"name": "etcd", "state": "started", "enabled": true})
	for _, want := range []string{"-active: inactive\n", "+active: active\n", "-unit file: disabled\n", "+unit file: enabled\n"} {
		if !strings.Contains(res.Diff, want) {
			t.Fatalf("systemd diff lacks %q:\n%s", want, res.Diff)
		}
	}
}

func TestFileStates(t *testing.T) {
	cases := []struct {
		name  string
		probe string
		args  map[string]any
		want  string // mutating script, "" for unchanged
		fail  bool
	}{
		{"absent removes", probeFile("/x", "a", 0o644, "root"), map[string]any{"path": "/x", "state": "absent"}, "rm -rf -- '/x'", false},
		{"absent already", probeAbsent("/x"), map[string]any{"path": "/x", "state": "absent"}, "", false},
		{"link created", probeAbsent("/x"), map[string]any{"path": "/x", "state": "link", "src": "/y"}, "ln -s -- '/y' '/x'", false},
		{"link same", "path=/x\ntype=link\nmode=777\nuid=0\ngid=0\nowner=root\ngroup=root\nsize=2\nmtime=1\ntarget=/y\n", map[string]any{"path": "/x", "state": "link", "src": "/y"}, "", false},
		{"link over file refused", probeFile("/x", "a", 0o644, "root"), map[string]any{"path": "/x", "state": "link", "src": "/y"}, "", true},
		{"hard same inode", probeFile("/x", "a", 0o644, "root") + "srcino=2049:77\n", map[string]any{"path": "/x", "state": "hard", "src": "/y"}, "", false},
		{"hard new", probeAbsent("/x") + "srcino=2049:5\n", map[string]any{"path": "/x", "state": "hard", "src": "/y"}, "ln -- '/y' '/.gokube-", false},
		{"file absent fails", probeAbsent("/x"), map[string]any{"path": "/x", "state": "file"}, "", true},
		{"touch always changes", probeFile("/x", "a", 0o644, "root"), map[string]any{"path": "/x", "state": "touch"}, "touch -- '/x'", false},
		{"recurse mismatch", "path=/d\ntype=directory\nmode=755\nuid=0\ngid=0\nowner=root\ngroup=root\nsize=1\nmtime=1\nrecurse=1\n", map[string]any{"dest": "/d", "state": "directory", "recurse": true, "owner": "etcd", "mode": 0o750}, "chown -R -- 'etcd' '/d' && chmod -R -- 0750 '/d'", false},
		{"group only", probeFile("/x", "a", 0o644, "root"), map[string]any{"name": "/x", "group": "etcd"}, "chgrp -h -- 'etcd' '/x'", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(c.probe)})
			res := mustRunModule(t, fileModule{}, newEnv(f), c.args)
			if res.Failed != c.fail {
				t.Fatalf("failed=%v msg %q", res.Failed, res.Msg)
			}
			m := mutating(f)
			if c.want == "" {
				if len(m) != 0 || res.Changed {
					t.Fatalf("want unchanged, got %+v", m)
				}
				return
			}
			if len(m) != 1 || !strings.HasPrefix(m[0].Script, c.want) || !res.Changed {
				t.Fatalf("want %q, got %+v", c.want, m)
			}
			// Short programs run in the session's shell; a recursive
			// change, which may walk a large tree, in a subshell a
			// cancellation kills at once.
			if inline := !strings.Contains(c.want, " -R "); m[0].Inline != inline {
				t.Errorf("Inline = %v, want %v", m[0].Inline, inline)
			}
		})
	}
}

// Probe output parsing never panics and rejects output without a type.
func FuzzParseFileState(f *testing.F) {
	f.Add(probeFile("/x", "abc", 0o644, "root"))
	f.Add(probeAbsent("/x"))
	f.Add("type=file\nmode=zz\n")
	f.Add("type=link\nmode=777\ncontent=%%%\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseFileState([]byte(s))
		if err == nil && st.Type == "" {
			t.Fatal("state without type accepted")
		}
	})
}

func TestLineInFile(t *testing.T) {
	text := "a=1\n# port=1\nb=2\n"
	cases := []struct {
		name string
		args map[string]any
		want string // new content, "" when unchanged
	}{
		{"replace last match", map[string]any{"regexp": "^#? ?port=", "line": "port=2379"}, "a=1\nport=2379\nb=2\n"},
		{"present already", map[string]any{"line": "b=2"}, ""},
		{"regexp matches same", map[string]any{"regexp": "^b=", "line": "b=2"}, ""},
		{"append", map[string]any{"line": "c=3"}, "a=1\n# port=1\nb=2\nc=3\n"},
		{"insertafter", map[string]any{"line": "z", "insertafter": "^a="}, "a=1\nz\n# port=1\nb=2\n"},
		{"insertbefore BOF", map[string]any{"line": "z", "insertbefore": "BOF"}, "z\na=1\n# port=1\nb=2\n"},
		{"insertbefore no match appends", map[string]any{"line": "z", "insertbefore": "^nomatch"}, "a=1\n# port=1\nb=2\nz\n"},
		{"absent regexp", map[string]any{"regexp": "^a=", "state": "absent"}, "# port=1\nb=2\n"},
		{"absent line", map[string]any{"line": "b=2", "state": "absent"}, "a=1\n# port=1\n"},
		{"absent nothing", map[string]any{"regexp": "^zz", "state": "absent"}, ""},
		{"backrefs", map[string]any{"regexp": `^a=(\d+)$`, "line": `a=\1\1$`, "backrefs": true}, "a=11$\n# port=1\nb=2\n"},
		{"backrefs no match", map[string]any{"regexp": `^q=(\d)`, "line": `x`, "backrefs": true}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/f", text, 0o640, "root"))})
			c.args["path"] = "/etc/f"
			res := mustRunModule(t, lineInFile{}, newEnv(f), c.args)
			if c.want == "" {
				if res.Changed || f.RoundTrips() != 1 {
					t.Fatalf("want unchanged: %+v rt %d", res, f.RoundTrips())
				}
				return
			}
			ups := f.Uploads()
			if !res.Changed || len(ups) != 1 || f.RoundTrips() != 2 {
				t.Fatalf("want one upload: %+v", res)
			}
			if string(ups[0].Data) != c.want || ups[0].Mode != 0o640 {
				t.Fatalf("got %q mode %o, want %q", ups[0].Data, ups[0].Mode, c.want)
			}
		})
	}
	// No trailing newline: the added line starts on its own line.
	f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/f", "a", 0o644, "root"))})
	mustRunModule(t, lineInFile{}, newEnv(f), map[string]any{"path": "/etc/f", "line": "b"})
	if got := string(f.Uploads()[0].Data); got != "a\nb\n" {
		t.Fatalf("got %q", got)
	}
	// Missing file: fail unless create.
	f = connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/etc/f"))})
	if res := mustRunModule(t, lineInFile{}, newEnv(f), map[string]any{"path": "/etc/f", "line": "b"}); !res.Failed {
		t.Fatal("missing file did not fail")
	}
	mustRunModule(t, lineInFile{}, newEnv(f), map[string]any{"path": "/etc/f", "line": "b", "create": true})
	if got := string(f.Uploads()[0].Data); got != "b\n" {
		t.Fatalf("create: %q", got)
	}
}

func TestBlockInFile(t *testing.T) {
	text := "head\n# BEGIN ANSIBLE MANAGED BLOCK\nold\n# END ANSIBLE MANAGED BLOCK\ntail\n"
	run := func(args map[string]any) (*Result, *connection.Fake) {
		f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/etc/f", text, 0o644, "root"))})
		args["path"] = "/etc/f"
		return mustRunModule(t, blockInFile{}, newEnv(f), args), f
	}
	res, f := run(map[string]any{"block": "new1\nnew2"})
	if got := string(f.Uploads()[0].Data); !res.Changed || got != "head\n# BEGIN ANSIBLE MANAGED BLOCK\nnew1\nnew2\n# END ANSIBLE MANAGED BLOCK\ntail\n" {
		t.Fatalf("replace: %q", got)
	}
	if res, f := run(map[string]any{"block": "old\n"}); res.Changed || len(f.Uploads()) != 0 {
		t.Fatal("same block changed")
	}
	if _, f := run(map[string]any{"state": "absent"}); string(f.Uploads()[0].Data) != "head\ntail\n" {
		t.Fatalf("absent: %q", f.Uploads()[0].Data)
	}
	_, f = run(map[string]any{"block": "x", "marker": "## {mark} k8s", "insertbefore": "^tail"})
	if got := string(f.Uploads()[0].Data); got != "head\n# BEGIN ANSIBLE MANAGED BLOCK\nold\n# END ANSIBLE MANAGED BLOCK\n## BEGIN k8s\nx\n## END k8s\ntail\n" {
		t.Fatalf("insert: %q", got)
	}
}

// lineinfile and blockinfile are idempotent: applying the same task to
// their own result changes nothing (when the regexp matches the line, as
// Ansible requires too).
func FuzzLineInFileIdempotent(f *testing.F) {
	f.Add("a=1\nb=2\n", "b=3", 2, false)
	f.Add("", "x", 1, true)
	f.Add("no newline", "no newline at all", 3, false)
	f.Add("k=v\nk=w\n", "k=z", 2, true)
	f.Fuzz(func(t *testing.T, text, line string, prefix int, block bool) {
		if strings.ContainsAny(line, "\r\n") || line == "" || strings.Contains(text, "\r") {
			return
		}
		if prefix < 1 || prefix > len(line) {
			prefix = len(line)
		}
		if !utf8.ValidString(line[:prefix]) {
			return
		}
		var m Module = lineInFile{}
		args := map[string]any{"path": "/f", "line": line, "regexp": "^" + regexp.QuoteMeta(line[:prefix])}
		if block {
			m = blockInFile{}
			args = map[string]any{"path": "/f", "block": line}
		}
		apply := func(content string) (string, bool) {
			fk := connection.NewFake("h").On(probeMark, connection.Result{Stdout: []byte(probeFile("/f", content, 0o644, "root"))})
			res, err := m.Run(context.Background(), newEnv(fk), args)
			if err != nil || res.Failed {
				t.Fatalf("%q: %+v %v", content, res, err)
			}
			if ups := fk.Uploads(); len(ups) == 1 {
				return string(ups[0].Data), res.Changed
			}
			return content, res.Changed
		}
		once, _ := apply(text)
		twice, changed := apply(once)
		if changed || twice != once {
			t.Fatalf("not idempotent: %q -> %q -> %q", text, once, twice)
		}
		if !strings.Contains(once, line) {
			t.Fatalf("line %q missing from %q", line, once)
		}
	})
}

func TestStat(t *testing.T) {
	f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(
		"path=/etc/x\ntype=file\nmode=640\nuid=0\ngid=5\nowner=root\ngroup=tty\nsize=3\nmtime=1700000000\nino=1:2\nsha1=a9993e364706816aba3e25717850c26c9cd0d89d\n")})
	res := mustRunModule(t, statModule{}, newEnv(f), map[string]any{"path": "/etc/x"})
	st := res.Data["stat"].(map[string]any)
	if st["exists"] != true || st["mode"] != "0640" || st["isreg"] != true || st["isdir"] != false || st["gr_name"] != "tty" || st["gid"] != 5 ||
		st["checksum"] != "a9993e364706816aba3e25717850c26c9cd0d89d" || st["size"] != int64(3) || res.Changed || !f.Requests()[0].ReadOnly {
		t.Fatalf("stat %v", st)
	}
	f = connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/nope"))})
	if st := mustRunModule(t, statModule{}, newEnv(f), map[string]any{"path": "/nope"}).Data["stat"].(map[string]any); st["exists"] != false {
		t.Fatalf("absent: %v", st)
	}
	if s, _ := (statModule{}).Probe(map[string]any{"path": "/x", "get_checksum": false}); strings.Contains(s, "gk_sha1 \"") || !strings.Contains(s, " 0\n") {
		t.Fatal("checksum computed though get_checksum=false")
	}
	if s, _ := (statModule{}).Probe(map[string]any{"path": "/x"}); !strings.Contains(s, "gk_sha1 \"") || !strings.Contains(s, " "+sumSHA1+"\n") {
		t.Fatal("sha1 not asked for by default")
	}
}

func TestSlurp(t *testing.T) {
	f := connection.NewFake("h1").On("base64 -w0", connection.Result{Stdout: []byte("aGk=\n")})
	res := mustRunModule(t, slurpModule{}, newEnv(f), map[string]any{"src": "/etc/hostname"})
	if res.Data["content"] != "aGk=" || res.Data["encoding"] != "base64" || !f.Requests()[0].ReadOnly {
		t.Fatalf("%+v", res)
	}
}

func TestFetch(t *testing.T) {
	dir := t.TempDir()
	f := connection.NewFake("h1").SetFile("/etc/etcd/ca.pem", []byte("CA"), 0o644)
	res := mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/etc/etcd/ca.pem", "dest": dir})
	want := filepath.Join(dir, "h1", "etc", "etcd", "ca.pem")
	if b, err := os.ReadFile(want); err != nil || string(b) != "CA" || !res.Changed || res.Data["dest"] != want {
		t.Fatalf("fetch: %q %v %+v", b, err, res)
	}
	if res := mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/etc/etcd/ca.pem", "dest": dir}); res.Changed {
		t.Fatal("fetch not idempotent")
	}
	// Fetched files are often credentials: 0600 in 0700 directories,
	// whatever the host's mode (0644 here) and the umask.
	for p, want := range map[string]os.FileMode{want: 0o600, filepath.Dir(want): 0o700, filepath.Join(dir, "h1"): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, want %v (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	// mode is honoured (octal or symbolic on 0600), and a mode change alone
	// is a change.
	for _, c := range []struct {
		mode any
		want os.FileMode
	}{{"0640", 0o640}, {0o600, 0o600}, {"g+r", 0o640}, {"u=r,go=", 0o400}} {
		mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/etc/etcd/ca.pem", "dest": dir, "mode": "0644"})
		res := mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/etc/etcd/ca.pem", "dest": dir, "mode": c.mode})
		if st, err := os.Stat(want); err != nil || st.Mode().Perm() != c.want || !res.Changed || res.Data["mode"] != modeString(uint32(c.want)) {
			t.Fatalf("mode %v: got %v changed=%v, want %v", c.mode, st.Mode().Perm(), res.Changed, c.want)
		}
	}
	// Check mode reads (read-only) but writes nothing on the control machine.
	env := newEnv(connection.NewDry(f))
	env.Check = true
	flat := filepath.Join(dir, "flat.pem")
	if res := mustRunModule(t, fetchModule{}, env, map[string]any{"src": "/etc/etcd/ca.pem", "dest": flat, "flat": true}); !res.Changed {
		t.Fatal("check prediction")
	}
	if _, err := os.Stat(flat); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("check mode wrote %s", flat)
	}
	// Missing file: failure, or ok with fail_on_missing: no.
	if res := mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/nope", "dest": dir}); !res.Failed {
		t.Fatal("missing src did not fail")
	}
	if res := mustRunModule(t, fetchModule{}, newEnv(f), map[string]any{"src": "/nope", "dest": dir, "fail_on_missing": false}); res.Failed || res.Changed {
		t.Fatal("fail_on_missing: no")
	}
}

// A lost connection is an error that says unreachable, never a failed or
// ok result, so the executor reports the host UNREACHABLE.
func TestUnreachablePropagates(t *testing.T) {
	r := NewRegistry()
	cases := map[string]map[string]any{
		"copy":       {"content": "a", "dest": "/x"},
		"template":   {"src": "t.j2", "dest": "/x"},
		"file":       {"path": "/x", "state": "directory"},
		"lineinfile": {"path": "/x", "line": "a"},
		"stat":       {"path": "/x"},
		"slurp":      {"src": "/x"},
		"systemd":    {"name": "etcd", "state": "started"},
		"command":    {"cmd": "true"},
		"wait_for":   {"port": 22},
		"user":       {"name": "u"},
		"group":      {"name": "g"},
		"get_url":    {"url": "https://x.invalid/a", "dest": "/x"},
		"fetch":      {"src": "/x", "dest": "/tmp/none", "fail_on_missing": false},
		"package":    {"name": []any{"curl", "less"}},
		"apt":        {"name": "curl", "state": "latest", "update_cache": true},
	}
	for name, args := range cases {
		f := connection.NewFake("h1").SetUnreachable(errors.New("connection reset"))
		env := newEnv(f)
		env.Files = []fs.FS{fstest.MapFS{"t.j2": {Data: []byte("x")}}}
		m, _ := r.Lookup(name)
		res, err := m.Run(context.Background(), env, args)
		if !connection.IsUnreachable(err) || res != nil {
			t.Errorf("%s: got %+v, %v; want an unreachable error", name, res, err)
		}
	}
}

// stat's follow describes a link's target; without it, the link itself
// (Ansible's default), on a real local shell.
func TestStatFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("abc"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	env := newEnv(connection.NewLocal("h1"))
	env.Become = false
	st := mustRunModule(t, statModule{}, env, map[string]any{"path": link}).Data["stat"].(map[string]any)
	if st["islnk"] != true || st["isreg"] == true {
		t.Fatalf("without follow: %v", st)
	}
	st = mustRunModule(t, statModule{}, env, map[string]any{"path": link, "follow": true}).Data["stat"].(map[string]any)
	if st["islnk"] == true || st["isreg"] != true || st["mode"] != "0640" || st["size"] != int64(3) {
		t.Fatalf("with follow: %v", st)
	}
}
