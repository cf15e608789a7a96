package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/modules"
)

// The pki modules' Specs declare every argument's type and choices, so the
// load-time check (what --syntax-check runs, with the bundled registry)
// rejects a bad argument with its file and line before any host is
// contacted, not only when the module runs.
func TestPKIModuleArgsCheckedAtLoad(t *testing.T) {
	cases := []struct{ name, task, want string }{
		{"etcd bad choice", "etcd: {action: bogus}", `site.yml:3: etcd: argument "action": "bogus" is not one of status, members, member_add, member_remove`},
		{"etcd bad int", "etcd:\n        action: status\n        timeout: soon", `site.yml:5: etcd: argument "timeout": want an integer`},
		{"etcd unknown", "etcd: {action: status, endpoint_list: x}", `site.yml:3: etcd: unknown argument "endpoint_list"`},
		{"etcd alias twice", "etcd: {ca_cert: /a, cacert: /b}", `site.yml:3: etcd: argument "ca_cert" given twice (as "cacert" too)`},
		{"uri bad choice", "uri: {url: 'https://x/', via: ssh}", `site.yml:3: uri: argument "via": "ssh" is not one of connection, host`},
		{"uri headers not a map", "uri: {url: 'https://x/', headers: 'X: y'}", `site.yml:3: uri: argument "headers": want a mapping, got a string`},
		{"uri missing url", "uri: {method: GET}", `site.yml:3: uri: missing required argument "url"`},
		{"x509 key type", "x509: {path: /p, name: n, ca: true, key_type: dsa}", `site.yml:3: x509: argument "key_type": "dsa" is not one of ecdsa, rsa`},
		{"x509 organization map", "x509:\n        path: /p\n        name: n\n        ca: true\n        organization: {a: 1}", `site.yml:7: x509: argument "organization": want a list of scalars, got a mapping`},
		{"x509 ca or ca_name", "x509: {path: /p, name: n}", `site.yml:3: x509: one of ca, ca_name is required`},
		{"kube_health bad bool", "kube_health: {url: 'https://x:6443', validate_certs: maybe}", `site.yml:3: kube_health: argument "validate_certs": want a boolean`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "site.yml")
			play := "- hosts: all\n  tasks:\n    - " + c.task + "\n"
			if err := os.WriteFile(p, []byte(play), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPlaybook(p, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// A templated value passes the load-time type and choice checks, and an
	// alias is renamed to its argument.
	dir := t.TempDir()
	p := filepath.Join(dir, "site.yml")
	play := "- hosts: all\n  tasks:\n    - etcd: {action: \"{{ .act }}\", timeout: \"{{ .t }}\", cacert: /a}\n"
	if err := os.WriteFile(p, []byte(play), 0o644); err != nil {
		t.Fatal(err)
	}
	pb, err := LoadPlaybook(p, nil, nil)
	if err != nil {
		t.Fatalf("templated args rejected: %v", err)
	}
	var args map[string]any
	for _, task := range pb.Plays[0].Tasks {
		if task.Action == "etcd" {
			args = task.Args
		}
	}
	if args["ca_cert"] != "/a" || args["cacert"] != nil || args["action"] != "{{ .act }}" {
		t.Fatalf("args after load: %v", args)
	}
}

// The engine's own actions are documented like the modules, for gokube doc.
func TestActionSpecsDocumented(t *testing.T) {
	specs := ActionSpecs()
	if len(specs) < 10 {
		t.Fatalf("only %d actions", len(specs))
	}
	for n, s := range specs {
		for _, p := range modules.DocProblems(n, s) {
			t.Error(p)
		}
	}
}
