package main

import (
	"bytes"
	"os"
	"path/filepath"
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

// A group_vars file that matches no group is reported by --syntax-check,
// --list-tasks, --list-hosts and `inventory` too, not only by a real run.
func TestSyntaxCheckShowsInventoryWarnings(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "group_vars"), 0o755)
	os.WriteFile(filepath.Join(dir, "inv.ini"), []byte("[k8s-cluster]\nn1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "group_vars", "k8s_cluster.yml"), []byte("x: 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yml"), []byte("- hosts: all\n  gather_facts: false\n  tasks: [{debug: {msg: hi}}]\n"), 0o644)
	t.Setenv("ANSIBLE_CONFIG", "")
	for _, args := range [][]string{
		{"play", "--syntax-check"}, {"play", "--list-tasks"}, {"play", "--list-hosts"},
		{"inventory", "--list"}, {"inventory", "--host", "n1"}, {"inventory", "--graph"},
	} {
		flag := strings.Join(args, " ")
		cmd := newPlayCmd()
		if args[0] == "inventory" {
			cmd = newInventoryCmd()
		}
		var out, errb bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		cmd.SetArgs(append([]string{"-i", filepath.Join(dir, "inv.ini")}, args[1:]...))
		if args[0] == "play" {
			cmd.SetArgs(append([]string{"-i", filepath.Join(dir, "inv.ini"), args[1]}, filepath.Join(dir, "p.yml")))
		}
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		if !strings.Contains(errb.String(), "[WARNING]: "+filepath.Join(dir, "group_vars", "k8s_cluster.yml")+": no group of that name in the inventory; ignored (did you mean k8s-cluster?") {
			t.Errorf("%s: stderr %q", flag, errb.String())
		}
		if !strings.HasSuffix(out.String(), "\n") {
			t.Errorf("%s: output does not end with a newline: %q", flag, out.String())
		}
	}
}
