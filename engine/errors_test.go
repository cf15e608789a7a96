package engine

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"gokube/modules"
)

// Load errors keep their cause, so callers can tell a missing file from a
// bad argument without parsing messages.
func TestLoadErrorsWrapTheirCause(t *testing.T) {
	cases := []struct {
		name, play string
		is         func(error) bool
	}{
		{"missing vars file", "- hosts: all\n  vars_files: [nope.yml]\n",
			func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"module argument", "- hosts: all\n  tasks:\n    - tfile: {path: x, mode: '0777'}\n",
			func(err error) bool {
				var ae *modules.ArgError
				return errors.As(err, &ae) && ae.Module == "tfile" && ae.Key == "mode"
			}},
		{"template syntax", "- hosts: all\n  tasks:\n    - tfile: {path: \"{{ .x \"}\n",
			func(err error) bool { var te *TemplateError; return errors.As(err, &te) && te.Err != nil }},
		{"yaml", "- hosts: all\n  tasks: [\n",
			func(err error) bool { var le *LoadError; return errors.As(err, &le) && le.Err != nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": c.play})
			_, err := e.run(e.opts("site.yml"))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("got %T %v, want a LoadError", err, err)
			}
			if !c.is(err) {
				t.Fatalf("%v: the cause is lost (unwraps to %T %v)", err, errors.Unwrap(err), errors.Unwrap(err))
			}
		})
	}
}

// A run where several hosts fail returns one RunError joining each host's
// failure, in inventory order; a rescued host is not among them.
func TestRunErrorJoinsHostFailures(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\nnode-3\n", map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  tasks:
    - block:
        - name: may fail
          command: "test $HOST != node-2"
      rescue:
        - name: rescued
          command: "true"
      when: eq .inventory_hostname "node-2"
    - name: fails on 1 and 3
      command: "test $HOST = node-2"
`})
	_, err := e.run(e.opts("site.yml"))
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != 2 {
		t.Fatalf("want a RunError with exit 2, got %v", err)
	}
	if re.Error() != "one or more hosts failed" {
		t.Fatalf("the summary changed: %q", re.Error())
	}
	joined, ok := re.Err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("cause %T is not a joined error", re.Err)
	}
	var hosts []string
	for _, he := range joined.Unwrap() {
		var h *HostError
		if !errors.As(he, &h) {
			t.Fatalf("%T in the join, want *HostError", he)
		}
		if h.Task != "fails on 1 and 3" || h.Unreachable || !strings.Contains(h.Msg, "non-zero return code") {
			t.Errorf("host error %+v", *h)
		}
		hosts = append(hosts, h.Host)
	}
	want(t, hosts, []string{"node-1", "node-3"})
	if !strings.Contains(err.Error(), "hosts failed") || !strings.Contains(re.Err.Error(), "node-3 failed at \"fails on 1 and 3\"") {
		t.Fatalf("messages: %q / %q", err, re.Err)
	}
}
