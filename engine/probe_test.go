package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gokube/connection"
	"gokube/modules"
)

func TestCheckModeSendsOnlyReadOnly(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - tfile: {path: "chk-{{ .inventory_hostname }}", content: "x"}
    - command: "touch should-not-exist"
    - command: "echo real"
      check_mode: false
      register: forced
`})
	o := e.opts("site.yml")
	o.Check = true
	r := mustRun(t, e, o)
	for _, h := range []string{"node-1", "node-2"} {
		var mutating []string
		for _, rq := range e.fake(h).Requests() {
			if !rq.ReadOnly && rq.Script != "echo real" {
				mutating = append(mutating, rq.Script)
			}
		}
		if len(mutating) > 0 {
			t.Fatalf("%s: mutating requests reached the host in check mode: %q", h, mutating)
		}
		if r.Hosts[h].Changed != 3 {
			t.Fatalf("%s: changed predictions %+v", h, *r.Hosts[h])
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "should-not-exist")); err == nil {
		t.Fatal("check mode ran a command")
	}
	if r.Vars["node-1"]["forced"].(map[string]any)["stdout"] != "real" {
		t.Fatal("check_mode: false task did not run for real")
	}
}

func TestProbeBatchingWarmRun(t *testing.T) {
	var b strings.Builder
	b.WriteString("- hosts: all\n  tasks:\n")
	for i := 0; i < 31; i++ {
		fmt.Fprintf(&b, "    - name: file %d\n      tfile: {path: \"p-{{ .inventory_hostname }}-%d\", content: \"c%d\"}\n", i, i, i)
	}
	e := newEnv(t, "node-1\nnode-2\nnode-3\n", map[string]string{"site.yml": b.String()})
	r := mustRun(t, e, e.opts("site.yml"))
	if r.Hosts["node-1"].Changed != 31 {
		t.Fatalf("cold run: %+v", *r.Hosts["node-1"])
	}
	e.resetFakes()
	r = mustRun(t, e, e.opts("site.yml"))
	for _, h := range []string{"node-1", "node-2", "node-3"} {
		if s := r.Hosts[h]; s.Changed != 0 || s.Ok != 32 {
			t.Fatalf("%s warm run: %+v", h, *s)
		}
		rqs := e.fake(h).Requests()
		if len(rqs) != 2 {
			t.Fatalf("%s: warm run made %d requests, want 2 (facts + one probe batch)", h, len(rqs))
		}
		if !strings.Contains(rqs[0].Script, "##os-release") || strings.Count(rqs[1].Script, "__GKPROBE_") != 32 || !rqs[1].ReadOnly {
			t.Fatalf("%s: unexpected requests %q", h, rqs[1].Script[:80])
		}
		if r.Hosts[h].RoundTrips != 2 {
			t.Fatalf("%s: recap round trips %d", h, r.Hosts[h].RoundTrips)
		}
	}
	// A changed task drops the cache: the next task probes again.
	if err := os.WriteFile(filepath.Join(e.dir, "p-node-1-10"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.resetFakes()
	r = mustRun(t, e, e.opts("site.yml"))
	if got := len(e.fake("node-1").Requests()); got != 4 {
		t.Fatalf("node-1 after one drift: %d requests, want facts + batch + write + batch = 4", got)
	}
	if r.Hosts["node-1"].Changed != 1 {
		t.Fatalf("drift not repaired: %+v", *r.Hosts["node-1"])
	}
}

func TestSplitProbes(t *testing.T) {
	m := "__GKPROBE_x__"
	out := []byte("\n" + m + " 0\nfirst\n\n" + m + " 1\nno newline\n" + m + " end\n")
	got, err := splitProbes(out, m, 2)
	if err != nil || string(got[0]) != "first\n" || string(got[1]) != "no newline" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := splitProbes([]byte("\n"+m+" 0\nx"), m, 2); err == nil {
		t.Fatal("truncated output accepted")
	}
}

var _ = connection.Request{}

func TestProbeLookaheadPassesCommands(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - tfile: {path: a, content: "1"}
    - command: {cmd: "touch made", creates: made}
    - tfile: {path: b, content: "2"}
    - command: "true"
    - tfile: {path: c, content: "3"}
`})
	r, batches := secondRunBatches(t, e)
	// One batch for a, b, c (the command that did not run keeps it valid);
	// the command that ran drops it, so c is probed again.
	if !reflect.DeepEqual(batches, []int{3, 1}) || len(e.fake("node-1").Requests()) != 5 {
		t.Fatalf("probe batches %v, %d requests", batches, len(e.fake("node-1").Requests()))
	}
	if r.Hosts["node-1"].Changed != 1 {
		t.Fatalf("%+v", *r.Hosts["node-1"])
	}
}

// A task whose condition reads a result registered earlier in the same
// batch cannot be decided at look-ahead time: it is passed over, and the
// tasks after it stay in the batch (a warm run where it is skipped costs
// one probe request).
func TestProbeLookaheadPassesUndecidedConditions(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - tfile: {path: a, content: "1"}
      register: wrote_a
    - tfile: {path: b, content: "2"}
      when: .wrote_a.changed
    - tfile: {path: c, content: "3"}
`})
	r, batches := secondRunBatches(t, e)
	if !reflect.DeepEqual(batches, []int{2}) {
		t.Fatalf("probe batches %v, want one batch of a and c", batches)
	}
	if s := r.Hosts["node-1"]; s.Changed != 0 || s.Skipped != 1 {
		t.Fatalf("%+v", *s)
	}
}

// secondRunBatches runs site.yml twice and returns the second run and the
// probe batch sizes it sent to node-1.
func secondRunBatches(t *testing.T, e *env) (*Recap, []int) {
	t.Helper()
	mustRun(t, e, e.opts("site.yml"))
	e.resetFakes()
	r := mustRun(t, e, e.opts("site.yml"))
	return r, probeBatches(e.fake("node-1"))
}

// probeBatches is the number of probes in each probe batch a host was
// sent, in order.
func probeBatches(f *connection.Fake) []int {
	var batches []int
	for _, rq := range f.Requests() {
		if n := strings.Count(rq.Script, "__GKPROBE_"); n > 0 {
			batches = append(batches, n-1)
		}
	}
	return batches
}

// An optional prober (command's creates=) never starts a batch of its own:
// first in a play it asks in its own request, as before it had a probe;
// after a task that starts a batch, the batch answers it.
func TestOptionalProbeStartsNoBatch(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - tguard: {cmd: "touch made", creates: made}
- hosts: all
  gather_facts: false
  tasks:
    - tfile: {path: a, content: "1"}
    - tguard: {cmd: "touch other", creates: other}
`})
	requests := func() []string {
		var got []string
		for _, rq := range e.fake("node-1").Requests() {
			switch {
			case strings.Contains(rq.Script, "__GKPROBE_"):
				got = append(got, fmt.Sprintf("batch of %d", strings.Count(rq.Script, "__GKPROBE_")-1))
			case strings.Contains(rq.Script, "test -e"):
				got = append(got, "guard "+strings.TrimPrefix(rq.Script, "test -e "))
			}
		}
		return got
	}
	// First run: a changes, which drops the batch's answer for the guard;
	// the guard asks itself instead of starting a second batch.
	mustRun(t, e, e.opts("site.yml"))
	if got, want := requests(), []string{`guard "made"`, "batch of 2", `guard "other"`}; !reflect.DeepEqual(got, want) {
		t.Fatalf("first run: requests %q, want %q", got, want)
	}
	// Second run: a is unchanged, and the batch answers the guard.
	e.resetFakes()
	mustRun(t, e, e.opts("site.yml"))
	if got, want := requests(), []string{`guard "made"`, "batch of 2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("second run: requests %q, want %q", got, want)
	}
}

// A task whose arguments read a result registered earlier in the same
// batch is probed as if that task changed nothing: a warm run keeps one
// batch. When the guess is wrong (the first run, which changes a), the
// task's script differs from the guessed one and it probes itself.
func TestProbeLookaheadGuessesUnchangedResults(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - tfile: {path: a, content: "1"}
      register: wrote_a
    - tfile: {path: "{{ if .wrote_a.changed }}b{{ else }}c{{ end }}", content: "2"}
    - tfile: {path: d, content: "3"}
`})
	first := mustRun(t, e, e.opts("site.yml"))
	if s := first.Hosts["node-1"]; s.Changed != 3 {
		t.Fatalf("first run: %+v", *s)
	}
	wrote := map[string]bool{}
	for _, rq := range e.fake("node-1").Requests() {
		for _, p := range []string{"b", "c"} {
			if !rq.ReadOnly && strings.HasSuffix(rq.Script, "> \""+p+"\"") {
				wrote[p] = true
			}
		}
	}
	if !wrote["b"] || wrote["c"] {
		t.Fatalf("first run wrote %v, want b only (a changed)", wrote)
	}
	// The second run writes c (a is unchanged now); the third changes
	// nothing and sends one batch.
	if s := mustRun(t, e, e.opts("site.yml")).Hosts["node-1"]; s.Changed != 1 {
		t.Fatalf("second run: %+v (c is new)", *s)
	}
	e.resetFakes()
	r := mustRun(t, e, e.opts("site.yml"))
	if b := probeBatches(e.fake("node-1")); !reflect.DeepEqual(b, []int{3}) {
		t.Fatalf("warm probe batches %v, want one batch of a, c and d", b)
	}
	if s := r.Hosts["node-1"]; s.Changed != 0 {
		t.Fatalf("warm run: %+v", *s)
	}
}

// The daemon-reload answers a probe batch found are put before the next
// batches (no systemctl asked again) until something changes on the host.
func TestProbeBatchKeepsReloadAnswers(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - treload: {}
- hosts: all
  gather_facts: false
  tasks:
    - treload: {}
- hosts: all
  gather_facts: false
  tasks:
    - tfile: {path: b, content: "2"}
    - treload: {}
- hosts: all
  gather_facts: false
  tasks:
    - treload: {reprobe: true}
    - treload: {}
`})
	mustRun(t, e, e.opts("site.yml"))
	var known []bool
	for _, rq := range e.fake("node-1").Requests() {
		if strings.Contains(rq.Script, "gokube need-daemon-reload") {
			known = append(known, strings.HasPrefix(rq.Script, "gk_rl_since='UnitsLoadTimestamp=@100'\ngk_rl_inputs='50 /etc/fstab'\ngk_rl_need='no'\n"))
		}
	}
	// Play 1 asks; play 2 knows; play 3's batch (b and the reload probe)
	// knows, b changes, and the reload probe asks again; play 4's batch
	// knows, its first task reloads (no change, but Reprobe) and the
	// second asks again.
	if want := []bool{false, true, true, false, true, false}; !reflect.DeepEqual(known, want) {
		t.Fatalf("batches with the reload answers known: %v, want %v", known, want)
	}
}

// TestReloadWritesKnown: after a change that wrote a daemon-reload input
// (a unit file, a drop-in), the next batch says so before its probes
// (modules.ReloadWritten), so that a reload probe asks systemd nothing
// more; a path elsewhere does not count, and a reload (Reprobe) or a
// change the executor cannot account for (a command) forgets the paths.
func TestReloadWritesKnown(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - ttouch: {path: /opt/app/app.conf}
    - treload: {}
    - ttouch: {path: /etc/systemd/system/app.service}
    - treload: {reprobe: true}
    - treload: {}
    - ttouch: {path: /lib/systemd/system/app.service.d/x.conf}
    - command: "true"
    - treload: {}
    - ttouch: {path: /etc/systemd/system/multi-user.target.wants/app.service}
    - treload: {}
`})
	o := e.opts("site.yml")
	o.Registry = testRegistry()
	o.Registry.Register(ttouch{}, "ttouch")
	mustRun(t, e, o)
	var written []string
	for _, rq := range e.fake("node-1").Requests() {
		if strings.Contains(rq.Script, "gokube need-daemon-reload") {
			w := "-"
			for _, l := range strings.Split(rq.Script, "\n") {
				if v, ok := strings.CutPrefix(l, "gk_rl_written="); ok {
					w = v
				}
			}
			written = append(written, w)
		}
	}
	want := []string{"-", "'/etc/systemd/system/app.service'", "-", "-", "'/etc/systemd/system/multi-user.target.wants/app.service'"}
	if !reflect.DeepEqual(written, want) {
		t.Fatalf("reload inputs said written before each batch: %q, want %q", written, want)
	}
}

// ttouch is a test module whose change touched path (Result.Touched),
// writing nothing.
type ttouch struct{}

func (ttouch) Spec() modules.Spec {
	return modules.Spec{Args: map[string]modules.Arg{"path": {Type: modules.String, Required: true}}}
}

func (ttouch) Run(_ context.Context, _ *modules.Env, args map[string]any) (*modules.Result, error) {
	return &modules.Result{Changed: true, Touched: []string{fmt.Sprint(args["path"])}}, nil
}

// TestPathsChanged: which batched path probes a change leaves standing.
// Below a directory the change made empty, every path was absent and
// still is; the directory itself and what is above it changed.
func TestPathsChanged(t *testing.T) {
	cases := []struct {
		ps, touched, newDirs []string
		want                 bool
	}{
		{[]string{"/opt/a/conf/x"}, []string{"/opt/a"}, nil, true},                 // below a touched path
		{[]string{"/opt/a/conf/x"}, []string{"/opt/a"}, []string{"/opt/a"}, false}, // below a new empty directory
		{[]string{"/opt/a"}, []string{"/opt/a"}, []string{"/opt/a"}, true},         // the new directory itself
		{[]string{"/opt"}, []string{"/opt/a"}, []string{"/opt/a"}, true},           // above it (its mtime, its entries)
		{[]string{"/opt/ab/x"}, []string{"/opt/a"}, []string{"/opt/a"}, false},     // unrelated: a name sharing a prefix
		{[]string{"/opt/b/x"}, []string{"/opt/a"}, nil, false},                     // unrelated
		// New below one touched path, but the same as another: changed.
		{[]string{"/opt/a/x"}, []string{"/opt/a", "/opt/a/x"}, []string{"/opt/a"}, true},
		// Below a touched path that is not new (a directory replaced): changed.
		{[]string{"/opt/a/b/x"}, []string{"/opt/a", "/opt/a/b"}, []string{"/opt/a"}, true},
	}
	for _, c := range cases {
		if got := pathsChanged(c.ps, c.touched, c.newDirs); got != c.want {
			t.Errorf("pathsChanged(%v, touched %v, new %v) = %v, want %v", c.ps, c.touched, c.newDirs, got, c.want)
		}
	}
}

// taccount stands for groupadd or useradd without a home: a change of the
// account databases only (modules.Result.AccountsOnly), which added the
// accounts in added= (modules.Result.Added).
type taccount struct{}

func (taccount) Spec() modules.Spec {
	return modules.Spec{Args: map[string]modules.Arg{"added": {Type: modules.List}}}
}

func (taccount) Run(_ context.Context, _ *modules.Env, args map[string]any) (*modules.Result, error) {
	res := &modules.Result{Changed: true, AccountsOnly: true}
	if l, ok := args["added"].([]any); ok {
		for _, a := range l {
			res.Added = append(res.Added, fmt.Sprint(a))
		}
	}
	return res, nil
}

// tscoped is a probe with a scope (modules.ScopedProber): systemd's
// state, or an account that exists= or not. Its probe prints what a user
// probe would.
type tscoped struct{}

func (tscoped) Spec() modules.Spec {
	return modules.Spec{Args: map[string]modules.Arg{"name": {Type: modules.String, Required: true},
		"account": {Type: modules.String}, "systemd": {Type: modules.Bool}, "exists": {Type: modules.Bool}}}
}

func (tscoped) Probe(args map[string]any) (string, bool) {
	passwd := ""
	if args["exists"] == true {
		passwd = fmt.Sprintf("%s:x:1000:1000::/:/bin/sh", args["name"])
	}
	return fmt.Sprintf("echo probe %s; echo 'passwd=%s'", args["name"], passwd), true
}

func (tscoped) ProbeScope(args map[string]any) modules.ProbeScope {
	a, _ := args["account"].(string)
	return modules.ProbeScope{Systemd: args["systemd"] == true, Account: a}
}

func (m tscoped) Run(ctx context.Context, env *modules.Env, args map[string]any) (*modules.Result, error) {
	if env.Probe == nil {
		return nil, fmt.Errorf("%s: no probe answer", args["name"])
	}
	return &modules.Result{}, nil
}

// TestAccountAdditionKeepsProbes: after a change that only added accounts,
// the probes of systemd, of other accounts that were absent and of paths
// whose owners have names stay; those of an added account, of one that
// exists and of anything else are asked again. A file change then drops
// systemd's probes, which may read unit files.
func TestAccountAdditionKeepsProbes(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"d/exists/.keep": "", "site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - tscoped: {name: first}
    - taccount: {added: [group g, user u3]}
    - tscoped: {name: u1, account: user u1}
    - tscoped: {name: u3, account: user u3}
    - tscoped: {name: u2, account: user u2, exists: true}
    - tscoped: {name: s1, systemd: true}
    - tscoped: {name: any}
    - file: {path: "{{ .playbook_dir }}/d/exists", state: directory}
    - file: {path: "{{ .playbook_dir }}/d/new", state: directory}
    - tscoped: {name: s2, systemd: true}
    - tscoped: {name: u4, account: user u4}
`})
	o := e.opts("site.yml")
	o.Registry = modules.NewRegistry()
	o.Registry.Register(taccount{}, "taccount")
	o.Registry.Register(tscoped{}, "tscoped")
	mustRun(t, e, o)
	var got []string
	for _, rq := range e.fake("node-1").Requests() {
		if strings.Contains(rq.Script, "__GKPROBE_") {
			var names []string
			for _, l := range strings.Split(rq.Script, "\n") {
				if n, ok := strings.CutPrefix(l, "echo probe "); ok {
					names = append(names, strings.Split(n, ";")[0])
				}
				if strings.Contains(l, "gokube-probe-path") {
					names = append(names, "path")
				}
			}
			got = append(got, strings.Join(names, " "))
		}
	}
	// The first batch asks everything. After the accounts were added, u3
	// (added), u2 (exists) and "any" are asked again; u1, s1 and the
	// paths (absent, or owned by named accounts) are not. The file change
	// (d/new) drops systemd's probe s2 and the account probe u4, which
	// outlive account changes only.
	want := []string{"first u1 u3 u2 s1 any path path s2 u4", "u3 u2 any", "s2 u4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("batches %q, want %q", got, want)
	}
}

// TestBatchAsksOnlyWhatAChangeDropped: with the real file module on local
// paths, a batch after a change asks only the probes the change dropped;
// an account change drops the probes of paths that exist (their owner's
// name may read differently) and keeps those of absent paths; a directory
// made empty keeps the probes below it.
func TestBatchAsksOnlyWhatAChangeDropped(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"d/exists/.keep": "", "d/exists2/.keep": "", "site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - file: {path: "{{ .playbook_dir }}/d/seed", state: directory}
    - taccount: {}
    - file: {path: "{{ .playbook_dir }}/d/new", state: directory}
    - file: {path: "{{ .playbook_dir }}/d/new/below", state: directory}
    - file: {path: "{{ .playbook_dir }}/d/new/below/deeper", state: directory}
    - file: {path: "{{ .playbook_dir }}/d/exists", state: absent}
    - file: {path: "{{ .playbook_dir }}/d/exists2", state: absent}
    - file: {path: "{{ .playbook_dir }}/d/other", state: directory}
`})
	o := e.opts("site.yml")
	o.Registry = modules.NewRegistry()
	o.Registry.Register(taccount{}, "taccount")
	mustRun(t, e, o)
	var got []string
	for _, rq := range e.fake("node-1").Requests() {
		if strings.Contains(rq.Script, "__GKPROBE_") {
			got = append(got, fmt.Sprintf("batch of %d", strings.Count(rq.Script, "__GKPROBE_")-1))
		}
	}
	// The first batch asks all seven. The account change drops d/exists
	// and d/exists2 (they exist) and keeps the absent paths; d/new and
	// d/new/below are new empty directories, which keep the probes below
	// them; d/exists then asks again for the two, not for d/other, which
	// the cache still holds and the removals leave standing.
	if want := []string{"batch of 7", "batch of 2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	for _, p := range []string{"d/seed", "d/new/below/deeper", "d/other"} {
		if fi, err := os.Stat(filepath.Join(e.dir, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"d/exists", "d/exists2"} {
		if _, err := os.Stat(filepath.Join(e.dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
}
