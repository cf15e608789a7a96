package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"gokube/connection"
)

func TestSystemd(t *testing.T) {
	show := func(active, ufs string) connection.Result {
		return connection.Result{Stdout: []byte("Id=etcd.service\nLoadState=loaded\nActiveState=" + active + "\nSubState=running\nUnitFileState=" + ufs + "\n")}
	}
	args := map[string]any{"name": "etcd", "state": "started", "enabled": "yes", "no_block": true}
	f := connection.NewFake("h1").On("systemctl show", show("active", "enabled"))
	res := mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), args)
	if res.Changed || f.RoundTrips() != 1 {
		t.Fatalf("unchanged: %v rt %d", res.Changed, f.RoundTrips())
	}
	if st := res.Data["status"].(map[string]any); st["ActiveState"] != "active" || st["UnitFileState"] != "enabled" {
		t.Fatalf("status %v", st)
	}
	// A unit that is still activating (Type=notify waiting for quorum)
	// counts as started.
	f = connection.NewFake("h1").On("systemctl show", show("activating", "enabled"))
	if res := mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), args); res.Changed {
		t.Fatal("activating unit restarted")
	}
	f = connection.NewFake("h1").On("systemctl show", show("inactive", "disabled"))
	res = mustRunModule(t, systemdModule{alias: "service"}, newEnv(f), args)
	m := mutating(f)
	if !res.Changed || f.RoundTrips() != 2 || len(m) != 1 || m[0].Script != "{ systemctl enable -q --now --no-block -- 'etcd' & wait \"$!\"; }" || !m[0].Become || !m[0].Inline {
		t.Fatalf("start: rt %d %+v", f.RoundTrips(), m)
	}
	// Check mode: prediction without the start.
	f.Reset()
	env := newEnv(connection.NewDry(f))
	env.Check = true
	if res := mustRunModule(t, systemdModule{alias: "systemd"}, env, args); !res.Changed || len(mutating(f)) != 0 {
		t.Fatal("check mode")
	}
	// daemon_reload: probed ahead (is a reload needed? the unit's state);
	// needed: reload and show in one request.
	if p, ok := (systemdModule{}).Probe(map[string]any{"name": "etcd", "daemon_reload": true}); !ok || !strings.Contains(p, "NeedDaemonReload") || !strings.Contains(p, probeShowScript("etcd")) {
		t.Fatalf("daemon_reload probe: %v %q", ok, p)
	}
	if _, ok := (systemdModule{}).Probe(map[string]any{"name": "etcd", "daemon_reexec": true}); ok {
		t.Fatal("daemon_reexec must not be probed ahead")
	}
	f = connection.NewFake("h1").On("daemon-reload", show("active", "enabled"))
	res = mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), map[string]any{"name": "etcd", "state": "restarted", "daemon_reload": true})
	if m := mutating(f); len(m) != 2 || !strings.HasPrefix(m[0].Script, "systemctl daemon-reload && systemctl show") || m[1].Script != "{ systemctl restart -- 'etcd' & wait \"$!\"; }" {
		t.Fatalf("reload+restart %+v", m)
	}
	// A reload is needed and the unit must be enabled: systemctl enable
	// reloads systemd itself, so the plan made from the state before the
	// reload is the one request, with no daemon-reload of its own.
	f = connection.NewFake("h1").On(reloadSinceMark, connection.Result{Stdout: []byte(reloadSinceMark + "\n\n" + reloadUnitMark + "\n" + string(show("inactive", "disabled").Stdout))})
	res = mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), map[string]any{"name": "etcd", "state": "started", "enabled": true, "daemon_reload": true})
	if m := mutating(f); !res.Changed || len(m) != 1 || m[0].Script != "{ systemctl enable -q --now -- 'etcd' & wait \"$!\"; }" {
		t.Fatalf("reload by enable: %+v %+v", res, m)
	}
	// Already enabled: the reload runs first, and the state after it decides.
	f = connection.NewFake("h1").On(reloadSinceMark, connection.Result{Stdout: []byte(reloadSinceMark + "\n\n" + reloadUnitMark + "\n" + string(show("inactive", "enabled").Stdout))}).
		On("daemon-reload && systemctl show", show("inactive", "enabled"))
	res = mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), map[string]any{"name": "etcd", "state": "started", "enabled": true, "daemon_reload": true})
	if m := mutating(f); !res.Changed || len(m) != 2 || !strings.HasPrefix(m[0].Script, "systemctl daemon-reload && systemctl show") || m[1].Script != "{ systemctl start -- 'etcd' & wait \"$!\"; }" {
		t.Fatalf("reload then start: %+v %+v", res, m)
	}
	// daemon_reload in check mode still reads the state (read-only).
	f = connection.NewFake("h1").On("systemctl show", show("inactive", "disabled"))
	env = newEnv(connection.NewDry(f))
	env.Check = true
	res = mustRunModule(t, systemdModule{alias: "systemd"}, env, map[string]any{"name": "etcd", "state": "started", "daemon_reload": true})
	if !res.Changed || len(mutating(f)) != 0 || f.RoundTrips() != 1 {
		t.Fatalf("check daemon_reload: %+v rt %d", res, f.RoundTrips())
	}
	// Missing unit fails outside check mode.
	f = connection.NewFake("h1").On("systemctl show", connection.Result{Stdout: []byte("Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n")})
	if res := mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), args); !res.Failed {
		t.Fatal("missing unit did not fail")
	}
	// Stop and mask.
	f = connection.NewFake("h1").On("systemctl show", show("active", "enabled"))
	mustRunModule(t, systemdModule{alias: "systemd"}, newEnv(f), map[string]any{"name": "x", "state": "stopped", "masked": true})
	if m := mutating(f); len(m) != 1 || m[0].Script != "{ systemctl mask -q -- 'x' & wait \"$!\"; } && { systemctl stop -- 'x' & wait \"$!\"; }" {
		t.Fatalf("%+v", m)
	}
}

func TestUserGroup(t *testing.T) {
	probe := func(passwd, groups, primary string) connection.Result {
		return connection.Result{Stdout: []byte("passwd=" + passwd + "\ngroups=" + groups + "\nprimary=" + primary + "\n")}
	}
	args := map[string]any{"name": "etcd", "system": true, "shell": "/usr/sbin/nologin", "home": "/var/lib/etcd", "create_home": false}
	f := connection.NewFake("h1").On("getent passwd", probe("", "", ""))
	res := mustRunModule(t, userModule{}, newEnv(f), args)
	if m := mutating(f); !res.Changed || len(m) != 1 || m[0].Script != "useradd -r -M -s '/usr/sbin/nologin' -d '/var/lib/etcd' -- 'etcd'" || !m[0].Inline {
		t.Fatalf("create (in the session's shell) %+v", m)
	}
	f = connection.NewFake("h1").On("getent passwd", probe("etcd:x:998:998::/var/lib/etcd:/usr/sbin/nologin", "etcd", "etcd"))
	if res := mustRunModule(t, userModule{}, newEnv(f), args); res.Changed || f.RoundTrips() != 1 {
		t.Fatalf("existing user changed: %+v", res)
	}
	args["groups"] = "ssl-cert"
	f = connection.NewFake("h1").On("getent passwd", probe("etcd:x:998:998::/var/lib/etcd:/bin/sh", "etcd", "etcd"))
	mustRunModule(t, userModule{}, newEnv(f), args)
	if m := mutating(f); len(m) != 1 || m[0].Script != "usermod -s '/usr/sbin/nologin' -G 'ssl-cert' -- 'etcd'" || m[0].Inline {
		t.Fatalf("modify (in a subshell: usermod -m may move a home) %+v", m)
	}
	f = connection.NewFake("h1").On("getent group", connection.Result{Stdout: []byte("group=\n")})
	mustRunModule(t, groupModule{}, newEnv(f), map[string]any{"name": "etcd", "system": true})
	if m := mutating(f); len(m) != 1 || m[0].Script != "groupadd -r -- 'etcd'" || !m[0].Inline {
		t.Fatalf("group (in the session's shell) %+v", m)
	}
	f = connection.NewFake("h1").On("getent group", connection.Result{Stdout: []byte("group=etcd:x:998:\n")})
	if res := mustRunModule(t, groupModule{}, newEnv(f), map[string]any{"name": "etcd", "system": true}); res.Changed {
		t.Fatal("group changed")
	}
}

func TestWaitForScripts(t *testing.T) {
	cond := func(args map[string]any) string {
		a, err := parseArgs("wait_for", waitFor{}.Spec(), args)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := waitFor{}.condition(a)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := cond(map[string]any{"port": 2379}); c != `timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379' 2>/dev/null` {
		t.Fatalf("port: %q", c)
	}
	if c := cond(map[string]any{"port": "2380", "host": "10.0.0.1", "state": "stopped"}); !strings.HasPrefix(c, "! timeout") {
		t.Fatalf("stopped: %q", c)
	}
	if c := cond(map[string]any{"path": "/var/log/x", "search_regex": "ready"}); c != `grep -Eq -- 'ready' '/var/log/x' 2>/dev/null` {
		t.Fatalf("regex: %q", c)
	}
	if _, err := (waitFor{}).Run(context.Background(), newEnv(connection.NewFake("h1")), map[string]any{"port": 1, "host": "a;rm -rf /"}); err == nil {
		t.Fatal("host with shell characters accepted")
	}
	// The whole wait is one read-only request; a timeout is a failure.
	f := connection.NewFake("h1").On("dev/tcp", connection.Result{RC: 1, Stdout: []byte("elapsed=3\n")})
	res := mustRunModule(t, waitFor{}, newEnv(f), map[string]any{"port": 2379, "timeout": 3})
	if !res.Failed || res.Msg != "Timeout when waiting for 127.0.0.1:2379" || f.RoundTrips() != 1 || !f.Requests()[0].ReadOnly || res.Data["elapsed"] != 3 {
		t.Fatalf("%+v", res)
	}
	// Check mode looks once and does not wait.
	f = connection.NewFake("h1").On("dev/tcp", connection.Result{RC: 1})
	env := newEnv(connection.NewDry(f))
	env.Check = true
	res = mustRunModule(t, waitFor{}, env, map[string]any{"port": 2379, "timeout": 300})
	if !res.Skipped || !strings.Contains(f.Requests()[0].Script, "end=$((s + 0))") {
		t.Fatalf("check: %+v %q", res, f.Requests()[0].Script)
	}
}

func TestGetURLFake(t *testing.T) {
	sum := sha256.Sum256([]byte("hello\n"))
	hexsum := hex.EncodeToString(sum[:])
	f := connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeFile("/usr/local/bin/etcd", "hello\n", 0o755, "root"))})
	res := mustRunModule(t, getURL{}, newEnv(f), map[string]any{"url": "https://example.invalid/etcd", "dest": "/usr/local/bin/etcd", "checksum": "sha256:" + hexsum, "mode": "0755"})
	if res.Changed || f.RoundTrips() != 1 {
		t.Fatalf("checksum match: %+v", res)
	}
	f = connection.NewFake("h1").On(probeMark, connection.Result{Stdout: []byte(probeAbsent("/usr/local/bin/etcd"))})
	res = mustRunModule(t, getURL{}, newEnv(f), map[string]any{"url": "https://example.invalid/etcd", "dest": "/usr/local/bin/etcd", "checksum": "sha256:" + hexsum, "mode": "0755"})
	m := mutating(f)
	if !res.Changed || len(m) != 1 || !strings.Contains(m[0].Script, "curl -fsSL --retry 3 -o \"$tmp\" -- 'https://example.invalid/etcd'") ||
		!strings.Contains(m[0].Script, "[ \"$h\" != "+hexsum+" ]") || !strings.Contains(m[0].Script, "chmod -- 0755 \"$tmp\"") {
		t.Fatalf("download %+v", m)
	}
	if _, err := (getURL{}).Run(context.Background(), newEnv(f), map[string]any{"url": "ftp://x", "dest": "/x"}); err == nil {
		t.Fatal("ftp accepted")
	}
	if _, err := (getURL{}).Run(context.Background(), newEnv(f), map[string]any{"url": "http://x", "dest": "/x", "checksum": "md5:00"}); err == nil {
		t.Fatal("md5 accepted")
	}
}
