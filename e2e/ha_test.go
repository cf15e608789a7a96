package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// haCluster is one HA layout on lab hosts, and an observer of it that
// shares no code with gokube: Go's own HTTP client from the test process,
// with the certificates gokube left in the pki folder, and ssh.
type haCluster struct {
	e       *env
	work    string // a copy of examples/ha-cluster
	inv     string
	pki     string
	masters []int // lab host indexes (1-based)
	etcd    []int
	lb      int
	lbURL   string
	client  *http.Client
	groups  map[string][]int
	names   map[int]string // inventory names, when not h-N
}

func newHACluster(t *testing.T, ctx context.Context, e *env, masters, etcd []int, lb int) *haCluster {
	t.Helper()
	used := append(append(append([]int{}, masters...), etcd...), lb)
	slices.Sort(used)
	for _, i := range slices.Compact(used) {
		if err := e.lab.Reset(ctx, e.lab.Hosts()[i-1].Name); err != nil {
			t.Fatalf("reset host %d: %v", i, err)
		}
	}
	// The etcd example beside it, as in the repository: the HA example's
	// etcd playbooks import its operations.
	dir := t.TempDir()
	c := &haCluster{e: e, work: filepath.Join(dir, "ha-cluster"), masters: masters, etcd: etcd, lb: lb}
	copyTree(t, filepath.Join(e.root, "examples/ha-cluster"), c.work)
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), filepath.Join(dir, "etcd-cluster"))
	c.pki = filepath.Join(c.work, "pki")
	// Every apiserver restart waits out the shutdown delay (15 s in the
	// example) and the tests restart apiservers a dozen times. The load
	// balancer's agent has drained a stopping apiserver before SIGTERM, so
	// 5 s still covers the requests in flight: the no-failed-call checks
	// would say otherwise.
	gv := filepath.Join(c.work, "group_vars", "all.yml")
	b, err := os.ReadFile(gv)
	if err != nil {
		t.Fatal(err)
	}
	short := strings.Replace(string(b), "\nkube_apiserver_shutdown_delay: 15\n", "\nkube_apiserver_shutdown_delay: 5\n", 1)
	if short == string(b) {
		t.Fatalf("%s: no kube_apiserver_shutdown_delay: 15 line to shorten", gv)
	}
	if err := os.WriteFile(gv, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	// [kube-node] is there and empty, as in the example inventory:
	// cluster.yml has a play for it, and a play naming a missing group is
	// refused at load.
	c.groups = map[string][]int{"kube-master": masters, "etcd": etcd, "loadbalancer": {lb}, "kube-node": {}}
	c.writeInventory(t)
	c.lbURL = "https://" + e.lab.Hosts()[lb-1].Addr + ":6443"
	return c
}

// writeInventory names every host h-N (N its lab index) in every group.
func (c *haCluster) writeInventory(t *testing.T) {
	t.Helper()
	c.inv = c.e.inventory(t, c.work, "h", c.groups)
}

func (c *haCluster) name(i int) string {
	if n, ok := c.names[i]; ok {
		return n
	}
	return fmt.Sprintf("h-%d", i)
}

// useExampleInventory runs on an example inventory file of the demo lab
// (10.231.0.1N, /var/lib/gokube/lab/gk), rewritten for the test lab's
// addresses and key: the example itself is what is tested.
func (c *haCluster) useExampleInventory(t *testing.T, file string, names map[int]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.e.root, "examples/ha-cluster", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i, h := range c.e.lab.Hosts() {
		s = strings.ReplaceAll(s, fmt.Sprintf("=10.231.0.%d\n", 11+i), "="+h.Addr+"\n")
	}
	s = strings.ReplaceAll(s, "/var/lib/gokube/lab/gk/id_ed25519", c.e.lab.KeyPath())
	s = strings.ReplaceAll(s, "/var/lib/gokube/lab/gk/known_hosts", c.e.lab.KnownHostsPath())
	if a := os.Getenv("GOKUBE_ARTIFACTS"); a != "" {
		s += "artifacts_dir=" + a + "\n"
	}
	c.inv = filepath.Join(c.work, "inventory.cfg")
	if err := os.WriteFile(c.inv, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	c.names = names
}
func (c *haCluster) addr(i int) string        { return c.e.lab.Hosts()[i-1].Addr }
func (c *haCluster) playbook(n string) string { return filepath.Join(c.work, n) }

// observer builds the HTTP client once the pki folder exists: the cluster
// CA, and the admin client certificate gokube made.
func (c *haCluster) observer(t *testing.T) *http.Client {
	t.Helper()
	if c.client != nil {
		return c.client
	}
	caPEM, err := os.ReadFile(filepath.Join(c.pki, "kube-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("kube-ca.pem: no certificate")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(c.pki, "admin.pem"), filepath.Join(c.pki, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
		// A new connection per call, so the load balancer picks a backend
		// for every call, as it does for new clients.
		DisableKeepAlives: true,
	}}
	return c.client
}

func (c *haCluster) get(t *testing.T, url string) (int, []byte, error) {
	resp, err := c.observer(t).Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// ready says whether base's /readyz answers 200.
func (c *haCluster) ready(t *testing.T, base string) error {
	code, body, err := c.get(t, base+"/readyz")
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("readyz HTTP %d: %.200s", code, body)
	}
	return nil
}

// leaseHolder returns the lab host index whose component holds the lease
// (kube-system/NAME), read through the load balancer.
func (c *haCluster) leaseHolder(t *testing.T, name string) (int, error) {
	code, body, err := c.get(t, c.lbURL+"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name)
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("lease %s: HTTP %d %.200s", name, code, body)
	}
	var l struct {
		Spec struct {
			HolderIdentity string `json:"holderIdentity"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return 0, err
	}
	host, _, _ := strings.Cut(l.Spec.HolderIdentity, "_")
	for i, h := range c.e.lab.Hosts() {
		if h.Name == host {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("lease %s: holder %q is no lab host", name, l.Spec.HolderIdentity)
}

// endpoints returns the sorted addresses of the kubernetes service.
func (c *haCluster) endpoints(t *testing.T) ([]string, error) {
	code, body, err := c.get(t, c.lbURL+"/api/v1/namespaces/default/endpoints/kubernetes")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("HTTP %d %.200s", code, body)
	}
	var ep struct {
		Subsets []struct {
			Addresses []struct {
				IP string `json:"ip"`
			} `json:"addresses"`
		} `json:"subsets"`
	}
	if err := json.Unmarshal(body, &ep); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			out = append(out, a.IP)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (c *haCluster) masterAddrs(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.addr(i))
	}
	slices.Sort(out)
	return out
}

// caller makes API calls through the load balancer every 100 ms until
// stopped: /readyz and a real request with the admin identity (listing
// namespaces), counting calls and failures.
type caller struct {
	calls, failed atomic.Int64
	// notReady counts /readyz calls an apiserver answered with 500 and its
	// failed checks: not a failure of the API but its honest report, as
	// when its etcd-readiness check times out while an etcd member
	// restarts or the machine is loaded (seen: 1 of 806 calls at load 21).
	// No answer at all, or a real request that fails, is a failure.
	notReady atomic.Int64
	// throttled counts answers 429 with a Retry-After, which the caller
	// follows as client-go does (getRetrying).
	throttled     atomic.Int64
	mu            sync.Mutex
	lastErr       string
	lastNotReady  string
	lastThrottled string
	stop          chan struct{}
	wg            sync.WaitGroup
}

func (c *haCluster) startCalls(t *testing.T) *caller {
	cl := &caller{stop: make(chan struct{})}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		for {
			select {
			case <-cl.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, path := range []string{"/readyz", "/api/v1/namespaces"} {
				cl.calls.Add(1)
				code, body, err := c.getRetrying(t, c.lbURL+path, cl)
				switch {
				case errors.Is(err, errCallStopped):
					cl.calls.Add(-1)
				case err == nil && code == 200:
				case err == nil && code == 500 && path == "/readyz" && strings.Contains(string(body), "[-]"):
					cl.notReady.Add(1)
					cl.mu.Lock()
					cl.lastNotReady = fmt.Sprintf("%.200s", body)
					cl.mu.Unlock()
				default:
					cl.failed.Add(1)
					cl.mu.Lock()
					cl.lastErr = fmt.Sprintf("%s: %v HTTP %d %.120s", path, err, code, body)
					cl.mu.Unlock()
				}
			}
		}
	}()
	return cl
}

// errCallStopped: the calls ended while a call waited to be retried; it
// is not counted.
var errCallStopped = errors.New("the calls ended before the retry")

// clientRetries is how often client-go (kubectl, the controllers) sends a
// request again that was answered 429 with a Retry-After.
const clientRetries = 10

// getRetrying is get as a Kubernetes client does it: an answer 429 with a
// Retry-After header (an apiserver whose watch cache re-initializes after
// its etcd member restarted rejects lists that way for a moment, by
// design: KEP-4568) is asked again after the time it names, up to
// clientRetries times; each such answer is counted in cl.throttled.
func (c *haCluster) getRetrying(t *testing.T, url string, cl *caller) (int, []byte, error) {
	for try := 0; ; try++ {
		resp, err := c.observer(t).Get(url)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		after, convErr := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || convErr != nil || try == clientRetries {
			return resp.StatusCode, b, err
		}
		cl.throttled.Add(1)
		cl.mu.Lock()
		cl.lastThrottled = fmt.Sprintf("%s: Retry-After %d: %.120s", url, after, b)
		cl.mu.Unlock()
		select {
		case <-time.After(time.Duration(min(max(after, 1), 10)) * time.Second):
		case <-cl.stop:
			return 0, nil, errCallStopped
		}
	}
}

// end stops the calls and reports them; /readyz answers of not ready and
// answers to ask again later are logged, not counted as failed.
func (cl *caller) end(t *testing.T) (calls, failed int64, lastErr string) {
	t.Helper()
	close(cl.stop)
	cl.wg.Wait()
	if n := cl.notReady.Load(); n > 0 {
		t.Logf("%d /readyz calls answered not ready (last: %s)", n, cl.lastNotReady)
	}
	if n := cl.throttled.Load(); n > 0 {
		t.Logf("%d answers asked to retry later, and the call was retried (last: %s)", n, cl.lastThrottled)
	}
	return cl.calls.Load(), cl.failed.Load(), cl.lastErr
}

func (c *haCluster) sshOut(t *testing.T, i int, cmd string) string {
	t.Helper()
	out, err := c.e.ssh(t, i, cmd)
	if err != nil {
		t.Fatalf("host %d: %s: %v\n%s", i, cmd, err, out)
	}
	return strings.TrimSpace(out)
}

// startedAt is a unit's start time on systemd's monotonic clock (one
// kernel clock for every lab host).
func (c *haCluster) startedAt(t *testing.T, i int, unit string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(c.sshOut(t, i, "systemctl show "+unit+" -p ExecMainStartTimestampMonotonic --value"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// serial reads the serial of a certificate on host i.
func (c *haCluster) serial(t *testing.T, i int, path string) string {
	t.Helper()
	out := c.sshOut(t, i, "cat "+path)
	b, _ := pem.Decode([]byte(out))
	if b == nil {
		t.Fatalf("host %d %s: no PEM", i, path)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

func (c *haCluster) allChanged(t *testing.T, r result, want func(changed int) bool, what string) {
	t.Helper()
	for _, i := range c.hosts() {
		rc, ok := r.recap[c.name(i)]
		if !ok || !want(rc.changed) {
			t.Errorf("%s: %s: recap %+v (found %v)\n%s", c.name(i), what, rc, ok, tail(r.out, 60))
		}
	}
}

func (c *haCluster) hosts() []int {
	all := append(append(append([]int{}, c.masters...), c.etcd...), c.lb)
	slices.Sort(all)
	return slices.Compact(all)
}

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

// endpointsAndLeasesOnMasters waits until the kubernetes service's
// endpoints are every master (the lease reconciler), then checks that the
// controller-manager's and the scheduler's leases are held by masters.
func (c *haCluster) endpointsAndLeasesOnMasters(t *testing.T) {
	t.Helper()
	waitFor(t, "kubernetes endpoints list every master", 2*time.Minute, func() error {
		eps, err := c.endpoints(t)
		if err != nil {
			return err
		}
		if want := c.masterAddrs(c.masters...); !slices.Equal(eps, want) {
			return fmt.Errorf("endpoints %v, want %v", eps, want)
		}
		return nil
	})
	for _, l := range []string{"kube-controller-manager", "kube-scheduler"} {
		if h, err := c.leaseHolder(t, l); err != nil || !slices.Contains(c.masters, h) {
			t.Errorf("lease %s: holder host %d: %v", l, h, err)
		}
	}
}
