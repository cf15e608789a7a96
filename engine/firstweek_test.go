package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gokube/internal/labtest"
)

// firstWeek is examples/first-week: the playbooks a new user who knows
// Ansible wrote in their first week, in their gokube form.
const firstWeek = "../examples/first-week"

var firstWeekPlaybooks = []string{"1-service.yml", "2-peers.yml", "3-conditions.yml", "4-users.yml", "5-rolling-restart.yml", "cleanup.yml"}

// TestFirstWeekExamplesLoad: every example loads with its inventory (the
// template files included) without contacting a host.
func TestFirstWeekExamplesLoad(t *testing.T) {
	for _, pb := range firstWeekPlaybooks {
		_, _, err := Load(Options{Inventory: []string{filepath.Join(firstWeek, "inventory.ini")}, Playbook: filepath.Join(firstWeek, pb)})
		if err != nil {
			t.Errorf("%s: %v", pb, err)
		}
	}
}

// TestFirstWeekExamplesLab runs the examples on two lab hosts: check mode
// first (nothing changes), then for real, then again (nothing changes),
// and looks at the hosts over ssh.
func TestFirstWeekExamplesLab(t *testing.T) {
	l := labtest.Require(t, 2)
	hosts := l.Hosts()[:2]
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(firstWeek)); err != nil {
		t.Fatal(err)
	}
	var inv strings.Builder
	inv.WriteString("[web]\n")
	fmt.Fprintf(&inv, "%s ansible_host=%s app_port=8081 app_weight=2\n", hosts[0].Name, hosts[0].Addr)
	fmt.Fprintf(&inv, "%s ansible_host=%s\n", hosts[1].Name, hosts[1].Addr)
	fmt.Fprintf(&inv, "[all:vars]\nansible_user=deploy\nansible_ssh_private_key_file=%s\nansible_ssh_known_hosts_file=%s\n", l.KeyPath(), l.KnownHostsPath())
	if err := os.WriteFile(filepath.Join(dir, "inventory.ini"), []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(pb string, check bool, extra ...string) (*Recap, string) {
		t.Helper()
		var out bytes.Buffer
		// Only stops a hang: at load 100 one copy task took 3.5 min.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		r, err := Run(ctx, Options{Inventory: []string{filepath.Join(dir, "inventory.ini")}, Playbook: filepath.Join(dir, pb),
			ExtraVars: extra, Out: &out, Check: check})
		if err != nil {
			t.Fatalf("%s (check %v): %v\n%s", pb, check, err, out.String())
		}
		return r, out.String()
	}
	changed := func(r *Recap) int {
		n := 0
		for _, h := range hosts {
			n += r.Hosts[h.Name].Changed
		}
		return n
	}
	t.Cleanup(func() {
		var out bytes.Buffer
		if _, err := Run(context.Background(), Options{Inventory: []string{filepath.Join(dir, "inventory.ini")},
			Playbook: filepath.Join(dir, "cleanup.yml"), Out: &out}); err != nil {
			t.Logf("cleanup: %v\n%s", err, out.String())
		}
	})
	run("cleanup.yml", false) // a previous run's leftovers

	first := []string{"1-service.yml", "2-peers.yml", "3-conditions.yml", "4-users.yml"}
	for _, pb := range first {
		if r, out := run(pb, true); changed(r) == 0 {
			t.Errorf("%s check mode on fresh hosts predicts no change:\n%s", pb, out)
		}
	}
	for _, h := range hosts {
		if got := sshObserve(t, l, h.Addr, "ls /etc/default/hello /etc/hello-peers.conf /etc/hello-marker 2>/dev/null; getent passwd hello-alice; true"); got != "" {
			t.Fatalf("%s: check mode changed the host: %q", h.Name, got)
		}
	}
	for _, pb := range first {
		run(pb, false)
	}
	r, out := run("5-rolling-restart.yml", false)
	// serial: 1 restarts and health-checks the first host before the
	// second is restarted.
	var order []string
	for _, ev := range r.Events {
		if ev.Task == "restart" || ev.Task == "answers again" {
			order = append(order, ev.Host+" "+ev.Task+"="+ev.Status)
		}
	}
	wantOrder := []string{hosts[0].Name + " restart=changed", hosts[0].Name + " answers again=ok",
		hosts[1].Name + " restart=changed", hosts[1].Name + " answers again=ok"}
	if strings.Join(order, "\n") != strings.Join(wantOrder, "\n") {
		t.Errorf("rolling restart: %q, want %q\n%s", order, wantOrder, out)
	}
	for _, pb := range first {
		if r, out := run(pb, false); changed(r) != 0 {
			t.Errorf("%s second run changed something:\n%s", pb, out)
		}
	}
	// -e flag=false is false in {{ if }} as in when:; "yes" is true.
	if r, out := run("1-service.yml", true, "app_debug=false"); changed(r) != 0 {
		t.Errorf("-e app_debug=false changes the configuration:\n%s", out)
	}
	if r, out := run("1-service.yml", true, "app_debug=yes"); changed(r) == 0 {
		t.Errorf("-e app_debug=yes changes nothing:\n%s", out)
	}

	for i, h := range hosts {
		port := []string{"8081", "8080"}[i]
		if got := sshObserve(t, l, h.Addr, "cat /etc/default/hello"); got != fmt.Sprintf("# hello: written by gokube (examples/first-week/1-service.yml)\nPORT=%s\nGREETING=hello from %s\n", port, h.Name) {
			t.Errorf("%s /etc/default/hello: %q", h.Name, got)
		}
		if got := sshObserve(t, l, h.Addr, "cat /srv/hello/index.html"); got != "hello from "+h.Name+"\n" {
			t.Errorf("%s index.html: %q", h.Name, got)
		}
		if got := sshObserve(t, l, h.Addr, "systemctl is-active hello; curl -fsS http://127.0.0.1:"+port+"/"); got != "active\nhello from "+h.Name+"\n" {
			t.Errorf("%s service: %q", h.Name, got)
		}
		want := fmt.Sprintf("# hosts of [web], inventory order\n%s %s:8081 weight=2\n%s %s:8080 weight=1\n", hosts[0].Name, hosts[0].Addr, hosts[1].Name, hosts[1].Addr)
		if got := sshObserve(t, l, h.Addr, "cat /etc/hello-peers.conf"); got != want {
			t.Errorf("%s peers: %q, want %q", h.Name, got, want)
		}
		if got := sshObserve(t, l, h.Addr, "cat /etc/hello-marker"); got != "first seen by gokube\n" {
			t.Errorf("%s marker: %q", h.Name, got)
		}
		users := sshObserve(t, l, h.Addr, "for u in hello-alice hello-bob hello-carol; do getent passwd $u | cut -d: -f1,5,7; id -nG $u; done")
		wantU := "hello-alice:hello-alice:/bin/sh\nhello-alice hello-team\n" +
			"hello-bob:Bob (on call):/bin/bash\nhello-bob\n" +
			"hello-carol:hello-carol:/bin/bash\nhello-carol hello-team\n"
		if users != wantU {
			t.Errorf("%s users: %q, want %q", h.Name, users, wantU)
		}
	}
}
