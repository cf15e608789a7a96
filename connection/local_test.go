package connection

import (
	"bytes"
	"context"
	"encoding/base64"
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

func TestLocal(t *testing.T) {
	c := NewLocal("localhost")
	ctx := context.Background()
	dir := t.TempDir()
	res := run(t, c, Request{Script: `printf '\000x'; printf 'e' >&2; cat; printf '%s' "$V"; pwd; exit 4`, Stdin: []byte("in"), Env: map[string]string{"V": "a'b\n"}, Dir: dir})
	if want := "\x00xina'b\n" + dir + "\n"; string(res.Stdout) != want || string(res.Stderr) != "e" || res.RC != 4 {
		t.Errorf("run: %q %q %d", res.Stdout, res.Stderr, res.RC)
	}
	if err := CheckResult("localhost", Request{Script: "x\ny"}, res); err == nil || !strings.Contains(err.Error(), "exited 4") {
		t.Errorf("CheckResult: %v", err)
	}
	p := filepath.Join(dir, "f")
	if err := c.Put(ctx, Upload{Path: p, Content: strings.NewReader("data"), Mode: 0o604}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, []byte("data"), 0o604)
	if got, err := c.Get(ctx, p, false); err != nil || string(got) != "data" {
		t.Errorf("get: %q %v", got, err)
	}
	if _, err := c.Get(ctx, p+"x", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get missing: %v", err)
	}
	if n := c.RoundTrips(); n != 4 {
		t.Errorf("round trips %d, want 4", n)
	}
	if os.Getuid() == 0 {
		res = run(t, c, Request{Script: "id -un; echo $HOME", Become: true})
		if !strings.HasPrefix(string(res.Stdout), "root\n") {
			t.Errorf("become root: %q %q", res.Stdout, res.Stderr)
		}
		res = run(t, c, Request{Script: "id -un", Become: true, BecomeUser: "nobody"})
		if string(res.Stdout) != "nobody\n" {
			t.Errorf("become nobody: %q %q", res.Stdout, res.Stderr)
		}
		if err := c.Put(ctx, Upload{Path: p, Content: strings.NewReader("o"), Owner: "nobody", Mode: 0o640, Become: true}); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(p); st == nil || st.Mode().Perm() != 0o640 {
			t.Errorf("owner put: %v", st)
		}
	}
}

func TestLocalCancel(t *testing.T) {
	c := NewLocal("localhost")
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, Request{Script: "sh -c 'echo $$ > " + pidFile + "; exec sleep 30'"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(10 * time.Second)
	for pid != "" {
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, fs.ErrNotExist) {
			break
		}
		// A zombie is dead too: its parent was killed with it.
		if st, _ := os.ReadFile("/proc/" + pid + "/stat"); bytes.Contains(st, []byte(") Z ")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %s survived cancel", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLocalDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	d := NewLocal("localhost").(Dialer)
	nc, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 2)
	if _, err := nc.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("%q %v", buf, err)
	}
}

func TestDry(t *testing.T) {
	f := NewFake("h").On("cat /etc/x", Result{Stdout: []byte("x")})
	f.SetFile("/etc/y", []byte("y"), 0o644)
	d := NewDry(f)
	ctx := context.Background()
	res, err := d.Run(ctx, Request{Script: "cat /etc/x", ReadOnly: true})
	if err != nil || string(res.Stdout) != "x" {
		t.Errorf("read-only run: %q %v", res.Stdout, err)
	}
	res, err = d.Run(ctx, Request{Script: "rm -rf /etc/x", Become: true})
	if err != nil || res.RC != 0 || len(res.Stdout) != 0 {
		t.Errorf("mutating run: %+v %v", res, err)
	}
	if err := d.Put(ctx, Upload{Path: "/etc/y", Content: strings.NewReader("new"), Mode: 0o600, Owner: "root"}); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, "/etc/y", false); err != nil || string(got) != "y" {
		t.Errorf("get after dry put: %q %v", got, err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Errorf("inner saw %d requests, want 1", n)
	}
	if n := len(f.Uploads()); n != 0 {
		t.Errorf("inner saw %d uploads", n)
	}
	rec := d.Recorded()
	want := []string{"run (as root): rm -rf /etc/x", "put: /etc/y (3 bytes, mode 0600, owner root)"}
	if strings.Join(rec, "|") != strings.Join(want, "|") {
		t.Errorf("recorded %q, want %q", rec, want)
	}
	if d.RoundTrips() != f.RoundTrips()+2 || d.Host() != "h" {
		t.Error("round trips / host not passed through")
	}
}

func TestFake(t *testing.T) {
	f := NewFake("h").
		On("systemctl is-active", Result{Stdout: []byte("active\n")}).
		OnRegexp(`^stat\b`, Result{RC: 1, Stderr: []byte("no")}).
		OnFunc("echo-stdin", func(r Request) (Result, error) { return Result{Stdout: r.Stdin}, nil }).
		SetDefault(Result{RC: 9})
	ctx := context.Background()
	for _, tc := range []struct {
		script string
		out    string
		rc     int
	}{
		{"systemctl is-active kubelet", "active\n", 0},
		{"stat /x", "", 1},
		{"x stat", "", 9},
	} {
		res, err := f.Run(ctx, Request{Script: tc.script})
		if err != nil || string(res.Stdout) != tc.out || res.RC != tc.rc {
			t.Errorf("%s: %+v %v", tc.script, res, err)
		}
	}
	if res, _ := f.Run(ctx, Request{Script: "echo-stdin", Stdin: []byte("s")}); string(res.Stdout) != "s" {
		t.Errorf("OnFunc: %q", res.Stdout)
	}
	if err := f.Put(ctx, Upload{Path: "/p", Content: strings.NewReader("c"), Mode: 0o600, Become: true}); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Get(ctx, "/p", true); err != nil || string(got) != "c" {
		t.Errorf("get: %q %v", got, err)
	}
	if ff, ok := f.File("/p"); !ok || ff.Mode != 0o600 {
		t.Errorf("file: %+v", ff)
	}
	if _, err := f.Get(ctx, "/q", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	ups := f.Uploads()
	if len(ups) != 1 || string(ups[0].Data) != "c" || !ups[0].Become || ups[0].Size != 1 {
		t.Errorf("uploads: %+v", ups)
	}
	if n := len(f.Requests()); n != 4 {
		t.Errorf("requests %d", n)
	}
	if n := f.RoundTrips(); n != 7 {
		t.Errorf("round trips %d, want 7", n)
	}
	f.SetUnreachable(errors.New("down"))
	if _, err := f.Run(ctx, Request{Script: "true"}); !IsUnreachable(err) || !strings.Contains(err.Error(), "h: unreachable: down") {
		t.Errorf("unreachable: %v", err)
	}
	if err := f.Put(ctx, Upload{Path: "/p"}); !IsUnreachable(err) {
		t.Errorf("unreachable put: %v", err)
	}
	f.SetUnreachable(nil)
	f.Reset()
	if f.RoundTrips() != 0 || len(f.Requests()) != 0 {
		t.Error("reset")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Run(cctx, Request{Script: "true"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// FuzzReadFrame: any input is parsed without panic, and a response as the
// shell writes it (noise, the start line, raw stdout, the status line
// after a newline, stderr in base64 wrapped at 76 columns) decodes to
// exactly what was sent.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("noise\n"), []byte("out\x00"), []byte("err"), 3)
	f.Add([]byte("GK_m x\n"), []byte{}, []byte{255}, 0)
	f.Add([]byte("GK_m 0\n!!!\nGK_m.e\n"), bytes.Repeat([]byte("z"), 300), []byte{}, 255)
	f.Add([]byte("no newline"), []byte("\nGK_m 1\nGK_m 2"), []byte{}, 0)
	f.Add([]byte{}, bytes.Repeat([]byte("y"), 9000), []byte("e\n"), 1)
	f.Fuzz(func(t *testing.T, noise, stdout, stderr []byte, rc int) {
		_, _ = readFrame(bufioReader(noise), "GK_m", false)
		if bytes.Contains(noise, []byte("GK_m")) || bytes.Contains(stdout, []byte("\nGK_m ")) || bytes.HasPrefix(stdout, []byte("GK_m ")) || rc < 0 {
			return
		}
		var b bytes.Buffer
		b.Write(noise)
		b.WriteString("GK_m.s\n")
		b.Write(stdout)
		fmt.Fprintf(&b, "\nGK_m %d\n", rc)
		enc := base64.StdEncoding.EncodeToString(stderr)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		if enc != "" {
			b.WriteString(enc + "\n")
		}
		b.WriteString("GK_m.e\n")
		res, err := readFrame(bufioReader(b.Bytes()), "GK_m", false)
		if err != nil || res.RC != rc || !bytes.Equal(res.Stdout, stdout) || !bytes.Equal(res.Stderr, stderr) {
			t.Fatalf("got %+v %v", res, err)
		}
	})
}

// TestFrameRoundTrip checks buildFrame against a local /bin/sh with
// arbitrary bytes in script, stdin and env.
func TestFrameRoundTrip(t *testing.T) {
	sh := startLocalShell(t)
	for i, stdin := range [][]byte{nil, []byte("GK_\n"), bytes.Repeat([]byte{0, 255, '\n', '\''}, 5000)} {
		env := string(bytes.ReplaceAll(stdin, []byte{0}, []byte("0"))) // env cannot hold NUL
		res := sh.run(t, Request{Script: "cat; printf '%s' \"$K\" >&2; exit 5", Stdin: stdin, Env: map[string]string{"K": env}})
		if !bytes.Equal(res.Stdout, stdin) || res.RC != 5 {
			t.Errorf("%d: stdout %d bytes, rc %d", i, len(res.Stdout), res.RC)
		}
		if string(res.Stderr) != env {
			t.Errorf("%d: env %d bytes, want %d", i, len(res.Stderr), len(env))
		}
	}
}

// TestFrameBrokenStdin: when stdin cannot be decoded (here: bad base64;
// on a host: a full disk) the script does not run and the request reports
// rc 255.
func TestFrameBrokenStdin(t *testing.T) {
	sh := startLocalShell(t)
	counter := filepath.Join(t.TempDir(), "count")
	res := sh.run(t, Request{Script: "echo x >> " + counter})
	if res.RC != 0 {
		t.Fatalf("first: %+v", res)
	}
	m := newMarker()
	frame := "gk_n\ngk_w i <<'" + m + "'\n!!!not base64!!!\n" + m + "\n{ gk_go " + m + " 3<<'" + m + "'\necho x >> " + counter + "\n" + m + "\n}\n"
	if _, err := sh.w.Write([]byte(frame)); err != nil {
		t.Fatal(err)
	}
	res, err := readFrame(sh.r, m, false)
	if err != nil || res.RC != 255 || !strings.Contains(string(res.Stderr), "cannot write the request") {
		t.Fatalf("broken frame: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(counter); string(b) != "x\n" {
		t.Errorf("script ran despite broken stdin: %q", b)
	}
	if res := sh.run(t, Request{Script: "echo ok"}); string(res.Stdout) != "ok\n" {
		t.Errorf("after: %q", res.Stdout)
	}
}

// TestFrameTruncated: a frame cut off in the middle of the script (the
// connection broke) runs nothing.
func TestFrameTruncated(t *testing.T) {
	sh := startLocalShell(t)
	marker := filepath.Join(t.TempDir(), "ran")
	m, f, err := frameFor(Request{Script: "touch " + marker + "\necho second line\n"}, false)
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.Index(f, []byte("echo second"))
	if _, err := sh.w.Write(append([]byte(shellPreamble), f[:cut]...)); err != nil {
		t.Fatal(err)
	}
	sh.w.Close()
	if _, err := readFrame(sh.r, m, false); err == nil {
		t.Fatal("truncated frame answered")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("truncated script ran")
	}
}

// TestShellTempFiles: the session's two temp files are made without a
// process (mktemp only without /proc), private (0600, whatever the
// session's umask), the session's umask is left as it was, and the
// shell's end removes them.
func TestShellTempFiles(t *testing.T) {
	tmp := t.TempDir()
	sh, cmd := startShellWith(t, []string{"TMPDIR=" + tmp}, "umask 022\n"+shellPreamble)
	res := sh.run(t, Request{Script: `umask; printf '%s\n' "$gk_D"`})
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) != 2 || lines[0] != "0022" {
		t.Fatalf("umask and prefix: %q", res.Stdout)
	}
	if !strings.HasPrefix(lines[1], tmp+"/.gokube.") || !strings.HasSuffix(lines[1], ".") {
		t.Fatalf("temp prefix %q: want files %s/.gokube.<uuid>.*", lines[1], tmp)
	}
	for _, f := range []string{"i", "o", "r"} {
		st, err := os.Stat(lines[1] + f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	sh.w.Close()
	_ = cmd.Wait()
	left, _ := os.ReadDir(tmp)
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestOwnShellStdout: an OwnShell request's stdout comes back byte for
// byte through its file, and a process it leaves in the background keeps
// no hold on the session: what it prints later never reaches another
// request's output.
func TestOwnShellStdout(t *testing.T) {
	sh := startLocalShell(t)
	res := sh.run(t, Request{Script: `printf '\000\377x\n'; echo "$0"; (sleep 0.3; echo late) &`, OwnShell: true})
	if want := "\x00\xffx\n/dev/fd/3\n"; string(res.Stdout) != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
	for i := 0; i < 5; i++ {
		if res := sh.run(t, Request{Script: "sleep 0.1; echo next"}); string(res.Stdout) != "next\n" {
			t.Fatalf("request %d after the background process: %q", i, res.Stdout)
		}
	}
}
