package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHAControlPlane is issue 8's "done means" on the default layout:
// three masters that are also the etcd members, and one haproxy host.
func TestHAControlPlane(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	c := newHACluster(t, ctx, e, []int{1, 2, 3}, []int{1, 2, 3}, 4)
	cluster := c.playbook("cluster.yml")

	t.Run("check mode on fresh hosts predicts and changes nothing", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster, "--check")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		c.allChanged(t, r, func(n int) bool { return n > 0 }, "check mode predicted no change on a fresh host")
		for _, i := range c.hosts() {
			out, err := e.ssh(t, i, "test ! -e /etc/kubernetes && test ! -e /usr/local/bin/kube-apiserver && test ! -e /etc/haproxy/kube-ca.pem && ! grep -q kube_apiserver /etc/haproxy/haproxy.cfg && echo untouched")
			if err != nil || !strings.Contains(out, "untouched") {
				t.Errorf("host %d changed by check mode: %v %s", i, err, out)
			}
		}
	})

	t.Run("first run builds a verified control plane", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 80))
		}
		t.Logf("verify report:\n%s", tail(r.out, 30))
		if !strings.Contains(r.out, "3/3 apiservers ready") || !strings.Contains(r.out, "3/3 members healthy") {
			t.Errorf("verify did not report 3/3 apiservers and etcd members:\n%s", tail(r.out, 40))
		}
		// Independent checks, from the test process and over ssh.
		for _, i := range c.masters {
			if err := c.ready(t, "https://"+c.addr(i)+":6443"); err != nil {
				t.Errorf("master %d: %v", i, err)
			}
			if out := c.sshOut(t, i, "systemctl is-active kube-apiserver kube-controller-manager kube-scheduler | sort -u"); out != "active" {
				t.Errorf("master %d units: %s", i, out)
			}
			// kubectl for root and the login user, through the load balancer.
			for _, as := range []string{"", "sudo -u deploy -H "} {
				if out, err := e.ssh(t, i, as+"kubectl get --raw /readyz"); err != nil || out != "ok" {
					t.Errorf("master %d: %skubectl: %v %q", i, as, err, out)
				}
			}
			if out := c.sshOut(t, i, "stat -c '%a %U' /root/.kube/config /home/deploy/.kube/config /etc/kubernetes/pki/apiserver-key.pem; ls /etc/kubernetes/pki"); !strings.Contains(out, "600 root\n600 deploy\n600 root") || strings.Contains(out, "ca-key") {
				t.Errorf("master %d: key files or modes: %s", i, out)
			}
		}
		if err := c.ready(t, c.lbURL); err != nil {
			t.Errorf("through the load balancer: %v", err)
		}
		// An anonymous client reaches /readyz (the load balancer's check)
		// and nothing else.
		anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for path, want := range map[string]int{"/readyz": 200, "/api/v1/namespaces": 401, "/version": 401} {
			resp, err := anon.Get(c.lbURL + path)
			if err != nil {
				t.Errorf("anonymous %s: %v", path, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("anonymous %s: HTTP %d, want %d", path, resp.StatusCode, want)
			}
		}
		c.endpointsAndLeasesOnMasters(t)
	})

	t.Run("second run changes nothing", func(t *testing.T) {
		// Round trips of a run with nothing to change (counts, not time):
		// handshake 7, become shell 1 (facts run in it) and facts 1, a
		// probe batch per play that touches the host (etcd's and the
		// masters'), the verify play's member status: 12 on a master. The
		// first master adds the run_once control plane checks: one round
		// trip, their forwards opened together. The load balancer has 10.
		// The run right after the first costs a master one more: the first
		// run wrote etcd's unit within reloadMargin (10 s) of its last
		// daemon-reload, so the etcd start cannot prove a reload useless
		// and reloads once (modules/systemdreload.go); a third run asserts
		// the steady state exactly.
		rts := func(r result) map[string]int {
			m := map[string]int{}
			for _, x := range regexp.MustCompile(`(?m)^(\S+)\s+:.*round_trips=(\d+)`).FindAllStringSubmatch(r.out, -1) {
				m[x[1]], _ = strconv.Atoi(x[2])
			}
			return m
		}
		for run, slack := range []int{1, 0} {
			r := e.play(t, ctx, "-i", c.inv, cluster, "-v") // -v: the recap's round_trips
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
			}
			c.allChanged(t, r, func(n int) bool { return n == 0 }, "second run changed something")
			got := rts(r)
			t.Logf("run %d with nothing to change: round trips %v", run+2, got)
			for _, i := range c.hosts() {
				limit := 12
				switch i {
				case c.masters[0]:
					limit = 13
				case c.lb:
					limit = 10
				}
				if n, ok := got[c.name(i)]; !ok || n > limit+slack {
					t.Errorf("%s: run %d: %d round trips (found %v), want at most %d", c.name(i), run+2, n, ok, limit+slack)
				}
			}
		}
	})

	t.Run("check mode after a run predicts no change", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster, "--check")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		c.allChanged(t, r, func(n int) bool { return n == 0 }, "check mode predicted a change after a run")
	})

	for _, comp := range []string{"kube-controller-manager", "kube-scheduler"} {
		t.Run("the "+comp+" lease moves when its holder stops", func(t *testing.T) {
			holder, err := c.leaseHolder(t, comp)
			if err != nil {
				t.Fatal(err)
			}
			c.sshOut(t, holder, "systemctl stop "+comp)
			start := time.Now()
			// Measured: about 19 s for the controller-manager (a stopped one
			// does not release its lease), 3 s for the scheduler; the
			// timeout only stops a hang.
			waitFor(t, comp+" lease moves to another master", 3*time.Minute, func() error {
				h, err := c.leaseHolder(t, comp)
				if err != nil {
					return err
				}
				if h == holder {
					return fmt.Errorf("still held by host %d", h)
				}
				if !slices.Contains(c.masters, h) {
					return fmt.Errorf("held by host %d, not a master", h)
				}
				return nil
			})
			t.Logf("%s lease moved from host %d after %s", comp, holder, time.Since(start).Round(100*time.Millisecond))
			c.sshOut(t, holder, "systemctl start "+comp)
		})
	}

	t.Run("an apiserver stopped: every call through the load balancer succeeds", func(t *testing.T) {
		cl := c.startCalls(t)
		time.Sleep(2 * time.Second)
		c.sshOut(t, 1, "systemctl stop kube-apiserver") // returns once it has stopped
		if err := c.ready(t, "https://"+c.addr(1)+":6443"); err == nil {
			t.Errorf("master 1 still answers after systemctl stop")
		}
		time.Sleep(3 * time.Second)
		c.sshOut(t, 1, "systemctl start kube-apiserver")
		waitFor(t, "master 1 ready again", 3*time.Minute, func() error { return c.ready(t, "https://"+c.addr(1)+":6443") })
		time.Sleep(3 * time.Second)
		calls, failed, last := cl.end(t)
		t.Logf("%d calls through the load balancer while an apiserver stopped and started, %d failed", calls, failed)
		if calls < 20 {
			t.Errorf("only %d calls: the test did not watch the stop", calls)
		}
		if failed > 0 {
			t.Errorf("%d of %d calls failed (last: %s)", failed, calls, last)
		}
	})

	t.Run("a flag change rolls the apiservers one at a time with no failed call", func(t *testing.T) {
		var before []int64
		for _, i := range c.masters {
			before = append(before, c.startedAt(t, i, "kube-apiserver"))
		}
		// In group_vars, so the later runs keep it.
		gv := filepath.Join(c.work, "group_vars", "all.yml")
		b, err := os.ReadFile(gv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(gv, append(b, []byte("kube_apiserver_extra_args: {event-ttl: 2h0m0s}\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		cl := c.startCalls(t)
		r := e.play(t, ctx, "-i", c.inv, cluster)
		calls, failed, last := cl.end(t)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		t.Logf("%d calls through the load balancer during the rolling restart, %d failed", calls, failed)
		if failed > 0 {
			t.Errorf("%d of %d calls failed during the roll (last: %s)", failed, calls, last)
		}
		var prev int64
		for k, i := range c.masters {
			at := c.startedAt(t, i, "kube-apiserver")
			if at == before[k] {
				t.Errorf("master %d was not restarted", i)
			}
			if out := c.sshOut(t, i, "systemctl cat kube-apiserver"); !strings.Contains(out, "--event-ttl=2h0m0s") {
				t.Errorf("master %d unit lacks the new flag", i)
			}
			// One at a time: each starts after the previous one was ready
			// and back in the load balancer (at least seconds later).
			if k > 0 && at-prev < 1_000_000 {
				t.Errorf("master %d restarted %d ms after the previous one: not one at a time", i, (at-prev)/1000)
			}
			prev = at
		}
	})

	t.Run("a master powered off: the API stays up, the leases end on live masters", func(t *testing.T) {
		// Power off the controller-manager's leader, the hardest case.
		victim, err := c.leaseHolder(t, "kube-controller-manager")
		if err != nil {
			t.Fatal(err)
		}
		cl := c.startCalls(t)
		time.Sleep(2 * time.Second)
		if err := e.lab.Stop(ctx, e.lab.Hosts()[victim-1].Name); err != nil {
			t.Fatal(err)
		}
		// The load balancer's health check window: fall 2 at inter 1s, and
		// connections to a dead master are redispatched.
		time.Sleep(5 * time.Second)
		windowCalls, windowFailed := cl.calls.Load(), cl.failed.Load()
		time.Sleep(10 * time.Second)
		calls, failed, last := cl.end(t)
		t.Logf("master %d powered off: %d of %d calls failed within the first 5 s (health-check window), %d of %d after it (last: %s)",
			victim, windowFailed, windowCalls, failed-windowFailed, calls-windowCalls, last)
		if failed-windowFailed > 0 {
			t.Errorf("%d calls failed after the health-check window (last: %s)", failed-windowFailed, last)
		}
		for _, comp := range []string{"kube-controller-manager", "kube-scheduler"} {
			waitFor(t, comp+" lease on a live master", 3*time.Minute, func() error {
				h, err := c.leaseHolder(t, comp)
				if err != nil {
					return err
				}
				if h == victim {
					return fmt.Errorf("still held by the powered-off host %d", h)
				}
				return nil
			})
		}
		r := e.play(t, ctx, "-i", c.inv, c.playbook("verify.yml"))
		if r.recap[c.name(victim)].unreachable == 0 {
			t.Errorf("host %d not reported unreachable:\n%s", victim, tail(r.out, 40))
		}
		if !strings.Contains(r.out, "2/3 apiservers ready") {
			t.Errorf("verify did not report 2/3 apiservers:\n%s", tail(r.out, 40))
		}
		if err := e.lab.Start(ctx, e.lab.Hosts()[victim-1].Name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the powered-on master ready", 5*time.Minute, func() error { return c.ready(t, "https://"+c.addr(victim)+":6443") })
	})

	t.Run("an etcd member stopped: the apiservers keep serving", func(t *testing.T) {
		cl := c.startCalls(t)
		time.Sleep(2 * time.Second)
		c.sshOut(t, 3, "systemctl stop etcd")
		time.Sleep(10 * time.Second)
		calls, failed, last := cl.end(t)
		c.sshOut(t, 3, "systemctl start etcd")
		t.Logf("etcd member 3 stopped: %d of %d calls through the load balancer failed", failed, calls)
		// /readyz of the apiserver on host 3 may report its etcd check while
		// its client moves to another member; real requests must succeed.
		if failed > 0 {
			t.Errorf("%d of %d calls failed with an etcd member down (last: %s)", failed, calls, last)
		}
	})

	t.Run("everything back: verify passes and nothing changes", func(t *testing.T) {
		waitFor(t, "every apiserver ready", 5*time.Minute, func() error {
			for _, i := range c.masters {
				if err := c.ready(t, "https://"+c.addr(i)+":6443"); err != nil {
					return fmt.Errorf("master %d: %w", i, err)
				}
			}
			return nil
		})
		r := e.play(t, ctx, "-i", c.inv, cluster)
		if r.code != 0 || !strings.Contains(r.out, "3/3 apiservers ready") {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		c.allChanged(t, r, func(n int) bool { return n == 0 }, "a run after the failovers changed something")
	})

	t.Run("scale.yml adds a master without touching the others; remove-master.yml takes it out", func(t *testing.T) {
		const added = 5
		if err := e.lab.Reset(ctx, e.lab.Hosts()[added-1].Name); err != nil {
			t.Fatal(err)
		}
		type seen struct {
			started int64
			serial  string
		}
		before := map[int]seen{}
		for _, i := range c.masters {
			before[i] = seen{c.startedAt(t, i, "kube-apiserver"), c.serial(t, i, "/etc/kubernetes/pki/apiserver.pem")}
		}
		lbPID := c.sshOut(t, c.lb, "systemctl show haproxy -p MainPID --value")
		c.groups["kube-master"] = append(append([]int{}, c.masters...), added)
		c.writeInventory(t)
		r := e.play(t, ctx, "-i", c.inv, c.playbook("scale.yml"))
		if r.code != 0 || !strings.Contains(r.out, "4/4 apiservers ready") {
			t.Fatalf("scale: exit %d\n%s", r.code, tail(r.out, 60))
		}
		for _, i := range c.masters {
			now := seen{c.startedAt(t, i, "kube-apiserver"), c.serial(t, i, "/etc/kubernetes/pki/apiserver.pem")}
			if now != before[i] {
				t.Errorf("master %d touched by scale.yml: before %+v, after %+v", i, before[i], now)
			}
			if rc := r.recap[c.name(i)]; rc.changed != 0 {
				t.Errorf("master %d: scale.yml changed %d things", i, rc.changed)
			}
		}
		if pid := c.sshOut(t, c.lb, "systemctl show haproxy -p MainPID --value"); pid != lbPID {
			t.Errorf("haproxy restarted (pid %s -> %s), want a reload", lbPID, pid)
		}
		if out := c.sshOut(t, c.lb, "cat /etc/haproxy/haproxy.cfg"); !strings.Contains(out, "server h-5 ") {
			t.Errorf("no backend for the new master:\n%s", out)
		}
		waitFor(t, "kubernetes endpoints list four masters", 2*time.Minute, func() error {
			eps, err := c.endpoints(t)
			if err != nil {
				return err
			}
			if want := c.masterAddrs(append(append([]int{}, c.masters...), added)...); !slices.Equal(eps, want) {
				return fmt.Errorf("endpoints %v, want %v", eps, want)
			}
			return nil
		})

		cl := c.startCalls(t)
		r = e.play(t, ctx, "-i", c.inv, c.playbook("remove-master.yml"), "-e", "master="+c.name(added))
		time.Sleep(2 * time.Second)
		calls, failed, last := cl.end(t)
		if r.code != 0 || !strings.Contains(r.out, "3/3 apiservers ready") {
			t.Fatalf("remove-master: exit %d\n%s", r.code, tail(r.out, 60))
		}
		t.Logf("remove-master: %d of %d calls through the load balancer failed", failed, calls)
		if failed > 0 {
			t.Errorf("%d of %d calls failed while a master was removed (last: %s)", failed, calls, last)
		}
		if out, _ := e.ssh(t, added, "systemctl is-active kube-apiserver kube-controller-manager kube-scheduler"); strings.Contains(out, "active\n") && !strings.Contains(out, "inactive") {
			t.Errorf("removed master still runs its components: %s", out)
		}
		if out := c.sshOut(t, c.lb, "cat /etc/haproxy/haproxy.cfg"); strings.Contains(out, "server h-5 ") {
			t.Errorf("the removed master is still a backend")
		}
		if pid := c.sshOut(t, c.lb, "systemctl show haproxy -p MainPID --value"); pid != lbPID {
			t.Errorf("haproxy restarted (pid %s -> %s), want a reload", lbPID, pid)
		}
		c.groups["kube-master"] = c.masters
		c.writeInventory(t)
	})

	t.Run("a master's own name is refused by remove-master.yml while it is an etcd member", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, c.playbook("remove-master.yml"), "-e", "master="+c.name(1))
		if r.code == 0 || !strings.Contains(r.out, "must not be an etcd member") {
			t.Errorf("remove-master of an etcd member: exit %d\n%s", r.code, tail(r.out, 30))
		}
		if out := c.sshOut(t, 1, "systemctl is-active kube-apiserver"); out != "active" {
			t.Errorf("master 1 apiserver: %s", out)
		}
	})
}

// TestHASeparateEtcd is the recipe's layout: etcd on its own three hosts,
// two masters, one load balancer; an etcd host powered off does not stop
// the apiservers; an etcd member added and the etcd CA rotated, the
// apiservers following one at a time (etcdScaleAndRotateCA).
func TestHASeparateEtcd(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	c := newHACluster(t, ctx, e, []int{4, 5}, []int{1, 2, 3}, 6)
	c.useExampleInventory(t, "inventory-separate-etcd.cfg", map[int]string{
		1: "etcd-1", 2: "etcd-2", 3: "etcd-3", 4: "master-1", 5: "master-2", 6: "lb-1"})
	r := e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, tail(r.out, 80))
	}
	t.Logf("verify report:\n%s", tail(r.out, 30))
	if !strings.Contains(r.out, "2/2 apiservers ready") || !strings.Contains(r.out, "3/3 members healthy") {
		t.Errorf("verify:\n%s", tail(r.out, 40))
	}
	for _, i := range c.etcd {
		if out, _ := e.ssh(t, i, "test -e /usr/local/bin/kube-apiserver && echo has"); strings.Contains(out, "has") {
			t.Errorf("etcd host %d got Kubernetes binaries", i)
		}
	}
	// The apiservers' etcd list is every member.
	for _, i := range c.masters {
		unit := c.sshOut(t, i, "systemctl cat kube-apiserver")
		for _, m := range c.etcd {
			if !strings.Contains(unit, "https://"+c.addr(m)+":2379") {
				t.Errorf("master %d: etcd member %d missing from --etcd-servers", i, m)
			}
		}
	}

	cl := c.startCalls(t)
	time.Sleep(2 * time.Second)
	if err := e.lab.Stop(ctx, e.lab.Hosts()[0].Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	calls, failed, last := cl.end(t)
	t.Logf("etcd host 1 powered off: %d of %d calls through the load balancer failed", failed, calls)
	// The apiservers' etcd clients move to the live members; a call that
	// was waiting on the dead one may fail, calls after that must not.
	if failed > calls/10 {
		t.Errorf("%d of %d calls failed with an etcd member powered off (last: %s)", failed, calls, last)
	}
	waitFor(t, "the API answers with an etcd member off", time.Minute, func() error {
		code, body, err := c.get(t, c.lbURL+"/api/v1/namespaces")
		if err != nil || code != 200 {
			return fmt.Errorf("%v HTTP %d %.100s", err, code, body)
		}
		return nil
	})
	if err := e.lab.Start(ctx, e.lab.Hosts()[0].Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd member 1 back", 3*time.Minute, func() error {
		out, err := curlEtcd(c.pki, c.addr(1), "/health", "", true)
		if err != nil || !strings.Contains(out, `"health":"true"`) {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	etcdScaleAndRotateCA(t, ctx, c)
	r = e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"))
	if r.code != 0 {
		t.Fatalf("after power on, scale and rotation: exit %d\n%s", r.code, tail(r.out, 60))
	}
	c.allChanged(t, r, func(n int) bool { return n == 0 }, "a run after the power-on, the etcd scale and the CA rotation changed something")
}
