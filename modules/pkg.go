package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"gokube/connection"
)

// packageModule is package and apt: Debian packages through dpkg-query,
// apt-get and dpkg, run on the host over the connection (nothing is shipped
// to it). One dpkg-query reads the state of every package the task names,
// and the executor's probe batch shares one dpkg-query between all package
// tasks of the batch (see ProbePrelude), so a warm run of a role that
// installs its packages on every run costs no round trip for them.
//
// Round trips: unchanged 1 (the probe), 0 when the probe was batched;
// a change 2 (probe, then one request that installs or removes and reads
// the new state back), 3 when a name to install is not installed itself
// (one read of what installed packages provide, for virtual names like
// awk); a local .deb adds its upload; update_cache makes the
// probe part of the update request (1 unchanged, 2 changed). Check mode
// runs the read-only probe and, when something would change, one apt-get
// --simulate (read-only), so a package apt cannot find is predicted to fail.
type packageModule struct{ alias string }

func (packageModule) Spec() Spec {
	return Spec{
		Doc: "Installs, upgrades and removes Debian packages with apt-get and dpkg. " +
			"All packages of a task (and of every package task in a probe batch) are looked up in one dpkg-query. " +
			"A local .deb on the control machine is read there first, so a package already installed at its version is not uploaded. " +
			"apt is an alias.",
		Args: map[string]Arg{
			"name": {Type: List, Aliases: []string{"pkg", "package"},
				Doc: "Package names, a list or a comma-separated string; name=version wants that version, name:arch that architecture."},
			"state": {Type: String, Choices: []string{"present", "absent", "latest"}, Default: "present",
				Doc: "present: installed (at the version given, if any); latest: installed at apt's candidate version; absent: removed."},
			"deb": {Type: String,
				Doc: "A .deb file on the control machine (role files/, playbook directory, artifact cache, or an absolute path). It is copied to the host and installed unless the host has that package at that version; apt-get resolves its dependencies."},
			"update_cache": {Type: Bool, Aliases: []string{"update-cache"}, Default: "no",
				Doc: "Run apt-get update first (counts as a change when it ran)."},
			"cache_valid_time": {Type: Int, Default: "0",
				Doc: "With update_cache: skip the update when the last successful one is younger than this many seconds."},
			"purge": {Type: Bool, Default: "no",
				Doc: "With state absent: remove configuration files too (and purge packages that only left their configuration behind)."},
			"install_recommends": {Type: Bool, Aliases: []string{"install-recommends"},
				Doc: "Install recommended packages too (yes) or not (no); unset keeps apt's configuration."},
			"allow_downgrade": {Type: Bool, Aliases: []string{"allow-downgrade", "allow_downgrades"}, Default: "no",
				Doc: "Allow name=version to install a version older than the installed one."},
		},
		RequireOneOf: [][]string{{"name", "deb", "update_cache"}},
		Returns: map[string]string{
			"packages":      "mapping of each named package to its version after the task, \"absent\", or \"PROVIDER VERSION\" for a virtual package",
			"installed":     "list of name=version installed or upgraded by this task",
			"removed":       "list of packages removed (or purged) by this task",
			"cache_updated": "whether apt-get update ran",
			"stdout":        "apt-get's output, when it ran",
			"stderr":        "apt-get's error output, when it ran",
		},
	}
}

// pkgWant is one package the task names.
type pkgWant struct {
	Name    string // as written, for messages and results
	Key     string // name or name:arch: what dpkg-query and apt-get see
	Version string // wanted version ("" = any)
	Deb     string // the .deb's path on the control machine
}

// pkgState is one package as dpkg knows it.
type pkgState struct {
	Version string
	Status  string // dpkg's db:Status-Status: installed, config-files, not-installed, ...
	// Provider is the installed package that provides a virtual name.
	Provider string
}

// describe is what `packages` registers: the version, "absent", or
// "PROVIDER VERSION" for a virtual name an installed package provides.
func (s pkgState) describe() string {
	switch {
	case !s.installed():
		return "absent"
	case s.Provider != "":
		return s.Provider + " " + s.Version
	}
	return s.Version
}

func (s pkgState) installed() bool {
	switch s.Status {
	case "", "not-installed", "config-files":
		return false
	}
	return true
}

// debPkgName is a Debian package name with an optional :arch and =version
// (Debian policy 5.6.1, 5.6.12). Checking it keeps names out of shell
// quoting trouble and keeps dpkg-query from reading them as glob patterns.
var debPkgName = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]+)(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$`)

func parsePkgWants(a cargs) ([]pkgWant, error) {
	var out []pkgWant
	for _, n := range a.list("name") {
		m := debPkgName.FindStringSubmatch(n)
		if m == nil {
			return nil, a.err("name", "%q is not a Debian package name (name, name:arch or name=version)", n)
		}
		out = append(out, pkgWant{Name: n, Key: m[1] + m[2], Version: strings.TrimPrefix(m[3], "=")})
	}
	return out, nil
}

// pkgQueryFormat makes dpkg-query print one tab-separated line per package
// it knows: pkg, binary:Package (name:arch for multi-arch), Package,
// Version, status.
const pkgQueryFormat = `pkg\t${binary:Package}\t${Package}\t${Version}\t${db:Status-Status}\n`

// pkgDecl starts the comment line by which a package probe declares its
// names (base64 of the space-joined keys) for ProbePrelude.
const pkgDecl = "# gokube-probe-pkg "

// pkgFallback defines gk_dpkg unless a batch prelude did.
const pkgFallback = `command -v gk_dpkg >/dev/null 2>&1 || gk_dpkg() { dpkg-query -W -f='` + pkgQueryFormat + `' -- "$@" 2>/dev/null; return 0; }
`

// pkgQuery returns the read-only script that prints the dpkg state of keys
// and, with policy, apt's candidate versions.
func pkgQuery(keys []string, policy bool) string {
	if len(keys) == 0 {
		return ""
	}
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = shq(k)
	}
	s := pkgDecl + base64.StdEncoding.EncodeToString([]byte(strings.Join(keys, " "))) + "\n" +
		pkgFallback + "gk_dpkg " + strings.Join(q, " ") + "\n"
	if policy {
		s += "echo policy; LC_ALL=C apt-cache policy -- " + strings.Join(q, " ") + " 2>/dev/null; :\n"
	}
	return s
}

// parsePkgQuery reads pkgQuery's output: dpkg states by key (both the
// binary:Package and the plain name, so name and name:arch both find it)
// and candidate versions by key.
func parsePkgQuery(out []byte) (map[string]pkgState, map[string]string) {
	states := map[string]pkgState{}
	cand := map[string]string{}
	inPolicy := false
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if line == "policy" {
			inPolicy = true
			continue
		}
		if !inPolicy {
			f := strings.Split(line, "\t")
			if len(f) != 5 || f[0] != "pkg" {
				continue
			}
			st := pkgState{Version: f[3], Status: f[4]}
			for _, k := range []string{f[1], f[2]} {
				// A name known for several architectures: the installed one wins.
				if old, ok := states[k]; !ok || !old.installed() {
					states[k] = st
				}
			}
			continue
		}
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && cur != "" {
			if v = strings.TrimSpace(v); v != "(none)" {
				cand[cur] = v
			}
		}
	}
	return states, cand
}

// pkgProvidesQuery lists what every package dpkg knows provides, for
// virtual package names.
const pkgProvidesQuery = `dpkg-query -W -f='prov\t${Package}\t${Version}\t${db:Status-Status}\t${Provides}\n' 2>/dev/null; :
`

// addProvided marks a name that is not installed itself as installed when
// an installed package provides it (its version is the provider's).
func addProvided(states map[string]pkgState, out []byte) {
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 || f[0] != "prov" || f[3] != "installed" || f[4] == "" {
			continue
		}
		for _, p := range strings.Split(f[4], ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(p), " ")
			if name == "" || states[name].installed() {
				continue
			}
			states[name] = pkgState{Version: f[2], Status: "installed", Provider: f[1]}
		}
	}
}

// pkgUpdateScript runs apt-get update unless cache_valid_time says the last
// one is recent; it prints cache=updated or cache=valid. It touches the
// stamp Ubuntu's and unattended-upgrades' apt hooks touch, which a minimal
// Debian does not have, so both agree on when the last update was.
func pkgUpdateScript(validSecs int) string {
	s := ""
	if validSecs > 0 {
		s = fmt.Sprintf("gk_s=/var/lib/apt/periodic/update-success-stamp; if [ -e \"$gk_s\" ] && [ $(( $(date +%%s) - $(stat -c %%Y \"$gk_s\") )) -lt %d ]; then echo cache=valid; else ", validSecs)
	}
	s += "DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get update -q -o DPkg::Lock::Timeout=120 >&2 && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp && echo cache=updated"
	if validSecs > 0 {
		s += "; fi"
	}
	return s + "\n"
}

func (m packageModule) name() string {
	if m.alias == "" {
		return "package"
	}
	return m.alias
}

func (m packageModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs(m.name(), m.Spec(), args)
	// A deb's package name is only known once the file is read; the state
	// after an update must be read after it.
	if err != nil || a.has("deb") || a.boolean("update_cache", false) {
		return "", false
	}
	wants, err := parsePkgWants(a)
	if err != nil || len(wants) == 0 {
		return "", false
	}
	return pkgQuery(pkgKeys(wants), a.strOr("state", "present") == "latest"), true
}

func pkgKeys(wants []pkgWant) []string {
	seen := map[string]bool{}
	var keys []string
	for _, w := range wants {
		if !seen[w.Key] {
			seen[w.Key] = true
			keys = append(keys, w.Key)
		}
	}
	return keys
}

// pkgAfterMarker separates apt-get's output from the state read after it.
const pkgAfterMarker = "__GOKUBE_PKG_AFTER__"

func (m packageModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs(m.name(), m.Spec(), args)
	if err != nil {
		return nil, err
	}
	wants, err := parsePkgWants(a)
	if err != nil {
		return nil, err
	}
	state := a.strOr("state", "present")
	if state == "latest" {
		for _, w := range wants {
			if w.Version != "" {
				return nil, a.err("name", "%s: a version cannot be combined with state latest", w.Name)
			}
		}
	}
	var debData []byte
	if a.has("deb") {
		if state != "present" {
			return nil, a.err("state", "deb installs a package; state must be present (remove it with name and state absent)")
		}
		data, name, _, err := readSrc(env, a.str("deb"))
		if err != nil {
			return nil, &ArgError{Module: m.name(), Key: "deb", Msg: err.Error()}
		}
		info, err := readDebInfo(data)
		if err != nil {
			return nil, &ArgError{Module: m.name(), Key: "deb", Msg: name + ": " + err.Error()}
		}
		debData = data
		wants = append(wants, pkgWant{Name: info.Package, Key: info.Package, Version: info.Version, Deb: name})
	}
	data := map[string]any{"cache_updated": false}
	keys := pkgKeys(wants)
	query := pkgQuery(keys, state == "latest")

	// The state as it is now (after the update, when one was asked for).
	var out []byte
	cacheUpdated := false
	if a.boolean("update_cache", false) {
		r, err := mustRun(ctx, env, pkgUpdateScript(a.integer("cache_valid_time", 0))+query, false)
		if err != nil {
			return resultFail(err, data)
		}
		out = r.Stdout
		if env.Check {
			// The dry connection recorded the update; predict from the
			// lists the host has.
			cacheUpdated = true
			if query != "" {
				if out, err = probeOrRun(ctx, env, query); err != nil {
					return nil, err
				}
			}
		} else {
			cacheUpdated = parseKV(out)["cache"] == "updated"
		}
	} else if query != "" {
		if out, err = probeOrRun(ctx, env, query); err != nil {
			return nil, err
		}
	}
	data["cache_updated"] = cacheUpdated
	states, cand := parsePkgQuery(out)
	if state != "absent" {
		// A virtual package (awk) is never installed itself; it is there
		// when an installed package provides it. Asked only when a name
		// would otherwise be installed, so the usual case costs nothing.
		var missing bool
		for _, w := range wants {
			missing = missing || w.Version == "" && w.Deb == "" && !states[w.Key].installed()
		}
		if missing {
			pr, err := mustRun(ctx, env, pkgProvidesQuery, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.name(), err)
			}
			addProvided(states, pr.Stdout)
		}
	}

	// What must change.
	var install, remove, installed, removed []string
	before, after := map[string]string{}, map[string]string{}
	var diffKeys []string
	packages := map[string]any{}
	for _, w := range wants {
		st := states[w.Key]
		cur := st.describe()
		packages[w.Name] = cur
		switch state {
		case "present", "latest":
			want := w.Version
			if state == "latest" && cand[w.Key] != "" {
				want = cand[w.Key]
			}
			if st.installed() && (want == "" || want == st.Version) {
				continue
			}
			switch {
			case w.Deb != "":
				// Installed below from the uploaded file.
			case w.Version != "":
				install = append(install, w.Key+"="+w.Version)
			default:
				install = append(install, w.Key)
			}
			v := want
			if v == "" {
				v = "(apt's candidate)"
			}
			installed = append(installed, w.Key+"="+v)
			before[w.Key], after[w.Key] = cur, v
		case "absent":
			if !st.installed() && !(a.boolean("purge", false) && st.Status == "config-files") {
				continue
			}
			remove = append(remove, w.Key)
			removed = append(removed, w.Key)
			before[w.Key], after[w.Key] = cur, "absent"
			if !st.installed() {
				before[w.Key] = "config-files"
			}
		}
		diffKeys = append(diffKeys, w.Key)
	}
	data["packages"] = packages
	if len(diffKeys) == 0 {
		return &Result{Changed: cacheUpdated, Msg: "unchanged", Data: data}, nil
	}
	data["installed"], data["removed"] = installed, removed
	var diff string
	if env.Diff {
		diff = stateDiff("packages", diffKeys, before, after)
	}

	opts := "-y -q -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
	if a.has("install_recommends") {
		if a.boolean("install_recommends", false) {
			opts += " --install-recommends"
		} else {
			opts += " --no-install-recommends"
		}
	}
	if a.boolean("allow_downgrade", false) {
		opts += " --allow-downgrades"
	}
	var action string
	switch {
	case len(remove) > 0:
		verb := "remove"
		if a.boolean("purge", false) {
			verb = "purge"
		}
		action = "apt-get " + opts + " " + verb + " -- " + shqAll(remove)
	default:
		action = "apt-get " + opts + " install -- " + shqAll(install)
	}

	if env.Check {
		// apt-get --simulate is read-only: it tells whether apt could do
		// it (a name it cannot find, a conflict) without doing it.
		if len(install) > 0 || len(remove) > 0 {
			r, err := run(ctx, env, "DEBIAN_FRONTEND=noninteractive LC_ALL=C "+strings.Replace(action, "apt-get ", "apt-get --simulate ", 1), true)
			if err != nil {
				return nil, err
			}
			if r.RC != 0 {
				data["stderr"] = strings.TrimSpace(string(r.Stderr))
				return &Result{Failed: true, Changed: true, Msg: "apt-get would fail: " + strings.TrimSpace(string(r.Stderr)), Data: data, Diff: diff}, nil
			}
		}
		if debData != nil {
			// Record the upload like a real run would make it.
			if err := env.Conn.Put(ctx, debUpload(debData, env)); err != nil {
				return nil, err
			}
		}
		return &Result{Changed: true, Data: data, Diff: diff}, nil
	}

	script := "export DEBIAN_FRONTEND=noninteractive LC_ALL=C\n"
	if debData != nil {
		up := debUpload(debData, env)
		if err := env.Conn.Put(ctx, up); err != nil {
			return nil, fmt.Errorf("%s: upload %s: %w", m.name(), a.str("deb"), err)
		}
		action = "apt-get " + opts + " install -- " + shqAll(append(install, up.Path))
		// The file is removed whatever apt-get did; its exit code stays.
		script += action + "\ngk_rc=$?; rm -f -- " + shq(up.Path) + "\n"
	} else {
		script += action + "\ngk_rc=$?\n"
	}
	script += "echo " + pkgAfterMarker + "\n" + pkgQuery(keys, false) + pkgProvidesQuery + "exit $gk_rc\n"
	r, err := run(ctx, env, script, false)
	if err != nil {
		return nil, err
	}
	aptOut, afterOut, _ := bytes.Cut(r.Stdout, []byte(pkgAfterMarker+"\n"))
	data["stdout"] = string(aptOut)
	data["stderr"] = string(r.Stderr)
	if r.RC != 0 {
		data["rc"] = r.RC
		return &Result{Failed: true, Changed: true, Msg: fmt.Sprintf("apt-get failed (rc=%d): %s", r.RC, lastLines(string(r.Stderr), 3)), Data: data, Diff: diff}, nil
	}
	// Read back what dpkg now says, so `changed` and the returned versions
	// are the host's word, not our plan.
	nowStates, _ := parsePkgQuery(afterOut)
	addProvided(nowStates, afterOut)
	for _, w := range wants {
		st := nowStates[w.Key]
		now := st.describe()
		packages[w.Name] = now
		if state != "absent" && (now == "absent" || w.Version != "" && st.Version != w.Version) {
			return &Result{Failed: true, Changed: true, Msg: fmt.Sprintf("%s is %s after apt-get, want %s", w.Name, now, strOr(w.Version, "installed")), Data: data, Diff: diff}, nil
		}
		if state == "absent" && st.installed() && st.Provider == "" {
			return &Result{Failed: true, Changed: true, Msg: fmt.Sprintf("%s is still installed (%s) after apt-get", w.Name, now), Data: data, Diff: diff}, nil
		}
	}
	for i, s := range installed {
		k, _, _ := strings.Cut(s, "=")
		for _, w := range wants {
			if w.Key == k {
				installed[i] = k + "=" + nowStates[w.Key].Version
			}
		}
	}
	return &Result{Changed: true, Data: data, Diff: diff}, nil
}

// debUpload places a .deb where apt-get can read it: a name derived from
// its content, so a retried run reuses the same path.
func debUpload(content []byte, env *Env) connection.Upload {
	sum := sha256.Sum256(content)
	return connection.Upload{
		Path:    path.Join("/var/cache/apt/archives", "gokube-"+hex.EncodeToString(sum[:8])+".deb"),
		Content: bytes.NewReader(content), Size: int64(len(content)), Mode: 0o644,
		Become: env.Become, BecomeUser: env.BecomeUser,
	}
}

func shqAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = shq(s)
	}
	return strings.Join(q, " ")
}

func strOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lastLines keeps a message to apt's conclusion (its last lines say why).
func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " / ")
}

// pkgPreludeNames reads the names a batch's package probes declared.
func pkgPreludeNames(batch string) []string {
	seen := map[string]bool{}
	var names []string
	for _, line := range strings.Split(batch, "\n") {
		rest, ok := strings.CutPrefix(line, pkgDecl)
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			continue
		}
		for _, n := range strings.Fields(string(raw)) {
			if debPkgName.MatchString(n) && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// pkgPrelude is ProbePrelude's part for package probes: one dpkg-query
// for every name of the batch, and a gk_dpkg that answers each probe from
// it with shell builtins only (no process per probe).
func pkgPrelude(batch string) string {
	if strings.Count(batch, pkgDecl) < 2 {
		return ""
	}
	names := pkgPreludeNames(batch)
	if len(names) == 0 {
		return ""
	}
	return "gk_PK=$(dpkg-query -W -f='" + pkgQueryFormat + "' -- " + shqAll(names) + " 2>/dev/null)\n" +
		`gk_dpkg() {
gk_o=$IFS; IFS='
'; set -f
for gk_l in $gk_PK; do for gk_n in "$@"; do case "$gk_l" in "pkg	$gk_n	"*|"pkg	"*"	$gk_n	"*) printf '%s\n' "$gk_l";; esac; done; done
IFS=$gk_o; set +f
}
`
}
