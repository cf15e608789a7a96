package modules

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// KubeHealth is the `kube_health` module: an apiserver's /livez and /readyz,
// and optionally the holder of a lease (which controller-manager or
// scheduler instance leads), reached from the control machine through the
// host's connection like uri: url may be the host's own apiserver
// (https://127.0.0.1:6443) or the load balancer's address.
//
// Arguments: url (required), ca_cert, client_cert and client_key (files on
// the control machine) or token (bearer), validate_certs (true), lease
// ("namespace/name", e.g. kube-system/kube-controller-manager), timeout
// (seconds, default 10).
//
// Registers: livez, readyz (bool), failed_checks (the [-] lines of
// /readyz?verbose), holder, lease_found, renew_time. Fails when livez or
// readyz is false, or the lease cannot be read (a missing lease is not a
// failure: lease_found=false, holder ""). Read-only: runs in check mode.
type KubeHealth struct{}

// Spec declares the kube_health arguments.
func (KubeHealth) Spec() Spec {
	return Spec{
		Doc: "An apiserver's /livez and /readyz, and optionally who holds a leader-election lease, reached from the control machine through the host's connection. Fails when not live or ready. Read-only.",
		Returns: map[string]string{
			"failed_checks": "the [-] lines of /readyz?verbose",
			"holder":        "the lease's holderIdentity",
			"lease_found":   "whether the lease exists",
			"livez":         "bool",
			"readyz":        "bool",
			"renew_time":    "the lease's renewTime",
		},
		Args: map[string]Arg{
			"url":            {Type: String, Required: true, Kind: URL, Doc: "Apiserver URL as seen from the host (https://127.0.0.1:6443 or the load balancer)."},
			"ca_cert":        {Type: String, Doc: "CA certificate file on the control machine."},
			"client_cert":    {Type: String, Aliases: []string{"cert"}, Doc: "Client certificate file on the control machine."},
			"client_key":     {Type: String, Aliases: []string{"key"}, Doc: "Client key file on the control machine."},
			"token":          {Type: String, Doc: "Bearer token instead of a client certificate."},
			"validate_certs": {Type: Bool, Doc: "Verify the server's certificate.", Default: "yes"},
			"lease":          {Type: String, Doc: "namespace/name of a Lease to read, e.g. kube-system/kube-scheduler."},
			"timeout":        {Type: Int, Doc: "Seconds for each request.", Default: "10"},
		}}
}

type khParams struct {
	base       string
	tls        pkiTLS
	token      string
	leaseNS    string
	leaseName  string
	timeout    time.Duration
	leaseGiven bool
}

func khParseArgs(args map[string]any) (*khParams, error) {
	a, err := parseArgs("kube_health", KubeHealth{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	p := &khParams{}
	p.base = a.str("url")
	u, err := url.Parse(p.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, a.err("url", "want the apiserver's base URL such as https://127.0.0.1:6443, got %q", p.base)
	}
	p.base = strings.TrimRight(p.base, "/")
	p.tls.caPath = a.str("ca_cert")
	p.tls.certPath = a.str("client_cert")
	p.tls.keyPath = a.str("client_key")
	if (p.tls.certPath == "") != (p.tls.keyPath == "") {
		return nil, a.err("client_key", "client_cert and client_key go together")
	}
	p.token = a.str("token")
	validate := a.boolean("validate_certs", true)
	p.tls.insecure = !validate
	lease := a.str("lease")
	if lease != "" {
		ns, name, ok := strings.Cut(lease, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, a.err("lease", "want namespace/name, got %q", lease)
		}
		p.leaseNS, p.leaseName, p.leaseGiven = ns, name, true
	}
	if p.timeout, err = a.seconds("timeout", 10*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// Run asks the apiserver livez, readyz?verbose and, when asked, the lease,
// in that order, and folds the answers into one result. It is long because
// each answer adds to the same data and problems.
func (KubeHealth) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := khParseArgs(args)
	if err != nil {
		return nil, err
	}
	client, done, err := pkiHTTPClient(env, "kube_health", p.tls, p.timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	hdr := map[string]string{"Accept": "application/json, */*"}
	if p.token != "" {
		hdr["Authorization"] = "Bearer " + p.token
	}
	data := map[string]any{"url": p.base, "livez": false, "readyz": false, "failed_checks": []string{}}
	var problems []string
	fail := func(err error) (*Result, error) {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return nil, hostErr
		}
		msg := fmt.Sprintf("kube_health %s: %s", p.base, pkiErrText(err))
		data["msg"] = msg
		return &Result{Failed: true, Msg: msg, Data: data}, nil
	}

	live, err := pkiDo(ctx, client, http.MethodGet, p.base+"/livez", nil, hdr)
	if err != nil {
		return fail(err)
	}
	data["livez"] = live.status == http.StatusOK
	if live.status != http.StatusOK {
		problems = append(problems, fmt.Sprintf("livez: HTTP %d %s", live.status, khFirstLine(live.body)))
	}
	// verbose lists each check, so a failure names what is wrong
	// ("[-]etcd failed: reason withheld").
	ready, err := pkiDo(ctx, client, http.MethodGet, p.base+"/readyz?verbose", nil, hdr)
	if err != nil {
		return fail(err)
	}
	data["readyz"] = ready.status == http.StatusOK
	failed := khFailedChecks(ready.body)
	data["failed_checks"] = failed
	if ready.status != http.StatusOK {
		detail := strings.Join(failed, ", ")
		if detail == "" {
			detail = khFirstLine(ready.body)
		}
		problems = append(problems, fmt.Sprintf("readyz: HTTP %d %s", ready.status, detail))
	}

	if p.leaseGiven {
		data["holder"], data["lease_found"], data["renew_time"] = "", false, ""
		path := fmt.Sprintf("%s/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", p.base, url.PathEscape(p.leaseNS), url.PathEscape(p.leaseName))
		lr, err := pkiDo(ctx, client, http.MethodGet, path, nil, hdr)
		if err != nil {
			return fail(err)
		}
		switch lr.status {
		case http.StatusOK:
			var lease struct {
				Spec struct {
					HolderIdentity       *string `json:"holderIdentity"`
					RenewTime            string  `json:"renewTime"`
					LeaseDurationSeconds int     `json:"leaseDurationSeconds"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(lr.body, &lease); err != nil {
				return fail(fmt.Errorf("lease %s/%s: %w", p.leaseNS, p.leaseName, err))
			}
			data["lease_found"] = true
			if lease.Spec.HolderIdentity != nil {
				data["holder"] = *lease.Spec.HolderIdentity
			}
			data["renew_time"] = lease.Spec.RenewTime
			data["lease_duration_seconds"] = lease.Spec.LeaseDurationSeconds
		case http.StatusNotFound:
			// No leader elected yet: an answer, not a failure.
		default:
			problems = append(problems, fmt.Sprintf("lease %s/%s: HTTP %d %s", p.leaseNS, p.leaseName, lr.status, khFirstLine(lr.body)))
		}
	}

	res := &Result{Data: data}
	if len(problems) > 0 {
		res.Failed = true
		res.Msg = strings.Join(problems, "; ")
	} else {
		res.Msg = "livez ok, readyz ok"
		if p.leaseGiven {
			res.Msg += fmt.Sprintf(", lease %s/%s held by %q", p.leaseNS, p.leaseName, data["holder"])
		}
	}
	data["msg"] = res.Msg
	return res, nil
}

// khFailedChecks picks the names of failed checks from /readyz?verbose:
// "[-]etcd failed: reason withheld" gives "etcd".
func khFailedChecks(body []byte) []string {
	out := []string{}
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "[-]"); ok {
			name, _, _ := strings.Cut(rest, " ")
			out = append(out, name)
		}
	}
	return out
}

func khFirstLine(b []byte) string {
	s := strings.TrimSpace(string(pkiTruncate(b, 300)))
	first, _, _ := strings.Cut(s, "\n")
	return first
}
