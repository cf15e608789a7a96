package modules

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"gokube/connection"
	"gokube/internal/labtest"
)

// These tests run the modules for real: against the control machine
// (connection.NewLocal, in a temp dir) always, and against the first lab
// host over SSH when GOKUBE_LAB_DIR names a running lab. They check the
// host's state with separate commands, run again (changed=false) and run
// check mode on fresh paths (nothing changes, the prediction is right).

type target struct {
	name string
	conn connection.Conn
	dir  string // scratch directory on the host
	lab  bool   // systemd and account tests only run on lab hosts
}

func targets(t testing.TB) []*target {
	t.Helper()
	local := &target{name: "local", conn: connection.NewLocal("local"), dir: t.TempDir()}
	out := []*target{local}
	l := labtest.FromEnv(t)
	if l == nil {
		return out
	}
	hosts := l.Hosts()
	if len(hosts) == 0 {
		t.Fatal("lab has no hosts")
	}
	h := hosts[0]
	c := labtest.Dial(t, l, h)
	tg := &target{name: h.Name, conn: c, lab: true}
	tg.dir = strings.TrimSpace(hostSh(t, tg, "mktemp -d /tmp/gkmod.XXXXXX"))
	t.Cleanup(func() { hostSh(t, tg, "rm -rf -- "+shq(tg.dir)) })
	return append(out, tg)
}

// hostSh runs a script as root on the target, for checking its state.
func hostSh(t testing.TB, tg *target, script string) string {
	t.Helper()
	r, err := tg.conn.Run(context.Background(), connection.Request{Script: script, Become: true})
	if err != nil || r.RC != 0 {
		t.Fatalf("%s: %q: rc %d err %v: %s", tg.name, script, r.RC, err, r.Stderr)
	}
	return string(r.Stdout)
}

func (tg *target) env() *Env {
	return &Env{Conn: tg.conn, Host: tg.name, Become: true, Render: func(name, text string) (string, error) {
		return strings.ReplaceAll(text, "{{ .x }}", "X"), nil
	}}
}

func (tg *target) checkEnv() (*Env, *connection.Dry) {
	d := connection.NewDry(tg.conn)
	e := tg.env()
	e.Conn, e.Check = d, true
	return e, d
}

// figures collects round trips per scenario for the report.
type figures struct{ rows []string }

func (f *figures) add(format string, v ...any) { f.rows = append(f.rows, fmt.Sprintf(format, v...)) }

// runRT runs a module and returns its result and the round trips it made.
func runRT(t *testing.T, m Module, env *Env, args map[string]any) (*Result, int64) {
	t.Helper()
	before := env.Conn.RoundTrips()
	res, err := m.Run(context.Background(), env, args)
	if err != nil {
		t.Fatalf("%T %v: %v", m, args, err)
	}
	if res.Failed {
		t.Fatalf("%T %v failed: %s %v", m, args, res.Msg, res.Data)
	}
	return res, env.Conn.RoundTrips() - before
}

// probeRT runs m's probe the way the executor does (one read-only request)
// and then the module with Env.Probe set, returning the module's own
// round trips.
func probeRT(t *testing.T, m Module, env *Env, args map[string]any) (*Result, int64) {
	t.Helper()
	script, ok := m.(Prober).Probe(args)
	if !ok {
		t.Fatalf("%T: no probe for %v", m, args)
	}
	r, err := env.Conn.Run(context.Background(), connection.Request{Script: script, Become: true, ReadOnly: true})
	if err != nil || r.RC != 0 {
		t.Fatalf("probe: %v rc %d %s", err, r.RC, r.Stderr)
	}
	e := *env
	e.Probe = r.Stdout
	return runRT(t, m, &e, args)
}

func TestRealHosts(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			fig := &figures{}
			t.Run("copy", func(t *testing.T) { realCopy(t, tg, fig) })
			t.Run("template", func(t *testing.T) { realTemplate(t, tg, fig) })
			t.Run("file", func(t *testing.T) { realFile(t, tg, fig) })
			t.Run("lineinfile", func(t *testing.T) { realLineInFile(t, tg, fig) })
			t.Run("stat_slurp_fetch", func(t *testing.T) { realStat(t, tg) })
			t.Run("command", func(t *testing.T) { realCommand(t, tg) })
			t.Run("wait_for", func(t *testing.T) { realWaitFor(t, tg) })
			t.Run("get_url_unarchive", func(t *testing.T) { realGetURL(t, tg, fig) })
			if tg.lab {
				t.Run("systemd", func(t *testing.T) { realSystemd(t, tg, fig) })
				t.Run("user", func(t *testing.T) { realUser(t, tg, fig) })
			}
			t.Logf("round trips on %s (%T):\n  %s", tg.name, tg.conn, strings.Join(fig.rows, "\n  "))
		})
	}
}

func realCopy(t *testing.T, tg *target, fig *figures) {
	p := tg.dir + "/copy.conf"
	args := map[string]any{"content": "a=1\n", "dest": p, "mode": "0640"}
	res, rt := runRT(t, copyModule{}, tg.env(), args)
	if !res.Changed {
		t.Fatal("first copy not changed")
	}
	fig.add("copy new file: %d", rt)
	if got := hostSh(t, tg, "cat "+shq(p)+"; stat -c %a "+shq(p)); got != "a=1\n640\n" {
		t.Fatalf("host state %q", got)
	}
	res, rt = runRT(t, copyModule{}, tg.env(), args)
	if res.Changed || rt != 1 {
		t.Fatalf("second copy: changed %v round trips %d", res.Changed, rt)
	}
	fig.add("copy unchanged: %d", rt)
	if res, rt = probeRT(t, copyModule{}, tg.env(), args); res.Changed || rt != 0 {
		t.Fatalf("probed copy: changed %v round trips %d", res.Changed, rt)
	}
	fig.add("copy unchanged, probe batched: %d", rt)
	args["content"] = "a=2\n"
	res, rt = runRT(t, copyModule{}, tg.env(), args)
	if !res.Changed || rt != 2 {
		t.Fatalf("changed copy: %v round trips %d", res.Changed, rt)
	}
	fig.add("copy changed content: %d", rt)
	args["mode"] = "0600"
	if res, rt = runRT(t, copyModule{}, tg.env(), args); !res.Changed || rt != 2 || hostSh(t, tg, "stat -c %a "+shq(p)) != "600\n" {
		t.Fatalf("mode change: %v rt %d", res.Changed, rt)
	}
	fig.add("copy changed mode: %d", rt)
	// Diff mode: the old content costs one more round trip.
	env := tg.env()
	env.Diff = true
	args["content"] = "a=3\n"
	res, rt = runRT(t, copyModule{}, env, args)
	if !strings.Contains(res.Diff, "-a=2\n+a=3\n") || rt != 3 {
		t.Fatalf("diff %q rt %d", res.Diff, rt)
	}
	fig.add("copy changed with --diff: %d", rt)
	// Check mode: a fresh path is predicted changed and not created; the
	// existing unchanged file is predicted unchanged.
	fresh := tg.dir + "/fresh.conf"
	cenv, dry := tg.checkEnv()
	if res, _ := runRT(t, copyModule{}, cenv, map[string]any{"content": "x", "dest": fresh}); !res.Changed {
		t.Fatal("check mode did not predict a change")
	}
	if got := hostSh(t, tg, "test -e "+shq(fresh)+" && echo exists || echo absent"); got != "absent\n" || len(dry.Recorded()) != 1 {
		t.Fatalf("check mode wrote: %q recorded %v", got, dry.Recorded())
	}
	cenv, _ = tg.checkEnv()
	if res, _ := runRT(t, copyModule{}, cenv, args); res.Changed {
		t.Fatal("check mode predicted a change for an unchanged file")
	}
	// A directory tree: one probe for all files, one upload per change.
	denv := tg.env()
	denv.Files = []fs.FS{fstest.MapFS{
		"conf.d/a.conf":     {Data: []byte("a\n")},
		"conf.d/sub/b.conf": {Data: []byte("b\n")},
	}}
	dargs := map[string]any{"src": "conf.d", "dest": tg.dir, "mode": "0640", "directory_mode": "0750"}
	if res, rt = runRT(t, copyModule{}, denv, dargs); !res.Changed ||
		hostSh(t, tg, "cd "+shq(tg.dir)+" && cat conf.d/a.conf conf.d/sub/b.conf && stat -c %a conf.d/sub conf.d/sub/b.conf") != "a\nb\n750\n640\n" {
		t.Fatalf("copy directory: %+v", res)
	}
	fig.add("copy directory of 2 files, new: %d", rt)
	if res, rt = runRT(t, copyModule{}, denv, dargs); res.Changed || rt != 1 {
		t.Fatalf("copy directory second: %v rt %d", res.Changed, rt)
	}
	fig.add("copy directory unchanged: %d", rt)
	hostSh(t, tg, "echo x > "+shq(tg.dir+"/conf.d/sub/b.conf"))
	if res, rt = runRT(t, copyModule{}, denv, dargs); !res.Changed || rt != 2 || hostSh(t, tg, "cat "+shq(tg.dir+"/conf.d/sub/b.conf")) != "b\n" {
		t.Fatalf("copy directory repair: %v rt %d", res.Changed, rt)
	}
	fig.add("copy directory, one file changed: %d", rt)
	cdenv, cdry := tg.checkEnv()
	cdenv.Files = denv.Files
	if res, _ = runRT(t, copyModule{}, cdenv, map[string]any{"src": "conf.d", "dest": tg.dir + "/fresh-tree"}); !res.Changed || len(cdry.Recorded()) != 3 ||
		hostSh(t, tg, "test -e "+shq(tg.dir+"/fresh-tree")+" && echo exists || echo absent") != "absent\n" {
		t.Fatalf("copy directory check mode: %v %q", res.Changed, cdry.Recorded())
	}
	hostSh(t, tg, "mkdir -p "+shq(tg.dir+"/flat"))
	if res, _ = runRT(t, copyModule{}, denv, map[string]any{"src": "conf.d/", "dest": tg.dir + "/flat"}); !res.Changed || hostSh(t, tg, "cat "+shq(tg.dir+"/flat/a.conf")) != "a\n" {
		t.Fatal("copy directory contents (src with /)")
	}
	// Quoting: spaces, quotes and $ in paths.
	odd := tg.dir + "/it's a \"$HOME\" dir"
	if res, _ = runRT(t, fileModule{}, tg.env(), map[string]any{"path": odd, "state": "directory"}); !res.Changed {
		t.Fatal("odd directory")
	}
	oargs := map[string]any{"content": "q\n", "dest": odd + "/f 1.conf"}
	if res, _ = runRT(t, copyModule{}, tg.env(), oargs); !res.Changed || hostSh(t, tg, "cat "+shq(odd+"/f 1.conf")) != "q\n" {
		t.Fatal("odd copy")
	}
	if res, rt = runRT(t, copyModule{}, tg.env(), oargs); res.Changed || rt != 1 {
		t.Fatal("odd copy not idempotent")
	}
	if res, _ = runRT(t, lineInFile{}, tg.env(), map[string]any{"path": odd + "/f 1.conf", "line": "it's $x"}); !res.Changed || hostSh(t, tg, "cat "+shq(odd+"/f 1.conf")) != "q\nit's $x\n" {
		t.Fatal("odd lineinfile")
	}
	// mode: preserve takes the control-side file's mode.
	srcFile := filepath.Join(t.TempDir(), "script.sh")
	os.WriteFile(srcFile, []byte("#!/bin/sh\n"), 0o750)
	os.Chmod(srcFile, 0o750)
	pargs := map[string]any{"src": srcFile, "dest": tg.dir + "/script.sh", "mode": "preserve"}
	if res, _ = runRT(t, copyModule{}, tg.env(), pargs); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(tg.dir+"/script.sh")) != "750\n" {
		t.Fatal("mode preserve")
	}
	if res, _ = runRT(t, copyModule{}, tg.env(), pargs); res.Changed {
		t.Fatal("mode preserve not idempotent")
	}
	// backup keeps the old content beside the file.
	args["content"], args["backup"] = "a=4\n", true
	res, _ = runRT(t, copyModule{}, tg.env(), args)
	if b, _ := res.Data["backup_file"].(string); b == "" || hostSh(t, tg, "cat "+shq(b)) != "a=3\n" {
		t.Fatalf("backup %v", res.Data)
	}
	// A file above the connection's small-put limit (SFTP on SSH).
	big := bytes.Repeat([]byte("0123456789abcdef"), (connection.SmallPutLimit/16)+4096)
	bsum := sha256.Sum256(big)
	bargs := map[string]any{"content": string(big), "dest": tg.dir + "/big.bin"}
	res, rt = runRT(t, copyModule{}, tg.env(), bargs)
	if !res.Changed || hostSh(t, tg, "sha256sum < "+shq(tg.dir+"/big.bin")) != hex.EncodeToString(bsum[:])+"  -\n" {
		t.Fatal("big copy")
	}
	fig.add("copy %d KiB new: %d", len(big)>>10, rt)
	if res, rt = runRT(t, copyModule{}, tg.env(), bargs); res.Changed || rt != 1 {
		t.Fatalf("big copy second: %v rt %d", res.Changed, rt)
	}
	fig.add("copy %d KiB unchanged: %d", len(big)>>10, rt)
	// remote_src copies on the host, atomically, once.
	rargs := map[string]any{"src": tg.dir + "/big.bin", "dest": tg.dir + "/big2.bin", "remote_src": true, "mode": "0600"}
	if res, _ = runRT(t, copyModule{}, tg.env(), rargs); !res.Changed || hostSh(t, tg, "cmp "+shq(tg.dir+"/big.bin")+" "+shq(tg.dir+"/big2.bin")+" && stat -c %a "+shq(tg.dir+"/big2.bin")) != "600\n" {
		t.Fatal("remote_src copy")
	}
	if res, rt = runRT(t, copyModule{}, tg.env(), rargs); res.Changed || rt != 1 {
		t.Fatalf("remote_src second: %v rt %d", res.Changed, rt)
	}
	// No temporary files are left behind.
	if got := hostSh(t, tg, "ls -A "+shq(tg.dir)+" | grep gokube || true"); got != "" {
		t.Fatalf("leftovers: %q", got)
	}
}

func realTemplate(t *testing.T, tg *target, fig *figures) {
	p := tg.dir + "/app.conf"
	env := tg.env()
	env.Files = []fs.FS{fstest.MapFS{"app.conf.j2": {Data: []byte("value={{ .x }}\n")}}}
	args := map[string]any{"src": "app.conf.j2", "dest": p, "mode": 0o644, "validate": "grep -q value= %s"}
	res, rt := runRT(t, copyModule{template: true}, env, args)
	if !res.Changed || hostSh(t, tg, "cat "+shq(p)) != "value=X\n" {
		t.Fatal("template not written")
	}
	fig.add("template new file (with validate): %d", rt)
	res, rt = runRT(t, copyModule{template: true}, env, args)
	if res.Changed || rt != 1 {
		t.Fatalf("second template: changed %v rt %d", res.Changed, rt)
	}
	fig.add("template unchanged: %d", rt)
	if res, rt = probeRT(t, copyModule{template: true}, env, args); res.Changed || rt != 0 {
		t.Fatalf("probed template: %v %d", res.Changed, rt)
	}
	fig.add("template unchanged, probe batched: %d", rt)
	env.Files = []fs.FS{fstest.MapFS{"app.conf.j2": {Data: []byte("value={{ .x }}2\n")}}}
	delete(args, "validate")
	if res, rt = runRT(t, copyModule{template: true}, env, args); !res.Changed || rt != 2 {
		t.Fatalf("changed template rt %d", rt)
	}
	fig.add("template changed: %d", rt)
	// A failing validation leaves the old file and no temp file.
	env.Files = []fs.FS{fstest.MapFS{"app.conf.j2": {Data: []byte("broken\n")}}}
	args["validate"] = "grep -q value= %s"
	r, err := copyModule{template: true}.Run(context.Background(), env, args)
	if err != nil || !r.Failed {
		t.Fatalf("validation did not fail: %+v %v", r, err)
	}
	if got := hostSh(t, tg, "cat "+shq(p)+"; ls -A "+shq(tg.dir)+" | grep -c gokube || true"); got != "value=X2\n0\n" {
		t.Fatalf("after failed validation: %q", got)
	}
}

func realFile(t *testing.T, tg *target, fig *figures) {
	d := tg.dir + "/data"
	args := map[string]any{"path": d, "state": "directory", "mode": "0750"}
	res, rt := runRT(t, fileModule{}, tg.env(), args)
	if !res.Changed || hostSh(t, tg, "stat -c '%F %a' "+shq(d)) != "directory 750\n" {
		t.Fatal("directory not created")
	}
	fig.add("file directory created: %d", rt)
	if res, rt = runRT(t, fileModule{}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("second: %v rt %d", res.Changed, rt)
	}
	fig.add("file unchanged: %d", rt)
	if res, rt = probeRT(t, fileModule{}, tg.env(), args); res.Changed || rt != 0 {
		t.Fatalf("probed: %v rt %d", res.Changed, rt)
	}
	fig.add("file unchanged, probe batched: %d", rt)
	args["mode"] = "0700"
	if res, rt = runRT(t, fileModule{}, tg.env(), args); !res.Changed || rt != 2 || hostSh(t, tg, "stat -c %a "+shq(d)) != "700\n" {
		t.Fatalf("mode change: rt %d", rt)
	}
	fig.add("file mode changed: %d", rt)
	// recurse fixes what is below, and is idempotent.
	hostSh(t, tg, "mkdir -p "+shq(d+"/sub")+" && touch "+shq(d+"/sub/f")+" && chmod 644 "+shq(d+"/sub/f"))
	rargs := map[string]any{"path": d, "state": "directory", "mode": "0700", "recurse": true, "owner": "root"}
	if res, _ = runRT(t, fileModule{}, tg.env(), rargs); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(d+"/sub/f")) != "700\n" {
		t.Fatal("recurse did not fix")
	}
	if res, _ = runRT(t, fileModule{}, tg.env(), rargs); res.Changed {
		t.Fatal("recurse not idempotent")
	}
	// Symbolic modes are compared exactly: applied once, then unchanged.
	sargs := map[string]any{"path": d, "state": "directory", "mode": "u=rwx,g=rx,o="}
	if res, _ = runRT(t, fileModule{}, tg.env(), sargs); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(d)) != "750\n" {
		t.Fatal("symbolic mode")
	}
	if res, rt = runRT(t, fileModule{}, tg.env(), sargs); res.Changed || rt != 1 {
		t.Fatal("symbolic mode not idempotent")
	}
	if res, _ = runRT(t, fileModule{}, tg.env(), map[string]any{"path": d, "mode": "g-x"}); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(d)) != "740\n" {
		t.Fatal("g-x")
	}
	// touch, link, hard, absent.
	f := tg.dir + "/f"
	runRT(t, fileModule{}, tg.env(), map[string]any{"path": f, "state": "touch", "mode": "0600"})
	if hostSh(t, tg, "stat -c '%F %a' "+shq(f)) != "regular empty file 600\n" {
		t.Fatal("touch")
	}
	l := tg.dir + "/l"
	largs := map[string]any{"path": l, "state": "link", "src": f}
	if res, _ = runRT(t, fileModule{}, tg.env(), largs); !res.Changed || hostSh(t, tg, "readlink "+shq(l)) != f+"\n" {
		t.Fatal("link")
	}
	if res, rt = runRT(t, fileModule{}, tg.env(), largs); res.Changed || rt != 1 {
		t.Fatal("link not idempotent")
	}
	h := tg.dir + "/h"
	hargs := map[string]any{"path": h, "state": "hard", "src": f}
	if res, _ = runRT(t, fileModule{}, tg.env(), hargs); !res.Changed || hostSh(t, tg, "stat -c %h "+shq(f)) != "2\n" {
		t.Fatal("hard link")
	}
	if res, _ = runRT(t, fileModule{}, tg.env(), hargs); res.Changed {
		t.Fatal("hard link not idempotent")
	}
	// Through the link (follow): the target's mode is managed.
	if res, _ = runRT(t, fileModule{}, tg.env(), map[string]any{"path": l, "mode": "0640"}); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(f)+"; readlink "+shq(l)) != "640\n"+f+"\n" {
		t.Fatal("follow")
	}
	if res, _ = runRT(t, fileModule{}, tg.env(), map[string]any{"path": l, "mode": "0640"}); res.Changed {
		t.Fatal("follow not idempotent")
	}
	if res, _ = runRT(t, fileModule{}, tg.env(), map[string]any{"path": l, "state": "absent"}); !res.Changed || hostSh(t, tg, "test -e "+shq(l)+" || test -L "+shq(l)+" || echo gone") != "gone\n" {
		t.Fatal("absent")
	}
	// Check mode on a fresh path.
	fresh := tg.dir + "/fresh-dir"
	cenv, dry := tg.checkEnv()
	if res, _ = runRT(t, fileModule{}, cenv, map[string]any{"path": fresh, "state": "directory"}); !res.Changed {
		t.Fatal("check mode prediction")
	}
	if hostSh(t, tg, "test -e "+shq(fresh)+" && echo exists || echo absent") != "absent\n" || len(dry.Recorded()) != 1 {
		t.Fatal("check mode created the directory")
	}
}

func realLineInFile(t *testing.T, tg *target, fig *figures) {
	p := tg.dir + "/etcd.env"
	args := map[string]any{"path": p, "regexp": "^ETCD_NAME=", "line": "ETCD_NAME=gk-1", "create": true, "mode": "0644"}
	res, rt := runRT(t, lineInFile{}, tg.env(), args)
	if !res.Changed || hostSh(t, tg, "cat "+shq(p)) != "ETCD_NAME=gk-1\n" {
		t.Fatal("line not created")
	}
	fig.add("lineinfile created: %d", rt)
	hostSh(t, tg, "printf 'A=1\\nETCD_NAME=old\\nB=2\\n' > "+shq(p))
	if res, rt = runRT(t, lineInFile{}, tg.env(), args); !res.Changed || rt != 2 || hostSh(t, tg, "cat "+shq(p)) != "A=1\nETCD_NAME=gk-1\nB=2\n" {
		t.Fatalf("replace rt %d: %q", rt, hostSh(t, tg, "cat "+shq(p)))
	}
	fig.add("lineinfile replaced: %d", rt)
	if res, rt = runRT(t, lineInFile{}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("second: %v rt %d", res.Changed, rt)
	}
	fig.add("lineinfile unchanged: %d", rt)
	bargs := map[string]any{"path": p, "block": "X=1\nY=2"}
	if res, _ = runRT(t, blockInFile{}, tg.env(), bargs); !res.Changed || !strings.Contains(hostSh(t, tg, "cat "+shq(p)), "# BEGIN ANSIBLE MANAGED BLOCK\nX=1\nY=2\n# END ANSIBLE MANAGED BLOCK\n") {
		t.Fatal("blockinfile")
	}
	if res, rt = runRT(t, blockInFile{}, tg.env(), bargs); res.Changed || rt != 1 {
		t.Fatal("blockinfile not idempotent")
	}
	before := hostSh(t, tg, "cat "+shq(p))
	cenv, _ := tg.checkEnv()
	if res, _ = runRT(t, lineInFile{}, cenv, map[string]any{"path": p, "line": "NEW=1"}); !res.Changed || hostSh(t, tg, "cat "+shq(p)) != before {
		t.Fatal("check mode changed the file or mispredicted")
	}
}

func realStat(t *testing.T, tg *target) {
	p := tg.dir + "/s"
	hostSh(t, tg, "printf abc > "+shq(p)+" && chmod 0604 "+shq(p))
	res, _ := runRT(t, statModule{}, tg.env(), map[string]any{"path": p})
	st := res.Data["stat"].(map[string]any)
	if st["exists"] != true || st["mode"] != "0604" || st["isreg"] != true || st["size"] != int64(3) || st["pw_name"] != "root" ||
		st["checksum"] != "a9993e364706816aba3e25717850c26c9cd0d89d" {
		t.Fatalf("stat %v", st)
	}
	res, _ = runRT(t, statModule{}, tg.env(), map[string]any{"path": tg.dir})
	if st := res.Data["stat"].(map[string]any); st["isdir"] != true {
		t.Fatalf("dir stat %v", st)
	}
	res, _ = runRT(t, slurpModule{}, tg.env(), map[string]any{"src": p})
	if res.Data["content"] != base64.StdEncoding.EncodeToString([]byte("abc")) {
		t.Fatalf("slurp %v", res.Data)
	}
	local := t.TempDir()
	res, _ = runRT(t, fetchModule{}, tg.env(), map[string]any{"src": p, "dest": local + "/", "flat": true})
	if b, err := os.ReadFile(filepath.Join(local, "s")); err != nil || string(b) != "abc" || !res.Changed {
		t.Fatalf("fetch: %q %v", b, err)
	}
	if res, _ = runRT(t, fetchModule{}, tg.env(), map[string]any{"src": p, "dest": local + "/", "flat": true}); res.Changed {
		t.Fatal("fetch not idempotent")
	}
}

func realCommand(t *testing.T, tg *target) {
	res, err := commandModule{kind: "command"}.Run(context.Background(), tg.env(), map[string]any{"cmd": `sh -c "echo out; echo err >&2; exit 3"`})
	if err != nil || !res.Failed || res.Data["rc"] != 3 || res.Data["stdout"] != "out" || res.Data["stderr"] != "err" {
		t.Fatalf("%+v %v", res, err)
	}
	// command does not interpret shell syntax.
	res, _ = runRT(t, commandModule{kind: "command"}, tg.env(), map[string]any{"cmd": "echo $HOME '|' x"})
	if res.Data["stdout"] != "$HOME | x" {
		t.Fatalf("command: %q", res.Data["stdout"])
	}
	marker := tg.dir + "/made"
	args := map[string]any{"cmd": "echo made > made && cat", "chdir": tg.dir, "creates": marker, "stdin": "in"}
	res, rt := runRT(t, commandModule{kind: "shell"}, tg.env(), args)
	if !res.Changed || res.Data["stdout"] != "in" || rt != 1 || hostSh(t, tg, "cat "+shq(marker)) != "made\n" {
		t.Fatalf("shell: %+v rt %d", res, rt)
	}
	if res, rt = runRT(t, commandModule{kind: "shell"}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("creates did not skip: %+v", res)
	}
	cenv, _ := tg.checkEnv()
	if res, _ = runRT(t, commandModule{kind: "shell"}, cenv, map[string]any{"cmd": "touch x", "creates": tg.dir + "/nope"}); !res.Changed {
		t.Fatal("check mode creates prediction")
	}
}

func realWaitFor(t *testing.T, tg *target) {
	port := 22 // sshd on lab hosts
	if !tg.lab {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
	}
	start := time.Now()
	runRT(t, waitFor{}, tg.env(), map[string]any{"port": port, "timeout": 10})
	// A free port: wait for it closed passes, started times out.
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	if !tg.lab {
		runRT(t, waitFor{}, tg.env(), map[string]any{"port": freePort, "state": "stopped", "timeout": 5})
	}
	// Locally no connection is established on the listener: drained at
	// once. On a lab host our own SSH session holds port 22: never drained.
	if !tg.lab {
		runRT(t, waitFor{}, tg.env(), map[string]any{"port": port, "state": "drained", "timeout": 5})
	} else if r, err := (waitFor{}).Run(context.Background(), tg.env(), map[string]any{"port": 22, "state": "drained", "timeout": 1}); err != nil || !r.Failed {
		t.Fatalf("port 22 with our session drained: %+v %v", r, err)
	}
	res, err := waitFor{}.Run(context.Background(), tg.env(), map[string]any{"port": 1, "timeout": 2, "sleep": 1})
	if err != nil || !res.Failed || !strings.Contains(res.Msg, "Timeout") {
		t.Fatalf("closed port: %+v %v", res, err)
	}
	p := tg.dir + "/log"
	hostSh(t, tg, "(sleep 1; echo 'server ready' > "+shq(p)+") >/dev/null 2>&1 &")
	res, _ = runRT(t, waitFor{}, tg.env(), map[string]any{"path": p, "search_regex": "ready", "timeout": 10})
	if time.Since(start) > 20*time.Second {
		t.Fatalf("wait_for too slow: %v", time.Since(start))
	}
}

func tarGz(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func realGetURL(t *testing.T, tg *target, fig *figures) {
	art := filepath.Join(t.TempDir(), "etcd-v3")
	os.WriteFile(art, []byte("binary"), 0o644)
	sum := sha256.Sum256([]byte("binary"))
	dest := tg.dir + "/bin/"
	hostSh(t, tg, "mkdir -p "+shq(dest))
	args := map[string]any{"url": "file://" + art, "dest": dest, "checksum": "sha256:" + hex.EncodeToString(sum[:]), "mode": "0755"}
	res, rt := runRT(t, getURL{}, tg.env(), args)
	if !res.Changed || hostSh(t, tg, "cat "+shq(dest+"etcd-v3")+"; stat -c %a "+shq(dest+"etcd-v3")) != "binary755\n" {
		t.Fatal("get_url file://")
	}
	fig.add("get_url from artifact cache, new: %d", rt)
	if res, rt = runRT(t, getURL{}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("get_url second: %v rt %d", res.Changed, rt)
	}
	fig.add("get_url unchanged: %d", rt)
	args["checksum"] = "sha256:" + strings.Repeat("0", 64)
	args["dest"] = tg.dir + "/bin/other"
	if r, err := (getURL{}).Run(context.Background(), tg.env(), args); err != nil || !r.Failed || !strings.Contains(r.Msg, "checksum") {
		t.Fatalf("bad checksum accepted: %+v %v", r, err)
	}

	realCurl(t, tg, fig)

	archive := tarGz(t, map[string]string{"etcd-v3/etcd": "E", "etcd-v3/etcdctl": "C"})
	ap := filepath.Join(t.TempDir(), "etcd.tar.gz")
	os.WriteFile(ap, archive, 0o644)
	out := tg.dir + "/opt"
	hostSh(t, tg, "mkdir -p "+shq(out))
	uargs := map[string]any{"src": ap, "dest": out, "extra_opts": []any{"--strip-components=1"}}
	res, rt = runRT(t, unarchive{}, tg.env(), uargs)
	if !res.Changed || hostSh(t, tg, "cat "+shq(out+"/etcd")+" "+shq(out+"/etcdctl")) != "EC" {
		t.Fatal("unarchive")
	}
	fig.add("unarchive new: %d", rt)
	if res, rt = runRT(t, unarchive{}, tg.env(), uargs); res.Changed || rt != 1 {
		t.Fatalf("unarchive second: %v rt %d", res.Changed, rt)
	}
	if got := hostSh(t, tg, "stat -c %a "+shq(out+"/etcd")); got != "755\n" {
		t.Fatalf("extracted mode %q", got)
	}
	hostSh(t, tg, "chmod 0644 "+shq(out+"/etcdctl"))
	if res, _ = runRT(t, unarchive{}, tg.env(), uargs); !res.Changed || hostSh(t, tg, "stat -c %a "+shq(out+"/etcdctl")) != "755\n" {
		t.Fatal("unarchive did not repair a member's mode")
	}
	hostSh(t, tg, "echo changed > "+shq(out+"/etcd"))
	cenv, dry := tg.checkEnv()
	if res, _ = runRT(t, unarchive{}, cenv, uargs); !res.Changed || len(dry.Recorded()) != 2 || hostSh(t, tg, "cat "+shq(out+"/etcd")) != "changed\n" {
		t.Fatalf("unarchive check mode: %v %v", res.Changed, dry.Recorded())
	}
	if res, _ = runRT(t, unarchive{}, tg.env(), uargs); !res.Changed || hostSh(t, tg, "cat "+shq(out+"/etcd")) != "E" {
		t.Fatal("unarchive did not repair a changed member")
	}
	fig.add("unarchive unchanged: %d", rt)
	if got := hostSh(t, tg, "ls -A "+shq(out)); got != "etcd\netcdctl\n" {
		t.Fatalf("leftovers in dest: %q", got)
	}
	// xz, listed with the control machine's xz, extracted by the host's tar.
	if _, err := exec.LookPath("xz"); err == nil {
		plain := filepath.Join(t.TempDir(), "a.tar")
		zr, _ := gzip.NewReader(bytes.NewReader(tarGz(t, map[string]string{"x/bin": "X"})))
		var tb bytes.Buffer
		tb.ReadFrom(zr)
		os.WriteFile(plain, tb.Bytes(), 0o644)
		if out, err := exec.Command("xz", "-k", plain).CombinedOutput(); err != nil {
			t.Fatalf("xz: %s", out)
		}
		xout := tg.dir + "/xz"
		hostSh(t, tg, "mkdir -p "+shq(xout))
		xargs := map[string]any{"src": plain + ".xz", "dest": xout}
		if res, _ = runRT(t, unarchive{}, tg.env(), xargs); !res.Changed || hostSh(t, tg, "cat "+shq(xout+"/x/bin")) != "X" {
			t.Fatal("xz unarchive")
		}
		if res, _ = runRT(t, unarchive{}, tg.env(), xargs); res.Changed {
			t.Fatal("xz unarchive not idempotent")
		}
	}
	// remote_src: the archive on the host, compared by tar --diff.
	remote := tg.dir + "/r.tar.gz"
	if err := tg.conn.Put(context.Background(), connection.Upload{Path: remote, Content: bytes.NewReader(archive), Mode: 0o644, Become: true}); err != nil {
		t.Fatal(err)
	}
	out2 := tg.dir + "/opt2"
	hostSh(t, tg, "mkdir -p "+shq(out2))
	rargs := map[string]any{"src": remote, "dest": out2, "remote_src": true}
	if res, _ = runRT(t, unarchive{}, tg.env(), rargs); !res.Changed || hostSh(t, tg, "cat "+shq(out2+"/etcd-v3/etcd")) != "E" {
		t.Fatal("remote unarchive")
	}
	if res, _ = runRT(t, unarchive{}, tg.env(), rargs); res.Changed {
		t.Fatal("remote unarchive not idempotent")
	}
}

// realCurl serves a file from the control machine over HTTP and lets the
// host download it with curl.
func realCurl(t *testing.T, tg *target, fig *figures) {
	body := []byte("downloaded\n")
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/kubectl" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	addr := "127.0.0.1"
	if tg.lab {
		// The control machine as the host sees it: the SSH client address.
		// (without become: sudo drops SSH_CONNECTION).
		r, err := tg.conn.Run(context.Background(), connection.Request{Script: "echo $SSH_CONNECTION", ReadOnly: true})
		if err != nil || len(strings.Fields(string(r.Stdout))) == 0 {
			t.Fatalf("SSH_CONNECTION: %q %v", r.Stdout, err)
		}
		addr = strings.Fields(string(r.Stdout))[0]
	}
	url := fmt.Sprintf("http://%s:%d/kubectl", addr, ln.Addr().(*net.TCPAddr).Port)
	sum := sha256.Sum256(body)
	dest := tg.dir + "/kubectl"
	args := map[string]any{"url": url, "dest": dest, "checksum": "sha256:" + hex.EncodeToString(sum[:]), "mode": "0755", "owner": "root"}
	res, rt := runRT(t, getURL{}, tg.env(), args)
	if !res.Changed || hostSh(t, tg, "cat "+shq(dest)+"; stat -c %a "+shq(dest)) != "downloaded\n755\n" || hits.Load() != 1 {
		t.Fatalf("curl download: %+v hits %d", res, hits.Load())
	}
	fig.add("get_url over http by the host, new: %d", rt)
	if res, rt = runRT(t, getURL{}, tg.env(), args); res.Changed || rt != 1 || hits.Load() != 1 {
		t.Fatalf("second download: %v rt %d hits %d", res.Changed, rt, hits.Load())
	}
	// force without checksum downloads again but reports unchanged.
	delete(args, "checksum")
	args["force"] = true
	if res, _ = runRT(t, getURL{}, tg.env(), args); res.Changed || hits.Load() != 2 {
		t.Fatalf("forced same download: %v hits %d", res.Changed, hits.Load())
	}
	// A wrong checksum fails and leaves nothing behind.
	bad := map[string]any{"url": url, "dest": tg.dir + "/bad", "checksum": "sha256:" + strings.Repeat("1", 64)}
	if r, err := (getURL{}).Run(context.Background(), tg.env(), bad); err != nil || !r.Failed || !strings.Contains(r.Msg, "checksum mismatch") {
		t.Fatalf("bad checksum: %+v %v", r, err)
	}
	if got := hostSh(t, tg, "ls -A "+shq(tg.dir)+" | grep -c -e gokube -e '^bad$' || true"); got != "0\n" {
		t.Fatalf("leftovers after failed download: %q", got)
	}
	// 404 fails.
	if r, err := (getURL{}).Run(context.Background(), tg.env(), map[string]any{"url": url + "x", "dest": tg.dir + "/nf"}); err != nil || !r.Failed {
		t.Fatalf("404: %+v %v", r, err)
	}
}

func realSystemd(t *testing.T, tg *target, fig *figures) {
	unit := "gkmt-" + randHex() + ".service"
	up := "/etc/systemd/system/" + unit
	t.Cleanup(func() {
		hostSh(t, tg, "systemctl disable --now "+unit+" >/dev/null 2>&1; rm -f "+up+"; systemctl daemon-reload")
	})
	env := tg.env()
	env.Files = []fs.FS{fstest.MapFS{"u.j2": {Data: []byte("[Unit]\nDescription=gokube module test\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n")}}}
	runRT(t, copyModule{template: true}, env, map[string]any{"src": "u.j2", "dest": up, "validate": "systemd-analyze verify %s"})
	args := map[string]any{"name": unit, "state": "started", "enabled": true, "daemon_reload": true, "no_block": true}
	res, rt := runRT(t, systemdModule{alias: "systemd"}, tg.env(), args)
	if !res.Changed {
		t.Fatal("not changed")
	}
	fig.add("systemd daemon_reload+enable+start: %d", rt)
	hostSh(t, tg, "for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active -q "+unit+" && break; sleep 0.3; done")
	if got := hostSh(t, tg, "systemctl is-active "+unit+"; systemctl is-enabled "+unit); got != "active\nenabled\n" {
		t.Fatalf("unit state %q", got)
	}
	delete(args, "daemon_reload")
	if res, rt = runRT(t, systemdModule{alias: "systemd"}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("second: %v rt %d", res.Changed, rt)
	}
	fig.add("systemd unchanged: %d", rt)
	if res, rt = probeRT(t, systemdModule{alias: "systemd"}, tg.env(), args); res.Changed || rt != 0 {
		t.Fatalf("probed: %v rt %d", res.Changed, rt)
	}
	fig.add("systemd unchanged, probe batched: %d", rt)
	stop := map[string]any{"name": unit, "state": "stopped"}
	cenv, dry := tg.checkEnv()
	if res, _ = runRT(t, systemdModule{alias: "service"}, cenv, stop); !res.Changed || len(dry.Recorded()) != 1 {
		t.Fatal("check mode prediction")
	}
	if got := hostSh(t, tg, "systemctl is-active "+unit+" || true"); got != "active\n" {
		t.Fatalf("check mode stopped the unit: %q", got)
	}
	if res, rt = runRT(t, systemdModule{alias: "service"}, tg.env(), stop); !res.Changed || rt != 2 {
		t.Fatal("stop")
	}
	fig.add("systemd stop: %d", rt)
	if got := hostSh(t, tg, "systemctl is-active "+unit+" || true"); got != "inactive\n" {
		t.Fatalf("after stop %q", got)
	}
	if res, _ = runRT(t, systemdModule{alias: "service"}, tg.env(), map[string]any{"name": unit, "state": "restarted"}); !res.Changed {
		t.Fatal("restart")
	}
	if got := hostSh(t, tg, "systemctl is-active "+unit+" || true"); got != "active\n" {
		t.Fatalf("after restart %q", got)
	}
}

func realUser(t *testing.T, tg *target, fig *figures) {
	name := "gkmt" + randHex()[:6]
	t.Cleanup(func() {
		hostSh(t, tg, "userdel "+name+" 2>/dev/null; groupdel "+name+" 2>/dev/null; groupdel "+name+"g 2>/dev/null; true")
	})
	gres, _ := runRT(t, groupModule{}, tg.env(), map[string]any{"name": name + "g", "system": true})
	if !gres.Changed || !strings.HasPrefix(hostSh(t, tg, "getent group "+name+"g"), name+"g:") {
		t.Fatal("group")
	}
	args := map[string]any{"name": name, "system": true, "shell": "/usr/sbin/nologin", "home": "/var/lib/" + name, "create_home": false, "groups": []any{name + "g"}}
	res, rt := runRT(t, userModule{}, tg.env(), args)
	if !res.Changed {
		t.Fatal("user not created")
	}
	fig.add("user created: %d", rt)
	pw := strings.Split(strings.TrimSpace(hostSh(t, tg, "getent passwd "+name)), ":")
	if len(pw) != 7 || pw[6] != "/usr/sbin/nologin" || pw[5] != "/var/lib/"+name || !strings.Contains(hostSh(t, tg, "id -Gn "+name), name+"g") {
		t.Fatalf("passwd %v", pw)
	}
	if res, rt = runRT(t, userModule{}, tg.env(), args); res.Changed || rt != 1 {
		t.Fatalf("user second: %v rt %d", res.Changed, rt)
	}
	fig.add("user unchanged: %d", rt)
	args["shell"] = "/bin/sh"
	cenv, _ := tg.checkEnv()
	if res, _ = runRT(t, userModule{}, cenv, args); !res.Changed || !strings.HasSuffix(strings.TrimSpace(hostSh(t, tg, "getent passwd "+name)), "/usr/sbin/nologin") {
		t.Fatal("check mode")
	}
	if res, _ = runRT(t, userModule{}, tg.env(), args); !res.Changed || !strings.HasSuffix(strings.TrimSpace(hostSh(t, tg, "getent passwd "+name)), ":/bin/sh") {
		t.Fatal("usermod")
	}
	if res, _ = runRT(t, userModule{}, tg.env(), map[string]any{"name": name, "state": "absent"}); !res.Changed || hostSh(t, tg, "getent passwd "+name+" || echo none") != "none\n" {
		t.Fatal("userdel")
	}
}
