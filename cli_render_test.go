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

// The pod network unit of a worker routes every other worker's pod range
// to that worker's address (host-gw), its own range to nobody.
func TestRenderPodNetworkRoutes(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inventory.cfg")
	os.WriteFile(inv, []byte("[etcd]\nm-1 ansible_host=192.0.2.1\n[kube-master]\nm-1\n[loadbalancer]\nlb ansible_host=192.0.2.9\n"+
		"[kube-node]\nn-1 ansible_host=192.0.2.11\nn-2 ansible_host=192.0.2.12\nn-3 ansible_host=192.0.2.13\n"), 0o644)
	cmd := newRenderCmd()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"-i", inv, "--host", "n-2", "--playbook", "examples/ha-cluster/nodes.yml", "roles/kube-node/templates/gokube-pod-network.service.tmpl"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "route replace") || strings.Contains(l, "MASQUERADE'") {
			routes = append(routes, l)
		}
	}
	want := []string{
		"ExecStart=/usr/sbin/ip route replace 10.233.64.0/24 via 192.0.2.11 proto 186",
		"ExecStart=/usr/sbin/ip route replace 10.233.66.0/24 via 192.0.2.13 proto 186",
		"ExecStart=/bin/sh -c 'iptables -t nat -C POSTROUTING -s 10.233.65.0/24 ! -d 10.233.64.0/18 -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING -s 10.233.65.0/24 ! -d 10.233.64.0/18 -j MASQUERADE'",
	}
	if strings.Join(routes, "\n") != strings.Join(want, "\n") {
		t.Errorf("routes of n-2:\n%s\nwant\n%s", strings.Join(routes, "\n"), strings.Join(want, "\n"))
	}
}
