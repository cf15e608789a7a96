package main

import (
	"bytes"
	"strings"
	"testing"
)

// `gokube render` and `gokube inventory --host H --vars-source` on the
// first-week example: what a host gets and where it comes from, offline.
func TestRenderAndVarsSourceCommands(t *testing.T) {
	cmd := newRenderCmd()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"-i", "examples/first-week/inventory.ini", "--host", "web-2", "--playbook", "examples/first-week/1-service.yml",
		"-e", "app_debug=yes", "examples/first-week/templates/hello.env.tmpl"})
	if err := cmd.Execute(); err != nil || buf.String() != "# hello: written by gokube (examples/first-week/1-service.yml)\nPORT=8080\nGREETING=hello from web-2\nDEBUG=1\n" {
		t.Fatalf("render: %v\n%q", err, buf.String())
	}
	cmd = newInventoryCmd()
	buf.Reset()
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"-i", "examples/first-week/inventory.ini", "--host", "web-2", "--vars-source"})
	want := "ansible_host = \"10.0.0.12\"\t# examples/first-week/inventory.ini:5\n" +
		"ansible_user = \"deploy\"\t# examples/first-week/inventory.ini:8\n" +
		"app_port = 8080\t# examples/first-week/group_vars/all.yml:3\n"
	if err := cmd.Execute(); err != nil || buf.String() != want {
		t.Fatalf("inventory --vars-source: %v\n%q\nwant %q", err, buf.String(), want)
	}
	if !strings.HasSuffix(buf.String(), "\n") {
		t.Fatal("no final newline")
	}
}
