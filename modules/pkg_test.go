package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gokube/connection"
	"gokube/internal/labtest"
)

// buildDeb makes a real Debian package with dpkg-deb on the control
// machine: it holds one file, /usr/share/gokube-test/<name>, whose content
// is its version.
func buildDeb(t *testing.T, name, version, compress string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb not on the control machine (Debian's dpkg; make test runs on Debian)")
	}
	root := filepath.Join(t.TempDir(), name+"_"+version)
	for p, c := range map[string]string{
		"DEBIAN/control":                fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: gokube tests <root@localhost>\nDescription: gokube package-module test\n a package with one file\n", name, version),
		"usr/share/gokube-test/" + name: version + "\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := root + ".deb"
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+compress, "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func TestReadDebInfo(t *testing.T) {
	for _, z := range []string{"xz", "gzip", "none"} {
		p := buildDeb(t, "gokube-probe-z", "1.2-3~x", z)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := readDebInfo(data)
		if err != nil {
			t.Fatalf("-Z%s: %v", z, err)
		}
		if info.Package != "gokube-probe-z" || info.Version != "1.2-3~x" || info.Architecture != "all" {
			t.Fatalf("-Z%s: %+v", z, info)
		}
	}
	for _, bad := range [][]byte{nil, []byte("!<arch>\n"), []byte("PK\x03\x04 a zip")} {
		if _, err := readDebInfo(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPackageArgs(t *testing.T) {
	m := packageModule{alias: "apt"}
	fake := connection.NewFake("h")
	env := &Env{Conn: fake}
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"name": "curl; rm -rf /"}, `is not a Debian package name`},
		{map[string]any{"name": "Curl"}, `is not a Debian package name`},
		{map[string]any{"name": "curl=7.88", "state": "latest"}, `cannot be combined with state latest`},
		{map[string]any{"deb": "x.deb", "state": "absent"}, `deb installs a package`},
		{map[string]any{"deb": "missing.deb"}, `not found`},
		{map[string]any{"state": "present"}, `one of name, deb, update_cache is required`},
		{map[string]any{"name": "curl", "state": "installed"}, `"installed" is not one of present, absent, latest`},
	} {
		_, err := m.Run(context.Background(), env, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	// name:arch and name=version are understood.
	a, _ := parseArgs("apt", m.Spec(), map[string]any{"pkg": []any{"libc6:amd64", "curl=7.88.1-10", "less"}})
	w, err := parsePkgWants(a)
	if err != nil || len(w) != 3 || w[0].Key != "libc6:amd64" || w[1].Key != "curl" || w[1].Version != "7.88.1-10" || w[2].Version != "" {
		t.Fatalf("%+v %v", w, err)
	}
	if len(fake.Requests()) != 0 {
		t.Fatal("a refused task must not reach the host")
	}
}

func TestAddProvided(t *testing.T) {
	states := map[string]pkgState{"awk": {Status: "not-installed"}, "mawk": {Version: "1.3", Status: "installed"}}
	addProvided(states, []byte("prov\tmawk\t1.3\tinstalled\tawk\n"+
		"prov\tgone\t2\tconfig-files\tx-gone\n"+
		"prov\tdbus\t1.14\tinstalled\tdbus-system-bus (= 1.14), default-dbus-system-bus\n"))
	if st := states["awk"]; st.describe() != "mawk 1.3" || states["x-gone"].installed() ||
		states["dbus-system-bus"].describe() != "dbus 1.14" || !states["default-dbus-system-bus"].installed() || states["mawk"].Provider != "" {
		t.Fatalf("%+v", states)
	}
}

// TestPackagePreludeSameOutput runs three package probes on the control
// machine (a Debian system) alone and after ProbePrelude and requires the
// same output from one dpkg-query instead of three.
func TestPackagePreludeSameOutput(t *testing.T) {
	real, err := exec.LookPath("dpkg-query")
	if err != nil {
		t.Fatal("dpkg-query not on the control machine (Debian's dpkg; make test runs on Debian)")
	}
	scripts := []string{
		pkgQuery([]string{"dpkg", "gokube-no-such-package"}, false),
		pkgQuery([]string{"coreutils"}, false),
		pkgQuery([]string{"bash", "dpkg"}, false),
	}
	batch := "{\n" + strings.Join(scripts, "\n}\n{\n") + "\n}\n"
	prelude := ProbePrelude(batch, HashCache{})
	if strings.Count(prelude, "dpkg-query") != 1 {
		t.Fatalf("prelude does not run one dpkg-query:\n%s", prelude)
	}
	shims, calls := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	shim := "#!/bin/sh\necho dpkg-query >>" + shq(calls) + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(shims, "dpkg-query"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(script string) (string, int) {
		os.Remove(calls)
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		log, _ := os.ReadFile(calls)
		return string(out), strings.Count(string(log), "\n")
	}
	alone, nAlone := run(batch)
	batched, nBatched := run(prelude + batch)
	if alone != batched {
		t.Errorf("output differs with the prelude\n--- alone\n%s\n--- batched\n%s", alone, batched)
	}
	if nAlone != 3 || nBatched != 1 {
		t.Errorf("dpkg-query processes: %d alone, %d batched; want 3 and 1", nAlone, nBatched)
	}
	st, _ := parsePkgQuery([]byte(batched))
	if !st["dpkg"].installed() || !st["bash"].installed() || st["gokube-no-such-package"].installed() {
		t.Errorf("parsed states %+v", st)
	}
	if ProbePrelude(scripts[0], HashCache{}) != "" {
		t.Error("one package probe: no prelude expected")
	}
}

// TestPackageLab runs the package module against a lab host: packages of
// the image, local .deb files built here with dpkg-deb, and a file: apt
// repository on the host (the hosts have no network) for update_cache and
// latest. Every step checks the host with dpkg-query through the system
// ssh client, runs again (unchanged) and in check mode (nothing changes,
// the prediction is right).
func TestPackageLab(t *testing.T) {
	l := labtest.Require(t, 1)
	h := l.Hosts()[0]
	tg := &target{name: h.Name, conn: labtest.Dial(t, l, h), lab: true}
	ctx := context.Background()
	const a, b = "gokube-probe-a", "gokube-probe-b"
	reset := "dpkg --purge " + a + " " + b + " >/dev/null 2>&1; rm -rf /srv/gk-repo /etc/apt/sources.list.d/gk-repo.list /var/lib/apt/lists/_srv_gk-repo* /var/lib/apt/periodic/update-success-stamp; :"
	hostSh(t, tg, reset)
	t.Cleanup(func() { hostSh(t, tg, reset) })
	dpkgVer := func(name string) string {
		out, _ := labtest.SSH(l, h.Addr, "dpkg-query -W -f='${db:Status-Status} ${Version}' "+name+" 2>/dev/null || echo absent")
		return strings.TrimSpace(out)
	}
	fig := &figures{}
	m := packageModule{alias: "package"}

	// Packages of the image: present costs the probe only, 0 batched.
	img := map[string]any{"name": []any{"less", "curl"}}
	res, rt := runRT(t, m, tg.env(), img)
	if res.Changed || rt != 1 || res.Data["packages"].(map[string]any)["less"] == "absent" {
		t.Fatalf("image packages: changed %v rt %d %v", res.Changed, rt, res.Data)
	}
	fig.add("2 image packages present: %d", rt)
	if res, rt = probeRT(t, m, tg.env(), img); res.Changed || rt != 0 {
		t.Fatalf("probed: changed %v rt %d", res.Changed, rt)
	}
	if res, _ = runRT(t, m, tg.env(), map[string]any{"name": a, "state": "absent"}); res.Changed {
		t.Fatal("absent package removed")
	}
	// A virtual name (awk) is there when an installed package provides it:
	// one more read-only request, no change.
	if res, rt = runRT(t, m, tg.env(), map[string]any{"name": "awk"}); res.Changed || rt != 2 ||
		!strings.HasPrefix(res.Data["packages"].(map[string]any)["awk"].(string), "mawk ") {
		t.Fatalf("virtual awk: changed %v rt %d %v", res.Changed, rt, res.Data)
	}
	fig.add("virtual package (awk) present: %d", rt)

	// A local .deb: check mode predicts and changes nothing.
	deb1, deb2 := buildDeb(t, a, "1.0", "xz"), buildDeb(t, a, "2.0", "gzip")
	cenv, dry := tg.checkEnv()
	if res, _ = runRT(t, m, cenv, map[string]any{"deb": deb1}); !res.Changed || len(dry.Recorded()) != 1 || dpkgVer(a) != "absent" {
		t.Fatalf("check mode deb: %v recorded %q host %q", res.Changed, dry.Recorded(), dpkgVer(a))
	}
	res, rt = runRT(t, m, tg.env(), map[string]any{"deb": deb1})
	if !res.Changed || dpkgVer(a) != "installed 1.0" {
		t.Fatalf("deb install: %v host %q", res.Changed, dpkgVer(a))
	}
	if got := res.Data["installed"].([]string); len(got) != 1 || got[0] != a+"=1.0" {
		t.Fatalf("installed %v", got)
	}
	fig.add("deb installed: %d (probe, upload, apt-get + read back)", rt)
	if out, _ := labtest.SSH(l, h.Addr, "cat /usr/share/gokube-test/"+a+"; ls /var/cache/apt/archives | grep -c gokube-"); out != "1.0\n0\n" {
		t.Fatalf("host after deb install: %q", out)
	}
	if res, rt = runRT(t, m, tg.env(), map[string]any{"deb": deb1}); res.Changed || rt != 1 {
		t.Fatalf("deb again: changed %v rt %d (no upload when the version is there)", res.Changed, rt)
	}
	fig.add("deb unchanged: %d (no upload)", rt)
	for _, n := range []any{a, a + "=1.0"} {
		if res, _ = runRT(t, m, tg.env(), map[string]any{"name": n}); res.Changed {
			t.Fatalf("%v present: changed", n)
		}
	}
	// Another version of the .deb upgrades it; --diff shows both versions.
	denv := tg.env()
	denv.Diff = true
	if res, _ = runRT(t, m, denv, map[string]any{"deb": deb2}); !res.Changed || dpkgVer(a) != "installed 2.0" ||
		!strings.Contains(res.Diff, "-"+a+": 1.0") || !strings.Contains(res.Diff, "+"+a+": 2.0") {
		t.Fatalf("deb upgrade: %v host %q diff %q", res.Changed, dpkgVer(a), res.Diff)
	}

	// A file: repository on the host: a 3.0 and b 1.0.
	repoDebs := []string{buildDeb(t, a, "3.0", "xz"), buildDeb(t, b, "1.0", "xz")}
	var packages strings.Builder
	hostSh(t, tg, "mkdir -p /srv/gk-repo")
	for _, p := range repoDebs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := readDebInfo(data)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&packages, "Package: %s\nVersion: %s\nArchitecture: all\nFilename: ./%s\nSize: %d\nSHA256: %s\nDescription: test\n\n",
			info.Package, info.Version, filepath.Base(p), len(data), hex.EncodeToString(sum[:]))
		if err := tg.conn.Put(ctx, connection.Upload{Path: "/srv/gk-repo/" + filepath.Base(p), Content: bytes.NewReader(data), Size: int64(len(data)), Mode: 0o644, Become: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.conn.Put(ctx, connection.Upload{Path: "/srv/gk-repo/Packages", Content: strings.NewReader(packages.String()), Size: int64(packages.Len()), Mode: 0o644, Become: true}); err != nil {
		t.Fatal(err)
	}
	hostSh(t, tg, "echo 'deb [trusted=yes] file:/srv/gk-repo ./' > /etc/apt/sources.list.d/gk-repo.list")

	// Check mode of latest with update_cache: the update is not done, so
	// apt knows no candidate yet and b cannot be found: predicted to fail.
	latest := map[string]any{"name": []any{a, b}, "state": "latest", "update_cache": true}
	cenv, dry = tg.checkEnv()
	r, err := m.Run(ctx, cenv, latest)
	if err != nil || !r.Failed || !strings.Contains(r.Msg, "Unable to locate package "+b) || len(dry.Recorded()) != 1 || dpkgVer(b) != "absent" {
		t.Fatalf("check mode latest before update: %+v %v recorded %q", r, err, dry.Recorded())
	}
	if res, rt = runRT(t, m, tg.env(), latest); !res.Changed || dpkgVer(a) != "installed 3.0" || dpkgVer(b) != "installed 1.0" || res.Data["cache_updated"] != true {
		t.Fatalf("latest: %v host %q %q %v", res.Changed, dpkgVer(a), dpkgVer(b), res.Data)
	}
	fig.add("update_cache + latest of 2, changed: %d", rt)
	// Once the lists are fresh, cache_valid_time skips the update and
	// latest has nothing to do.
	latest["cache_valid_time"] = 3600
	if res, rt = runRT(t, m, tg.env(), latest); res.Changed || res.Data["cache_updated"] != false || rt != 1 {
		t.Fatalf("latest again: changed %v rt %d %v", res.Changed, rt, res.Data)
	}
	fig.add("update_cache (valid) + latest of 2, unchanged: %d", rt)
	delete(latest, "update_cache")
	delete(latest, "cache_valid_time")
	if res, rt = probeRT(t, m, tg.env(), latest); res.Changed || rt != 0 {
		t.Fatalf("latest probed: changed %v rt %d", res.Changed, rt)
	}
	// Pinning the old version back needs allow_downgrade.
	if r, err = m.Run(ctx, tg.env(), map[string]any{"name": b + "=0.9"}); err != nil || !r.Failed || !strings.Contains(r.Msg, "apt-get failed") {
		t.Fatalf("unknown version: %+v %v", r, err)
	}

	// Removal: check mode predicts both, then they go; purge of a package
	// that left only its configuration is a change too.
	absent := map[string]any{"name": []any{a, b}, "state": "absent"}
	cenv, dry = tg.checkEnv()
	if res, _ = runRT(t, m, cenv, absent); !res.Changed || len(dry.Recorded()) != 0 || dpkgVer(a) != "installed 3.0" {
		t.Fatalf("check mode absent: %v recorded %q", res.Changed, dry.Recorded())
	}
	if res, rt = runRT(t, m, tg.env(), absent); !res.Changed || !strings.HasPrefix(dpkgVer(a), "config-files") && dpkgVer(a) != "absent" {
		t.Fatalf("absent: %v host %q", res.Changed, dpkgVer(a))
	}
	fig.add("remove 2: %d", rt)
	if res, _ = runRT(t, m, tg.env(), absent); res.Changed {
		t.Fatal("absent twice: changed")
	}
	// A name apt cannot find fails, in check mode and for real, with apt's reason.
	missing := map[string]any{"name": "gokube-no-such-package"}
	cenv, _ = tg.checkEnv()
	if r, err = m.Run(ctx, cenv, missing); err != nil || !r.Failed || !strings.Contains(r.Msg, "Unable to locate package") {
		t.Fatalf("check mode missing: %+v %v", r, err)
	}
	if r, err = m.Run(ctx, tg.env(), missing); err != nil || !r.Failed || !strings.Contains(r.Msg, "Unable to locate package") {
		t.Fatalf("missing: %+v %v", r, err)
	}
	t.Logf("round trips on %s:\n  %s", h.Name, strings.Join(fig.rows, "\n  "))
}
