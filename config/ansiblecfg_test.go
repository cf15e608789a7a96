package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, p, s string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// An ansible.cfg as Ansible projects write them: every setting gokube acts
// on is read with its file:line, paths resolve against the file's
// directory (and ~), and keys that are Ansible's alone are listed.
func TestParse(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GK_TEST_KEYS", "/keys")
	p := write(t, filepath.Join(dir, "ansible.cfg"), `# kubespray-style
[defaults]
inventory = inventory/hosts.ini
Remote_User: deploy
private_key_file = $GK_TEST_KEYS/id_ed25519
forks = 7   ; inline comment
roles_path = roles:~/more-roles
timeout=30
host_key_checking = False
gathering = smart
callbacks_enabled = profile_tasks,
    timer

[privilege_escalation]
become = yes
become_user = root

[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=30m -o ProxyJump=ops@bastion:2222
pipelining = True

[galaxy]
server = elsewhere
`)
	c, err := Parse(p, "/home/op")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Inventory) != 1 || c.Inventory[0] != filepath.Join(dir, "inventory/hosts.ini") {
		t.Errorf("inventory %v", c.Inventory)
	}
	if c.RemoteUser != "deploy" || c.PrivateKeyFile != "/keys/id_ed25519" || c.Forks != 7 || c.Timeout != 30*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	if strings.Join(c.RolesPath, ":") != filepath.Join(dir, "roles")+":/home/op/more-roles" {
		t.Errorf("roles_path %v", c.RolesPath)
	}
	if c.HostKeyChecking == nil || *c.HostKeyChecking || c.Become == nil || !*c.Become || c.BecomeUser != "root" {
		t.Errorf("booleans: %+v", c)
	}
	if c.ProxyJump == nil || c.ProxyJump.User != "ops" || c.ProxyJump.Addr != "bastion" || c.ProxyJump.Port != 2222 {
		t.Errorf("ssh_args jump %+v", c.ProxyJump)
	}
	if got := c.Sources["defaults.forks"]; got != p+":6" {
		t.Errorf("forks from %q", got)
	}
	if got := c.Sources["defaults.remote_user"]; got != p+":4" {
		t.Errorf("remote_user (mixed case key) from %q", got)
	}
	want := []string{p + ":10: [defaults] gathering", p + ":11: [defaults] callbacks_enabled", p + ":20: [ssh_connection] pipelining", p + ":23: [galaxy] server"}
	if strings.Join(c.Ignored, "\n") != strings.Join(want, "\n") {
		t.Errorf("ignored:\n%s\nwant\n%s", strings.Join(c.Ignored, "\n"), strings.Join(want, "\n"))
	}
}

// Bad values are errors naming file, line, section and key.
func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"[defaults]\nforks = many\n", `:2: [defaults] forks: "many" is not a positive integer`},
		{"[privilege_escalation]\nbecome = sometimes\n", `:2: [privilege_escalation] become: "sometimes" is not a boolean`},
		{"[privilege_escalation]\nbecome_method = su\n", `:2: [privilege_escalation] become_method: "su": gokube becomes with sudo only`},
		{"[ssh_connection]\nssh_args = -J a,b\n", `:2: [ssh_connection] ssh_args: ProxyJump "a,b": chains`},
		{"[defaults]\nforks = 5\nforks = 6\n", `:3: [defaults] forks already set on line 2`},
		{"forks = 5\n", `:1: "forks = 5" comes before any [section]`},
		{"[defaults\n", `:1: section header without ]`},
		{"[defaults]\njust words\n", `:2: want key = value`},
	} {
		p := write(t, filepath.Join(dir, "ansible.cfg"), tc.text)
		_, err := Parse(p, "")
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: got %v, want %q", tc.text, err, tc.want)
		}
	}
}

// Find follows Ansible's order and takes the first file only.
func TestFind(t *testing.T) {
	root := t.TempDir()
	home, cwd, other := filepath.Join(root, "home"), filepath.Join(root, "proj"), filepath.Join(root, "other")
	write(t, filepath.Join(home, ".ansible.cfg"), "[defaults]\n")
	write(t, filepath.Join(cwd, "ansible.cfg"), "[defaults]\n")
	write(t, filepath.Join(other, "ansible.cfg"), "[defaults]\n")
	vars := map[string]string{}
	env := Env{Getenv: func(k string) string { return vars[k] }, Cwd: cwd, Home: home}
	check := func(wantPath, wantWhy string) {
		t.Helper()
		p, why, _, err := Find(env)
		if err != nil || p != wantPath || why != wantWhy {
			t.Fatalf("Find: %q %q %v; want %q %q", p, why, err, wantPath, wantWhy)
		}
	}
	check(filepath.Join(cwd, "ansible.cfg"), "./ansible.cfg")
	vars["ANSIBLE_CONFIG"] = other // a directory
	check(filepath.Join(other, "ansible.cfg"), "$ANSIBLE_CONFIG")
	vars["ANSIBLE_CONFIG"] = filepath.Join(other, "ansible.cfg")
	check(filepath.Join(other, "ansible.cfg"), "$ANSIBLE_CONFIG")
	vars["ANSIBLE_CONFIG"] = filepath.Join(other, "missing.cfg")
	if _, _, _, err := Find(env); err == nil {
		t.Fatal("a missing ANSIBLE_CONFIG must be an error")
	}
	delete(vars, "ANSIBLE_CONFIG")
	// A world-writable working directory's ansible.cfg is skipped.
	if err := os.Chmod(cwd, 0o777); err != nil {
		t.Fatal(err)
	}
	p, _, warning, _ := Find(env)
	if p != filepath.Join(home, ".ansible.cfg") || !strings.Contains(warning, "world-writable") {
		t.Fatalf("world-writable cwd: %q %q", p, warning)
	}
	os.Chmod(cwd, 0o755)
	env.Cwd = root
	check(filepath.Join(home, ".ansible.cfg"), "~/.ansible.cfg")
}

// ANSIBLE_* variables win over the file, with their name as the source,
// and work without a file; a bad one is an error naming it.
func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ansible.cfg"), "[defaults]\nforks = 5\nremote_user = deploy\n")
	vars := map[string]string{"ANSIBLE_FORKS": "9", "ANSIBLE_INVENTORY": "inv/hosts.ini", "ANSIBLE_BECOME": "yes"}
	env := Env{Getenv: func(k string) string { return vars[k] }, Cwd: dir, Home: dir}
	c, _, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Forks != 9 || c.Sources["defaults.forks"] != "$ANSIBLE_FORKS" || c.RemoteUser != "deploy" || c.Sources["defaults.remote_user"] != filepath.Join(dir, "ansible.cfg")+":3" {
		t.Errorf("forks %d from %q, remote_user %q from %q", c.Forks, c.Sources["defaults.forks"], c.RemoteUser, c.Sources["defaults.remote_user"])
	}
	if len(c.Inventory) != 1 || c.Inventory[0] != filepath.Join(dir, "inv/hosts.ini") || c.Become == nil || !*c.Become {
		t.Errorf("inventory %v become %v", c.Inventory, c.Become)
	}
	env.Cwd = t.TempDir() // no ansible.cfg there; HOME has none either
	env.Home = env.Cwd
	if c, _, err = Load(env); err != nil || c.Path != "" && c.Path != "/etc/ansible/ansible.cfg" || c.Forks != 9 {
		t.Errorf("env without a file: %+v %v", c, err)
	}
	vars["ANSIBLE_TIMEOUT"] = "soon"
	if _, _, err = Load(env); err == nil || !strings.Contains(err.Error(), `$ANSIBLE_TIMEOUT: "soon" is not a positive number of seconds`) {
		t.Errorf("bad variable: %v", err)
	}
}
