package modules

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// A kubeconfig embeds the PEM files, is written 0600, and is rewritten only
// when a file it embeds changes; check mode predicts and writes nothing.
func TestKubeconfigEmbedsAndIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, map[string]any{"path": dir, "name": "kube-ca", "ca": true})
	x509Run(t, false, map[string]any{"path": dir, "name": "admin", "ca_name": "kube-ca", "common_name": "kubernetes-admin",
		"organization": []any{"system:masters"}, "usages": []any{"client_auth"}})
	args := map[string]any{
		"dest": filepath.Join(dir, "admin.conf"), "server": "https://10.0.0.10:6443",
		"ca_cert": filepath.Join(dir, "kube-ca.pem"), "client_cert": filepath.Join(dir, "admin.pem"),
		"client_key": filepath.Join(dir, "admin-key.pem"),
	}
	run := func(check bool) *Result {
		t.Helper()
		res, err := Kubeconfig{}.Run(context.Background(), &Env{Host: "h1", Check: check}, args)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(true); !res.Changed {
		t.Fatal("check mode on a missing file predicted no change")
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.conf")); !os.IsNotExist(err) {
		t.Fatalf("check mode wrote the file: %v", err)
	}
	if res := run(false); !res.Changed {
		t.Fatal("first run: not changed")
	}
	if res := run(false); res.Changed {
		t.Fatal("second run: changed")
	}
	fi, err := os.Stat(filepath.Join(dir, "admin.conf"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	// The embedded data is the PEM files, and makes a working TLS client
	// configuration.
	b, _ := os.ReadFile(filepath.Join(dir, "admin.conf"))
	var kc struct {
		CurrentContext string `yaml:"current-context"`
		Clusters       []struct {
			Cluster map[string]string `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]string `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != "admin@kubernetes" || kc.Clusters[0].Cluster["server"] != "https://10.0.0.10:6443" {
		t.Fatalf("kubeconfig:\n%s", b)
	}
	dec := func(s string) []byte { v, _ := base64.StdEncoding.DecodeString(s); return v }
	if _, err := tls.X509KeyPair(dec(kc.Users[0].User["client-certificate-data"]), dec(kc.Users[0].User["client-key-data"])); err != nil {
		t.Fatalf("embedded key pair: %v", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(dec(kc.Clusters[0].Cluster["certificate-authority-data"])) {
		t.Fatal("embedded CA is not PEM")
	}
	// A renewed client certificate rewrites the file.
	x509Run(t, false, map[string]any{"path": dir, "name": "admin", "ca_name": "kube-ca", "common_name": "kubernetes-admin",
		"organization": []any{"system:masters", "extra"}, "usages": []any{"client_auth"}})
	if res := run(false); !res.Changed {
		t.Fatal("renewed certificate: kubeconfig not rewritten")
	}
}

func TestKubeconfigArgs(t *testing.T) {
	base := map[string]any{"dest": "/tmp/x.conf", "ca_cert": "a", "client_cert": "b", "client_key": "c"}
	for _, server := range []string{"http://10.0.0.1:6443", "10.0.0.1:6443", "https://"} {
		args := map[string]any{"server": server}
		for k, v := range base {
			args[k] = v
		}
		if _, err := kubeconfigParseArgs(args); err == nil || !strings.Contains(err.Error(), "server") {
			t.Errorf("server %q: err %v", server, err)
		}
	}
}

func TestHAProxyServersFromCSV(t *testing.T) {
	csv := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n" +
		"kube_apiserver,FRONTEND,,,0,1,20000,3,0,0,0,0,0,,,,,OPEN,\n" +
		"kube_apiserver,m-1,0,0,0,1,,1,0,0,,0,,0,0,0,0,UP,1\n" +
		"kube_apiserver,m-2,0,0,0,1,,1,0,0,,0,,0,0,0,0,DOWN,1\n" +
		"kube_apiserver,m-3,0,0,0,1,,1,0,0,,0,,0,0,0,0,DRAIN,0\n" +
		"kube_apiserver,BACKEND,0,0,0,1,,1,0,0,,0,,0,0,0,0,UP,1\n" +
		"stats,FRONTEND,,,0,1,20000,3,0,0,0,0,0,,,,,OPEN,\n"
	got, err := haproxyServers(csv, "kube_apiserver")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["m-1"] != "UP" || got["m-2"] != "DOWN" || got["m-3"] != "DRAIN" {
		t.Fatalf("servers: %v", got)
	}
	if _, err := haproxyServers(csv, "nope"); err == nil {
		t.Fatal("a missing backend is no error")
	}
}

func TestKubeVerifyArgs(t *testing.T) {
	ok := map[string]any{
		"apiservers": map[string]any{"m-1": "https://10.0.0.1:6443", "m-2": "https://10.0.0.2:6443"},
		"addresses":  map[string]any{"m-1": "10.0.0.1", "m-2": "10.0.0.2"},
		"ca_cert":    "ca", "client_cert": "c", "client_key": "k", "exclude": []any{"m-2"},
	}
	p, err := kvParseArgs(ok)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.names) != 1 || p.names[0] != "m-1" || len(p.addresses) != 1 {
		t.Fatalf("exclude: %+v", p)
	}
	if len(p.leases) != 2 {
		t.Fatalf("default leases: %v", p.leases)
	}
	for key, bad := range map[string]any{
		"apiservers":   map[string]any{"m-1": "http://10.0.0.1:6443"},
		"addresses":    map[string]any{"m-1": "not-an-ip"},
		"loadbalancer": "10.0.0.9:6443",
		"leases":       []any{"kube-scheduler"},
		"lb_calls":     0,
	} {
		args := map[string]any{}
		for k, v := range ok {
			args[k] = v
		}
		args[key] = bad
		if _, err := kvParseArgs(args); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%v: err %v", key, bad, err)
		}
	}
}

func TestChecksumFromList(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "SHA256SUMS")
	sum := strings.Repeat("ab", 32)
	if err := os.WriteFile(list, []byte(strings.Repeat("cd", 32)+"  etcd/v3.4.23/etcd\n"+sum+"  kubernetes/v1.37.2/kubectl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := checksumFromList(list, "file:///var/cache/kubernetes/v1.37.2/kubectl")
	if err != nil || got != sum {
		t.Fatalf("got %q %v", got, err)
	}
	if _, err := checksumFromList(list, "file:///var/cache/kubernetes/v1.37.2/kubelet"); err == nil || !strings.Contains(err.Error(), "no checksum") {
		t.Fatalf("missing entry: %v", err)
	}
	if _, err := checksumFromList("relative/SHA256SUMS", "file:///x"); err == nil {
		t.Fatal("relative list path accepted")
	}
}

// In check mode on a fresh control machine the certificates do not exist
// yet (x509 only predicts them): the kubeconfig is predicted too.
func TestKubeconfigCheckModeBeforeCertificates(t *testing.T) {
	dir := t.TempDir()
	res, err := Kubeconfig{}.Run(context.Background(), &Env{Host: "h1", Check: true}, map[string]any{
		"dest": filepath.Join(dir, "admin.conf"), "server": "https://10.0.0.10:6443",
		"ca_cert": filepath.Join(dir, "kube-ca.pem"), "client_cert": filepath.Join(dir, "admin.pem"),
		"client_key": filepath.Join(dir, "admin-key.pem"),
	})
	if err != nil || !res.Changed {
		t.Fatalf("check mode without certificates: %+v %v", res, err)
	}
}

// kube_nodes refuses bad arguments before it reaches for a connection, and
// reads a node's Ready condition.
func TestKubeNodesArgsAndReady(t *testing.T) {
	ok := map[string]any{"api": "https://10.0.0.9:6443", "nodes": []any{"n-1"}, "ca_cert": "ca", "client_cert": "c", "client_key": "k"}
	if _, err := (KubeNodes{}).Run(context.Background(), nil, ok); err == nil || !strings.Contains(err.Error(), "no connection") {
		t.Fatalf("good arguments: err %v, want the missing connection", err)
	}
	for key, bad := range map[string]any{"api": "10.0.0.9:6443", "pod_selector": "app=hello", "timeout": "soon"} {
		args := map[string]any{}
		for k, v := range ok {
			args[k] = v
		}
		args[key] = bad
		if _, err := (KubeNodes{}).Run(context.Background(), nil, args); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%v: err %v", key, bad, err)
		}
	}
	var n knNode
	if err := json.Unmarshal([]byte(`{"metadata":{"name":"n-1"},"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"False","reason":"KubeletNotReady","message":"network not ready"}]}}`), &n); err != nil {
		t.Fatal(err)
	}
	if ready, why := knReady(n); ready || why != "KubeletNotReady network not ready" {
		t.Errorf("knReady: %v %q", ready, why)
	}
	n.Status.Conditions[1].Status = "True"
	if ready, _ := knReady(n); !ready {
		t.Error("knReady: a True Ready condition is not ready")
	}
}

// knPods counts a pod as running only when it is Running with every
// container ready, and says why not.
func TestKubeNodesPods(t *testing.T) {
	var items []knPod
	if err := json.Unmarshal([]byte(`[
{"metadata":{"name":"a"},"spec":{"nodeName":"n-1"},"status":{"phase":"Running","containerStatuses":[{"name":"hello","ready":true}]}},
{"metadata":{"name":"b"},"spec":{"nodeName":"n-2"},"status":{"phase":"Running","containerStatuses":[{"name":"hello","ready":false}]}},
{"metadata":{"name":"c"},"spec":{},"status":{"phase":"Pending"}}]`), &items); err != nil {
		t.Fatal(err)
	}
	pods, running, problems := knPods("default", items)
	if len(pods) != 3 || running != 1 {
		t.Fatalf("pods %v, running %d", pods, running)
	}
	want := []string{`pod default/b on "n-2": Running, containers not ready: hello`, `pod default/c on "": Pending`}
	if !slices.Equal(problems, want) {
		t.Errorf("problems %q, want %q", problems, want)
	}
}
