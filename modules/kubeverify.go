package modules

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"gokube/connection"
)

// KubeVerify is the `kube_verify` module: the control plane's health as one
// report, from the vantage point of one host (its connection forwards every
// request): each apiserver's /readyz directly, /readyz through the load
// balancer, the holders of the leader-election leases, and the endpoints of
// the `kubernetes` service. It does the aggregation across masters in Go so
// the verify role reads like a sentence.
//
// Arguments: apiservers (map: master name -> base URL, required),
// addresses (map: master name -> the address its apiserver advertises; the
// `kubernetes` endpoints must list exactly these), loadbalancer (base URL
// of the load balancer), ca_cert, client_cert, client_key (files on the
// control machine; an admin identity), leases (list of namespace/name;
// default kube-system/kube-controller-manager and kube-system/kube-scheduler),
// lb_calls (how many /readyz calls to make through the load balancer,
// default 3, so more than one backend answers), exclude (master names left
// out of apiservers and addresses: masters being removed), timeout (seconds
// per call, default 5).
//
// Registers: healthy (bool), problems (list), report (text), apiservers
// [{name, url, ready, detail}], loadbalancer {url, ok, calls, failed},
// leases [{name, holder, renew_time, age_seconds}], endpoints (list).
// It does not fail by itself when a check fails, so the report can be shown
// first; assert on healthy. Read-only: runs in check mode.
type KubeVerify struct{}

// Spec declares the kube_verify arguments.
func (KubeVerify) Spec() Spec {
	return Spec{
		Doc: "The control plane's health as one report, from one host's vantage point: each apiserver's /readyz directly, /readyz through the load balancer, the holders of the leader-election leases and the kubernetes service's endpoints. Does not fail by itself: assert on healthy. Read-only.",
		Returns: map[string]string{
			"healthy":      "bool: every check passed",
			"problems":     "list of what failed, one sentence each",
			"report":       "the report as text (a table)",
			"ready":        "how many apiservers answered /readyz 200",
			"apiservers":   "list of {name, url, ready, detail}",
			"loadbalancer": "{url, ok, calls, failed}",
			"leases":       "list of {name, holder, renew_time, age_seconds}",
			"endpoints":    "sorted addresses of the kubernetes service",
		},
		Args: map[string]Arg{
			"apiservers":   {Type: Map, Required: true, Kind: URL, Doc: "Master name -> apiserver base URL as seen from the host, e.g. hostvarsOf \"kube-master\" \"kube_apiserver_url\"."},
			"addresses":    {Type: Map, Doc: "Master name -> the address its apiserver advertises; the kubernetes endpoints must list exactly these."},
			"loadbalancer": {Type: String, Kind: URL, Doc: "Base URL of the load balancer; leases and endpoints are read through it."},
			"ca_cert":      {Type: String, Required: true, Doc: "Cluster CA file on the control machine."},
			"client_cert":  {Type: String, Required: true, Doc: "Client certificate file on the control machine (an admin identity)."},
			"client_key":   {Type: String, Required: true, Doc: "Client key file on the control machine."},
			"leases":       {Type: List, Doc: "Leases (namespace/name) whose holders are reported.", Default: "[kube-system/kube-controller-manager, kube-system/kube-scheduler]"},
			"lb_calls":     {Type: Int, Doc: "How many /readyz calls go through the load balancer (each on a new connection).", Default: "3"},
			"exclude":      {Type: List, Doc: "Master names left out of apiservers and addresses (masters being removed)."},
			"timeout":      {Type: Int, Doc: "Seconds for each call.", Default: "5"},
			"settle":       {Type: Int, Doc: "Seconds the leases may take to get a holder and the kubernetes endpoints to list exactly the masters (right after a start); only waited when every apiserver is ready.", Default: "30"},
		}}
}

type kvParams struct {
	apiservers map[string]string
	addresses  map[string]string
	names      []string // apiservers' names, sorted
	lb         string
	tls        pkiTLS
	leases     []string
	lbCalls    int
	timeout    time.Duration
	settle     time.Duration
}

func kvBaseURL(a cargs, key, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", a.err(key, "want a base URL such as https://10.0.0.10:6443, got %q", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func kvParseArgs(args map[string]any) (*kvParams, error) {
	a, err := parseArgs("kube_verify", KubeVerify{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	p := &kvParams{}
	if p.apiservers, err = a.stringMap("apiservers"); err != nil {
		return nil, err
	}
	if p.addresses, err = a.stringMap("addresses"); err != nil {
		return nil, err
	}
	if len(p.apiservers) == 0 {
		return nil, a.err("apiservers", "must name at least one apiserver")
	}
	for _, name := range a.list("exclude") {
		// Masters being removed: neither checked nor expected.
		delete(p.apiservers, name)
		delete(p.addresses, name)
	}
	if len(p.apiservers) == 0 {
		return nil, a.err("apiservers", "no apiserver left to check after exclude")
	}
	for name, s := range p.apiservers {
		if p.apiservers[name], err = kvBaseURL(a, "apiservers", s); err != nil {
			return nil, err
		}
		p.names = append(p.names, name)
	}
	slices.Sort(p.names)
	for name, addr := range p.addresses {
		if net.ParseIP(addr) == nil {
			return nil, a.err("addresses", "%s: %q is not an IP address", name, addr)
		}
	}
	if s := a.str("loadbalancer"); s != "" {
		if p.lb, err = kvBaseURL(a, "loadbalancer", s); err != nil {
			return nil, err
		}
	}
	p.tls = pkiTLS{caPath: a.str("ca_cert"), certPath: a.str("client_cert"), keyPath: a.str("client_key")}
	p.leases = []string{"kube-system/kube-controller-manager", "kube-system/kube-scheduler"}
	if a.has("leases") {
		p.leases = a.list("leases")
	}
	for _, l := range p.leases {
		if ns, name, ok := strings.Cut(l, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, a.err("leases", "want namespace/name, got %q", l)
		}
	}
	p.lbCalls = a.integer("lb_calls", 3)
	if p.lbCalls < 1 {
		return nil, a.err("lb_calls", "must be at least 1, got %d", p.lbCalls)
	}
	if p.timeout, err = a.seconds("timeout", 5*time.Second); err != nil {
		return nil, err
	}
	if p.settle, err = a.seconds("settle", 30*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// kvCheck is one apiserver's answer.
type kvCheck struct {
	name, url, detail string
	ready             bool
}

// kvLease is one lease as read through the load balancer (or any apiserver).
type kvLease struct {
	name, holder, renew string
	age                 float64 // seconds since renewTime; -1 unknown
	found               bool
}

// Run makes the calls and builds the report, in the report's order:
// apiservers, the load balancer, then leases and endpoints (which get a
// settle window right after a start). The first round of calls runs at
// once, on forwards opened together (one round trip for all of them, not
// one per apiserver); the leases and endpoints are read through the load
// balancer in that round too, and read again elsewhere only when it turns
// out not to answer. It is long because it reads best as that one
// sequence; each call is a helper.
func (KubeVerify) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := kvParseArgs(args)
	if err != nil {
		return nil, err
	}
	client, done, err := pkiHTTPClient(env, "kube_verify", p.tls, p.timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	hint := client.Transport.(certHint)
	tr := hint.tr
	// The API reads (leases, endpoints) share one kept-alive connection;
	// every /readyz call opens its own: a kept-alive connection to the
	// load balancer would pin all calls to one backend.
	apiTr := tr.Clone()
	apiTr.MaxConnsPerHost = 1
	defer apiTr.CloseIdleConnections()
	api := &http.Client{Transport: hint.withTransport(apiTr), Timeout: client.Timeout}
	tr.DisableKeepAlives = true

	// Where the API reads go first: the load balancer (what clients use),
	// else the first apiserver; another choice below reads again.
	first := p.lb
	if first == "" {
		first = p.apiservers[p.names[0]]
	}
	var addrs []string
	for _, name := range p.names {
		addrs = append(addrs, dialAddr(p.apiservers[name]))
	}
	for i := 0; p.lb != "" && i < p.lbCalls; i++ {
		addrs = append(addrs, dialAddr(p.lb))
	}
	addrs = append(addrs, dialAddr(first))
	pre := newPredialed(ctx, env.Conn.(connection.Dialer), addrs, p.timeout)
	defer pre.close()
	tr.DialContext, apiTr.DialContext = pre.DialContext, pre.DialContext

	var want []string
	for _, a := range p.addresses {
		want = append(want, a)
	}
	slices.Sort(want)
	want = slices.Compact(want)

	readyz := func(base string) (bool, string, error) { return kvReadyz(ctx, client, base, p.timeout) }
	type lbCall struct {
		ok     bool
		detail string
	}
	type state struct {
		leases           []kvLease
		endpoints, found []string
		err              error
	}
	read := func(base string) state {
		var st state
		st.leases, st.endpoints, st.found, st.err = kvReadState(ctx, api, base, p, want)
		return st
	}

	// The first round, all at once.
	checks := make([]kvCheck, len(p.names))
	lbCalls := make([]lbCall, 0, p.lbCalls)
	if p.lb != "" {
		lbCalls = lbCalls[:p.lbCalls]
	}
	errs := make([]error, len(checks)+len(lbCalls))
	var st state
	var wg sync.WaitGroup
	for i, name := range p.names {
		wg.Go(func() {
			ok, detail, err := readyz(p.apiservers[name])
			checks[i], errs[i] = kvCheck{name: name, url: p.apiservers[name], ready: ok, detail: detail}, err
		})
	}
	for i := range lbCalls {
		wg.Go(func() {
			var err error
			lbCalls[i].ok, lbCalls[i].detail, err = readyz(p.lb)
			errs[len(checks)+i] = err
		})
	}
	wg.Go(func() { st = read(first) })
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	var problems []string
	for _, c := range checks {
		if !c.ready {
			problems = append(problems, fmt.Sprintf("apiserver %s: %s", c.name, c.detail))
		}
	}

	lbFailed, lbDetail := 0, ""
	countLB := func() {
		lbFailed = 0
		for _, c := range lbCalls {
			if !c.ok {
				lbFailed++
				lbDetail = c.detail
			}
		}
	}
	countLB()
	if p.lb != "" {
		// Right after the masters start, haproxy needs its `rise` checks
		// before it routes to them: when every apiserver is ready, failed
		// calls through it are tried again within the settle window.
		deadline := time.Now().Add(p.settle)
		for lbFailed > 0 && ready(checks) == len(checks) && !time.Now().After(deadline) {
			if err := kvSleep(ctx); err != nil {
				return nil, err
			}
			for i := range lbCalls {
				var err error
				if lbCalls[i].ok, lbCalls[i].detail, err = readyz(p.lb); err != nil {
					return nil, err
				}
			}
			countLB()
		}
		if lbFailed > 0 {
			problems = append(problems, fmt.Sprintf("load balancer %s: %d of %d /readyz calls failed (%s)", p.lb, lbFailed, p.lbCalls, lbDetail))
		}
	}
	// The API calls go through the load balancer when there is one (that
	// is what clients use), else through the first ready apiserver.
	apiBase := p.lb
	if apiBase == "" || lbFailed == p.lbCalls {
		apiBase = ""
		for _, c := range checks {
			if c.ready {
				apiBase = c.url
				break
			}
		}
	}

	var leases []kvLease
	var endpoints []string
	if apiBase == "" {
		problems = append(problems, "no apiserver answers: leases and endpoints not read")
	} else {
		if apiBase != first {
			st = read(apiBase)
		}
		// Right after a start the components need seconds to elect their
		// leaders, and the lease reconciler to list a ready apiserver (or
		// to drop a dead one when its lease expires): when every apiserver
		// is ready, leases and endpoints get p.settle to converge before a
		// difference counts as a problem.
		deadline := time.Now().Add(p.settle)
		for {
			if st.err != nil {
				return nil, st.err
			}
			leases, endpoints = st.leases, st.endpoints
			if len(st.found) == 0 || ready(checks) < len(checks) || time.Now().After(deadline) {
				problems = append(problems, st.found...)
				break
			}
			if err := kvSleep(ctx); err != nil {
				return nil, err
			}
			st = read(apiBase)
		}
	}

	return kvResult(p, checks, lbFailed, leases, endpoints, problems), nil
}

// kvSleep waits a second between rounds of the settle window.
func kvSleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
		return nil
	}
}

// kvReadyz asks one apiserver (or the load balancer) for /readyz: ok, or
// why not; err is only a lost host connection or a cancelled run.
func kvReadyz(ctx context.Context, client *http.Client, base string, timeout time.Duration) (bool, string, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := pkiDo(cctx, client, http.MethodGet, base+"/readyz?verbose", nil, nil)
	if err != nil {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return false, "", hostErr
		}
		return false, "unreachable: " + kvShortErr(err), nil
	}
	if r.status != http.StatusOK {
		detail := strings.Join(khFailedChecks(r.body), ",")
		if detail == "" {
			detail = khFirstLine(r.body)
		}
		return false, fmt.Sprintf("HTTP %d %s", r.status, detail), nil
	}
	return true, "ok", nil
}

// kvResult is what kube_verify registers.
func kvResult(p *kvParams, checks []kvCheck, lbFailed int, leases []kvLease, endpoints, problems []string) *Result {
	data := map[string]any{
		"healthy":   len(problems) == 0,
		"problems":  append([]string{}, problems...),
		"endpoints": append([]string{}, endpoints...),
	}
	var aps []any
	for _, c := range checks {
		aps = append(aps, map[string]any{"name": c.name, "url": c.url, "ready": c.ready, "detail": c.detail})
	}
	data["apiservers"] = aps
	data["ready"] = ready(checks)
	if p.lb != "" {
		data["loadbalancer"] = map[string]any{"url": p.lb, "ok": lbFailed == 0, "calls": p.lbCalls, "failed": lbFailed}
	}
	var ls []any
	for _, l := range leases {
		ls = append(ls, map[string]any{"name": l.name, "holder": l.holder, "renew_time": l.renew, "age_seconds": l.age})
	}
	data["leases"] = ls
	data["report"] = kvReport(p, checks, lbFailed, leases, endpoints, problems)
	msg := fmt.Sprintf("%d/%d apiservers ready", ready(checks), len(checks))
	if len(problems) > 0 {
		msg += "; " + strings.Join(problems, "; ")
	}
	return &Result{Msg: msg, Data: data}
}

// ready counts the apiservers that answered /readyz 200.
func ready(checks []kvCheck) int {
	n := 0
	for _, c := range checks {
		if c.ready {
			n++
		}
	}
	return n
}

// kvShortErr names the usual causes in a word or two: Go's wording of a
// failed forwarded dial is a long chain that buries them.
func kvShortErr(err error) string {
	s := pkiErrText(err)
	low := strings.ToLower(s)
	switch {
	case strings.HasPrefix(s, "timed out"):
		return "timed out"
	case strings.Contains(low, "connection refused"):
		return "connection refused"
	case strings.Contains(low, "no route to host"):
		return "no route to host"
	case strings.Contains(low, "connection reset"), strings.HasSuffix(s, ": EOF"):
		return "connection closed (" + s + ")"
	}
	return s
}

func kvReadLease(ctx context.Context, c *http.Client, base, nsName string, timeout time.Duration, now time.Time) (kvLease, error) {
	ns, name, _ := strings.Cut(nsName, "/")
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := pkiDo(cctx, c, http.MethodGet, fmt.Sprintf("%s/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", base, url.PathEscape(ns), url.PathEscape(name)), nil, nil)
	if err != nil {
		return kvLease{}, err
	}
	out := kvLease{name: nsName, age: -1}
	switch r.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return out, nil // no leader elected yet: the caller reports "no holder"
	default:
		return kvLease{}, fmt.Errorf("HTTP %d %s", r.status, khFirstLine(r.body))
	}
	var lease struct {
		Spec struct {
			HolderIdentity *string `json:"holderIdentity"`
			RenewTime      string  `json:"renewTime"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(r.body, &lease); err != nil {
		return kvLease{}, fmt.Errorf("lease %s: %w", nsName, err)
	}
	out.found = true
	if lease.Spec.HolderIdentity != nil {
		out.holder = *lease.Spec.HolderIdentity
	}
	out.renew = lease.Spec.RenewTime
	if t, err := time.Parse(time.RFC3339Nano, lease.Spec.RenewTime); err == nil {
		out.age = now.Sub(t).Round(100 * time.Millisecond).Seconds()
	}
	return out, nil
}

// kvReadState reads the leases and the kubernetes endpoints once and says
// what differs from a healthy control plane; err is only a lost host
// connection or a cancelled run.
func kvReadState(ctx context.Context, client *http.Client, apiBase string, p *kvParams, want []string) ([]kvLease, []string, []string, error) {
	var problems []string
	var leases []kvLease
	now := time.Now()
	for _, l := range p.leases {
		lease, err := kvReadLease(ctx, client, apiBase, l, p.timeout, now)
		if err != nil {
			if hostErr := pkiHostErr(err); hostErr != nil {
				return nil, nil, nil, hostErr
			}
			problems = append(problems, fmt.Sprintf("lease %s: %s", l, kvShortErr(err)))
			leases = append(leases, kvLease{name: l, age: -1})
			continue
		}
		leases = append(leases, lease)
		if lease.holder == "" {
			problems = append(problems, fmt.Sprintf("lease %s: no holder (no leader elected)", l))
		}
	}
	endpoints, err := kvReadEndpoints(ctx, client, apiBase, p.timeout)
	if err != nil {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return nil, nil, nil, hostErr
		}
		problems = append(problems, "endpoints default/kubernetes: "+kvShortErr(err))
	} else if len(want) > 0 && !slices.Equal(want, endpoints) {
		problems = append(problems, fmt.Sprintf("endpoints default/kubernetes: %s, want %s", strings.Join(endpoints, ","), strings.Join(want, ",")))
	}
	return leases, endpoints, problems, nil
}

// kvReadEndpoints returns the sorted addresses of the `kubernetes` service,
// which the lease endpoint reconciler keeps equal to the live apiservers.
func kvReadEndpoints(ctx context.Context, c *http.Client, base string, timeout time.Duration) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := pkiDo(cctx, c, http.MethodGet, base+"/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes", nil, nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d %s", r.status, khFirstLine(r.body))
	}
	var list struct {
		Items []struct {
			Endpoints []struct {
				Addresses []string `json:"addresses"`
			} `json:"endpoints"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		return nil, fmt.Errorf("endpointslices: %w", err)
	}
	var out []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			out = append(out, e.Addresses...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// kvHolderHost turns a lease holder identity ("gk-1_3f2c...") into the host
// name the component runs on.
func kvHolderHost(holder string) string {
	h, _, _ := strings.Cut(holder, "_")
	return h
}

func kvReport(p *kvParams, checks []kvCheck, lbFailed int, leases []kvLease, endpoints, problems []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "control plane: %d/%d apiservers ready", ready(checks), len(checks))
	if p.lb != "" {
		fmt.Fprintf(&b, ", load balancer %d/%d calls ok", p.lbCalls-lbFailed, p.lbCalls)
	}
	if len(problems) == 0 {
		b.WriteString(", healthy")
	} else {
		fmt.Fprintf(&b, ", %d problem(s)", len(problems))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%-16s %-28s %s\n", "APISERVER", "URL", "READYZ")
	for _, c := range checks {
		fmt.Fprintf(&b, "%-16s %-28s %s\n", c.name, c.url, c.detail)
	}
	if p.lb != "" {
		status := "ok"
		if lbFailed > 0 {
			status = fmt.Sprintf("%d of %d calls failed", lbFailed, p.lbCalls)
		}
		fmt.Fprintf(&b, "%-16s %-28s %s\n", "(load balancer)", p.lb, status)
	}
	fmt.Fprintf(&b, "%-36s %-16s %s\n", "LEASE", "HOLDER", "RENEWED")
	for _, l := range leases {
		holder, renewed := "-", "-"
		if l.holder != "" {
			holder = kvHolderHost(l.holder)
		}
		if l.age >= 0 {
			renewed = fmt.Sprintf("%.1fs ago", l.age)
		}
		fmt.Fprintf(&b, "%-36s %-16s %s\n", l.name, holder, renewed)
	}
	eps := "-"
	if len(endpoints) > 0 {
		eps = strings.Join(endpoints, ", ")
	}
	fmt.Fprintf(&b, "endpoints default/kubernetes: %s", eps)
	for _, pr := range problems {
		fmt.Fprintf(&b, "\nPROBLEM: %s", pr)
	}
	return b.String()
}
