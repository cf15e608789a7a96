package modules

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/connection"
)

func TestCommand(t *testing.T) {
	f := connection.NewFake("h1").On("exec 'ls'", connection.Result{RC: 2, Stdout: []byte("a\nb\n"), Stderr: []byte("boom\n")})
	res := mustRunModule(t, commandModule{kind: "command"}, newEnv(f), map[string]any{"cmd": `ls -l "a b" 'c$d'`})
	if !res.Failed || res.Msg != "non-zero return code" || res.Data["rc"] != 2 || res.Data["stdout"] != "a\nb" || res.Data["stderr"] != "boom" {
		t.Fatalf("%+v", res)
	}
	if l := res.Data["stdout_lines"].([]string); len(l) != 2 {
		t.Fatalf("lines %v", l)
	}
	if s := f.Requests()[0].Script; !strings.Contains(s, `exec 'ls' '-l' 'a b' 'c$d'`) {
		t.Fatalf("no-shell quoting: %q", s)
	}
	// creates: guard and command in one request; the marker means skipped.
	f = connection.NewFake("h1").On("[ -e '/etc/done' ]", connection.Result{Stdout: []byte(skipMarker + "\n")})
	res = mustRunModule(t, commandModule{kind: "shell"}, newEnv(f), map[string]any{"cmd": "make install", "creates": "/etc/done", "chdir": "/src", "stdin": "y"})
	if res.Changed || f.RoundTrips() != 1 {
		t.Fatalf("creates: %+v", res)
	}
	if r := f.Requests()[0]; r.Dir != "/src" || string(r.Stdin) != "y\n" || !r.Become {
		t.Fatalf("request %+v", r)
	}
	// Check mode: skipped without creates, nothing sent.
	f = connection.NewFake("h1")
	env := newEnv(connection.NewDry(f))
	env.Check = true
	if res := mustRunModule(t, commandModule{kind: "command"}, env, map[string]any{"cmd": "rm -rf /"}); !res.Skipped || res.Msg != "cannot predict in check mode" || f.RoundTrips() != 0 {
		t.Fatalf("check: %+v", res)
	}
	// Check mode with removes decides read-only.
	f = connection.NewFake("h1").On("! { [ -e", connection.Result{RC: 1})
	env = newEnv(connection.NewDry(f))
	env.Check = true
	res = mustRunModule(t, commandModule{kind: "shell"}, env, map[string]any{"cmd": "rm /tmp/x", "removes": "/tmp/x"})
	if !res.Changed || res.Skipped || len(mutating(f)) != 0 || f.RoundTrips() != 1 {
		t.Fatalf("check removes: %+v", res)
	}
	// argv
	f = connection.NewFake("h1")
	mustRunModule(t, commandModule{kind: "command"}, newEnv(f), map[string]any{"argv": []any{"echo", "it's"}})
	if s := f.Requests()[0].Script; !strings.Contains(s, `exec 'echo' 'it'\''s'`) {
		t.Fatalf("argv: %q", s)
	}
}

func TestSplitWords(t *testing.T) {
	cases := map[string][]string{
		`a b  c`:                {"a", "b", "c"},
		`echo "a b" 'c d'`:      {"echo", "a b", "c d"},
		`x\ y "q\"t" 'it'\''s'`: {"x y", `q"t`, "it's"},
		`a"b"c`:                 {"abc"},
		`""`:                    {""},
	}
	for in, want := range cases {
		got, err := SplitWords(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("%q: got %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := SplitWords(`echo "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

// Quoting each word with shq and splitting again gives the words back.
func FuzzSplitWords(f *testing.F) {
	for _, s := range []string{"a b", `'x y'`, `"a\"b"`, `a\ b`, "", `'`, "\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitWords(s)
		if err != nil {
			return
		}
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = shq(w)
		}
		again, err := SplitWords(strings.Join(q, " "))
		if err != nil || len(again) != len(words) {
			t.Fatalf("%q -> %q -> %q %v", s, words, again, err)
		}
		for i := range words {
			if again[i] != words[i] {
				t.Fatalf("%q: word %d %q != %q", s, i, again[i], words[i])
			}
		}
	})
}

// creates and removes decide the same on a real shell whether the task
// asks itself or a probe batch answered first, and a batch's answer that
// the guard holds sends nothing: as Ansible's glob.glob, a dangling
// symlink exists, a pattern exists when it matches, and a relative path
// is looked up under chdir.
func TestCommandGuard(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"file", "a b.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   map[string]any
		skip   bool
		probed bool // the batch can answer (no pattern; absolute after chdir)
	}{
		{map[string]any{"creates": dir + "/file"}, true, true},
		{map[string]any{"creates": dir + "/missing"}, false, true},
		{map[string]any{"creates": dir + "/dangling"}, true, true},
		{map[string]any{"creates": "file", "chdir": dir}, true, true},
		{map[string]any{"creates": "missing", "chdir": dir}, false, true},
		{map[string]any{"removes": dir + "/file"}, false, true},
		{map[string]any{"removes": dir + "/missing"}, true, true},
		{map[string]any{"creates": dir + "/missing", "removes": dir + "/missing"}, true, true},
		{map[string]any{"creates": dir + "/missing", "removes": dir + "/file"}, false, true},
		{map[string]any{"creates": dir + "/*.conf"}, true, false},
		{map[string]any{"creates": dir + "/*.yaml"}, false, false},
		{map[string]any{"creates": dir + "/a b.c?nf"}, true, false},
		{map[string]any{"removes": dir + "/[ab]*"}, false, false},
		{map[string]any{"creates": dir + "/new\nline"}, false, false},
	}
	ctx := context.Background()
	for _, c := range cases {
		marker := filepath.Join(dir, "ran")
		os.Remove(marker)
		args := map[string]any{"cmd": "touch " + marker}
		for k, v := range c.args {
			args[k] = v
		}
		m := commandModule{kind: "shell"}
		// Asked by the task itself.
		res := mustRunModule(t, m, &Env{Conn: connection.NewLocal("h")}, args)
		_, err := os.Stat(marker)
		if ran := err == nil; ran == c.skip || res.Changed == c.skip {
			t.Errorf("%v: ran %v, changed %v; want skipped %v", c.args, ran, res.Changed, c.skip)
		}
		os.Remove(marker)
		script, ok := m.Probe(args)
		if ok != c.probed {
			t.Errorf("%v: probed %v, want %v", c.args, ok, c.probed)
		}
		if !ok {
			continue
		}
		// Answered by a batch: the probe runs read-only; a guard that holds
		// sends nothing more.
		local := connection.NewLocal("h")
		out, err := local.Run(ctx, connection.Request{Script: script, ReadOnly: true})
		if err != nil || out.RC != 0 {
			t.Fatalf("%v: probe %v %+v", c.args, err, out)
		}
		f := connection.NewFake("h").On("touch", connection.Result{})
		res = mustRunModule(t, m, &Env{Conn: f, Probe: out.Stdout}, args)
		if sent := f.RoundTrips() == 1; sent == c.skip || res.Changed == c.skip {
			t.Errorf("%v from a batch: sent %v, changed %v; want skipped %v", c.args, sent, res.Changed, c.skip)
		}
		// Check mode decides from the batch too, sending nothing.
		f = connection.NewFake("h")
		res = mustRunModule(t, m, &Env{Conn: connection.NewDry(f), Probe: out.Stdout, Check: true}, args)
		if f.RoundTrips() != 0 || res.Changed == c.skip {
			t.Errorf("%v check mode from a batch: %d requests, changed %v", c.args, f.RoundTrips(), res.Changed)
		}
	}
	// raw has no creates, and a command without a guard is not probed.
	if _, ok := (commandModule{kind: "command"}).Probe(map[string]any{"cmd": "true"}); ok {
		t.Error("a command without a guard was probed")
	}
}

// A pattern that matches nothing reaches the test as written: the shell
// sees only its glob characters, never an expansion or a split word.
func TestGlobWordQuotes(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a*", "x?y", "[ab]c", "[!.]x", "[]a]", "$(touch pwned)*", "`id`?", "it's *", "a b?", "[$(id)]", "[", "a[", "[a", "\\*", "*\"*", "${HOME}?"} {
		cmd := "cd " + shq(dir) + " && IFS= && set -- " + globWord(p) + " && printf %s \"$1\""
		out, err := connection.NewLocal("h").Run(context.Background(), connection.Request{Script: cmd})
		if err != nil || out.RC != 0 || string(out.Stdout) != p {
			t.Errorf("%q: got %q (%v, %+v) from %s", p, out.Stdout, err, out, cmd)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a pattern ran something: %v", entries)
	}
}
