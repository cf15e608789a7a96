package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gokube/connection"
	"gokube/modules"
)

// diskConn is keepOpen whose puts are the scripts the SSH connection
// sends, which the fake runs on local disk: puts and pipelined puts land
// in the same place.
type diskConn struct{ *connection.Fake }

func (diskConn) Close() error { return nil }

func (c diskConn) Put(ctx context.Context, up connection.Upload) error {
	req, _, ok, err := connection.PutRequest(up)
	if err != nil || !ok {
		return fmt.Errorf("put %s: not a small put (%v)", up.Path, err)
	}
	res, err := c.Run(ctx, req)
	if err != nil {
		return err
	}
	return connection.PutResult(c.Host(), up, req, res)
}

// pipeConn is a diskConn that pipelines.
type pipeConn struct{ diskConn }

func (c pipeConn) Send(ctx context.Context, ops []connection.Op) ([]*connection.Pending, error) {
	return connection.PipeFake{Fake: c.Fake}.Send(ctx, ops)
}

// pipelineRun runs play (DIR replaced by a fresh directory) with the real
// modules on local paths, pipelining or not; it returns the directory, the
// recap, the output and the events' statuses in order.
func pipelineRun(t *testing.T, play string, pipe bool) (string, *Recap, string, []string) {
	t.Helper()
	dir := t.TempDir()
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": strings.ReplaceAll(play, "DIR", dir)})
	o := e.opts("site.yml")
	o.Registry = modules.NewRegistry()
	o.ConnFactory = func(host string, _ map[string]any) (connection.Conn, error) {
		if pipe {
			return pipeConn{diskConn{e.fake(host)}}, nil
		}
		return diskConn{e.fake(host)}, nil
	}
	r, _ := e.run(o)
	var ev []string
	for _, x := range r.Events {
		ev = append(ev, x.Task+" "+x.Status)
	}
	return dir, r, e.out.String(), ev
}

// bothWays is a play run one request each and pipelined.
type bothWays struct {
	dir1, dir2 string // the pipelined run's: dir2, r2, out2
	r1, r2     *Recap
	out1, out2 string
}

// wantRoundTrips asserts the round trips of the two runs.
func (w bothWays) wantRoundTrips(t *testing.T, one, pipelined int64) {
	t.Helper()
	if rt1, rt2 := w.r1.Hosts["node-1"].RoundTrips, w.r2.Hosts["node-1"].RoundTrips; rt1 != one || rt2 != pipelined {
		t.Errorf("round trips %d one request each, %d pipelined; want %d and %d\n%s", rt1, rt2, one, pipelined, w.out2)
	}
}

// runBothWays runs play one request each and pipelined, and asserts that
// both leave the same files and report the same results.
func runBothWays(t *testing.T, play string) bothWays {
	t.Helper()
	var b bothWays
	var ev1, ev2 []string
	b.dir1, b.r1, b.out1, ev1 = pipelineRun(t, play, false)
	b.dir2, b.r2, b.out2, ev2 = pipelineRun(t, play, true)
	if x, y := tree(t, b.dir1), tree(t, b.dir2); x != strings.ReplaceAll(y, b.dir2, b.dir1) {
		t.Errorf("files one request each:\n%s\npipelined:\n%s", x, y)
	}
	if strings.Join(ev1, "|") != strings.Join(ev2, "|") {
		t.Errorf("results one request each %q, pipelined %q", ev1, ev2)
	}
	return b
}

// tree lists what is below dir: names, kinds and contents.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, strings.TrimPrefix(l, dir))
		case fi.IsDir():
			fmt.Fprintf(&b, "%s/ %o\n", rel, fi.Mode().Perm())
		default:
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %o %q\n", rel, fi.Mode().Perm(), c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const pipelinePlay = `
- hosts: all
  gather_facts: false
  tasks:
    - file: {path: DIR/app, state: directory, mode: "0750"}
    - copy: {content: "one\n", dest: DIR/app/one.conf, mode: "0644"}
    - copy: {content: "two\n", dest: DIR/app/two.conf, mode: "0600"}
    - lineinfile: {path: DIR/app/line.conf, line: "x=1", create: true}
    - file: {src: DIR/app/one.conf, dest: DIR/app/one.link, state: link}
    - copy: {content: "three\n", dest: DIR/app/three.conf}
      register: three
    - copy: {content: "{{ .three.changed }}\n", dest: DIR/app/four.conf}
`

// TestPipelinedChanges: a cold run's changes go out together, one round
// trip for the run of tasks that can be foreseen, and leave the same
// files and report the same results as one request each. A task that
// registers does not end the pipeline: the next one is rendered with the
// result it will register.
func TestPipelinedChanges(t *testing.T) {
	w := runBothWays(t, pipelinePlay)
	if b, _ := os.ReadFile(filepath.Join(w.dir2, "app/four.conf")); string(b) != "true\n" {
		t.Errorf("four.conf %q: the registered result was not the real one", b)
	}
	// One probe batch, then: one request each for 7 changes; pipelined,
	// all 7 in one.
	w.wantRoundTrips(t, 8, 2)
}

// TestPipelineStopsAtAFailure: when a change fails, the changes sent
// behind it do not run; the task fails as it does without pipelining,
// and a rescue and an always section run as usual (the always task sent
// ahead, which did not run, runs at its turn).
func TestPipelineStopsAtAFailure(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  tasks:
    - block:
        - file: {path: DIR/app, state: directory}
        - copy: {content: "x\n", dest: DIR/app/blocker}
        - copy: {content: "one\n", dest: DIR/app/one.conf}
        - copy: {content: "bad\n", dest: DIR/app/blocker/bad.conf}
        - copy: {content: "two\n", dest: DIR/app/two.conf}
      rescue:
        - copy: {content: "rescued\n", dest: DIR/app/rescue.conf}
      always:
        - copy: {content: "always\n", dest: DIR/app/always.conf}
    - copy: {content: "after\n", dest: DIR/app/after.conf}
`
	w := runBothWays(t, play)
	if _, err := os.Stat(filepath.Join(w.dir2, "app/two.conf")); err == nil {
		t.Error("two.conf was written after the failed task")
	}
	for _, f := range []string{"rescue.conf", "always.conf", "after.conf"} {
		if _, err := os.Stat(filepath.Join(w.dir2, "app", f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if s := w.r2.Hosts["node-1"]; s.Rescued != 1 || s.Failed != 0 || w.r1.Hosts["node-1"].Rescued != 1 {
		t.Errorf("recap %+v, want the failure rescued", s)
	}
	// The same message, but for the directory and the temp file's name.
	msg := func(out, dir string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "FAILED") {
				l = strings.ReplaceAll(l, dir, "DIR")
				return regexp.MustCompile(`\.gokube\.[0-9a-f]+`).ReplaceAllString(l, ".gokube.TEMP")
			}
		}
		return ""
	}
	if m1, m2 := msg(w.out1, w.dir1), msg(w.out2, w.dir2); m1 != m2 || !strings.Contains(m1, "bad.conf") {
		t.Errorf("the failure one request each:\n%s\npipelined:\n%s", m1, m2)
	}
}

// batchBehindPlay: a file whose probe the change before it made stale
// (its batch goes behind the changes), a stat that registers, a command
// (the next task's batch goes behind it) and tasks after it that read the
// host and a registered result.
const batchBehindPlay = `
- hosts: all
  gather_facts: false
  tasks:
    - file: {path: DIR/app, state: directory, mode: "0755"}
    - copy: {content: "one\n", dest: DIR/app/one.conf, mode: "0644"}
    - file: {path: DIR/app/one.conf, mode: "0600"}
    - stat: {path: DIR/app/one.conf}
      register: st
    - command: {cmd: "touch DIR/app/marker", creates: DIR/app/marker}
    - file: {path: DIR/app/marker, mode: "0640"}
    - copy: {content: "{{ .st.stat.mode }}\n", dest: DIR/app/mode}
    - stat: {path: DIR/app/marker}
      register: m
    - copy: {content: "{{ .m.stat.mode }}\n", dest: DIR/app/marker.mode}
`

// TestBatchBehindChanges: the probe batch a task needs after changes
// made its answer stale goes out behind those changes, after a pipeline
// and after a command, and the run leaves the same files and results as
// one request each, the tasks after them reading what the changes left.
func TestBatchBehindChanges(t *testing.T) {
	w := runBothWays(t, batchBehindPlay)
	for f, want := range map[string]string{"mode": "0600\n", "marker.mode": "0640\n"} {
		if b, _ := os.ReadFile(filepath.Join(w.dir2, "app", f)); string(b) != want {
			t.Errorf("%s holds %q, want %q", f, b, want)
		}
	}
	// Pipelined: the first batch; the directory and the copy with the
	// batch the file mode needs behind them; the mode (an attribute
	// change forgets every probe) with the stat's batch behind it; the
	// command with the batch of the tasks after it; the marker's mode
	// with the batch of the copy and the stat; the copy with the batch of
	// the last copy, rendered with what the stat will register; the last
	// copy: 7. One request each: a request per change (6 and the command)
	// and a batch at each task whose probe a change before it made stale,
	// or whose arguments read a result not registered yet: 13.
	w.wantRoundTrips(t, 13, 7)
}

// TestBatchBehindAFailure: when a change before a batch sent behind it
// fails, the batch does not run; the rescue, which changes the same path,
// and the tasks after the block read the host as it is.
func TestBatchBehindAFailure(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  tasks:
    - block:
        - file: {path: DIR/app, state: directory, mode: "0755"}
        - copy: {content: "x\n", dest: DIR/none/x.conf}
        - file: {path: DIR/app, mode: "0700"}
      rescue:
        - file: {path: DIR/app, mode: "0711"}
    - stat: {path: DIR/app}
      register: app
    - copy: {content: "{{ .app.stat.mode }}\n", dest: DIR/mode}
`
	w := runBothWays(t, play)
	if b, _ := os.ReadFile(filepath.Join(w.dir2, "mode")); string(b) != "0711\n" {
		t.Errorf("mode holds %q, want 0711\n%s", b, w.out2)
	}
	if s := w.r2.Hosts["node-1"]; s.Rescued != 1 || s.Failed != 0 {
		t.Errorf("recap %+v, want the failure rescued", s)
	}
}

// TestBatchBehindACommandsResult: the batch behind a command is rendered
// before its result is known; a task after it that reads the result
// renders with the real one at its turn and probes again.
func TestBatchBehindACommandsResult(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  tasks:
    - file: {path: DIR/app, state: directory}
    - command: {cmd: "echo 0640"}
      register: out
    - copy: {content: "x\n", dest: DIR/app/x, mode: "{{ .out.stdout }}"}
    - copy: {content: "{{ .out.rc }}\n", dest: DIR/app/rc}
`
	w := runBothWays(t, play)
	if fi, err := os.Stat(filepath.Join(w.dir2, "app/x")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("x: %v %v, want mode 0640 from the command's output\n%s", fi, err, w.out2)
	}
	if b, _ := os.ReadFile(filepath.Join(w.dir2, "app/rc")); string(b) != "0\n" {
		t.Errorf("rc holds %q", b)
	}
}
