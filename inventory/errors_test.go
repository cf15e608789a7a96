package inventory

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // the inventory is "inventory.cfg" or "hosts.yml"
		want  string            // path relative to the tree, then the message
	}{
		{"space in section", map[string]string{"inventory.cfg": "[web]\nh1\n[bad group]\n"},
			"inventory.cfg:3: invalid section"},
		{"unknown section type", map[string]string{"inventory.cfg": "\n[web:hostz]\n"},
			"inventory.cfg:2: section [web:hostz] has unknown type"},
		{"vars line without =", map[string]string{"inventory.cfg": "[web]\nh1\n[web:vars]\nfoo\n"},
			"inventory.cfg:4: [web:vars] expects key=value"},
		{"host var without =", map[string]string{"inventory.cfg": "[web]\nh1 ansible_host\n"},
			`inventory.cfg:2: expected key=value after host "h1"`},
		{"children of undeclared group", map[string]string{"inventory.cfg": "[web]\nh1\n[all-nodes:children]\nweb\nwbe\n"},
			`inventory.cfg:5: section [all-nodes:children] includes group "wbe", which is never declared`},
		{"vars of undeclared group", map[string]string{"inventory.cfg": "[web]\nh1\n[wbe:vars]\nx=1\n"},
			`inventory.cfg:3: section [wbe:vars] is for group "wbe"`},
		{"children cycle", map[string]string{"inventory.cfg": "[a:children]\nb\n[b:children]\nc\n[c:children]\na\n"},
			`inventory.cfg:6: making "a" a child of "c" creates a cycle: c -> a -> b -> c`},
		{"self child", map[string]string{"inventory.cfg": "[a:children]\na\n"},
			`inventory.cfg:2: making "a" a child of "a" creates a cycle`},
		{"reversed range", map[string]string{"inventory.cfg": "[web]\nnode-[3:1]\n"},
			"inventory.cfg:2: host \"node-[3:1]\": range [3:1] must have begin <= end"},
		{"unequal padding", map[string]string{"inventory.cfg": "[web]\nnode-[01:100]\n"},
			"inventory.cfg:2: host \"node-[01:100]\": zero-padded range"},
		{"huge range", map[string]string{"inventory.cfg": "[web]\nnode-[1:999999999]\n"},
			"inventory.cfg:2: host \"node-[1:999999999]\": range [1:999999999] expands to more than"},
		{"unterminated quote", map[string]string{"inventory.cfg": "[web]\nh1 foo=\"bar\n"},
			"inventory.cfg:2: unterminated \" quote"},
		{"bad port", map[string]string{"inventory.cfg": "[web]\nh1:99999\n"},
			`inventory.cfg:2: host "h1:99999": bad port "99999"`},
		{"bad ansible_port", map[string]string{"inventory.cfg": "[web]\nh1\n[web:vars]\nansible_port=ssh\n"},
			`inventory.cfg:4: ansible_port: "ssh" is not a port number (1-65535) (host h1)`},
		{"bad become", map[string]string{"inventory.cfg": "h1 ansible_become=sometimes\n"},
			`inventory.cfg:1: ansible_become: "sometimes" is not a boolean (host h1)`},
		{"unsupported connection", map[string]string{"inventory.cfg": "\n\nh1 ansible_connection=winrm\n"},
			`inventory.cfg:3: ansible_connection: "winrm" is not supported`},
		{"unsupported ProxyCommand", map[string]string{"inventory.cfg": "h1 ansible_ssh_common_args='-o ProxyCommand=\"nc -x proxy %h %p\"'\n"},
			`inventory.cfg:1: ansible_ssh_common_args: ProxyCommand "nc -x proxy %h %p": only`},
		{"password inline", map[string]string{"inventory.cfg": "[web]\nh1\nh2 ansible_password=hunter2\n"},
			"inventory.cfg:3: ansible_password: a literal password in an inventory or vars file is refused (host h2)"},
		{"numeric password", map[string]string{"inventory.cfg": "h1 ansible_ssh_pass=1234\n"},
			"inventory.cfg:1: ansible_ssh_pass: a literal password"},
		{"become password in group vars", map[string]string{"inventory.cfg": "[web]\nh1\n[web:vars]\nx=1\nansible_become_pass=hunter2\n"},
			"inventory.cfg:5: ansible_become_pass: a literal password"},
		{"password in group_vars file", map[string]string{"inventory.cfg": "[web]\nh1\n", "group_vars/web.yml": "---\nx: 1\nansible_ssh_pass: hunter2\n"},
			"group_vars/web.yml:3: ansible_ssh_pass: a literal password"},
		{"bad YAML in group_vars", map[string]string{"inventory.cfg": "[web]\nh1\n", "group_vars/web.yml": "x: 1\ny: [\n"},
			"group_vars/web.yml:2: did not find expected node content"},
		{"group_vars not a mapping", map[string]string{"inventory.cfg": "[web]\nh1\n", "group_vars/web": "\n- a\n- b\n"},
			"group_vars/web:2: a vars file must be a mapping"},
		{"vault file", map[string]string{"inventory.cfg": "[web]\nh1\n", "host_vars/h1.yml": "$ANSIBLE_VAULT;1.1;AES256\n6231\n"},
			"host_vars/h1.yml:1: encrypted with Ansible Vault, and no vault password was given"},
		{"yaml unknown key", map[string]string{"hosts.yml": "all:\n  hosts:\n    h1:\n  childern:\n    web:\n"},
			`hosts.yml:4: group "all": unknown key "childern" (want hosts, children or vars)`},
		{"yaml hosts as list", map[string]string{"hosts.yml": "all:\n  hosts:\n    - h1\n"},
			`hosts.yml:3: group "all": hosts must be a mapping`},
		{"yaml syntax", map[string]string{"hosts.yml": "all:\n  vars:\n    a: 1\n    b: \"unterminated\n"},
			"hosts.yml:4: found unexpected end of stream"},
		{"yaml password", map[string]string{"hosts.yml": "all:\n  children:\n    web:\n      hosts:\n        h1:\n          ansible_password: hunter2\n"},
			"hosts.yml:6: ansible_password: a literal password"},
		{"yaml cycle", map[string]string{"hosts.yml": "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n"},
			`hosts.yml:7: making "a" a child of "b" creates a cycle`},
		{"yaml not a mapping", map[string]string{"hosts.yml": "- all\n"},
			"hosts.yml:1: a YAML inventory is a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			name := "inventory.cfg"
			if _, ok := tc.files["hosts.yml"]; ok {
				name = "hosts.yml"
			}
			_, err := Load(filepath.Join(dir, name))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			if !strings.Contains(got, tc.want) {
				t.Fatalf("error = %q\nwant it to contain %q", got, tc.want)
			}
			var ie *Error
			if !errors.As(err, &ie) || ie.Line == 0 {
				t.Errorf("error %v is not an *Error with a line", err)
			}
		})
	}
}

func TestPasswordsAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		opts LoadOptions
	}{
		{"option", "h1 ansible_password=hunter2\n", LoadOptions{AllowPasswords: true}},
		{"inventory var", "h1 ansible_password=hunter2\n[all:vars]\ngokube_allow_inventory_passwords=true\n", LoadOptions{}},
		{"template", "h1 ansible_become_password='{{ .vault_become }}'\n", LoadOptions{}},
		{"empty", "h1 ansible_password=''\n", LoadOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"inventory.cfg": tc.src})
			inv, err := LoadWith(filepath.Join(dir, "inventory.cfg"), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := inv.Host("h1"); !ok {
				t.Fatal("no h1")
			}
		})
	}
	// The opt-in is per host: it does not leak to hosts outside the group.
	dir := writeTree(t, map[string]string{"inventory.cfg": "[lab]\nh1 ansible_password=a\n[lab:vars]\ngokube_allow_inventory_passwords=true\n[prod]\nh2 ansible_password=b\n"})
	_, err := Load(filepath.Join(dir, "inventory.cfg"))
	if err == nil || !strings.Contains(err.Error(), "inventory.cfg:6: ansible_password") || strings.Contains(err.Error(), "host h1") {
		t.Fatalf("error = %v, want only h2 refused", err)
	}
}
