package modules

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"gokube/connection"
)

// khFakeAPIServer answers like kube-apiserver on the paths kube_health
// uses: /livez and /readyz anonymously (system:public-info-viewer), leases
// only for a client certificate or the bearer token "secret".
type khFakeAPIServer struct {
	etcdDown atomic.Bool
	noLease  atomic.Bool
}

func (s *khFakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authed := r.Header.Get("Authorization") == "Bearer secret" || (r.TLS != nil && len(r.TLS.PeerCertificates) > 0)
	switch r.URL.Path {
	case "/livez":
		fmt.Fprint(w, "ok")
	case "/readyz":
		if _, verbose := r.URL.Query()["verbose"]; !verbose {
			http.Error(w, "want verbose", http.StatusBadRequest)
			return
		}
		if s.etcdDown.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n")
			return
		}
		fmt.Fprint(w, "[+]ping ok\n[+]log ok\n[+]etcd ok\nreadyz check passed\n")
	case "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager":
		if !authed {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"kind":"Status","status":"Failure","message":"leases.coordination.k8s.io is forbidden: User \"system:anonymous\" cannot get resource","code":403}`)
			return
		}
		if s.noLease.Load() {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","status":"Failure","reason":"NotFound","code":404}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"kube-controller-manager","namespace":"kube-system"},
"spec":{"holderIdentity":"cp-2_5f0c7a1e-2b0e-4f8e-9d7c-1c1e5d2a9b11","leaseDurationSeconds":15,"acquireTime":"2026-11-25T20:00:00.000000Z","renewTime":"2026-11-25T21:00:00.123456Z","leaseTransitions":2}}`)
	default:
		http.NotFound(w, r)
	}
}

func khRun(t *testing.T, conn connection.Conn, check bool, args map[string]any) *Result {
	t.Helper()
	res, err := KubeHealth{}.Run(context.Background(), &Env{Conn: conn, Host: conn.Host(), Check: check}, args)
	if err != nil {
		t.Fatalf("kube_health %v: %v", args, err)
	}
	return res
}

// TestKubeHealth runs against an httptest TLS server that plays the
// apiserver: the HTTP, TLS and forwarding code paths are real, the answers
// are canned (there is no apiserver on this machine yet).
func TestKubeHealth(t *testing.T) {
	api := &khFakeAPIServer{}
	srv, pki := pkiTLSServer(t, api, tls.VerifyClientCertIfGiven)
	local := connection.NewLocal("cp1")
	ca := filepath.Join(pki, "ca.pem")
	lease := "kube-system/kube-controller-manager"

	res := khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": ca, "token": "secret", "lease": lease})
	if res.Failed || res.Data["livez"] != true || res.Data["readyz"] != true || res.Data["lease_found"] != true ||
		res.Data["holder"] != "cp-2_5f0c7a1e-2b0e-4f8e-9d7c-1c1e5d2a9b11" || res.Data["renew_time"] != "2026-11-25T21:00:00.123456Z" {
		t.Fatalf("healthy with token: %+v", res)
	}
	// Client certificate instead of a token; check mode runs (read-only).
	res = khRun(t, connection.NewDry(local), true, map[string]any{"url": srv.URL + "/", "ca_cert": ca,
		"cert": filepath.Join(pki, "client.pem"), "key": filepath.Join(pki, "client-key.pem"), "lease": lease})
	if res.Failed || res.Data["holder"] == "" {
		t.Fatalf("healthy with client cert, check mode: %+v", res)
	}
	// Without credentials the health endpoints answer, the lease does not.
	res = khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": ca, "lease": lease})
	if !res.Failed || res.Data["livez"] != true || !strings.Contains(res.Msg, "HTTP 403") {
		t.Fatalf("lease without credentials: %+v", res)
	}
	// Without a lease argument, holder is not registered at all.
	res = khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": ca})
	if _, ok := res.Data["holder"]; res.Failed || ok {
		t.Fatalf("no lease: %+v", res)
	}

	api.etcdDown.Store(true)
	res = khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": ca, "token": "secret"})
	if !res.Failed || res.Data["livez"] != true || res.Data["readyz"] != false ||
		fmt.Sprint(res.Data["failed_checks"]) != "[etcd]" || !strings.Contains(res.Msg, "readyz: HTTP 500 etcd") {
		t.Fatalf("etcd down: %+v", res)
	}
	api.etcdDown.Store(false)

	api.noLease.Store(true)
	res = khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": ca, "token": "secret", "lease": lease})
	if res.Failed || res.Data["lease_found"] != false || res.Data["holder"] != "" {
		t.Fatalf("no lease yet: %+v", res)
	}
	api.noLease.Store(false)

	// Wrong CA: the apiserver's certificate is refused.
	other := filepath.Join(t.TempDir(), "other")
	x509Run(t, false, map[string]any{"path": other, "name": "ca", "ca": true})
	res = khRun(t, local, false, map[string]any{"url": srv.URL, "ca_cert": filepath.Join(other, "ca.pem")})
	if !res.Failed || res.Data["livez"] != false || !strings.Contains(res.Msg, "certificate") {
		t.Fatalf("wrong CA: %+v", res)
	}

	// All three requests share one forwarded connection.
	fake := connection.NewFake("cp1")
	res = khRun(t, fake, false, map[string]any{"url": srv.URL, "ca_cert": ca, "token": "secret", "lease": lease})
	if res.Failed || fake.RoundTrips() != 1 {
		t.Fatalf("through fake: %+v, %d forwards", res, fake.RoundTrips())
	}
	fake.SetUnreachable(errors.New("gone"))
	if _, err := (KubeHealth{}).Run(context.Background(), &Env{Conn: fake, Host: "cp1"}, map[string]any{"url": srv.URL, "ca_cert": ca}); !connection.IsUnreachable(err) {
		t.Fatalf("unreachable: %v", err)
	}
	if _, err := (KubeHealth{}).Run(context.Background(), &Env{Conn: pkiNoDialer{local}, Host: "cp1"}, map[string]any{"url": srv.URL}); err == nil || !strings.Contains(err.Error(), "cannot forward ports") {
		t.Fatalf("no dialer: %v", err)
	}
}

func TestKubeHealthArgErrors(t *testing.T) {
	fake := connection.NewFake("cp1")
	for _, c := range []struct {
		args map[string]any
		key  string
	}{
		{map[string]any{}, "url"},
		{map[string]any{"url": "https://x:6443/?a=b"}, "url"},
		{map[string]any{"url": "https://x:6443", "lease": "kube-controller-manager"}, "lease"},
		{map[string]any{"url": "https://x:6443", "client_cert": "/c"}, "client_key"},
		{map[string]any{"url": "https://x:6443", "timeout": 0}, "timeout"},
	} {
		_, err := KubeHealth{}.Run(context.Background(), &Env{Conn: fake, Host: "cp1"}, c.args)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != c.key {
			t.Errorf("%v: got %v, want ArgError on %q", c.args, err, c.key)
		}
	}
	if fake.RoundTrips() != 0 {
		t.Error("bad args contacted the host")
	}
	if got := khFailedChecks([]byte("[+]ping ok\n[-]etcd failed: x\n[-]poststarthook/rbac failed: y\n")); fmt.Sprint(got) != "[etcd poststarthook/rbac]" {
		t.Errorf("failed checks: %v", got)
	}
}
