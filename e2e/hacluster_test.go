package e2e

// The HA tests' cluster: the layout on lab hosts, the inventory written for
// it, and an observer that shares no code with gokube.

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
