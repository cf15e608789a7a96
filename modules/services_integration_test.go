package modules

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"gokube/connection"
)

// The command, wait_for, get_url, systemd and user parts of TestRealHosts
// (core_integration_test.go), on the same targets.

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
	// The user's shell text runs as its own /bin/sh, guard or not: $$ is a
	// shell with a script argument (/dev/fd/3), not the session's shell
	// (no arguments).
	for _, extra := range []map[string]any{{}, {"creates": tg.dir + "/nope"}} {
		a := map[string]any{"cmd": `tr '\0' '\n' </proc/$$/cmdline | wc -l`}
		for k, v := range extra {
			a[k] = v
		}
		if res, _ := runRT(t, commandModule{kind: "shell"}, tg.env(), a); res.Failed || res.Data["stdout"] == "1" || res.Data["stdout"] == "0" {
			t.Errorf("shell %v: $$ has %v arguments, want its own shell: %+v", extra, res.Data["stdout"], res)
		}
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
	// The event, not the time: the wait ends once the line is written (the
	// file holds it when wait_for returns), not by running out its timeout.
	res, _ = runRT(t, waitFor{}, tg.env(), map[string]any{"path": p, "search_regex": "ready", "timeout": 10})
	if got := hostSh(t, tg, "cat "+shq(p)); !strings.Contains(got, "server ready") {
		t.Fatalf("wait_for returned %q before the line was written: %q", res.Msg, got)
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
	// The reload must come more than reloadMargin after the unit file's
	// write for the next daemon_reload to be provably useless.
	time.Sleep((reloadMargin + 1) * time.Second)
	reloads := func() string { return hostSh(t, tg, "systemctl show -p UnitsLoadTimestampMonotonic --value") }
	before := reloads()
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
	if reloads() == before {
		t.Fatal("a new unit file: the daemon was not reloaded")
	}
	// enable's links were made within reloadMargin of the last reload, so
	// the next reload would still run; one more reload later than that,
	// nothing has changed since: the reload is skipped (ok, in data).
	time.Sleep((reloadMargin + 1) * time.Second)
	hostSh(t, tg, "systemctl daemon-reload")
	before = reloads()
	res, rt = runRT(t, systemdModule{alias: "systemd"}, tg.env(), args)
	if res.Changed || res.Failed || res.Data["daemon_reload"] != "skipped" || reloads() != before {
		t.Fatalf("useless reload not skipped: %+v (reloads %s -> %s)", res, before, reloads())
	}
	fig.add("systemd daemon_reload skipped, unchanged: %d", rt)
	// A new drop-in for the loaded unit: systemd says it needs a reload.
	hostSh(t, tg, "mkdir -p "+up+".d && printf '[Service]\\nEnvironment=GK=1\\n' > "+up+".d/gk.conf")
	t.Cleanup(func() { hostSh(t, tg, "rm -rf "+up+".d") })
	res, _ = runRT(t, systemdModule{alias: "systemd"}, tg.env(), map[string]any{"name": unit, "daemon_reload": true})
	if res.Failed || res.Data["daemon_reload"] == "skipped" || reloads() == before {
		t.Fatalf("a new drop-in did not reload: %+v", res)
	}
	if got := hostSh(t, tg, "systemctl show -p Environment --value "+unit); got != "GK=1\n" {
		t.Fatalf("drop-in not loaded: %q", got)
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
	realUnitBatch(t, tg, unit)
}

// realUnitBatch: a probe batch of unit probes (this test's unit, ssh twice,
// a unit that does not exist, the reload probe's) asks systemctl show once
// and answers each probe exactly as its own systemctl show would. A shell
// function named systemctl counts the calls.
func realUnitBatch(t *testing.T, tg *target, unit string) {
	probes := []string{probeShowScript(unit), probeShowScript("ssh"), probeShowScript("gokube-no-such-unit"), probeShowScript("ssh"), reloadProbe("ssh.service")}
	var batch strings.Builder
	for i, p := range probes {
		fmt.Fprintf(&batch, "echo '--- probe %d'\n{\n%s}\n", i, p)
	}
	// A file, not a variable: the prelude calls it in a command
	// substitution (a subshell).
	count := `gk_cf=$(mktemp); systemctl() { case $1 in show) case $3 in NeedDaemonReload|UnitsLoadTimestamp) ;; *) echo >>"$gk_cf";; esac;; esac; command systemctl "$@"; }
`
	report := "echo \"--- calls $(wc -l <\"$gk_cf\")\"; rm -f \"$gk_cf\"\n"
	alone := hostSh(t, tg, count+batch.String()+report)
	batched := hostSh(t, tg, count+ProbePrelude(batch.String(), HashCache{})+batch.String()+report)
	cut := func(s string) (string, string) {
		i := strings.LastIndex(s, "--- calls ")
		return s[:i], strings.TrimSpace(s[i:])
	}
	a, aCalls := cut(alone)
	b, bCalls := cut(batched)
	// The reload probe lists NeedDaemonReload of every loaded unit, and
	// each hostSh is an SSH login with a session scope of its own that
	// systemd may not have dropped yet: the list's length may differ by
	// a unit between two logins, its answers may not.
	a, b = reloadAnswersOnly(a), reloadAnswersOnly(b)
	if a != b {
		t.Errorf("unit probes answer differently in a batch:\n--- alone\n%s\n--- batched\n%s", a, b)
	}
	if aCalls != "--- calls 5" || bCalls != "--- calls 1" {
		t.Errorf("systemctl show calls: %s alone, %s batched; want 5 and 1", aCalls, bCalls)
	}
	if !strings.Contains(b, "LoadState=not-found") || !strings.Contains(b, "Id="+unit) {
		t.Errorf("batched answers lack the missing unit or %s:\n%s", unit, b)
	}
}

// reloadAnswersOnly reduces the need-daemon-reload section of probe
// output to the distinct answers in it.
func reloadAnswersOnly(out string) string {
	start := strings.Index(out, reloadNeedMark+"\n")
	if start < 0 {
		return out
	}
	body := out[start+len(reloadNeedMark)+1:]
	end := strings.Index(body, "--- ")
	if end < 0 {
		end = len(body)
	}
	seen := map[string]bool{}
	var vals []string
	for _, l := range strings.Split(body[:end], "\n") {
		if l = strings.TrimSpace(l); l != "" && !seen[l] {
			seen[l] = true
			vals = append(vals, l)
		}
	}
	sort.Strings(vals)
	return out[:start] + reloadNeedMark + "\n" + strings.Join(vals, "\n") + "\n" + body[end:]
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
	if !gres.AccountsOnly || !slices.Equal(gres.Added, []string{"group " + name + "g"}) {
		t.Errorf("groupadd: AccountsOnly %v, Added %q", gres.AccountsOnly, gres.Added)
	}
	args := map[string]any{"name": name, "system": true, "shell": "/usr/sbin/nologin", "home": "/var/lib/" + name, "create_home": false, "groups": []any{name + "g"}}
	res, rt := runRT(t, userModule{}, tg.env(), args)
	if !res.Changed {
		t.Fatal("user not created")
	}
	// Without a home, useradd changed the account databases only: the
	// executor keeps the probes of absent paths across it.
	if got := hostSh(t, tg, "ls -d /var/lib/"+name+" /var/mail/"+name+" /var/spool/mail/"+name+" 2>/dev/null; true"); !res.AccountsOnly || got != "" {
		t.Errorf("useradd without a home: AccountsOnly %v, made %q", res.AccountsOnly, got)
	}
	// Added names every account the host now has that it had not: the
	// user and the group useradd made for it (USERGROUPS_ENAB).
	for _, a := range []string{"user " + name, "group " + name} {
		kind, n, _ := strings.Cut(a, " ")
		if db := map[string]string{"user": "passwd", "group": "group"}[kind]; hostSh(t, tg, "getent "+db+" "+n+"; true") != "" && !slices.Contains(res.Added, a) {
			t.Errorf("useradd made %s, Added %q", a, res.Added)
		}
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
