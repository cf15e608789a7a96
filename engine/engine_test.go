package engine

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"gokube/connection"
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

// With one host unreachable and another failed the run exits 4, as
// Ansible's does (the unreachable host outranks the failure).
func TestUnreachableOutranksFailed(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: t, command: "false"}
`})
	e.fake("node-1").On("false", connection.Result{RC: 1})
	e.fake("node-2").SetUnreachable(errors.New("connection refused"))
	r, err := e.run(e.opts("site.yml"))
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != 4 || r.ExitCode() != 4 {
		t.Fatalf("want exit 4, got %v", err)
	}
	if r.Hosts["node-1"].Failed != 1 || r.Hosts["node-2"].Unreachable != 1 {
		t.Fatalf("stats: %+v %+v", *r.Hosts["node-1"], *r.Hosts["node-2"])
	}
}

func TestCtrlCStopsAndRecaps(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - {name: quick, command: "true"}
    - {name: long, command: "sleep 3600"}
    - {name: never, command: "true"}
`})
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	time.AfterFunc(300*time.Millisecond, cancel)
	o := e.opts("site.yml")
	// The long task sleeps an hour: the run ends only if the cancel stops
	// it (the test's own timeout is the hang guard).
	r, err := Run(ctx, o)
	if err == nil || r == nil || !r.Interrupted {
		t.Fatalf("want interrupted recap, got %v %v", r, err)
	}
	// 99, Ansible's code for a user interrupt (1 is bad input).
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != ExitInterrupted || ExitInterrupted != 99 {
		t.Fatalf("exit code of %v is not 99", err)
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
