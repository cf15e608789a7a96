package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gokube/internal/labtest"
	"gokube/lab"
)

// sshObserve runs a command on a lab host as root through the system ssh
// client: an observer that shares no code with gokube.
func sshObserve(t *testing.T, l *lab.Lab, addr, command string) string {
	t.Helper()
	out, err := labtest.SSH(l, addr, command)
	if err != nil {
		t.Fatalf("ssh %s %q: %v\n%s", addr, command, err, out)
	}
	return out
}

const labPlaybook = `
- name: files, templates and a unit
  hosts: lab
  become: true
  vars:
    base: /opt/{{ .test_id }}
    unit: "{{ .test_id }}.service"
  tasks:
    - name: base dir
      file: {path: "{{ .base }}", state: directory, mode: "0755"}
    - name: config
      copy:
        dest: "{{ .base }}/app.conf"
        content: "id={{ .test_id }}\nhost={{ .inventory_hostname }}\n"
        mode: "0640"
      notify: restart
    - name: peers
      template: {src: peers.tmpl, dest: "{{ .base }}/peers", mode: "0644"}
    - name: line
      lineinfile: {path: "{{ .base }}/extra.conf", line: "enabled=true", create: true, mode: "0644"}
    - name: marker
      command: {cmd: "touch {{ .base }}/.init", creates: "{{ .base }}/.init"}
    - name: unit file
      copy:
        dest: /etc/systemd/system/{{ .unit }}
        content: |
          [Unit]
          Description=gokube engine integration test
          [Service]
          ExecStart=/bin/sleep 3600
          [Install]
          WantedBy=multi-user.target
        mode: "0644"
      notify: restart
    - name: unit running
      systemd: {name: "{{ .unit }}", state: started, enabled: true, daemon_reload: true}
    - name: stat
      stat: {path: "{{ .base }}/app.conf"}
      register: st
    - name: check
      assert: {that: [.st.stat.exists, eq .st.stat.mode "0640"]}
      when: not .ansible_check_mode
  handlers:
    - name: restart
      systemd: {name: "{{ .unit }}", state: restarted, daemon_reload: true}
`

const labCleanup = `
- hosts: lab
  become: true
  gather_facts: false
  tasks:
    - systemd: {name: "{{ .test_id }}.service", state: stopped, enabled: false}
      ignore_errors: true
    - file: {path: "/etc/systemd/system/{{ .test_id }}.service", state: absent}
    - file: {path: "/opt/{{ .test_id }}", state: absent}
`

// TestLabIdempotent runs a playbook twice on real hosts over SSH: the
// second run changes nothing, and the hosts' state is checked over ssh.
func TestLabIdempotent(t *testing.T) {
	l := labtest.Require(t, 2)
	hosts := l.Hosts()[:2]
	dir := t.TempDir()
	var inv strings.Builder
	inv.WriteString("[lab]\n")
	for _, h := range hosts {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(&inv, "[all:vars]\nansible_user=deploy\nansible_ssh_private_key_file=%s\nansible_ssh_known_hosts_file=%s\n", l.KeyPath(), l.KnownHostsPath())
	var id [4]byte
	rand.Read(id[:])
	testID := "gkengine-" + hex.EncodeToString(id[:])
	files := map[string]string{
		"inventory.cfg":        inv.String(),
		"site.yml":             labPlaybook,
		"cleanup.yml":          labCleanup,
		"templates/peers.tmpl": "{{ range hostsOf \"lab\" }}{{ . }} {{ ipOf . }}\n{{ end }}",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(playbook string, check bool) (*Recap, string, error) {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r, err := Run(ctx, Options{Inventory: []string{filepath.Join(dir, "inventory.cfg")}, Playbook: filepath.Join(dir, playbook),
			ExtraVars: []string{"test_id=" + testID}, Out: &out, Check: check, Verbosity: 1})
		return r, out.String(), err
	}
	t.Cleanup(func() {
		if _, out, err := run("cleanup.yml", false); err != nil {
			t.Logf("cleanup: %v\n%s", err, out)
		}
	})
	r, out, err := run("site.yml", true)
	if err != nil {
		t.Fatalf("check run: %v\n%s", err, out)
	}
	for _, h := range hosts {
		if got := sshObserve(t, l, h.Addr, "test -e /opt/"+testID+" && echo exists || echo absent"); strings.TrimSpace(got) != "absent" {
			t.Fatalf("%s: check mode created /opt/%s", h.Name, testID)
		}
	}
	r, out, err = run("site.yml", false)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	for _, h := range hosts {
		if s := r.Hosts[h.Name]; s.Changed == 0 || s.Failed != 0 {
			t.Fatalf("%s first run: %+v\n%s", h.Name, *s, out)
		}
	}
	r, out, err = run("site.yml", false)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	for _, h := range hosts {
		s := r.Hosts[h.Name]
		if s.Changed != 0 || s.Failed != 0 {
			t.Fatalf("%s second run not idempotent: %+v\n%s", h.Name, *s, out)
		}
		t.Logf("%s warm run: %d round trips (incl. SSH handshake)", h.Name, s.RoundTrips)
		conf := sshObserve(t, l, h.Addr, "stat -c %a /opt/"+testID+"/app.conf; cat /opt/"+testID+"/app.conf")
		if conf != fmt.Sprintf("640\nid=%s\nhost=%s\n", testID, h.Name) {
			t.Fatalf("%s app.conf: %q", h.Name, conf)
		}
		peers := sshObserve(t, l, h.Addr, "cat /opt/"+testID+"/peers")
		for _, p := range hosts {
			if !strings.Contains(peers, p.Name+" "+p.Addr+"\n") {
				t.Fatalf("%s peers lacks %s: %q", h.Name, p.Name, peers)
			}
		}
		if st := strings.TrimSpace(sshObserve(t, l, h.Addr, "systemctl is-active "+testID+".service; systemctl is-enabled "+testID+".service")); st != "active\nenabled" {
			t.Fatalf("%s unit: %q", h.Name, st)
		}
	}
}
