package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/internal/vault"
)

// Vault data made by ansible-vault 2.14 (internal/vault/testdata): a whole
// file (db_password, port) and an inline value (api_token).
func vaultFixtures(t *testing.T) (file, inline string, kr *vault.Keyring) {
	t.Helper()
	f, err1 := os.ReadFile("../internal/vault/testdata/file.yml")
	i, err2 := os.ReadFile("../internal/vault/testdata/inline.yml")
	kr, err3 := vault.Load([]string{"../internal/vault/testdata/pw"}, nil)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	return string(f), string(i), kr
}

// Every place Ansible decrypts vault data, gokube does: group_vars and
// host_vars (whole file, inline), vars_files, role defaults, include_vars
// and -e @file; the plaintext reaches the tasks.
func TestVaultEverywhere(t *testing.T) {
	file, inline, kr := vaultFixtures(t)
	renamed := func(s, to string) string { return strings.Replace(s, "api_token", to, 1) }
	e := newEnv(t, "node-1\n", map[string]string{
		"group_vars/all.yml":        file,
		"host_vars/node-1.yml":      renamed(inline, "hv_token"),
		"vault_vars.yml":            renamed(inline, "vf_token"),
		"inc.yml":                   file,
		"extra.yml":                 file,
		"roles/r/defaults/main.yml": renamed(inline, "role_token"),
		"roles/r/tasks/main.yml":    "- set_fact: {got_role: \"{{ .role_token }}\"}\n",
		"site.yml": `
- hosts: all
  vars_files: [vault_vars.yml]
  roles: [r]
  tasks:
    - set_fact:
        got_gv: "{{ .db_password }}"
        got_hv: "{{ .hv_token }}"
        got_vf: "{{ .vf_token }}"
    - include_vars: {file: inc.yml, name: inc}
`,
	})
	o := e.opts("site.yml")
	o.Vault = kr
	o.ExtraVars = []string{"@" + filepath.Join(e.dir, "extra.yml")}
	r := mustRun(t, e, o)
	v := r.Vars["node-1"]
	for k, want := range map[string]string{"got_gv": "hunter2-vaulted", "got_hv": "inline-secret-42", "got_vf": "inline-secret-42", "got_role": "inline-secret-42"} {
		if v[k] != want {
			t.Errorf("%s = %v, want %q", k, v[k], want)
		}
	}
	if inc, _ := v["inc"].(map[string]any); inc["db_password"] != "hunter2-vaulted" {
		t.Errorf("include_vars: %v", v["inc"])
	}

	// Without the password: refused before any host is contacted, naming
	// the file and saying which flag gives one.
	e.dials = map[string]int{}
	o.Vault = nil
	o.ExtraVars = nil
	_, err := e.run(o)
	if err == nil || !strings.Contains(err.Error(), "no vault password was given (--vault-password-file") {
		t.Fatalf("no password: %v", err)
	}
	t.Log(err)
	if e.dials["node-1"] != 0 {
		t.Fatal("a host was contacted")
	}
	// A wrong password, on an inline value: the file and the line.
	wrong, _ := vault.Load([]string{"../internal/vault/testdata/pw2"}, nil)
	o.Vault = wrong
	_, err = e.run(o)
	if err == nil || !strings.Contains(err.Error(), "no vault password given decrypts it") {
		t.Fatalf("wrong password: %v", err)
	}
}
