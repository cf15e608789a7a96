package connection

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func putOp(t *testing.T, path, content string) Op {
	t.Helper()
	req, temp, ok, err := PutRequest(Upload{Path: path, Content: strings.NewReader(content), Size: int64(len(content)), Mode: 0o640})
	if err != nil || !ok {
		t.Fatalf("PutRequest: %v %v", ok, err)
	}
	return Op{Req: req, Temp: temp}
}

// TestSSHPipeline: a pipeline's requests go out in one round trip and run
// in order; the first failure stops the rest (they answer ErrNotRun and
// change nothing); the next request and the next pipeline run as usual.
func TestSSHPipeline(t *testing.T) {
	env := newTestEnv(t)
	fwd := startForwarder(t, env.srv.addr, 10*time.Millisecond)
	cfg := env.config()
	cfg.Addr, cfg.Port = fwd.addr()
	addKnownHost(t, env.knownHosts, net.JoinHostPort(cfg.Addr, fmt.Sprint(cfg.Port)), env.srv.hostKeys[0].PublicKey())
	ci, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ci.Close()
	c := ci.(*sshConn)
	run(t, c, Request{Script: "true"}) // the session is open
	dir := t.TempDir()
	ctx := context.Background()
	before, fbefore := c.RoundTrips(), fwd.roundTrips()
	ps, err := c.Send(ctx, []Op{
		putOp(t, filepath.Join(dir, "a"), "A\n"),
		{Req: Request{Script: "echo out; echo why >&2; exit 3"}},
		putOp(t, filepath.Join(dir, "b"), "B\n"),
		{Req: Request{Script: "echo c > " + filepath.Join(dir, "c")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		res, err := p.Wait(ctx)
		got = append(got, fmt.Sprintf("%d %q %q %v", res.RC, res.Stdout, res.Stderr, err))
	}
	want := []string{`0 "" "" <nil>`, `3 "out\n" "why\n" <nil>`, `0 "" "" ` + ErrNotRun.Error(), `0 "" "" ` + ErrNotRun.Error()}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("answers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n, fn := c.RoundTrips()-before, fwd.roundTrips()-fbefore; n != 1 || fn != 1 {
		t.Errorf("a pipeline of 4: %d round trips counted, %d seen, want 1", n, fn)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != "A\n" {
		t.Errorf("a: %q %v", b, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 1 {
		t.Errorf("files after the failure: %q, want a alone (b and c not run, no temp file)", left)
	}
	// After a failed pipeline the next request runs, and so does the
	// first request of the next pipeline.
	if res := run(t, c, Request{Script: "echo again"}); string(res.Stdout) != "again\n" {
		t.Errorf("after the pipeline: %q", res.Stdout)
	}
	ps, err = c.Send(ctx, []Op{{Req: Request{Script: "exit 1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := ps[0].Wait(ctx); err != nil || res.RC != 1 {
		t.Fatalf("%v %v", res, err)
	}
	ps, err = c.Send(ctx, []Op{{Req: Request{Script: "echo first"}}, {Req: Request{Script: "echo second"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []string{"first\n", "second\n"} {
		if res, err := ps[i].Wait(ctx); err != nil || string(res.Stdout) != w {
			t.Errorf("pipeline after a failed one, request %d: %q %v", i, res.Stdout, err)
		}
	}
}

// TestSSHPipelineCancel: cancelling a wait ends the session and what runs
// in it; the requests behind never run, and the temp file of a put the
// cancellation cut short is removed.
func TestSSHPipelineCancel(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	dir := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	put := putOp(t, filepath.Join(dir, "d"), "D\n")
	// The put's script stops (its temp file made) until the test cancels.
	// A stuck step: a program the script waits for, as it waits for mv.
	const rename = "if command -v gk_mv"
	if !strings.Contains(put.Req.Script, rename) {
		t.Fatal("the put's script has no rename step to stop at")
	}
	put.Req.Script = strings.Replace(put.Req.Script, rename, "{ sh -c 'echo $$ > "+pidFile+"; exec sleep 3600' & wait \"$!\"; } && "+rename, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := c.Send(ctx, []Op{put, {Req: Request{Script: "echo e > " + filepath.Join(dir, "e")}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := ps[0].Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(60 * time.Second) // only stops a hang
	for {
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %s still alive after cancel", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := ps[1].Wait(context.Background()); err == nil {
		t.Error("the request behind the cancelled one answered")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	hidden, _ := filepath.Glob(filepath.Join(dir, ".gokube.*"))
	if len(left)+len(hidden) != 0 {
		t.Errorf("left behind: %q %q", left, hidden)
	}
	if res := run(t, c, Request{Script: "echo again"}); string(res.Stdout) != "again\n" {
		t.Errorf("after cancel: %q", res.Stdout)
	}
}
