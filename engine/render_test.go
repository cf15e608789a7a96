package engine

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderFor: gokube render gives a template's text and a variable's
// value and origin for one host, with a run's precedence, offline.
func TestRenderFor(t *testing.T) {
	inv := filepath.Join(firstWeek, "inventory.ini")
	abs, err := filepath.Abs(firstWeek) // playbook paths outside the working directory show in full
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		playbook, host, target string
		extra                  []string
		want                   string
	}{
		{"2-peers.yml", "web-2", filepath.Join(firstWeek, "roles/peers/templates/peers.conf.tmpl"), nil,
			"# hosts of [web], inventory order\nweb-1 10.0.0.11:8081 weight=2\nweb-2 10.0.0.12:8080 weight=1\n"},
		{"1-service.yml", "web-1", filepath.Join(firstWeek, "templates/hello.env.tmpl"), []string{"app_debug=yes"},
			"# hello: written by gokube (examples/first-week/1-service.yml)\nPORT=8081\nGREETING=hello from web-1\nDEBUG=1\n"},
		{"1-service.yml", "web-1", filepath.Join(firstWeek, "templates/hello.env.tmpl"), []string{"app_debug=false"},
			"# hello: written by gokube (examples/first-week/1-service.yml)\nPORT=8081\nGREETING=hello from web-1\n"},
		{"1-service.yml", "web-2", "app_port", nil, "app_port: 8080\n# set by " + filepath.Join(firstWeek, "group_vars/all.yml") + ":3 (inventory)\n"},
		{"1-service.yml", "web-1", "app_port", nil, "app_port: 8081\n# set by " + inv + ":4 (inventory)\n"},
		{"1-service.yml", "web-1", "app_port", []string{"app_port=9"}, "app_port: \"9\"\n# set by -e\n"},
		{"1-service.yml", "web-1", "app_greeting", nil, "app_greeting: hello from web-1\n# set by vars of the play at " + filepath.Join(abs, "1-service.yml") + ":8\n"},
		{"2-peers.yml", "web-1", "peers_file", nil, "peers_file: /etc/hello-peers.conf\n# set by " + filepath.Join(abs, "roles/peers/defaults") + "/main.yml (role defaults)\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		o := Options{Inventory: []string{inv}, Playbook: filepath.Join(firstWeek, c.playbook), ExtraVars: c.extra}
		if err := RenderFor(&b, o, c.host, c.target); err != nil || b.String() != c.want {
			t.Errorf("%s %s %s: %q, %v\nwant %q", c.playbook, c.host, c.target, b.String(), err, c.want)
		}
	}
	// Without the playbook the role's defaults are missing: the error says which.
	var b bytes.Buffer
	err = RenderFor(&b, Options{Inventory: []string{inv}}, "web-1", filepath.Join(firstWeek, "roles/peers/templates/peers.conf.tmpl"))
	if err == nil || !strings.Contains(err.Error(), "peers.conf.tmpl:1: .peers_group is not defined (host web-1)") {
		t.Errorf("without the playbook: %v", err)
	}
	var ue *UsageError
	if err := RenderFor(&b, Options{Inventory: []string{inv}}, "web-9", "app_port"); !errors.As(err, &ue) {
		t.Errorf("unknown host: %v", err)
	}
	if err := RenderFor(&b, Options{Inventory: []string{inv}}, "web-1", "no_such_thing"); err == nil || !strings.Contains(err.Error(), "neither a file nor a variable") {
		t.Errorf("unknown variable: %v", err)
	}
}
