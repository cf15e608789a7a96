package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gokube/connection"
	"gokube/modules"
)

const fakeFacts = `##os-release
ID=debian
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
##hostname
HOST
##fqdn
HOST.example.internal
##addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.0.IDX/24 brd 10.0.0.255 scope global eth0\       valid_lft forever preferred_lft forever
##route
default via 10.0.0.1 dev eth0 onlink
##nproc
2
##meminfo
MemTotal:        2048000 kB
##arch
x86_64
##kernel
6.1.0
##init
systemd
##end
`

// tfile is a test module that keeps a file's content, with a probe.
type tfile struct{}

func (tfile) Spec() modules.Spec {
	return modules.Spec{Args: map[string]modules.Arg{
		"path":    {Type: modules.String, Required: true, Aliases: []string{"dest"}},
		"content": {Type: modules.String},
		"mode":    {Type: modules.String, Choices: []string{"0644", "0600"}},
		"force":   {Type: modules.Bool},
		"count":   {Type: modules.Int},
		"tags":    {Type: modules.List},
	}}
}

func (tfile) Probe(args map[string]any) (string, bool) {
	return fmt.Sprintf("cat %q 2>/dev/null || echo __MISSING__", args["path"]), true
}

func (m tfile) Run(ctx context.Context, env *modules.Env, args map[string]any) (*modules.Result, error) {
	out := env.Probe
	if out == nil {
		s, _ := m.Probe(args)
		res, err := env.Conn.Run(ctx, connection.Request{Script: s, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		out = res.Stdout
	}
	want := fmt.Sprint(args["content"])
	if string(out) == want {
		return &modules.Result{Data: map[string]any{"path": args["path"]}}, nil
	}
	_, err := env.Conn.Run(ctx, connection.Request{Script: fmt.Sprintf("printf %%s %q > %q", want, args["path"])})
	if err != nil {
		return nil, err
	}
	return &modules.Result{Changed: true, Data: map[string]any{"path": args["path"]}, Diff: "-old\n+new\n"}, nil
}

// tcmd is a command-like module without probe: it records and says changed.
type tcmd struct{}

func (tcmd) Spec() modules.Spec {
	return modules.Spec{FreeForm: "cmd", Args: map[string]modules.Arg{"cmd": {Type: modules.String, Required: true},
		"creates": {Type: modules.String}}}
}

func (tcmd) Run(ctx context.Context, env *modules.Env, args map[string]any) (*modules.Result, error) {
	if c, ok := args["creates"].(string); ok {
		res, err := env.Conn.Run(ctx, connection.Request{Script: fmt.Sprintf("test -e %q", c), ReadOnly: true})
		if err != nil {
			return nil, err
		}
		if res.RC == 0 {
			return &modules.Result{Msg: "did not run", Data: map[string]any{"rc": 0}}, nil
		}
	}
	res, err := env.Conn.Run(ctx, connection.Request{Script: fmt.Sprint(args["cmd"]), Become: env.Become, BecomeUser: env.BecomeUser, Env: env.Environment})
	if err != nil {
		return nil, err
	}
	out := strings.TrimRight(string(res.Stdout), "\n")
	return &modules.Result{Changed: true, Failed: res.RC != 0, Msg: map[bool]string{true: "non-zero return code"}[res.RC != 0],
		Data: map[string]any{"rc": res.RC, "stdout": out, "stdout_lines": strings.Split(out, "\n")}}, nil
}

func testRegistry() *modules.Registry {
	r := &modules.Registry{}
	r.Register(tfile{}, "tfile")
	r.Register(tcmd{}, "command", "shell")
	r.Register(treload{}, "treload")
	r.Register(tguard{}, "tguard")
	return r
}

// treload is a test module whose probe prints the daemon-reload answers
// as the systemd module's reload probe does (modules.ReloadAnswers), with
// fixed values; it changes nothing.
type treload struct{}

func (treload) Spec() modules.Spec {
	return modules.Spec{Args: map[string]modules.Arg{"reprobe": {Type: modules.Bool}}}
}

func (treload) Probe(map[string]any) (string, bool) {
	return "printf '%s\\n' '--- gokube need-daemon-reload' no '--- gokube last-reload' UnitsLoadTimestamp=@100 '--- gokube reload-inputs' '50 /etc/fstab'", true
}

func (treload) Run(_ context.Context, _ *modules.Env, args map[string]any) (*modules.Result, error) {
	// reprobe: as after a daemon-reload, no change but probes are stale.
	return &modules.Result{Reprobe: args["reprobe"] == true}, nil
}

// env is a test world: a temp dir with playbook files and fake hosts whose
// scripts run in a local sh (so probes and files are real), counting requests.
type env struct {
	t     testing.TB
	dir   string
	mu    sync.Mutex
	fakes map[string]*connection.Fake
	out   bytes.Buffer
	// dials counts factory calls per host.
	dials map[string]int
	// ctx bounds the fakes' shell commands (Ctrl-C tests cancel it).
	ctx context.Context
}

// keepOpen lets a fake outlive one run's Close so tests can run twice.
type keepOpen struct{ *connection.Fake }

func (keepOpen) Close() error { return nil }

func newEnv(t testing.TB, invText string, files map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	invPath := filepath.Join(dir, "inventory.ini")
	if err := os.WriteFile(invPath, []byte(invText), 0o644); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, fakes: map[string]*connection.Fake{}, dials: map[string]int{}}
}

func (e *env) fake(host string) *connection.Fake {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.fakes[host]; ok {
		return f
	}
	f := connection.NewFake(host)
	idx := fmt.Sprint(len(e.fakes) + 1)
	f.On("##os-release", connection.Result{Stdout: []byte(strings.ReplaceAll(strings.ReplaceAll(fakeFacts, "HOST", host), "IDX", idx))})
	f.OnFunc("", func(req connection.Request) (connection.Result, error) {
		if out, ok := e.interpret(req.Script); ok {
			return connection.Result{Stdout: out}, nil
		}
		ctx := e.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", req.Script)
		cmd.Dir = e.dir
		// Cancelling kills the script's whole process group, as the SSH
		// session's trap does, so its children (a sleep) go too and close
		// the output pipes. WaitDelay only stops a hang: it also runs from
		// a normal exit, and at 100 ms a loaded machine that had not yet
		// copied the output turned a successful script into a failed task.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 10 * time.Second
		cmd.Env = append(os.Environ(), "HOST="+host)
		for k, v := range req.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		rc := 0
		if ee, ok := err.(*exec.ExitError); ok {
			rc = ee.ExitCode()
		} else if err != nil {
			return connection.Result{}, err
		}
		return connection.Result{Stdout: so.Bytes(), Stderr: se.Bytes(), RC: rc}, nil
	})
	e.fakes[host] = f
	return f
}

func (e *env) opts(playbook string) Options {
	return Options{
		Inventory:   []string{filepath.Join(e.dir, "inventory.ini")},
		Playbook:    filepath.Join(e.dir, playbook),
		Out:         &e.out,
		Registry:    testRegistry(),
		HideTimings: true,
		ConnFactory: func(host string, vars map[string]any) (connection.Conn, error) {
			e.mu.Lock()
			e.dials[host]++
			e.mu.Unlock()
			return keepOpen{e.fake(host)}, nil
		},
	}
}

func (e *env) run(o Options) (*Recap, error) {
	e.out.Reset()
	return Run(context.Background(), o)
}

func (e *env) resetFakes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.fakes {
		f.Reset()
	}
}

// eventsOf lists "task=status" for one host in order.
func eventsOf(r *Recap, host string) []string {
	var out []string
	for _, ev := range r.Events {
		if ev.Host == host {
			out = append(out, ev.Task+"="+ev.Status)
		}
	}
	return out
}

var (
	reMarker = regexp.MustCompile(`^printf '\\n(\S+) (\S+)\\n'$`)
	reCat    = regexp.MustCompile(`^cat "([^"]+)" 2>/dev/null \|\| echo __MISSING__$`)
	reWrite  = regexp.MustCompile(`^printf %s "([^"]*)" > "([^"]+)"$`)
)

// interpret answers the scripts of tfile and probe batches in Go, so
// tests with many requests do not spawn a shell for each (a busy CI box
// makes that slow); anything else runs in sh.
func (e *env) interpret(script string) ([]byte, bool) {
	var out bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		switch {
		case l == "{" || l == "} </dev/null" || l == "(" || l == ") </dev/null":
		case reMarker.MatchString(l):
			m := reMarker.FindStringSubmatch(l)
			fmt.Fprintf(&out, "\n%s %s\n", m[1], m[2])
		case reCat.MatchString(l):
			b, err := os.ReadFile(filepath.Join(e.dir, reCat.FindStringSubmatch(l)[1]))
			if err != nil {
				b = []byte("__MISSING__\n")
			}
			out.Write(b)
		case reWrite.MatchString(l):
			m := reWrite.FindStringSubmatch(l)
			if err := os.WriteFile(filepath.Join(e.dir, m[2]), []byte(m[1]), 0o644); err != nil {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return out.Bytes(), true
}

// tguard is tcmd's guard with an optional probe (as command's creates=):
// answered by a batch when one runs, else it asks in a request of its own.
type tguard struct{ tcmd }

func (tguard) Probe(args map[string]any) (string, bool) {
	return fmt.Sprintf("echo guard-probe %q", args["creates"]), true
}

func (tguard) ProbeOnlyInBatch() bool { return true }

func (m tguard) Run(ctx context.Context, env *modules.Env, args map[string]any) (*modules.Result, error) {
	if env.Probe != nil {
		return &modules.Result{Msg: "answered by the batch"}, nil
	}
	return m.tcmd.Run(ctx, env, args)
}
