package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/internal/labtest"
)

// An Ansible project directory (ansible.cfg, an inventory without any
// connection variables, group_vars, roles in roles_path) runs under
// gokube from its directory with the same hosts, user, key, forks and
// become as under Ansible.
func TestAnsibleProjectLab(t *testing.T) {
	l := labtest.Require(t, 2)
	hosts := l.Hosts()[:2]
	root := t.TempDir()
	proj, shared := filepath.Join(root, "proj"), filepath.Join(root, "shared")
	out := "/tmp/gk-cfg-" + filepath.Base(root)
	files := map[string]string{
		proj + "/ansible.cfg": `[defaults]
inventory = inventory/hosts.ini
remote_user = deploy
private_key_file = ` + l.KeyPath() + `
forks = 1
roles_path = ../shared/roles
host_key_checking = False
gathering = smart

[privilege_escalation]
become = True

[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
`,
		proj + "/inventory/hosts.ini":          "[web]\n" + hosts[0].Name + " ansible_host=" + hosts[0].Addr + "\n" + hosts[1].Name + " ansible_host=" + hosts[1].Addr + "\n",
		proj + "/inventory/group_vars/all.yml": "ansible_ssh_known_hosts_file: " + l.KnownHostsPath() + "\ngreeting: hello-from-group-vars\n",
		proj + "/site.yml":                     "- hosts: web\n  gather_facts: false\n  roles: [probe]\n",
		shared + "/roles/probe/tasks/main.yml": "- name: who am i\n  shell: echo \"$(id -un) $SUDO_USER {{ .greeting }}\" > " + out + "\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("ANSIBLE_CONFIG", "")
	t.Chdir(proj)
	f := &playFlags{}
	cmd := newPlayCmdFlags(f)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetErr(&buf)
	cmd.SetArgs([]string{"site.yml", "-v"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	text := buf.String()
	for _, h := range hosts {
		got, err := labtest.SSH(l, h.Addr, "cat "+out+"; rm -f "+out)
		if err != nil || got != "root deploy hello-from-group-vars\n" {
			t.Errorf("%s: %q %v (want the task run as root through sudo from deploy)", h.Name, got, err)
		}
		if !strings.Contains(text, h.Name+" : ok=1    changed=1") {
			t.Errorf("%s missing from the recap:\n%s", h.Name, text)
		}
	}
	if f.forks != 1 || f.user != "deploy" || !f.become || f.key != l.KeyPath() || len(f.inv) != 1 || f.inv[0] != filepath.Join(proj, "inventory/hosts.ini") {
		t.Errorf("flags from ansible.cfg: forks %d user %q become %v key %q inventory %v", f.forks, f.user, f.become, f.key, f.inv)
	}
	for _, want := range []string{
		"using " + filepath.Join(proj, "ansible.cfg") + " (./ansible.cfg)",
		"ansible.cfg:8: [defaults] gathering: ignored",
		"ansible.cfg:7 sets host_key_checking = False; gokube keeps checking host keys",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// A flag still wins over the file.
	f2 := &playFlags{}
	cmd = newPlayCmdFlags(f2)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(&buf)
	cmd.SetErr(&buf)
	cmd.SetArgs([]string{"site.yml", "--forks", "3", "--list-hosts"})
	if err := cmd.Execute(); err != nil || f2.forks != 3 {
		t.Fatalf("--forks 3 over forks = 1: %d %v", f2.forks, err)
	}
}

// `gokube config` shows each setting's value and where it came from: the
// file's line, or gokube's default.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ansible.cfg"), []byte("[defaults]\ninventory = hosts.ini\nforks = 5\ngathering = smart\n[ssh_connection]\nssh_args = -o ProxyJump=ops@bastion:2200\n"), 0o644)
	t.Setenv("ANSIBLE_CONFIG", filepath.Join(dir, "ansible.cfg"))
	cmd := newConfigCmd()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			rows[f[0]] = f
		}
	}
	cfg := filepath.Join(dir, "ansible.cfg")
	for setting, want := range map[string]string{
		"defaults.inventory":          filepath.Join(dir, "hosts.ini") + " " + cfg + ":2",
		"defaults.forks":              "5 " + cfg + ":3",
		"defaults.timeout":            "10s default",
		"privilege_escalation.become": "false default",
	} {
		if got := strings.Join(rows[setting][1:], " "); got != want {
			t.Errorf("%s: %q, want %q", setting, got, want)
		}
	}
	if !strings.Contains(buf.String(), "(found as $ANSIBLE_CONFIG)") || !strings.Contains(buf.String(), "ProxyJump ops@bastion:2200") ||
		!strings.Contains(buf.String(), cfg+":4: [defaults] gathering") {
		t.Errorf("output:\n%s", buf.String())
	}
}

// `gokube inventory` without -i takes ansible.cfg's inventory, like
// ansible-inventory.
func TestInventoryFromAnsibleCfg(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ansible.cfg"), []byte("[defaults]\ninventory = hosts.ini\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts.ini"), []byte("[web]\nweb-1\n"), 0o644)
	t.Setenv("ANSIBLE_CONFIG", "")
	t.Chdir(dir)
	cmd := newInventoryCmd()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"--graph"})
	if err := cmd.Execute(); err != nil || !strings.Contains(buf.String(), "|--@web:\n  |  |--web-1") {
		t.Fatalf("%v\n%s", err, buf.String())
	}
}
