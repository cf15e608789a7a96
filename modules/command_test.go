package modules

import (
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
	f = connection.NewFake("h1").On("[ ! -e", connection.Result{RC: 1})
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
