package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

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
				t.Run("account_probes", func(t *testing.T) { realAccountProbes(t, tg) })
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
	// With an owner and a group: below an existing directory in one
	// process (install -d); with parents to make, those get the umask's
	// mode (022 here), the directory its own.
	oargs := map[string]any{"path": d + "/owned", "state": "directory", "mode": "0750", "owner": "nobody", "group": "daemon"}
	if res, _ = runRT(t, fileModule{}, tg.env(), oargs); !res.Changed || hostSh(t, tg, "stat -c '%a %U %G' "+shq(d+"/owned")) != "750 nobody daemon\n" {
		t.Fatalf("owned directory: %v %q", res.Changed, hostSh(t, tg, "stat -c '%a %U %G' "+shq(d+"/owned")))
	}
	oargs["path"] = d + "/p1/p2/owned"
	if res, _ = runRT(t, fileModule{}, tg.env(), oargs); !res.Changed || hostSh(t, tg, "cd "+shq(d)+" && stat -c '%n %a %U %G' p1 p1/p2 p1/p2/owned") != "p1 755 root root\np1/p2 755 root root\np1/p2/owned 750 nobody daemon\n" {
		t.Fatalf("owned directory with parents: %v %q", res.Changed, hostSh(t, tg, "cd "+shq(d)+" && stat -c '%n %a %U %G' p1 p1/p2 p1/p2/owned"))
	}
	oargs["path"], oargs["owner"] = d+"/unowned", "gokube-no-such-user"
	if res, err := (fileModule{}).Run(context.Background(), tg.env(), oargs); err != nil || !res.Failed || hostSh(t, tg, "ls -d "+shq(d+"/unowned")+" 2>/dev/null; true") != "" {
		t.Fatalf("an unknown owner: the directory was made, or the task did not fail: %v %v", res, err)
	}
	hostSh(t, tg, "rm -rf "+shq(d+"/owned")+" "+shq(d+"/p1"))
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
