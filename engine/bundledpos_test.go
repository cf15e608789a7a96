package engine

import (
	"strings"
	"testing"
	"testing/fstest"

	"gokube/modules"
)

// TestBundledRoleErrorsSayBundled: an error inside a bundled role names
// the file with "(bundled)" (it is not a file beside the playbook), and a
// rendering error names the file that set the variable being rendered.
func TestBundledRoleErrorsSayBundled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		role  map[string]string // the bundled role "app"
		files map[string]string // beside the playbook
		want  []string
		not   string
	}{
		{name: "task keyword typo, at load",
			role: map[string]string{"tasks/main.yml": "- debug: {msg: x}\n  whenn: true\n"},
			want: []string{"roles/app/tasks/main.yml (bundled):2: unknown key \"whenn\""}},
		{name: "Jinja in a template, at load",
			role: map[string]string{"tasks/main.yml": "- template: {src: a.conf.tmpl, dest: /tmp/x}\n", "templates/a.conf.tmpl": "a=1\n{% if x %}\n"},
			want: []string{"roles/app/templates/a.conf.tmpl (bundled):2: Jinja statement {% if %}"}},
		{name: "variable from group_vars, at run",
			role: map[string]string{"defaults/main.yml": "app_url: \"http://x:{{ .app_port }}\"\n",
				"tasks/main.yml": "- debug: {msg: x}\n- debug: {msg: \"{{ .app_url }}\"}\n"},
			files: map[string]string{"group_vars/all.yml": "app_port: \"{{ .nope }}\"\n"},
			want: []string{"roles/app/tasks/main.yml (bundled):2:", ".nope is not defined",
				"while rendering variable app_url -> app_port, set in ", "/group_vars/all.yml:1 (inventory)"}},
		{name: "variable from the bundled defaults, at run",
			role: map[string]string{"defaults/main.yml": "app_url: \"http://x:{{ .nope }}\"\n",
				"tasks/main.yml": "- debug: {msg: \"{{ .app_url }}\"}\n"},
			want: []string{"roles/app/tasks/main.yml (bundled):1:", "while rendering variable app_url, set in roles/app/defaults/main.yml (bundled role defaults)"}},
		{name: "a group's variable in a template file, at run",
			role: map[string]string{"defaults/main.yml": "peers: \"{{ hostvarsOf \\\"all\\\" \\\"peer\\\" | values | join \\\",\\\" }}\"\npeer: \"{{ .inventory_hostname }}:{{ .port }}\"\n",
				"tasks/main.yml": "- template: {src: a.conf.tmpl, dest: out/a.conf}\n", "templates/a.conf.tmpl": "# peers\nPEERS={{ .peers }}\n"},
			files: map[string]string{"group_vars/all.yml": "port: \"{{ .nope }}\"\n"},
			want: []string{"roles/app/templates/a.conf.tmpl (bundled):2: .nope is not defined (host node-1) (while rendering variable peers -> peer -> port, set in ",
				"/group_vars/all.yml:1 (inventory))"},
			not: "error calling"},
		{name: "a local role of the same name is not bundled",
			role:  map[string]string{"tasks/main.yml": "- debug: {msg: x}\n"},
			files: map[string]string{"roles/app/tasks/main.yml": "- debug: {msg: x}\n  whenn: true\n"},
			want:  []string{"roles/app/tasks/main.yml:2: unknown key \"whenn\""},
			not:   "(bundled)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"site.yml": "- hosts: all\n  gather_facts: false\n  roles: [app]\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			e := newEnv(t, "node-1\n", files)
			bundled := fstest.MapFS{}
			for k, v := range tc.role {
				bundled["app/"+k] = &fstest.MapFile{Data: []byte(v)}
			}
			o := e.opts("site.yml")
			o.BundledRoles = bundled
			o.Registry = modules.NewRegistry() // the real template module
			_, err := e.run(o)
			if err == nil {
				t.Fatalf("want an error:\n%s", e.out.String())
			}
			got := err.Error() + "\n" + e.out.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			if tc.not != "" && strings.Contains(got, tc.not) {
				t.Errorf("has %q:\n%s", tc.not, got)
			}
		})
	}
}
