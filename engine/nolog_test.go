package engine

import (
	"fmt"
	"strings"
	"testing"
)

// no_log hides every value a task would print, in text and JSON output:
// debug's message, loop items' labels and outputs, a failure's message
// and command output. What register stores keeps the values.
func TestNoLogHidesEverythingItWouldPrint(t *testing.T) {
	play := `
- hosts: all
  gather_facts: false
  vars: {secret: s3cret-var}
  tasks:
    - debug: msg="{{ .secret }}"
      no_log: true
    - debug: msg="{{ .item }}"
      loop: [s3cret-item]
      no_log: true
      register: looped
    - command: "echo s3cret-out; false"
      no_log: true
      ignore_errors: true
      register: failed
`
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": play})
			o := e.opts("site.yml")
			o.Output = format
			o.Verbosity = 2
			r, err := e.run(o)
			if err != nil {
				t.Fatal(err)
			}
			out := e.out.String()
			if strings.Contains(out, "s3cret") {
				t.Fatalf("no_log leaked:\n%s", out)
			}
			if n := strings.Count(out, "hidden due to the 'no_log: true'"); n < 3 {
				t.Fatalf("want the no_log message for each task, got %d:\n%s", n, out)
			}
			want(t, eventsOf(r, "node-1"), []string{"debug=ok", "debug=ok", "command=failed"})
			vars := fmt.Sprint(r.Vars["node-1"])
			if !strings.Contains(vars, "s3cret-item") || !strings.Contains(vars, "s3cret-out") {
				t.Fatalf("register lost the values: %s", vars)
			}
		})
	}
}
