package engine

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"gokube/connection"
	"gokube/modules"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func mustRun(t *testing.T, e *env, o Options) *Recap {
	t.Helper()
	r, err := e.run(o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, e.out.String())
	}
	return r
}

func want(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestBlockRescueAlways(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: outer
      block:
        - name: b1
          command: "true"
        - name: b2 fails
          command: "exit 3"
        - name: b3 never
          command: "true"
      rescue:
        - name: r1
          command: "true"
      always:
        - name: a1
          command: "true"
    - name: after
      command: "true"
    - block:
        - name: c1 fails
          command: "false"
      rescue:
        - name: c2 fails too
          command: "false"
      always:
        - name: c3 always
          command: "true"
    - name: not reached
      command: "true"
`})
	r, err := e.run(e.opts("site.yml"))
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v", err)
	}
	want(t, eventsOf(r, "node-1"), []string{"b1=changed", "b2 fails=failed", "r1=changed", "a1=changed", "after=changed",
		"c1 fails=failed", "c2 fails too=failed", "c3 always=changed"})
	s := r.Hosts["node-1"]
	if s.Rescued != 2 || s.Failed != 1 {
		t.Fatalf("stats %+v: want rescued=2 failed=1", *s)
	}
}

func TestHandlers(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: t1
      command: "true"
      notify: [h2, h1]
    - name: t2
      command: "true"
      notify: h2
      changed_when: false
    - name: t3
      command: "true"
      notify: topic
      when: eq .inventory_hostname "node-1"
    - meta: flush_handlers
    - name: t4
      command: "true"
      notify: h1
  handlers:
    - name: h1
      command: "true"
    - name: h2
      command: "true"
    - name: h3
      command: "true"
      listen: topic
`})
	r := mustRun(t, e, e.opts("site.yml"))
	want(t, eventsOf(r, "node-1"), []string{"t1=changed", "t2=ok", "t3=changed", "h1=changed", "h2=changed", "h3=changed", "t4=changed", "h1=changed"})
	want(t, eventsOf(r, "node-2"), []string{"t1=changed", "t2=ok", "t3=skipping", "h1=changed", "h2=changed", "t4=changed", "h1=changed"})
	if !strings.Contains(e.out.String(), "RUNNING HANDLER [h1]") {
		t.Fatalf("no handler banner:\n%s", e.out.String())
	}
}

func TestUnknownHandlerIsLoadError(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - command: "true"
      notify: nobody
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "site.yml:4: notify: no handler") {
		t.Fatalf("got %v", err)
	}
}

func TestLoops(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    pkgs: "{{ list \"a\" \"b\" \"c\" }}"
  tasks:
    - name: loop over a native list
      command: "echo {{ .pkg }}-{{ .idx }}-{{ .ansible_loop.index }}"
      loop: "{{ .pkgs }}"
      loop_control: {loop_var: pkg, index_var: idx, label: "L{{ .pkg }}"}
      when: ne .pkg "b"
      register: out
    - name: with_items flattens
      command: "echo {{ .item }}"
      with_items: [[x, y], z]
      register: wi
    - name: empty loop
      command: "echo no"
      loop: []
`})
	r := mustRun(t, e, e.opts("site.yml"))
	out := r.Vars["node-1"]["out"].(map[string]any)
	res := out["results"].([]any)
	if len(res) != 3 {
		t.Fatalf("results: %v", res)
	}
	if got := res[0].(map[string]any)["stdout"]; got != "a-0-1" {
		t.Fatalf("item 0 stdout %v", got)
	}
	if got := res[1].(map[string]any)["skipped"]; got != true {
		t.Fatalf("item 1 not skipped: %v", res[1])
	}
	if got := res[2].(map[string]any)["stdout"]; got != "c-2-3" {
		t.Fatalf("item 2 stdout %v", got)
	}
	if res[0].(map[string]any)["pkg"] != "a" || out["changed"] != true {
		t.Fatalf("loop var or changed missing: %v", out)
	}
	var items []string
	for _, x := range r.Vars["node-1"]["wi"].(map[string]any)["results"].([]any) {
		items = append(items, x.(map[string]any)["stdout"].(string))
	}
	want(t, items, []string{"x", "y", "z"})
	if !strings.Contains(e.out.String(), "changed: [node-1] => (item=La)") {
		t.Fatalf("label not used:\n%s", e.out.String())
	}
	want(t, eventsOf(r, "node-1")[2:], []string{"empty loop=skipping"})
}

func TestUntilRetries(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: succeeds on the third try
      shell: "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo $n"
      register: c
      until: eq .c.stdout "3"
      retries: "{{ .tries }}"
      delay: 0
    - name: never
      command: "echo no"
      register: d
      until: eq .d.stdout "yes"
      retries: 2
      delay: 0
`})
	o := e.opts("site.yml")
	o.ExtraVars = []string{"tries=5"}
	r, err := e.run(o)
	if err == nil {
		t.Fatal("want failure of the second task")
	}
	if got := r.Vars["node-1"]["c"].(map[string]any)["attempts"]; got != 3 {
		t.Fatalf("attempts = %v", got)
	}
	if got := r.Vars["node-1"]["d"].(map[string]any)["attempts"]; got != 3 {
		t.Fatalf("exhausted attempts = %v (want 1 + 2 retries)", got)
	}
	if !strings.Contains(e.out.String(), "FAILED - RETRYING: [node-1]: never (2 retries left).") {
		t.Fatalf("no retry line:\n%s", e.out.String())
	}
}

func TestSerialBatches(t *testing.T) {
	var names []string
	for i := 1; i <= 5; i++ {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	if got := batches(names, []string{"1", "50%"}); len(got) != 3 || len(got[0]) != 1 || len(got[1]) != 2 || len(got[2]) != 2 {
		t.Fatalf("batches = %v", got)
	}
	if got := batches(names, []string{"2"}); len(got) != 3 || len(got[2]) != 1 {
		t.Fatalf("batches = %v", got)
	}
	e := newEnv(t, strings.Join(names, "\n")+"\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  serial: [1, "50%"]
  tasks:
    - {name: one, command: "true"}
    - {name: two, command: "true"}
`})
	r := mustRun(t, e, e.opts("site.yml"))
	// Every host of a batch finishes the play before the next batch starts.
	pos := map[string]int{}
	for i, ev := range r.Events {
		pos[ev.Host+"/"+ev.Task] = i
	}
	order := [][]string{{"n1"}, {"n2", "n3"}, {"n4", "n5"}}
	for b := 0; b+1 < len(order); b++ {
		for _, h := range order[b] {
			for _, h2 := range order[b+1] {
				if pos[h+"/two"] > pos[h2+"/one"] {
					t.Fatalf("batch %d host %s finished after %s of the next batch started: %v", b, h, h2, r.Events)
				}
			}
		}
	}
}

func TestLinearVsFree(t *testing.T) {
	play := func(strategy string) string {
		return `
- hosts: all
  gather_facts: false
  strategy: ` + strategy + `
  tasks:
    - name: one
      shell: "if [ $HOST = slow ]; then sleep 0.4; fi"
    - name: two
      command: "true"
`
	}
	for _, strategy := range []string{"linear", "free"} {
		t.Run(strategy, func(t *testing.T) {
			e := newEnv(t, "slow\nfast\n", map[string]string{"site.yml": play(strategy)})
			r := mustRun(t, e, e.opts("site.yml"))
			pos := map[string]int{}
			for i, ev := range r.Events {
				pos[ev.Host+"/"+ev.Task] = i
			}
			fastAhead := pos["fast/two"] < pos["slow/one"]
			if strategy == "linear" && fastAhead {
				t.Fatalf("linear: fast host ran task two before slow finished one: %v", r.Events)
			}
			if strategy == "free" && !fastAhead {
				t.Fatalf("free: fast host waited for slow: %v", r.Events)
			}
		})
	}
}

func TestTagsAndLimit(t *testing.T) {
	e := newEnv(t, "[a]\nnode-1\n[b]\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: untagged, command: "true"}
    - {name: tagged x, command: "true", tags: x}
    - {name: tagged y, command: "true", tags: [y]}
    - {name: always, command: "true", tags: always}
    - {name: never, command: "true", tags: [never, debug]}
    - name: blk
      tags: y
      block:
        - {name: inner, command: "true"}
`})
	cases := []struct {
		tags, skip []string
		limit      string
		want       []string
	}{
		{nil, nil, "", []string{"untagged", "tagged x", "tagged y", "always", "inner"}},
		{[]string{"x"}, nil, "", []string{"tagged x", "always"}},
		{[]string{"y"}, nil, "", []string{"tagged y", "always", "inner"}},
		{nil, []string{"y"}, "", []string{"untagged", "tagged x", "always"}},
		{[]string{"debug"}, nil, "", []string{"always", "never"}},
		{[]string{"untagged"}, nil, "", []string{"untagged", "always"}},
		{nil, []string{"always"}, "b", []string{"untagged", "tagged x", "tagged y", "inner"}},
	}
	for i, c := range cases {
		o := e.opts("site.yml")
		o.Tags, o.SkipTags, o.Limit = c.tags, c.skip, c.limit
		r := mustRun(t, e, o)
		host := "node-1"
		if c.limit == "b" {
			host = "node-2"
			if len(eventsOf(r, "node-1")) != 0 {
				t.Fatalf("case %d: limit b ran node-1", i)
			}
		}
		var got []string
		for _, ev := range eventsOf(r, host) {
			got = append(got, strings.TrimSuffix(ev, "=changed"))
		}
		want(t, got, c.want)
	}
}

func TestRunOnceAndDelegate(t *testing.T) {
	e := newEnv(t, "node-1 color=red\nnode-2 color=blue\nnode-3 color=green\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: once
      command: "echo ran-on-$HOST"
      run_once: true
      register: once
    - name: delegated
      command: "echo {{ .color }} from $HOST"
      delegate_to: node-3
      register: del
      when: eq .inventory_hostname "node-1"
`})
	r := mustRun(t, e, e.opts("site.yml"))
	for _, h := range []string{"node-1", "node-2", "node-3"} {
		if got := r.Vars[h]["once"].(map[string]any)["stdout"]; got != "ran-on-node-1" {
			t.Fatalf("%s: once = %v", h, got)
		}
	}
	if got := r.Vars["node-1"]["del"].(map[string]any)["stdout"]; got != "red from node-3" {
		t.Fatalf("delegated stdout = %v", got)
	}
	// node-1 ran "once"; node-3 ran the delegated task; node-2 ran nothing.
	for h, n := range map[string]int{"node-1": 1, "node-2": 0, "node-3": 1} {
		if got := len(e.fake(h).Requests()); got != n {
			t.Fatalf("%s: %d requests, want %d", h, got, n)
		}
	}
	if !strings.Contains(e.out.String(), "changed: [node-1 -> node-3]") {
		t.Fatalf("delegation not shown:\n%s", e.out.String())
	}
}

func TestUnreachable(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - {name: t, command: "true"}
`})
	e.fake("node-2").SetUnreachable(errors.New("connection refused"))
	r, err := e.run(e.opts("site.yml"))
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != 4 {
		t.Fatalf("want exit 4, got %v", err)
	}
	if s := r.Hosts["node-2"]; s.Unreachable != 1 || s.Failed != 0 {
		t.Fatalf("node-2 stats %+v", *s)
	}
	if r.Hosts["node-1"].Changed != 1 {
		t.Fatalf("node-1 did not continue: %+v", *r.Hosts["node-1"])
	}
	if !strings.Contains(e.out.String(), "fatal: [node-2]: UNREACHABLE! =>") {
		t.Fatalf("output:\n%s", e.out.String())
	}
}

func TestAnyErrorsFatal(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  any_errors_fatal: true
  tasks:
    - {name: t1, shell: "[ $HOST = node-2 ] && exit 1; true"}
    - {name: t2, command: "true"}
- hosts: all
  gather_facts: false
  tasks:
    - {name: next play, command: "true"}
`})
	r, _ := e.run(e.opts("site.yml"))
	want(t, eventsOf(r, "node-1"), []string{"t1=changed"})
}

func TestCtrlCStopsAndRecaps(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: quick, command: "true"}
    - {name: long, command: "sleep 5"}
    - {name: never, command: "true"}
`})
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	o := e.opts("site.yml")
	r, err := Run(ctx, o)
	if time.Since(start) > 3*time.Second {
		t.Fatalf("cancel took %s", time.Since(start))
	}
	if err == nil || r == nil || !r.Interrupted {
		t.Fatalf("want interrupted recap, got %v %v", r, err)
	}
	if !strings.Contains(e.out.String(), "PLAY RECAP") {
		t.Fatalf("no recap:\n%s", e.out.String())
	}
	for _, ev := range r.Events {
		if ev.Task == "never" {
			t.Fatal("task after cancel ran")
		}
	}
}

func TestVariableCycle(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    a: "{{ .b }}"
    b: "x{{ .c }}"
    c: "{{ .a }}"
  tasks:
    - debug: {msg: "{{ .a }}"}
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(e.out.String(), "site.yml:9: variable cycle: a -> b -> c -> a (host node-1)") {
		t.Fatalf("err %v\n%s", err, e.out.String())
	}
}

func TestTemplateErrors(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2 etcd_peer_port=2380\n", map[string]string{
		"site.yml": `
- hosts: all
  gather_facts: false
  roles: [etcd]
`,
		"roles/etcd/tasks/main.yml": `
- name: env file
  template: {src: etcd.env.tmpl, dest: "out/{{ .inventory_hostname }}.env"}
- name: inline
  tfile:
    path: x
    content: "port {{ .missing_inline }}"
`,
		"roles/etcd/templates/etcd.env.tmpl": "# comment\nA={{ .inventory_hostname }}\nPEER={{ .etcd_peer_port }}\n",
	})
	if err := os.MkdirAll(filepath.Join(e.dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := e.opts("site.yml")
	reg := modules.NewRegistry()
	reg.Register(tfile{}, "tfile")
	o.Registry = reg
	_, err := e.run(o)
	if err == nil {
		t.Fatal("want failure")
	}
	out := e.out.String()
	for _, w := range []string{
		"roles/etcd/templates/etcd.env.tmpl:3: .etcd_peer_port is not defined (host node-1)",
		"roles/etcd/tasks/main.yml:7: .missing_inline is not defined (host node-2)",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	f, ok := e.fake("node-2").File("out/node-2.env")
	if !ok || !strings.Contains(string(f.Data), "PEER=2380") {
		t.Fatalf("node-2 env file: %q %v", f.Data, ok)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, play, want string }{
		{"unknown task key", "- hosts: all\n  tasks:\n    - name: x\n      command: 'true'\n      becom: true\n", "site.yml:5: unknown key \"becom\" in task"},
		{"unknown play key", "- hosts: all\n  taks: []\n", "site.yml:2: unknown key \"taks\" in play"},
		{"unknown module arg", "- hosts: all\n  tasks:\n    - tfile:\n        path: x\n        contnt: y\n", "site.yml:5: tfile: unknown argument \"contnt\""},
		{"bad choice", "- hosts: all\n  tasks:\n    - tfile: {path: x, mode: '0777'}\n", "site.yml:3: tfile: argument \"mode\": \"0777\" is not one of 0644, 0600"},
		{"bad bool", "- hosts: all\n  tasks:\n    - tfile: {path: x, force: maybe}\n", "argument \"force\": want a boolean"},
		{"bad int", "- hosts: all\n  tasks:\n    - tfile: {path: x, count: many}\n", "argument \"count\": want an integer"},
		{"missing required", "- hosts: all\n  tasks:\n    - tfile: {content: y}\n", "site.yml:3: tfile: missing required argument \"path\""},
		{"kv form", "- hosts: all\n  tasks:\n    - tfile: path=x bogus=1\n", "site.yml:3: tfile: unknown argument \"bogus\""},
		{"template syntax", "- hosts: all\n  tasks:\n    - tfile: {path: \"{{ .x \"}\n", "site.yml:3:"},
		{"bad when", "- hosts: all\n  tasks:\n    - command: 'true'\n      when: eq .x (\n", "site.yml:4:"},
		{"two actions", "- hosts: all\n  tasks:\n    - command: 'true'\n      shell: 'true'\n", "site.yml:4: task has two actions"},
		{"role missing", "- hosts: all\n  roles: [nope]\n", "site.yml:2: role \"nope\" not found"},
		{"yaml error", "- hosts: all\n  tasks: [\n", "site.yml:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": c.play})
			_, err := e.run(e.opts("site.yml"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != 1 {
				t.Fatalf("exit code of %v is not 1", err)
			}
			if len(e.dials) != 0 {
				t.Fatalf("a host was contacted: %v", e.dials)
			}
		})
	}
}

func TestRoleDependencyCycle(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml":               "- hosts: all\n  roles: [a]\n",
		"roles/a/meta/main.yml":  "dependencies: [b]\n",
		"roles/b/meta/main.yml":  "dependencies:\n  - role: a\n",
		"roles/a/tasks/main.yml": "- command: 'true'\n",
	})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "role dependency cycle: a -> b -> a") {
		t.Fatalf("got %v", err)
	}
}

func TestRolesBundledAndLocal(t *testing.T) {
	bundled := fstest.MapFS{
		"common/defaults/main.yml": {Data: []byte("who: bundled-common\nport: 1\n")},
		"common/tasks/main.yml":    {Data: []byte("- name: common task\n  command: \"echo common {{ .who }} {{ .role_name }}\"\n  register: common_out\n")},
		"app/meta/main.yml":        {Data: []byte("dependencies: [common]\n")},
		"app/defaults/main.yml":    {Data: []byte("port: 8080\n")},
		"app/tasks/main.yml":       {Data: []byte("- import_tasks: sub.yml\n  vars: {extra: 1}\n")},
		"app/tasks/sub.yml":        {Data: []byte("- name: sub\n  command: \"echo app {{ .port }} {{ .extra }}\"\n  register: app_out\n  notify: restart app\n")},
		"app/handlers/main.yml":    {Data: []byte("- name: restart app\n  command: \"echo restarted\"\n")},
		"other/tasks/main.yml":     {Data: []byte("- command: 'echo bundled other'\n")},
	}
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml":                   "- hosts: all\n  gather_facts: false\n  roles: [app, other]\n",
		"roles/other/tasks/main.yml": "- name: local other\n  command: 'echo local other'\n  register: other_out\n",
	})
	o := e.opts("site.yml")
	o.BundledRoles = bundled
	r := mustRun(t, e, o)
	v := r.Vars["node-1"]
	if got := v["common_out"].(map[string]any)["stdout"]; got != "common bundled-common common" {
		t.Fatalf("common: %v", got)
	}
	if got := v["app_out"].(map[string]any)["stdout"]; got != "app 8080 1" {
		t.Fatalf("app: %v", got)
	}
	if got := v["other_out"].(map[string]any)["stdout"]; got != "local other" {
		t.Fatalf("the local role must win over the bundled one: %v", got)
	}
	want(t, eventsOf(r, "node-1"), []string{"common : common task=changed", "app : sub=changed", "other : local other=changed", "app : restart app=changed"})
}

func TestArgValidationBeforeAnyRequest(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - {name: fine, command: "true"}
    - name: later in a role-less play
      tfile: {path: x, mode: "0777"}
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "site.yml:6:") {
		t.Fatalf("got %v", err)
	}
	if len(e.fakes) != 0 {
		t.Fatal("a fake host was created before validation finished")
	}
}

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

func TestFactsAndMagicVars(t *testing.T) {
	e := newEnv(t, "[etcd]\nnode-1 ansible_host=192.0.2.1\nnode-2\n[kube:children]\netcd\n", map[string]string{"site.yml": `
- hosts: etcd
  tasks:
    - name: facts
      debug:
        msg: "{{ .ansible_hostname }} {{ .ansible_default_ipv4.address }} {{ .ansible_os_family }} {{ .ansible_processor_vcpus }} {{ .ansible_memtotal_mb }} {{ .ansible_service_mgr }} {{ .ansible_facts.distribution_version }}"
      register: f
    - name: magic
      debug:
        msg: "{{ .inventory_hostname }} {{ join \",\" .group_names }} {{ join \",\" .play_hosts }} {{ groupIndex \"etcd\" }} {{ inGroup \"kube\" }} {{ ipOf \"node-1\" }} {{ ipOf \"node-2\" }} {{ hostvar \"node-1\" \"ansible_host\" }} {{ index .hostvars \"node-2\" \"inventory_hostname\" }}"
      register: m
    - name: native
      debug: {msg: "{{ hostsOf \"etcd\" }}"}
      register: n
`})
	r := mustRun(t, e, e.opts("site.yml"))
	f := r.Vars["node-2"]["f"].(map[string]any)["msg"]
	if !regexp.MustCompile(`^node-2 10\.0\.0\.\d Debian 2 2000 systemd 12$`).MatchString(fmt.Sprint(f)) {
		t.Fatalf("facts: %q", f)
	}
	m := fmt.Sprint(r.Vars["node-2"]["m"].(map[string]any)["msg"])
	if !strings.HasPrefix(m, "node-2 etcd,kube node-1,node-2 1 true 192.0.2.1 10.0.0.") || !strings.Contains(m, " 192.0.2.1 ") {
		t.Fatalf("magic: %q", m)
	}
	if n := r.Vars["node-1"]["n"].(map[string]any)["msg"]; !reflect.DeepEqual(n, []string{"node-1", "node-2"}) {
		t.Fatalf("native list: %#v", n)
	}
}

func TestExtraVarsForms(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.yml"), []byte("a: 1\nb: [x]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"c": {"d": true}}`), 0o644)
	m, err := ParseExtraVars([]string{"k=v k2='with space'", "@" + filepath.Join(dir, "x.yml"), "@" + filepath.Join(dir, "x.json"), `{"n": 3}`})
	if err != nil {
		t.Fatal(err)
	}
	wantM := map[string]any{"k": "v", "k2": "with space", "a": 1, "b": []any{"x"}, "c": map[string]any{"d": true}, "n": 3}
	if !reflect.DeepEqual(m, wantM) {
		t.Fatalf("got %#v", m)
	}
	if _, err := ParseExtraVars([]string{"novalue"}); err == nil {
		t.Fatal("want error for a bare word")
	}
}

func TestTruthyAndConditions(t *testing.T) {
	for v, w := range map[any]bool{"": false, "no": false, "False": false, "0": false, "yes": true, "x": true, 0: false, 2: true, true: true, nil: false} {
		if truthy(v) != w {
			t.Errorf("truthy(%#v) = %v", v, !w)
		}
	}
	e := newEnv(t, "node-1 flag=yes mode=discovery\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: bare name, command: "true", when: flag}
    - {name: pipeline, command: "true", when: eq .mode "discovery"}
    - {name: list, command: "true", when: [.flag, eq .mode "static"]}
    - {name: default, command: "true", when: "{{ .nope | default false }}"}
    - {name: defined, command: "true", when: not (defined "nope")}
    - {name: bool helper, command: "true", when: bool .flag}
`})
	r := mustRun(t, e, e.opts("site.yml"))
	want(t, eventsOf(r, "node-1"), []string{"bare name=changed", "pipeline=changed", "list=skipping", "default=skipping", "defined=changed", "bool helper=changed"})
}

func TestChangedFailedWhenAndIgnore(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: not changed
      command: "echo same"
      register: r
      changed_when: ne .r.stdout "same"
    - name: failed by output
      command: "echo ERROR"
      register: r2
      failed_when: contains "ERROR" .r2.stdout
      ignore_errors: true
    - name: rc 1 is fine
      command: "exit 1"
      register: r3
      failed_when: gt .r3.rc 1
    - {name: set, set_fact: {x: "{{ add 1 2 }}", y: "{{ .r3.rc }}"}}
    - name: assert
      assert:
        that: [eq .x 3, "eq .y 1"]
        fail_msg: nope
`})
	r := mustRun(t, e, e.opts("site.yml"))
	want(t, eventsOf(r, "node-1"), []string{"not changed=ok", "failed by output=failed", "rc 1 is fine=changed", "set=ok", "assert=ok"})
	if s := r.Hosts["node-1"]; s.Ignored != 1 || s.Failed != 0 {
		t.Fatalf("stats %+v", *s)
	}
	if !strings.Contains(e.out.String(), "...ignoring") {
		t.Fatal("no ignoring line")
	}
}

func TestGoldenOutput(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- name: golden
  hosts: all
  gather_facts: false
  tasks:
    - name: write
      tfile: {path: golden-out, content: "v1"}
      notify: reload
    - name: show
      debug: {msg: "hello {{ .inventory_hostname }}"}
    - name: skipped
      command: "true"
      when: false
    - block:
        - {name: boom, command: "exit 2"}
      rescue:
        - {name: recover, debug: {var: inventory_hostname}}
  handlers:
    - {name: reload, command: "true"}
`})
	o := e.opts("site.yml")
	o.Diff = true
	mustRun(t, e, o)
	got := regexp.MustCompile(`site\.yml:\d+`).ReplaceAllString(e.out.String(), "site.yml:N")
	golden := filepath.Join("testdata", "golden_output.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(b) != got {
		t.Fatalf("output differs from %s (run with -update to accept):\n%s", golden, got)
	}
}

func TestJSONOutput(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": "- hosts: all\n  tasks:\n    - {name: t, command: \"true\"}\n"})
	o := e.opts("site.yml")
	o.Output = "json"
	mustRun(t, e, o)
	var doc struct {
		Hosts map[string]HostStats `json:"hosts"`
		Plays []struct {
			Tasks []struct {
				Name  string
				Hosts map[string]map[string]any
			}
		}
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal(e.out.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, e.out.String())
	}
	if s := doc.Hosts["node-1"]; s.RoundTrips != 2 || s.Changed != 1 || s.Ok != 2 || doc.ExitCode != 0 {
		t.Fatalf("json stats %+v exit %d", s, doc.ExitCode)
	}
	if st := doc.Plays[0].Tasks[1].Hosts["node-1"]["status"]; doc.Plays[0].Tasks[1].Name != "t" || st != "changed" {
		t.Fatalf("json task %+v", doc.Plays[0].Tasks[1])
	}
}

func TestStartAtTask(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: a, command: "true"}
    - {name: b, command: "true"}
    - {name: c, command: "true"}
`})
	o := e.opts("site.yml")
	o.StartAtTask = "b"
	r := mustRun(t, e, o)
	want(t, eventsOf(r, "node-1"), []string{"b=changed", "c=changed"})
	o.StartAtTask = "zzz"
	if _, err := e.run(o); err == nil {
		t.Fatal("unknown start task accepted")
	}
}

func TestListAndGraph(t *testing.T) {
	e := newEnv(t, "[web]\nnode-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: web
  tasks:
    - {name: a, command: "true", tags: t1}
    - block:
        - {name: b, command: "true"}
      rescue:
        - {name: c, command: "true"}
  handlers:
    - {name: h, command: "true"}
`})
	o := e.opts("site.yml")
	pb, inv, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	ListTasks(&b, pb, []string{"t1"}, nil)
	if !strings.Contains(b.String(), "a\tTAGS: [t1]") || strings.Contains(b.String(), "\n      b\t") {
		t.Fatalf("list-tasks:\n%s", b.String())
	}
	b.Reset()
	if err := ListHosts(&b, pb, inv, "node-2"); err != nil || !strings.Contains(b.String(), "hosts (1):\n      node-2") {
		t.Fatalf("list-hosts: %v\n%s", err, b.String())
	}
	b.Reset()
	Graph(&b, pb)
	for _, w := range []string{"digraph playbook {", `label="rescue"`, `"handler: h"`} {
		if !strings.Contains(b.String(), w) {
			t.Fatalf("graph lacks %s:\n%s", w, b.String())
		}
	}
	if len(e.dials) != 0 {
		t.Fatal("listing contacted hosts")
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

func TestParseFacts(t *testing.T) {
	f := parseFacts(strings.NewReplacer("HOST", "n1.example", "IDX", "7").Replace(fakeFacts))
	if f["ansible_hostname"] != "n1" || f["ansible_fqdn"] != "n1.example.example.internal" {
		t.Fatalf("names: %v %v", f["ansible_hostname"], f["ansible_fqdn"])
	}
	def := f["ansible_default_ipv4"].(map[string]any)
	if def["address"] != "10.0.0.7" || def["gateway"] != "10.0.0.1" || def["interface"] != "eth0" {
		t.Fatalf("default ipv4 %v", def)
	}
	if !reflect.DeepEqual(f["ansible_all_ipv4_addresses"], []any{"10.0.0.7"}) {
		t.Fatalf("all ipv4 %v", f["ansible_all_ipv4_addresses"])
	}
	if f["ansible_distribution"] != "Debian" || f["ansible_distribution_major_version"] != "12" || f["ansible_memtotal_mb"] != 2000 {
		t.Fatalf("distro %v", f)
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
	mustRun(t, e, e.opts("site.yml"))
	e.resetFakes()
	r := mustRun(t, e, e.opts("site.yml"))
	var batches []int
	for _, rq := range e.fake("node-1").Requests() {
		if n := strings.Count(rq.Script, "__GKPROBE_"); n > 0 {
			batches = append(batches, n-1)
		}
	}
	// One batch for a, b, c (the command that did not run keeps it valid);
	// the command that ran drops it, so c is probed again.
	if !reflect.DeepEqual(batches, []int{3, 1}) || len(e.fake("node-1").Requests()) != 5 {
		t.Fatalf("probe batches %v, %d requests", batches, len(e.fake("node-1").Requests()))
	}
	if r.Hosts["node-1"].Changed != 1 {
		t.Fatalf("%+v", *r.Hosts["node-1"])
	}
}

func TestTimeoutEnvNoLogMetaIncludeVars(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{
		"vars/extra.yml": "from_file: yes-from-file\n",
		"site.yml": `
- hosts: all
  gather_facts: false
  environment: {PLAY_ENV: p}
  tasks:
    - include_vars: vars/extra.yml
    - name: env
      shell: "echo $PLAY_ENV-$TASK_ENV-{{ .from_file }}"
      environment: {TASK_ENV: "{{ .inventory_hostname }}"}
      register: env
    - name: secret
      shell: "echo s3cret; exit 1"
      no_log: true
      ignore_errors: true
    - name: slow
      command: "sleep 1.5"
      timeout: 1
      ignore_errors: true
      register: slow
    - name: stop node-2
      meta: end_host
      when: eq .inventory_hostname "node-2"
    - name: after
      command: "true"
`})
	r := mustRun(t, e, e.opts("site.yml"))
	if got := r.Vars["node-1"]["env"].(map[string]any)["stdout"]; got != "p-node-1-yes-from-file" {
		t.Fatalf("env: %v", got)
	}
	if strings.Contains(e.out.String(), "s3cret") || !strings.Contains(e.out.String(), "hidden due to the 'no_log: true'") {
		t.Fatalf("no_log leaked:\n%s", e.out.String())
	}
	if msg := fmt.Sprint(r.Vars["node-1"]["slow"].(map[string]any)["msg"]); !strings.Contains(msg, "timed out after 1s") {
		t.Fatalf("timeout msg %q", msg)
	}
	want(t, eventsOf(r, "node-2")[4:], []string{"stop node-2=ok"})
	want(t, eventsOf(r, "node-1")[4:], []string{"stop node-2=skipping", "after=changed"})
}

func TestMaxFailPercentageAndEndPlay(t *testing.T) {
	e := newEnv(t, "n1\nn2\nn3\nn4\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  max_fail_percentage: 25
  tasks:
    - {name: t1, shell: "[ $HOST = n1 ] && exit 1; true"}
    - {name: t2, command: "true"}
    - {name: t3, shell: "[ $HOST = n2 ] && exit 1; true"}
    - {name: t4, command: "true"}
- hosts: all
  gather_facts: false
  tasks:
    - {name: e1, meta: end_play}
    - {name: e2, command: "true"}
`})
	r, _ := e.run(e.opts("site.yml"))
	// 1 of 4 failed (25%) is tolerated; the second failure (50%) stops the play and the run.
	want(t, eventsOf(r, "n3"), []string{"t1=changed", "t2=changed", "t3=changed"})
	want(t, eventsOf(r, "n1"), []string{"t1=failed"})
	e2 := newEnv(t, "n1\nn2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: e1, meta: end_play}
    - {name: e2, command: "true"}
- hosts: all
  gather_facts: false
  tasks:
    - {name: next, command: "true"}
`})
	r = mustRun(t, e2, e2.opts("site.yml"))
	want(t, eventsOf(r, "n2"), []string{"e1=ok", "next=changed"})
}

func TestErrorInsideVariableNamesUseAndChain(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    a: "x-{{ .b }}"
    b: "{{ .missing }}"
  tasks:
    - name: use
      debug:
        msg: "{{ .a }}"
`})
	_, err := e.run(e.opts("site.yml"))
	w := "site.yml:10: .missing is not defined (host node-1) (while rendering variable a -> b)"
	if err == nil || !strings.Contains(e.out.String(), w) {
		t.Fatalf("want %q in\n%s", w, e.out.String())
	}
}

// inflight counts concurrent requests on one connection.
type inflight struct {
	connection.Conn
	mu       sync.Mutex
	cur, max int
}

func (c *inflight) Run(ctx context.Context, req connection.Request) (connection.Result, error) {
	c.mu.Lock()
	c.cur++
	if c.cur > c.max {
		c.max = c.cur
	}
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.cur--; c.mu.Unlock() }()
	return c.Conn.Run(ctx, req)
}

func TestDelegationSerialisesTheTargetConnection(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\nnode-3\nnode-4\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - name: on node-4 for everyone
      shell: "sleep 0.1; echo {{ .inventory_hostname }}"
      delegate_to: node-4
`})
	o := e.opts("site.yml")
	target := &inflight{Conn: keepOpen{e.fake("node-4")}}
	o.ConnFactory = func(host string, vars map[string]any) (connection.Conn, error) {
		if host == "node-4" {
			return target, nil
		}
		return keepOpen{e.fake(host)}, nil
	}
	mustRun(t, e, o)
	if target.max != 1 || len(e.fake("node-4").Requests()) != 4 {
		t.Fatalf("max concurrent requests on node-4: %d, requests %d", target.max, len(e.fake("node-4").Requests()))
	}
}

func TestTemplatedHostsPattern(t *testing.T) {
	e := newEnv(t, "[a]\nnode-1\n[b]\nnode-2\n", map[string]string{"site.yml": "- hosts: \"{{ .target }}\"\n  gather_facts: false\n  tasks:\n    - {name: t, command: \"true\"}\n"})
	o := e.opts("site.yml")
	o.ExtraVars = []string{"target=b"}
	r := mustRun(t, e, o)
	if len(eventsOf(r, "node-1")) != 0 || len(eventsOf(r, "node-2")) != 1 {
		t.Fatalf("events %v", r.Events)
	}
}

func TestDict2ItemsLoop(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  vars:
    ports: {peer: 2380, client: 2379}
  tasks:
    - command: "echo {{ .item.key }}={{ .item.value }}"
      loop: "{{ dict2items .ports }}"
      register: out
`})
	r := mustRun(t, e, e.opts("site.yml"))
	var got []string
	for _, x := range r.Vars["node-1"]["out"].(map[string]any)["results"].([]any) {
		got = append(got, x.(map[string]any)["stdout"].(string))
	}
	want(t, got, []string{"client=2379", "peer=2380"})
}

func TestLimitMatchingNothingIsUsageError(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": "- hosts: all\n  tasks: []\n"})
	o := e.opts("site.yml")
	o.Limit = "nope*"
	_, err := e.run(o)
	var ue *UsageError
	if !errors.As(err, &ue) || len(e.dials) != 0 {
		t.Fatalf("got %v", err)
	}
}
