package modules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gokube/connection"
)

// A rendered value (what a template became on one host) is checked by the
// same declared rule when the module runs, before the module touches the
// host: the run-time half of Arg.Kind.
func TestArgKindAtRunTime(t *testing.T) {
	r := NewRegistry()
	cases := []struct {
		module string
		args   map[string]any
		key    string
		want   string
	}{
		{"file", map[string]any{"path": "/x", "mode": "u=rw,g=q"}, "mode", "unknown permission"},
		{"file", map[string]any{"path": "/x", "state": "link"}, "src", `state=link needs "src"`},
		{"copy", map[string]any{"content": "a", "dest": "/x", "validate": "visudo -c"}, "validate", "must contain %s"},
		{"copy", map[string]any{"content": "a", "src": "b", "dest": "/x"}, "src", "mutually exclusive"},
		{"lineinfile", map[string]any{"path": "/x", "line": "a", "regexp": "(a"}, "regexp", "not a regular expression"},
		{"wait_for", map[string]any{"port": "65536"}, "port", "not a port"},
		{"wait_for", map[string]any{"port": 22, "path": "/x"}, "path", "mutually exclusive"},
		{"uri", map[string]any{"url": "h:80/x"}, "url", "want an http:// or https:// URL"},
		{"uri", map[string]any{"url": "https://h/", "status_code": "200,99"}, "status_code", "99 is not an HTTP status code"},
		{"get_url", map[string]any{"url": "https://h/a", "dest": "/x", "checksum": "sha256:00"}, "checksum", "64 hex digits"},
		{"x509", map[string]any{"path": t.TempDir(), "name": "n", "ca_name": "ca", "usages": "server_auth,code_signing"}, "usages", `"code_signing" is not one of`},
		// At run time a value is rendered: a leftover "{{" is checked too.
		{"wait_for", map[string]any{"port": "{{ .p }}"}, "port", "want an integer"},
	}
	for _, c := range cases {
		m, ok := r.Lookup(c.module)
		if !ok {
			t.Fatalf("no module %s", c.module)
		}
		conn := connection.NewFake("h1")
		_, err := m.Run(context.Background(), &Env{Conn: conn, Host: "h1", Render: func(_, s string) (string, error) { return s, nil }}, c.args)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != c.key || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: got %v, want an ArgError on %q containing %q", c.module, c.args, err, c.key, c.want)
		}
		if n := len(conn.Requests()); n != 0 {
			t.Errorf("%s %v: a bad argument reached the host (%d requests)", c.module, c.args, n)
		}
	}
}

// Each Kind's rule, on values at its edges.
func TestKindRules(t *testing.T) {
	cases := []struct {
		kind Kind
		v    any
		ok   bool
	}{
		{Mode, 0o644, true}, {Mode, 0o7777, true}, {Mode, 0o10000, false}, {Mode, -1, false},
		{Mode, "0644", true}, {Mode, "0o755", true}, {Mode, "644", true}, {Mode, "0888", false},
		{Mode, "u=rw,g=r,o=", true}, {Mode, "a+X", true}, {Mode, "go-w", true}, {Mode, "u=rw,", false},
		{Mode, "preserve", false}, {ModeOrPreserve, "preserve", true}, {ModeOrPreserve, "keep", false},
		{Regexp, `^\s*#`, true}, {Regexp, "a{2,1}", false},
		{Port, 1, true}, {Port, 65535, true}, {Port, 0, false}, {Port, 65536, false}, {Port, "22", true},
		{URL, "https://10.0.0.1:2379", true}, {URL, "http://[::1]:80/x", true}, {URL, "10.0.0.1:2379", false}, {URL, "file:///x", false},
		{URLOrFile, "file:///srv/a", true}, {URLOrFile, "file:a", false}, {URLOrFile, "https://h/a", true}, {URLOrFile, "s3://b/k", false},
		{HTTPStatus, 200, true}, {HTTPStatus, []any{200, 301}, true}, {HTTPStatus, "200, 404", true},
		{HTTPStatus, 600, false}, {HTTPStatus, "", true}, {HTTPStatus, []any{}, false}, {HTTPStatus, true, false},
		{Checksum, "sha256:" + strings.Repeat("0", 64), true}, {Checksum, "SHA1:" + strings.Repeat("f", 40), true},
		{Checksum, "sha256:file:///s/SUMS", true}, {Checksum, "sha512:00", false}, {Checksum, strings.Repeat("0", 64), false},
		{URL, map[string]any{"m1": "https://10.0.0.1:6443", "m2": "https://10.0.0.2:6443"}, true},
		{URL, map[string]any{"m1": "https://10.0.0.1:6443", "m2": "10.0.0.2:6443"}, false},
		{URL, "", true}, // unset: the module's default or its own check applies
		{Validate, "visudo -cf %s", true}, {Validate, "visudo -cf", false},
		{HexID, "8e9e05c52164694d", true}, {HexID, "8e9e05c52164694g", false},
	}
	for _, c := range cases {
		typ := Any
		switch c.v.(type) {
		case int:
			typ = Int
		case string:
			typ = String
		case map[string]any:
			typ = Map
		}
		msg := checkKind(Arg{Type: typ, Kind: c.kind}, c.v, false)
		if (msg == "") != c.ok {
			t.Errorf("%s %#v: ok=%v, got %q", c.kind, c.v, c.ok, msg)
		}
	}
}

// A Spec's rules name its own arguments (a rule on a typo never fires),
// and DocProblems says so.
func TestSpecRulesNameArguments(t *testing.T) {
	s := Spec{Doc: "x.", Args: map[string]Arg{"a": {Type: String, Doc: "A.", Choices: []string{"x"}}},
		Exclusive:  [][]string{{"a", "b"}},
		RequiredIf: []Requirement{{If: "a", Is: "y", Need: []string{"c"}}}}
	p := strings.Join(DocProblems("m", s), "\n")
	for _, want := range []string{`names "b"`, `names "c"`, "a=y: not one of its choices"} {
		if !strings.Contains(p, want) {
			t.Errorf("DocProblems missed %s:\n%s", want, p)
		}
	}
}
