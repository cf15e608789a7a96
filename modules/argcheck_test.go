package modules

import (
	"context"
	"errors"
	"testing"

	"gokube/connection"
)

func TestArgValidation(t *testing.T) {
	r := NewRegistry()
	cases := []struct {
		module string
		args   map[string]any
		key    string
	}{
		{"copy", map[string]any{"dest": "/x", "content": "a", "bogus": 1}, "bogus"},
		{"copy", map[string]any{"content": "a"}, "dest"},
		{"copy", map[string]any{"dest": "/x"}, ""},
		{"copy", map[string]any{"dest": "/x", "content": "a", "mode": "rwx"}, "mode"},
		{"copy", map[string]any{"dest": "/x", "content": "a", "backup": "maybe"}, "backup"},
		{"file", map[string]any{"path": "/x", "state": "gone"}, "state"},
		{"template", map[string]any{"src": "a", "dest": "/x", "validate": "nginx -t"}, "validate"},
		{"lineinfile", map[string]any{"path": "/x", "line": "a", "validate": "visudo -c"}, "validate"},
		{"file", map[string]any{"path": "/x", "mode": "u+q"}, "mode"},
		{"file", map[string]any{"path": "/x", "mode": "preserve"}, "mode"},
		{"file", map[string]any{"path": "/x", "dest": "/y"}, "dest"},
		{"systemd", map[string]any{"name": "x", "state": "running"}, "state"},
		{"wait_for", map[string]any{"port": "http"}, "port"},
		{"command", map[string]any{"chdir": "/"}, ""},
		{"user", map[string]any{"name": "u", "groups": map[string]any{"a": 1}}, "groups"},
		{"package", map[string]any{"name": "curl", "state": "installed"}, "state"},
		{"apt", map[string]any{"name": "curl", "update_cache": "sometimes"}, "update_cache"},
		{"apt", map[string]any{"purge": true}, ""},
	}
	for _, c := range cases {
		m, ok := r.Lookup(c.module)
		if !ok {
			t.Fatalf("%s not registered", c.module)
		}
		f := connection.NewFake("h1")
		_, err := m.Run(context.Background(), newEnv(f), c.args)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != c.key || ae.Module != c.module {
			t.Errorf("%s %v: want ArgError on %q, got %v", c.module, c.args, c.key, err)
		}
		if f.RoundTrips() != 0 {
			t.Errorf("%s %v: bad arguments reached the host", c.module, c.args)
		}
	}
	// Aliases reach the canonical name.
	a, err := parseArgs("file", fileModule{}.Spec(), map[string]any{"dest": "/x", "mode": 0o644})
	if err != nil || a.str("path") != "/x" {
		t.Fatalf("alias: %v %v", a.m, err)
	}
	if m, ok, _ := parseMode(cargs{m: map[string]any{"mode": "0750"}}, "mode"); !ok || m != 0o750 {
		t.Fatalf("mode string %o", m)
	}
	if m, ok, _ := parseMode(cargs{m: map[string]any{"mode": 0o750}}, "mode"); !ok || m != 0o750 {
		t.Fatalf("mode int %o", m)
	}
}

// Every registered module has a coherent Spec: aliases do not shadow other
// arguments, RequireOneOf and FreeForm name declared arguments.
func TestSpecsCoherent(t *testing.T) {
	r := NewRegistry()
	for _, n := range []string{"command", "shell", "raw", "copy", "template", "file", "lineinfile", "blockinfile", "stat", "slurp", "fetch", "systemd", "service", "wait_for", "get_url", "unarchive", "user", "group", "package", "apt"} {
		m, ok := r.Lookup(n)
		if !ok {
			t.Fatalf("%s not registered", n)
		}
		s := m.Spec()
		seen := map[string]bool{}
		for k, a := range s.Args {
			for _, al := range append([]string{k}, a.Aliases...) {
				if seen[al] {
					t.Errorf("%s: %s declared twice", n, al)
				}
				seen[al] = true
			}
			if len(a.Choices) > 0 && a.Type != String {
				t.Errorf("%s: %s has choices but is not a string", n, k)
			}
		}
		for _, g := range s.RequireOneOf {
			for _, k := range g {
				if _, ok := s.Args[k]; !ok {
					t.Errorf("%s: RequireOneOf names unknown %s", n, k)
				}
			}
		}
		if s.FreeForm != "" {
			if _, ok := s.Args[s.FreeForm]; !ok {
				t.Errorf("%s: FreeForm %s undeclared", n, s.FreeForm)
			}
		}
	}
	probers := []string{"copy", "template", "file", "stat", "systemd", "user", "group", "lineinfile", "blockinfile", "get_url"}
	for _, n := range probers {
		m, _ := r.Lookup(n)
		if _, ok := m.(Prober); !ok {
			t.Errorf("%s is not a Prober", n)
		}
	}
}
