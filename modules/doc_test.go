package modules

import (
	"strings"
	"testing"
)

// Every argument of every registered module has a description, so
// `gokube doc` documents the whole of what the engine accepts.
func TestEveryArgDocumented(t *testing.T) {
	r := NewRegistry()
	for _, n := range r.Names() {
		m, _ := r.Lookup(n)
		for _, p := range DocProblems(n, m.Spec()) {
			t.Error(p)
		}
	}
}

// DocProblems catches what the test above relies on it to catch.
func TestDocProblemsFindsGaps(t *testing.T) {
	s := Spec{Doc: "x.", Args: map[string]Arg{"a": {Type: String, Doc: "A."}, "b": {Type: Bool}}}
	if p := DocProblems("m", s); len(p) != 1 || !strings.Contains(p[0], `"b"`) {
		t.Fatalf("%v", p)
	}
	if p := DocProblems("m", Spec{}); len(p) != 1 {
		t.Fatalf("%v", p)
	}
}

// The rendered page shows every argument with its type, choices, defaults
// and aliases, and every returned value.
func TestRenderDocComplete(t *testing.T) {
	r := NewRegistry()
	for _, n := range r.Names() {
		m, _ := r.Lookup(n)
		s := m.Spec()
		page := RenderDoc(n, s, r.Also(n))
		for k, a := range s.Args {
			mark := "- "
			if a.Required {
				mark = "= "
			}
			if !strings.Contains(page, "\n"+mark+k+"\n") {
				t.Errorf("%s: argument %s missing", n, k)
			}
			for _, want := range append(append([]string{}, a.Choices...), a.Aliases...) {
				if !strings.Contains(page, want) {
					t.Errorf("%s: %s: %q missing", n, k, want)
				}
			}
			if a.Default != "" && !strings.Contains(page, "default: "+a.Default) {
				t.Errorf("%s: %s: default missing", n, k)
			}
		}
		for k := range s.Returns {
			if !strings.Contains(page, "\n  "+k+" ") {
				t.Errorf("%s: returned value %s missing", n, k)
			}
		}
	}
	page := RenderDoc("systemd", r.mustSpec(t, "systemd"), r.Also("systemd"))
	if !strings.Contains(page, "Also available as: systemd_service") || !strings.Contains(page, "type: bool") {
		t.Errorf("systemd page:\n%s", page)
	}
}

func (r *Registry) mustSpec(t *testing.T, name string) Spec {
	m, ok := r.Lookup(name)
	if !ok {
		t.Fatalf("%s not registered", name)
	}
	return m.Spec()
}
