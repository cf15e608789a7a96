package modules

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gokube/connection"
)

// fakeAPIServer answers what kube_verify asks an apiserver: /readyz, the
// two leases and the kubernetes service's endpoint slices.
type fakeAPIServer struct{ readyz int }

func (f fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/readyz":
		w.WriteHeader(f.readyz)
		if f.readyz == http.StatusOK {
			fmt.Fprint(w, "[+]etcd ok\nreadyz check passed\n")
		} else {
			fmt.Fprint(w, "[-]etcd failed: reason withheld\nreadyz check failed\n")
		}
	case strings.HasPrefix(r.URL.Path, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"):
		fmt.Fprintf(w, `{"spec":{"holderIdentity":"m-1_0f3c","renewTime":%q}}`, time.Now().UTC().Format(time.RFC3339Nano))
	case r.URL.Path == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices":
		fmt.Fprint(w, `{"items":[{"endpoints":[{"addresses":["10.0.0.2"]},{"addresses":["10.0.0.1"]}]}]}`)
	default:
		http.NotFound(w, r)
	}
}

// TestKubeVerifyRun runs the whole report against fake apiservers that need
// a client certificate, over a local connection's forwards: healthy when
// every check passes, and the failed /readyz named when one does not.
func TestKubeVerifyRun(t *testing.T) {
	up, pki := pkiTLSServer(t, fakeAPIServer{readyz: http.StatusOK}, tls.RequireAndVerifyClientCert)
	local := connection.NewLocal("m-1")
	args := func(m2 string) map[string]any {
		return map[string]any{
			"apiservers":   map[string]any{"m-1": up.URL, "m-2": m2},
			"addresses":    map[string]any{"m-1": "10.0.0.1", "m-2": "10.0.0.2"},
			"loadbalancer": up.URL,
			"ca_cert":      filepath.Join(pki, "ca.pem"),
			"client_cert":  filepath.Join(pki, "client.pem"),
			"client_key":   filepath.Join(pki, "client-key.pem"),
		}
	}
	run := func(a map[string]any) *Result {
		t.Helper()
		res, err := KubeVerify{}.Run(context.Background(), &Env{Conn: local, Host: local.Host()}, a)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := run(args(up.URL))
	if res.Data["healthy"] != true || res.Data["ready"] != 2 || !strings.Contains(res.Data["report"].(string), "2/2 apiservers ready, load balancer 3/3 calls ok, healthy") {
		t.Fatalf("healthy control plane: %+v", res.Data)
	}
	for _, l := range res.Data["leases"].([]any) {
		if l.(map[string]any)["holder"] != "m-1_0f3c" {
			t.Errorf("lease: %+v", l)
		}
	}

	// The same PKI (the test CA signs every server certificate) for an
	// apiserver whose etcd check fails.
	down, _ := pkiTLSServerOn(t, fakeAPIServer{readyz: http.StatusInternalServerError}, tls.RequireAndVerifyClientCert, 0, pki)
	res = run(args(down.URL))
	problems := fmt.Sprint(res.Data["problems"])
	if res.Data["healthy"] != false || res.Data["ready"] != 1 || !strings.Contains(problems, "apiserver m-2: HTTP 500 etcd") {
		t.Fatalf("one apiserver not ready: %+v", res.Data)
	}
}
