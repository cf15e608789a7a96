package engine

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

func TestUnknownHandlerIsLoadError(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - command: "true"
      notify: nobody
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "site.yml:4: notify: no handler") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, play, want string }{
		{"unknown task key", "- hosts: all\n  tasks:\n    - name: x\n      command: 'true'\n      becom: true\n", "site.yml:5: unknown key \"becom\" in task"},
		{"unknown play key", "- hosts: all\n  taks: []\n", "site.yml:2: unknown key \"taks\" in play"},
		{"unknown module arg", "- hosts: all\n  tasks:\n    - tfile:\n        path: x\n        contnt: y\n", "site.yml:5: tfile: unknown argument \"contnt\""},
		{"bad choice", "- hosts: all\n  tasks:\n    - tfile: {path: x, mode: '0777'}\n", "site.yml:3: tfile: argument \"mode\": \"0777\" is not one of 0644, 0600"},
		{"bad bool", "- hosts: all\n  tasks:\n    - tfile: {path: x, force: maybe}\n", "argument \"force\": want a boolean"},
		{"bad int", "- hosts: all\n  tasks:\n    - tfile: {path: x, count: many}\n", "argument \"count\": want an integer"},
		{"missing required", "- hosts: all\n  tasks:\n    - tfile: {content: y}\n", "site.yml:3: tfile: missing required argument \"path\""},
		{"kv form", "- hosts: all\n  tasks:\n    - tfile: path=x bogus=1\n", "site.yml:3: tfile: unknown argument \"bogus\""},
		{"template syntax", "- hosts: all\n  tasks:\n    - tfile: {path: \"{{ .x \"}\n", "site.yml:3:"},
		{"bad when", "- hosts: all\n  tasks:\n    - command: 'true'\n      when: eq .x (\n", "site.yml:4:"},
		{"two actions", "- hosts: all\n  tasks:\n    - command: 'true'\n      shell: 'true'\n", "site.yml:4: task has two actions"},
		{"role missing", "- hosts: all\n  roles: [nope]\n", "site.yml:2: role \"nope\" not found"},
		{"yaml error", "- hosts: all\n  tasks: [\n", "site.yml:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "node-1\n", map[string]string{"site.yml": c.play})
			_, err := e.run(e.opts("site.yml"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != 1 {
				t.Fatalf("exit code of %v is not 1", err)
			}
			if len(e.dials) != 0 {
				t.Fatalf("a host was contacted: %v", e.dials)
			}
		})
	}
}

func TestRoleDependencyCycle(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml":               "- hosts: all\n  roles: [a]\n",
		"roles/a/meta/main.yml":  "dependencies: [b]\n",
		"roles/b/meta/main.yml":  "dependencies:\n  - role: a\n",
		"roles/a/tasks/main.yml": "- command: 'true'\n",
	})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "role dependency cycle: a -> b -> a") {
		t.Fatalf("got %v", err)
	}
}

func TestRolesBundledAndLocal(t *testing.T) {
	bundled := fstest.MapFS{
		"common/defaults/main.yml": {Data: []byte("who: bundled-common\nport: 1\n")},
		"common/tasks/main.yml":    {Data: []byte("- name: common task\n  command: \"echo common {{ .who }} {{ .role_name }}\"\n  register: common_out\n")},
		"app/meta/main.yml":        {Data: []byte("dependencies: [common]\n")},
		"app/defaults/main.yml":    {Data: []byte("port: 8080\n")},
		"app/tasks/main.yml":       {Data: []byte("- import_tasks: sub.yml\n  vars: {extra: 1}\n")},
		"app/tasks/sub.yml":        {Data: []byte("- name: sub\n  command: \"echo app {{ .port }} {{ .extra }}\"\n  register: app_out\n  notify: restart app\n")},
		"app/handlers/main.yml":    {Data: []byte("- name: restart app\n  command: \"echo restarted\"\n")},
		"other/tasks/main.yml":     {Data: []byte("- command: 'echo bundled other'\n")},
	}
	e := newEnv(t, "node-1\n", map[string]string{
		"site.yml":                   "- hosts: all\n  gather_facts: false\n  roles: [app, other]\n",
		"roles/other/tasks/main.yml": "- name: local other\n  command: 'echo local other'\n  register: other_out\n",
	})
	o := e.opts("site.yml")
	o.BundledRoles = bundled
	r := mustRun(t, e, o)
	v := r.Vars["node-1"]
	if got := v["common_out"].(map[string]any)["stdout"]; got != "common bundled-common common" {
		t.Fatalf("common: %v", got)
	}
	if got := v["app_out"].(map[string]any)["stdout"]; got != "app 8080 1" {
		t.Fatalf("app: %v", got)
	}
	if got := v["other_out"].(map[string]any)["stdout"]; got != "local other" {
		t.Fatalf("the local role must win over the bundled one: %v", got)
	}
	want(t, eventsOf(r, "node-1"), []string{"common : common task=changed", "app : sub=changed", "other : local other=changed", "app : restart app=changed"})
}

func TestArgValidationBeforeAnyRequest(t *testing.T) {
	e := newEnv(t, "node-1\n", map[string]string{"site.yml": `
- hosts: all
  tasks:
    - {name: fine, command: "true"}
    - name: later in a role-less play
      tfile: {path: x, mode: "0777"}
`})
	_, err := e.run(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "site.yml:6:") {
		t.Fatalf("got %v", err)
	}
	if len(e.fakes) != 0 {
		t.Fatal("a fake host was created before validation finished")
	}
}
