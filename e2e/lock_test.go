package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunLock: two runs against one host. The second waits for the
// first's locks (the login deploy's ~/.gokube-lock, then
// /run/gokube/lock: the runs become root), so their lineinfile edits of
// one file do not interleave and none is lost; with a short --lock-wait
// it fails naming the holder and changes nothing; a lock whose shell was
// killed (no trap ran) is taken over; the run that takes the lock removes
// stale uploads and put temp files of earlier runs, and no lock is left
// after a run. Runs of deploy that never become root do the same with
// deploy's lock alone, and a run that becomes root waits for it first.
func TestRunLock(t *testing.T) {
	e := setupN(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "node", map[string][]int{"nodes": {1}})
	const n = 5
	var nums []string
	for i := 0; i < n; i++ {
		nums = append(nums, fmt.Sprint(i))
	}
	items := "[" + strings.Join(nums, ", ") + "]"
	write := func(name, body string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A holds the lock until /root/gk-go appears (an event the test makes).
	pbA := write("a.yml", fmt.Sprintf(`
- hosts: nodes
  gather_facts: false
  tasks:
    - command: sh -c 'while [ ! -e /root/gk-go ]; do sleep 0.2; done'
      changed_when: false
    - lineinfile: {path: /root/gk-lock.txt, line: "a-{{ .item }}", create: true}
      loop: %s
`, items))
	pbB := write("b.yml", fmt.Sprintf(`
- hosts: nodes
  gather_facts: false
  tasks:
    - lineinfile: {path: /root/gk-lock.txt, line: "b-{{ .item }}", create: true}
      loop: %s
`, items))
	ssh := func(cmd string) string {
		t.Helper()
		out, err := e.ssh(t, 1, cmd)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return out
	}
	// waitHost polls the host until cond (a shell test) holds: an event,
	// bounded by ctx only.
	waitHost := func(what, cond string) {
		t.Helper()
		for ctx.Err() == nil {
			if _, err := e.ssh(t, 1, cond); err == nil {
				return
			}
		}
		t.Fatalf("never saw %s", what)
	}
	start := func(args ...string) (*bytes.Buffer, chan error) {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, e.bin, append([]string{"play"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return &out, done
	}
	// secondWaits starts run B (argsB) while run A holds lock (holder):
	// B is seen waiting (its shell's sleep 1, pgrep's user options in
	// who), the lock stays A's, then A goes on (goFile appears) and the
	// file holds A's lines then B's: none lost.
	secondWaits := func(t *testing.T, lock, holder, who, goFile, file string, outA *bytes.Buffer, doneA chan error, argsB ...string) {
		t.Helper()
		outB, doneB := start(argsB...)
		waitHost("run B waiting", "pgrep "+who+" -fx 'sleep 1' >/dev/null")
		if got := strings.TrimSpace(ssh("cat " + lock)); got != strings.TrimSpace(holder) {
			t.Fatalf("lock changed while A holds it: %q -> %q", holder, got)
		}
		ssh("touch " + goFile)
		if err := <-doneA; err != nil {
			t.Fatalf("run A: %v\n%s", err, outA)
		}
		if err := <-doneB; err != nil {
			t.Fatalf("run B: %v\n%s", err, outB)
		}
		var want []string
		for _, p := range []string{"a", "b"} {
			for i := 0; i < n; i++ {
				want = append(want, fmt.Sprintf("%s-%d", p, i))
			}
		}
		if got := strings.Fields(ssh("cat " + file)); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("file after both runs:\n%v\nwant\n%v", got, want)
		}
	}
	ssh("rm -f /root/gk-go /root/gk-lock.txt; [ ! -e /run/gokube/lock ] && [ ! -e ~deploy/.gokube-lock ]")

	t.Run("second run waits, no lost update", func(t *testing.T) {
		outA, doneA := start("-i", inv, pbA)
		waitHost("run A's lock", "grep -q '^run=' /run/gokube/lock")
		holder := ssh("cat /run/gokube/lock")
		// B's shell is in its wait loop (a sleep 1 under it) before A goes on.
		secondWaits(t, "/run/gokube/lock", holder, "", "/root/gk-go", "/root/gk-lock.txt", outA, doneA, "-i", inv, pbB)
		ssh("[ ! -e /run/gokube/lock ] && [ ! -e ~deploy/.gokube-lock ]")
	})

	t.Run("short wait fails naming the holder", func(t *testing.T) {
		ssh("rm -f /root/gk-go /root/gk-lock.txt")
		outA, doneA := start("-i", inv, pbA)
		waitHost("run A's lock", "grep -q '^run=' /run/gokube/lock")
		holder := strings.TrimSpace(ssh("cat /run/gokube/lock"))
		if user := strings.TrimSpace(ssh("cat ~deploy/.gokube-lock")); user != holder {
			t.Errorf("deploy's lock %q, root lock %q: one holder takes both", user, holder)
		}
		r := e.play(t, ctx, "-i", inv, pbB, "--lock-wait", "1")
		if r.code != 2 || r.recap["node-1"].failed != 1 || r.recap["node-1"].changed != 0 {
			t.Errorf("refused run: exit %d, recap %+v\n%s", r.code, r.recap["node-1"], r.out)
		}
		// Refused on the first of the two, the login's lock.
		if !strings.Contains(r.out, "another gokube run holds /home/deploy/.gokube-lock ("+holder+")") {
			t.Errorf("message does not name the holder %q:\n%s", holder, r.out)
		}
		if out, _ := e.ssh(t, 1, "cat /root/gk-lock.txt"); strings.Contains(out, "b-") {
			t.Errorf("the refused run changed the file: %q", out)
		}
		ssh("touch /root/gk-go")
		if err := <-doneA; err != nil {
			t.Fatalf("run A: %v\n%s", err, outA)
		}
	})

	t.Run("dead holder taken over, stale temp files removed", func(t *testing.T) {
		ssh("rm -f /root/gk-go /root/gk-lock.txt")
		outA, doneA := start("-i", inv, pbA)
		waitHost("run A's lock", "grep -q '^run=' /run/gokube/lock")
		// The holding shell dies without its trap: the lock stays behind.
		ssh(`l=$(cat /run/gokube/lock); p=${l##* pid=}; kill -KILL ${p%% *}`)
		<-doneA // A fails or ends: its shell is gone
		_ = outA
		ssh("grep -q '^run=' /run/gokube/lock")
		// Leftovers of an earlier interrupted run, older than any lock,
		// and files that only look like them.
		tag := strings.Repeat("0f", 12)
		ssh("touch -d '1 hour ago' ~deploy/.gokube-upload-" + tag + " /root/.gokube." + tag +
			"; touch -d '1 hour ago' /root/.gokube.keep ~deploy/.gokube-upload-keep; touch /root/gk-go")
		r := e.play(t, ctx, "-i", inv, pbB, "--lock-wait", "1")
		if r.code != 0 || r.recap["node-1"].changed != 1 {
			t.Fatalf("run after a dead holder: exit %d %+v\n%s", r.code, r.recap["node-1"], r.out)
		}
		left := ssh("ls -a ~deploy /root | grep -e '^.gokube' || true")
		if strings.Contains(left, tag) {
			t.Errorf("stale temp files left:\n%s", left)
		}
		if !strings.Contains(left, ".gokube.keep") || !strings.Contains(left, ".gokube-upload-keep") {
			t.Errorf("files that are not gokube's temp files were removed:\n%s", left)
		}
		ssh("rm -f /root/.gokube.keep ~deploy/.gokube-upload-keep /root/gk-go /root/gk-lock.txt; [ ! -e /run/gokube/lock ] && [ ! -e ~deploy/.gokube-lock ]")
	})

	// deploy without become: the same with deploy's own lock, its own
	// temp files swept; a run that becomes root waits for it first.
	t.Run("non-root login", func(t *testing.T) {
		uwork := t.TempDir()
		uinv := e.inventory(t, uwork, "node", map[string][]int{"nodes": {1}})
		body, err := os.ReadFile(uinv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(uinv, bytes.Replace(body, []byte("ansible_become=true"), []byte("ansible_become=false"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		userPB := func(name, prefix string) string {
			hold := ""
			if prefix == "a" {
				hold = `    - command: sh -c 'while [ ! -e ~/gk-go ]; do sleep 0.2; done'
      changed_when: false
`
			}
			return write(name, fmt.Sprintf(`
- hosts: nodes
  gather_facts: false
  tasks:
%s    - lineinfile: {path: /home/deploy/gk-lock.txt, line: "%s-{{ .item }}", create: true}
      loop: %s
`, hold, prefix, items))
		}
		pbUA, pbUB := userPB("ua.yml", "a"), userPB("ub.yml", "b")
		tag := strings.Repeat("1e", 12)
		ssh("cd ~deploy && rm -f gk-go gk-lock.txt && touch -d '1 hour ago' .gokube-upload-" + tag + " .gokube." + tag +
			" .gokube.keep && chown deploy: .gokube-upload-" + tag + " .gokube." + tag + " .gokube.keep")
		outA, doneA := start("-i", uinv, pbUA)
		waitHost("deploy's lock", "grep -q '^run=' ~deploy/.gokube-lock")
		holder := strings.TrimSpace(ssh("cat ~deploy/.gokube-lock"))
		ssh("[ \"$(stat -c %U ~deploy/.gokube-lock)\" = deploy ] && [ ! -e /run/gokube/lock ]")

		// A run that becomes root is refused on deploy's lock, before
		// the root lock (the order every run takes them in).
		r := e.play(t, ctx, "-i", inv, pbB, "--lock-wait", "1")
		if r.code != 2 || r.recap["node-1"].failed != 1 || r.recap["node-1"].changed != 0 ||
			!strings.Contains(r.out, "another gokube run holds /home/deploy/.gokube-lock ("+holder+")") {
			t.Errorf("become run while deploy's lock is held: exit %d %+v\n%s", r.code, r.recap["node-1"], r.out)
		}
		ssh("[ ! -e /run/gokube/lock ] && [ ! -e /root/gk-lock.txt ]")

		secondWaits(t, "~deploy/.gokube-lock", holder, "-u deploy", "~deploy/gk-go", "~deploy/gk-lock.txt", outA, doneA, "-i", uinv, pbUB)
		left := ssh("ls -a ~deploy | grep -e '^.gokube' || true")
		if strings.Contains(left, tag) || !strings.Contains(left, ".gokube.keep") {
			t.Errorf("deploy's stale temp files left or a lookalike removed:\n%s", left)
		}
		ssh("cd ~deploy && rm -f gk-go gk-lock.txt .gokube.keep; [ ! -e .gokube-lock ] && [ ! -e /run/gokube/lock ]")
	})
}

// TestLocalRunLock: two runs against localhost (connection: local) take
// the control machine's lock from gokube itself. The test runs them as a
// user that is not root (nobody, when the test is root) with a home of
// its own, so they take that home's ~/.gokube-lock and no other run on
// the machine is held up. The second run waits (its lineinfile task has
// started and changed nothing) while the first holds it, and then loses
// none of the first's lines; with --lock-wait 1 it fails naming the
// holder and changes nothing; no lock is left.
func TestLocalRunLock(t *testing.T) {
	bin := os.Getenv("GOKUBE_BIN")
	if bin == "" {
		t.Fatal("GOKUBE_BIN is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	home, err := os.MkdirTemp("", "gk-locallock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	var cred *syscall.Credential
	if os.Getuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		if err := os.Chown(home, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(home, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) string {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if cred != nil {
		// A copy nobody can run whatever the checkout's permissions.
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(home, "gokube")
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inv := write("inventory.cfg", "localhost ansible_connection=local\n")
	txt, goFile, lock := filepath.Join(home, "f.txt"), filepath.Join(home, "go"), filepath.Join(home, ".gokube-lock")
	pb := func(name, prefix, hold string) string {
		return write(name, fmt.Sprintf(`
- hosts: all
  gather_facts: false
  tasks:
%s    - name: edit
      lineinfile: {path: %s, line: "%s-{{ .item }}", create: true}
      loop: [0, 1, 2]
`, hold, txt, prefix))
	}
	pbA := pb("a.yml", "a", fmt.Sprintf("    - command: sh -c 'while [ ! -e %s ]; do sleep 0.2; done'\n      changed_when: false\n", goFile))
	pbB := pb("b.yml", "b", "")
	// start runs gokube as the test's user; lines carries its output
	// line by line, done its exit.
	start := func(args ...string) (chan string, chan error) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"play"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		cmd.Dir = home
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		lines, done := make(chan string, 1000), make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
			done <- cmd.Wait()
		}()
		return lines, done
	}
	// until reads lines up to one containing s; it returns them all.
	until := func(lines chan string, s string) string {
		t.Helper()
		var out strings.Builder
		for l := range lines {
			out.WriteString(l + "\n")
			if strings.Contains(l, s) {
				return out.String()
			}
		}
		t.Fatalf("never saw %q:\n%s", s, out.String())
		return ""
	}
	rest := func(lines chan string) string {
		var out strings.Builder
		for l := range lines {
			out.WriteString(l + "\n")
		}
		return out.String()
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return strings.TrimSpace(string(b)) }

	linesA, doneA := start("-i", inv, pbA)
	for read(lock) == "" && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond) // A's first request takes it; bounded by ctx
	}
	holder := read(lock)
	if !strings.HasPrefix(holder, "run=") {
		t.Fatalf("lock %q", holder)
	}

	// --lock-wait 1: refused naming the holder, nothing changed.
	linesR, doneR := start("-i", inv, pbB, "--lock-wait", "1")
	out := rest(linesR)
	if err := <-doneR; err == nil || !strings.Contains(out, "another gokube run holds "+lock+" ("+holder+")") {
		t.Errorf("refused run: %v\n%s", err, out)
	}
	if _, err := os.Stat(txt); !os.IsNotExist(err) {
		t.Errorf("the refused run wrote %s: %v", txt, err)
	}

	// Default wait: B's task has started and waits for A's lock (the
	// progress line of a task still running).
	linesB, doneB := start("-i", inv, pbB)
	until(linesB, "edit still running on localhost")
	if got := read(lock); got != holder {
		t.Fatalf("lock changed while A holds it: %q -> %q", holder, got)
	}
	if got := read(txt); got != "" {
		t.Fatalf("B edited while A holds the lock: %q", got)
	}
	write("go", "")
	outA, outB := rest(linesA), rest(linesB)
	if err := <-doneA; err != nil {
		t.Fatalf("run A: %v\n%s", err, outA)
	}
	if err := <-doneB; err != nil {
		t.Fatalf("run B: %v\n%s", err, outB)
	}
	if got := strings.Fields(read(txt)); strings.Join(got, " ") != "a-0 a-1 a-2 b-0 b-1 b-2" {
		t.Errorf("file after both runs: %v", got)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("lock left after the runs: %q", read(lock))
	}
}
