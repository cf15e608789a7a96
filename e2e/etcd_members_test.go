package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// etcdView is the cluster as curl sees it from the control machine.
type etcdView struct {
	members map[string]string // name -> id (decimal, as the gateway prints it)
	learner map[string]bool
	leader  string // the leader's name
}

func viewEtcd(t *testing.T, pki string, addrs []string) (etcdView, error) {
	t.Helper()
	var errs []string
	for _, a := range addrs {
		out, err := curlEtcd(pki, a, "/v3/cluster/member/list", "{}", true)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", a, err))
			continue
		}
		var ml struct {
			Members []struct {
				ID        string `json:"ID"`
				Name      string `json:"name"`
				IsLearner bool   `json:"isLearner"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(out), &ml); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v: %s", a, err, out))
			continue
		}
		st, err := curlEtcd(pki, a, "/v3/maintenance/status", "{}", true)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s status: %v", a, err))
			continue
		}
		var s struct {
			Leader string `json:"leader"`
		}
		_ = json.Unmarshal([]byte(st), &s)
		v := etcdView{members: map[string]string{}, learner: map[string]bool{}}
		for _, m := range ml.Members {
			v.members[m.Name] = m.ID
			v.learner[m.Name] = m.IsLearner
			if m.ID == s.Leader {
				v.leader = m.Name
			}
		}
		return v, nil
	}
	return etcdView{}, fmt.Errorf("no member answered: %s", strings.Join(errs, "; "))
}

func (v etcdView) names() string {
	var n []string
	for k := range v.members {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

// TestEtcdMembership is issue 11's member operations on six lab hosts,
// each checked from outside gokube (curl to the members, ssh to the hosts):
// members added one at a time as learners then promoted; a host whose
// peer URL another member holds, and a host with an old data dir, refused
// before anything changes; the leader removed and a new one elected; the
// removed host added back; a removal refused on a degraded cluster; a dead
// host replaced in one run.
func TestEtcdMembership(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e.resetHosts(t, ctx, 1, 2, 3, 4, 5, 6)
	work := t.TempDir()
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
	pki := filepath.Join(work, "pki")
	var addrs []string
	for _, h := range e.lab.Hosts()[:6] {
		addrs = append(addrs, h.Addr)
	}
	pb := func(name string) string { return filepath.Join(work, name) }
	view := func(t *testing.T) etcdView {
		t.Helper()
		v, err := viewEtcd(t, pki, addrs)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Every inventory shares the one PKI (pki_dir defaults to the
	// inventory's directory).
	inventory := func(t *testing.T, groups map[string][]int) string {
		p := e.inventory(t, t.TempDir(), "m", groups)
		appendFile(t, p, "pki_dir="+pki+"\n")
		return p
	}
	hostOf := func(name string) int { // "m-4" -> 4
		i, err := strconv.Atoi(name[strings.LastIndex(name, "-")+1:])
		if err != nil {
			t.Fatalf("member name %q", name)
		}
		return i
	}

	inv3 := inventory(t, map[string][]int{"etcd": {1, 2, 3}})
	if r := e.play(t, ctx, "-i", inv3, pb("etcd.yml")); r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
		t.Fatalf("bootstrap: exit %d\n%s", r.code, r.out)
	}

	t.Run("etcd.yml refuses to bootstrap a fresh host beside a running cluster", func(t *testing.T) {
		inv := inventory(t, map[string][]int{"etcd": {1, 2, 3, 4}})
		r := e.play(t, ctx, "-i", inv, pb("etcd.yml"))
		if r.code != 2 || !strings.Contains(r.out, "m-4 has no etcd data, but a cluster is already running") {
			t.Errorf("exit %d, want 2 and the explanation\n%s", r.code, r.out)
		}
		if out, _ := e.ssh(t, 4, "systemctl is-active etcd; test -e /var/lib/etcd/member && echo has-data"); !strings.HasPrefix(out, "inactive") && !strings.HasPrefix(out, "unknown") || strings.Contains(out, "has-data") {
			t.Errorf("host 4 after the refusal: %q", out)
		}
		if v := view(t); len(v.members) != 3 {
			t.Errorf("members after the refusal: %s", v.names())
		}
	})

	inv5 := inventory(t, map[string][]int{"etcd": {1, 2, 3, 4, 5}})
	t.Run("scale adds members one at a time as learners", func(t *testing.T) {
		r := e.play(t, ctx, "-i", inv5, pb("scale.yml"))
		if r.code != 0 || !strings.Contains(r.out, "5/5 members healthy") {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		t.Logf("verify:\n%s", tail(r.out, 22))
		v := view(t)
		if v.names() != "m-1,m-2,m-3,m-4,m-5" || v.learner["m-4"] || v.learner["m-5"] {
			t.Fatalf("members %s learners %v", v.names(), v.learner)
		}
		// In the output, m-4 is promoted before m-5 is added.
		promote4 := strings.Index(r.out, "changed: [m-4]\n\nTASK [etcd : the member votes and is healthy]")
		add5 := strings.Index(r.out, "TASK [etcd : add this member as a learner] *")
		add5 = strings.Index(r.out[add5+1:], "TASK [etcd : add this member as a learner]") + add5 + 1
		if promote4 < 0 || add5 <= promote4 {
			t.Errorf("m-4 promoted at %d, m-5 added at %d: not one at a time\n%s", promote4, add5, r.out)
		}
		// etcd's own log: each new member was added as a learner and promoted.
		out, err := e.ssh(t, 1, `journalctl -u etcd --no-pager -o cat | grep -c '"msg":"promote member"'; journalctl -u etcd --no-pager -o cat | grep '"msg":"added member"' | grep -c '"added-peer-is-learner":true'`)
		if f := strings.Fields(out); err != nil || len(f) != 2 || f[0] != "2" || f[1] != "2" {
			t.Errorf("host 1's etcd log: want 2 promotions and 2 members added as learners: %v %q", err, out)
		}
		r = e.play(t, ctx, "-i", inv5, pb("scale.yml"))
		for i := 1; i <= 5; i++ {
			if rc := r.recap[fmt.Sprintf("m-%d", i)]; r.code != 0 || rc.changed != 0 {
				t.Errorf("second scale run: exit %d, m-%d %+v", r.code, i, rc)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("a peer URL another member holds is refused before anything changes", func(t *testing.T) {
		// Host 4's member stops; the inventory calls host 4 "x-4" now.
		if out, err := e.ssh(t, 4, "systemctl stop etcd"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer e.ssh(t, 4, "systemctl start etcd")
		inv := filepath.Join(t.TempDir(), "inventory.cfg")
		hosts := e.lab.Hosts()
		body := fmt.Sprintf("[etcd]\nm-1 ansible_host=%s\nm-2 ansible_host=%s\nm-3 ansible_host=%s\nx-4 ansible_host=%s\nm-5 ansible_host=%s\n\n[all:vars]\nansible_user=deploy\nansible_become=true\nansible_ssh_private_key_file=%s\nansible_ssh_known_hosts_file=%s\npki_dir=%s\n",
			hosts[0].Addr, hosts[1].Addr, hosts[2].Addr, hosts[3].Addr, hosts[4].Addr, e.lab.KeyPath(), e.lab.KnownHostsPath(), pki)
		if a := os.Getenv("GOKUBE_ARTIFACTS"); a != "" {
			body += "artifacts_dir=" + a + "\n"
		}
		appendFile(t, inv, body)
		before, _ := e.ssh(t, 4, "sha256sum /etc/etcd/etcd.env /etc/etcd/ssl/member.pem")
		r := e.play(t, ctx, "-i", inv, pb("scale.yml"))
		if r.code != 2 || !strings.Contains(r.out, "belong to member m-4") || !strings.Contains(r.out, "Nothing was changed") {
			t.Errorf("exit %d, want 2 and the peer URL explanation\n%s", r.code, r.out)
		}
		if after, _ := e.ssh(t, 4, "sha256sum /etc/etcd/etcd.env /etc/etcd/ssl/member.pem"); after != before {
			t.Errorf("host 4 changed: %q -> %q", before, after)
		}
		if v := view(t); v.names() != "m-1,m-2,m-3,m-4,m-5" {
			t.Errorf("members: %s", v.names())
		}
	})
	waitFor(t, "m-4 healthy again", 2*time.Minute, func() error {
		out, err := curlEtcd(pki, addrs[3], "/health", "", true)
		if err != nil || !strings.Contains(out, `"health":"true"`) {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})

	var removed string
	t.Run("removing the leader elects a new one; the host is stopped and its data moved aside", func(t *testing.T) {
		v := view(t)
		removed = v.leader
		if removed == "" {
			t.Fatalf("no leader: %+v", v)
		}
		r := e.play(t, ctx, "-i", inv5, pb("remove-etcd-member.yml"), "-e", "member="+removed)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		t.Logf("%s", grepLines(r.out, "removed;"))
		after := view(t)
		if len(after.members) != 4 || after.members[removed] != "" || after.leader == "" || after.leader == removed {
			t.Errorf("after removing leader %s: members %s, leader %q", removed, after.names(), after.leader)
		}
		out, _ := e.ssh(t, hostOf(removed), "systemctl is-active etcd; systemctl is-enabled etcd; test -e /var/lib/etcd/member || echo no-data; ls -d /var/lib/etcd.removed-*/member")
		if f := strings.Fields(out); len(f) != 4 || f[0] != "inactive" || f[1] != "disabled" || f[2] != "no-data" {
			t.Errorf("removed host %s: %q", removed, out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("an old data dir is refused; the removed host comes back through scale", func(t *testing.T) {
		h := hostOf(removed)
		// Someone put the old data back: scale must refuse, changing nothing.
		if out, err := e.ssh(t, h, "d=$(ls -d /var/lib/etcd.removed-*); mkdir -p /var/lib/etcd && cp -a $d/member /var/lib/etcd/ && test -d /var/lib/etcd/member/wal"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		r := e.play(t, ctx, "-i", inv5, pb("scale.yml"))
		if r.code != 2 || !strings.Contains(r.out, "still has etcd data") {
			t.Errorf("old data dir: exit %d\n%s", r.code, r.out)
		}
		if v := view(t); len(v.members) != 4 {
			t.Errorf("members after the refusal: %s", v.names())
		}
		if out, _ := e.ssh(t, h, "systemctl is-active etcd"); !strings.HasPrefix(out, "inactive") {
			t.Errorf("host %d started after the refusal: %q", h, out)
		}
		if out, err := e.ssh(t, h, "rm -rf /var/lib/etcd/member"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		r = e.play(t, ctx, "-i", inv5, pb("scale.yml"))
		if r.code != 0 || !strings.Contains(r.out, "5/5 members healthy") {
			t.Fatalf("re-adding %s: exit %d\n%s", removed, r.code, r.out)
		}
		if v := view(t); v.names() != "m-1,m-2,m-3,m-4,m-5" {
			t.Errorf("members: %s", v.names())
		}
	})
	if t.Failed() {
		return
	}

	// A follower's host dies for good.
	v := view(t)
	dead := ""
	for _, n := range []string{"m-5", "m-4", "m-3"} {
		if n != v.leader {
			dead = n
			break
		}
	}
	deadHost := e.lab.Hosts()[hostOf(dead)-1].Name
	if err := e.lab.Stop(ctx, deadHost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.lab.Start(context.Background(), deadHost) })

	t.Run("a removal that a degraded cluster could not survive is refused", func(t *testing.T) {
		victim := "m-2"
		if victim == v.leader {
			victim = "m-1"
		}
		r := e.play(t, ctx, "-i", inv5, pb("remove-etcd-member.yml"), "-e", "member="+victim)
		if r.code == 0 || !strings.Contains(r.out, "refusing to remove "+victim+": the cluster is already degraded") || !strings.Contains(r.out, dead) {
			t.Errorf("exit %d, want a refusal naming %s\n%s", r.code, dead, r.out)
		}
		if after := view(t); len(after.members) != 5 {
			t.Errorf("members after the refusal: %s", after.names())
		}
		if out, _ := e.ssh(t, hostOf(victim), "systemctl is-active etcd; test -e /var/lib/etcd/member && echo has-data"); !strings.Contains(out, "active") || !strings.Contains(out, "has-data") {
			t.Errorf("%s after the refusal: %q", victim, out)
		}
	})

	t.Run("a dead host is replaced in one run", func(t *testing.T) {
		var idx []int
		for i := 1; i <= 5; i++ {
			if i != hostOf(dead) {
				idx = append(idx, i)
			}
		}
		inv := inventory(t, map[string][]int{"etcd": append(idx, 6)})
		r := e.play(t, ctx, "-i", inv, pb("replace-etcd-member.yml"), "-e", "member="+dead)
		if r.code != 0 || !strings.Contains(r.out, "5/5 members healthy") {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		after := view(t)
		if after.members[dead] != "" || after.members["m-6"] == "" || len(after.members) != 5 || after.learner["m-6"] {
			t.Errorf("after replacing %s by m-6: %s %v", dead, after.names(), after.learner)
		}
	})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}
