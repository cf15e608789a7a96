package yamlcheck

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		in   string
		line int
		want string // "" = no mistake
	}{
		{"a: 1\nb: 2\n", 0, ""},
		{"a: 1\na: 2\n", 2, `key "a" given twice in one mapping (first at line 1)`},
		{"x:\n  - {k: 1, k: 2}\n", 2, `key "k" given twice`},
		{"a: &m {k: 1}\nb:\n  <<: *m\n  <<: *m\n", 0, ""}, // merge keys may repeat
		{"x: {{ .y }}\n", 1, `x: an unquoted template is a YAML mapping; quote it: x: "{{ ... }}"`},
		{"x: \"{{ .y }}\"\n", 0, ""},
		{"- {{ .y }}\n", 1, "an unquoted template"},
		{"x: '{{ .y }}'\nz: {a: {{ .b }}}\n", 2, "a: an unquoted template"},
	}
	for _, c := range cases {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(c.in), &n); err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		e := Check(&n)
		switch {
		case c.want == "" && e != nil:
			t.Errorf("%q: unexpected %v", c.in, e)
		case c.want != "" && (e == nil || e.Line != c.line || !strings.Contains(e.Msg, c.want)):
			t.Errorf("%q: got %v, want line %d %q", c.in, e, c.line, c.want)
		}
	}
}

func TestCheckTemplatesLeavesDuplicates(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("a: 1\na: 2\nb: {{ .x }}\n"), &n); err != nil {
		t.Fatal(err)
	}
	if e := CheckTemplates(&n); e == nil || e.Line != 3 {
		t.Fatalf("got %v, want the template on line 3", e)
	}
}
