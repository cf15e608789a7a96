package engine

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gokube/connection"
	"gokube/inventory"
)

// The connection follows the variables: -e beats the inventory (under any
// of a setting's names), play vars beat the inventory, and a templated
// ansible_host is rendered before dialling, not dialled literally. The
// factory receives what dial parses into the SSH configuration.
func TestConnectionVarsFollowPrecedence(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"inv.cfg": `node-1 ansible_host=10.0.0.1 ansible_user=inv
node-2 gokube_host=10.0.0.2 gokube_user=inv
node-3 ansible_host="{{ .internal_ip }}" internal_ip=10.0.0.33 ansible_port="{{ .p }}" p=2222
node-4 ansible_host=10.0.0.4
`,
		"site.yml": `
- hosts: node-4
  gather_facts: false
  vars: {ansible_user: fromplay}
  tasks:
    - command: 'true'
- hosts: node-1:node-2:node-3
  gather_facts: false
  tasks:
    - command: 'true'
`})
	var mu sync.Mutex
	got := map[string]inventory.ConnVars{}
	opts := Options{Inventory: []string{filepath.Join(dir, "inv.cfg")}, Playbook: filepath.Join(dir, "site.yml"),
		Out: &strings.Builder{}, ExtraVars: []string{"ansible_host=10.9.9.9", "ansible_user=eve", "ansible_become_password=expw"},
		ConnFactory: func(host string, vars map[string]any) (connection.Conn, error) {
			cv, err := inventory.CheckConnVarsOf(host, vars)
			if err != nil {
				t.Errorf("%s: %v", host, err)
			}
			mu.Lock()
			got[host] = cv
			mu.Unlock()
			return connection.NewFake(host), nil
		}}
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"node-1", "node-2", "node-3", "node-4"} {
		if cv := got[h]; cv.Addr != "10.9.9.9" || cv.User != "eve" || cv.BecomePassword != "expw" {
			t.Errorf("%s: dialled %s@%s (become password %q), want eve@10.9.9.9 from -e", h, cv.User, cv.Addr, cv.BecomePassword)
		}
	}

	// Without -e: the templated address and port are rendered, play vars
	// beat the inventory's user.
	got = map[string]inventory.ConnVars{}
	opts.ExtraVars = nil
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if cv := got["node-3"]; cv.Addr != "10.0.0.33" || cv.Port != 2222 {
		t.Errorf("node-3: dialled %s:%d, want the rendered 10.0.0.33:2222", cv.Addr, cv.Port)
	}
	if cv := got["node-4"]; cv.User != "fromplay" {
		t.Errorf("node-4: user %q, want the play's fromplay", cv.User)
	}
	if cv := got["node-2"]; cv.Addr != "10.0.0.2" || cv.User != "inv" || cv.BecomePassword != "" {
		t.Errorf("node-2: %+v", cv)
	}
}
