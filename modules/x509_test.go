package modules

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gokube/connection"
)

func x509Run(t *testing.T, check bool, args map[string]any) *Result {
	t.Helper()
	res, err := X509{}.Run(context.Background(), &Env{Host: "h1", Check: check}, args)
	if err != nil {
		t.Fatalf("x509 %v: %v", args, err)
	}
	return res
}

func x509CAArgs(dir string) map[string]any {
	return map[string]any{"path": dir, "name": "ca", "ca": true, "common_name": "gokube etcd CA"}
}

func x509LeafArgs(dir string) map[string]any {
	return map[string]any{
		"path": dir, "name": "member-1", "ca_name": "ca", "common_name": "etcd-1",
		"dns_names":    []any{"etcd-1", "localhost"},
		"ip_addresses": []any{"10.0.0.1", "127.0.0.1"},
		"usages":       []any{"server_auth", "client_auth"},
	}
}

func x509Mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestX509CAAndLeafVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca := x509Run(t, false, x509CAArgs(dir))
	if !ca.Changed || ca.Data["changed_reason"] != "missing" {
		t.Fatalf("CA first run: %+v", ca)
	}
	leaf := x509Run(t, false, x509LeafArgs(dir))
	if !leaf.Changed {
		t.Fatalf("leaf first run: %+v", leaf)
	}
	if got := x509Mode(t, dir); got != 0o700 {
		t.Errorf("dir mode %04o", got)
	}
	for name, want := range map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600, "member-1.pem": 0o644, "member-1-key.pem": 0o600} {
		if got := x509Mode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s mode %04o, want %04o", name, got, want)
		}
	}
	if leaf.Data["cert"] != filepath.Join(dir, "member-1.pem") || leaf.Data["key"] != filepath.Join(dir, "member-1-key.pem") {
		t.Errorf("registered paths: %v", leaf.Data)
	}
	caCert, err := x509ReadCert(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !caCert.IsCA || caCert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA flags: isCA=%v usage=%v", caCert.IsCA, caCert.KeyUsage)
	}
	if d := time.Until(caCert.NotAfter); d < 3649*24*time.Hour || d > 3651*24*time.Hour {
		t.Errorf("CA validity %v", d)
	}
	cert, err := x509ReadCert(filepath.Join(dir, "member-1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("leaf key usage %v", cert.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		for _, name := range []string{"etcd-1", "localhost", "127.0.0.1", "10.0.0.1"} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("verify %s usage %v: %v", name, u, err)
			}
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "etcd-2"}); err == nil {
		t.Error("verify accepted a name that is not a SAN")
	}
	if leaf.Data["serial"] != cert.SerialNumber.Text(16) || leaf.Data["not_after"] != cert.NotAfter.UTC().Format(time.RFC3339) {
		t.Errorf("registered serial/not_after %v %v", leaf.Data["serial"], leaf.Data["not_after"])
	}
	key, err := x509ReadKey(filepath.Join(dir, "member-1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if x509KeyType(key) != "ecdsa" {
		t.Errorf("default key type %s", x509KeyType(key))
	}
}

func TestX509Idempotent(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, x509CAArgs(dir))
	first := x509Run(t, false, x509LeafArgs(dir))
	// Same args in a different order and a comma string: still the same cert.
	args := x509LeafArgs(dir)
	args["dns_names"] = "localhost, etcd-1"
	args["ip_addresses"] = []any{"127.0.0.1", "10.0.0.1"}
	for i := 0; i < 2; i++ {
		again := x509Run(t, false, args)
		if again.Changed || again.Data["serial"] != first.Data["serial"] {
			t.Fatalf("run %d: changed=%v reason=%v serial %v vs %v", i, again.Changed, again.Data["changed_reason"], again.Data["serial"], first.Data["serial"])
		}
	}
	if ca := x509Run(t, false, x509CAArgs(dir)); ca.Changed {
		t.Fatalf("CA second run changed: %v", ca.Msg)
	}
}

func TestX509Regenerates(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, x509CAArgs(dir))
	base := x509Run(t, false, x509LeafArgs(dir))
	cases := []struct {
		name   string
		mutate func(map[string]any)
		reason string
	}{
		{"dns", func(a map[string]any) { a["dns_names"] = []any{"etcd-1", "localhost", "etcd-1.lab"} }, "dns_names changed"},
		{"ip", func(a map[string]any) { a["ip_addresses"] = []any{"10.0.0.9", "127.0.0.1"} }, "ip_addresses changed"},
		{"cn", func(a map[string]any) { a["common_name"] = "other" }, "common name changed"},
		{"org", func(a map[string]any) { a["organization"] = "system:masters" }, "organization changed"},
		{"usages", func(a map[string]any) { a["usages"] = []any{"client_auth"} }, "usages changed"},
		{"keytype", func(a map[string]any) { a["key_type"] = "rsa" }, "key type changed"},
		{"expiry", func(a map[string]any) { a["validity_days"] = 1000; a["renew_before_days"] = 900 }, "expires within 900 days"},
	}
	prev := base.Data["serial"]
	// Changes accumulate so each case differs from the previous cert in one way.
	args := x509LeafArgs(dir)
	for _, c := range cases {
		c.mutate(args)
		res := x509Run(t, false, args)
		if !res.Changed || res.Data["changed_reason"] != c.reason {
			t.Fatalf("%s: changed=%v reason=%q, want %q", c.name, res.Changed, res.Data["changed_reason"], c.reason)
		}
		if res.Data["serial"] == prev {
			t.Fatalf("%s: serial unchanged", c.name)
		}
		prev = res.Data["serial"]
		if c.name == "expiry" {
			// The margin is still not reached a moment later with defaults.
			continue
		}
		if again := x509Run(t, false, args); again.Changed {
			t.Fatalf("%s: second run changed: %v", c.name, again.Msg)
		}
	}
	key, err := x509ReadKey(filepath.Join(dir, "member-1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if x509KeyType(key) != "rsa" {
		t.Fatalf("key type: %s", x509KeyType(key))
	}
}

func TestX509CAChangeRegeneratesLeaf(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, x509CAArgs(dir))
	x509Run(t, false, x509LeafArgs(dir))
	// A new CA (its files deleted, as an operator rotating it would).
	os.Remove(filepath.Join(dir, "ca.pem"))
	os.Remove(filepath.Join(dir, "ca-key.pem"))
	if ca := x509Run(t, false, x509CAArgs(dir)); !ca.Changed {
		t.Fatal("CA not regenerated")
	}
	res := x509Run(t, false, x509LeafArgs(dir))
	if !res.Changed || res.Data["changed_reason"] != "not signed by current CA ca" {
		t.Fatalf("leaf after CA change: %+v", res)
	}
	ca, err := x509LoadCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509ReadCert(filepath.Join(dir, "member-1.pem"))
	if err := cert.CheckSignatureFrom(ca.cert); err != nil {
		t.Fatalf("new leaf not signed by new CA: %v", err)
	}
	// A CA whose subject changes is regenerated, and so are its leaves.
	caArgs := x509CAArgs(dir)
	caArgs["common_name"] = "renamed CA"
	if r := x509Run(t, false, caArgs); !r.Changed || r.Data["changed_reason"] != "common name changed" {
		t.Fatalf("CA rename: %+v", r)
	}
	if r := x509Run(t, false, x509LeafArgs(dir)); !r.Changed {
		t.Fatal("leaf not regenerated after CA rename")
	}
}

func TestX509LeafNeverOutlivesCA(t *testing.T) {
	dir := t.TempDir()
	ca := x509CAArgs(dir)
	ca["validity_days"] = 100
	x509Run(t, false, ca)
	leaf := x509LeafArgs(dir)
	leaf["renew_before_days"] = 10
	x509Run(t, false, leaf)
	caCert, _ := x509ReadCert(filepath.Join(dir, "ca.pem"))
	cert, _ := x509ReadCert(filepath.Join(dir, "member-1.pem"))
	if cert.NotAfter.After(caCert.NotAfter) {
		t.Fatalf("leaf %v outlives CA %v", cert.NotAfter, caCert.NotAfter)
	}
	if r := x509Run(t, false, leaf); r.Changed {
		t.Fatalf("clamped leaf regenerated: %v", r.Msg)
	}
}

func TestX509KeyModeRepaired(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, x509CAArgs(dir))
	x509Run(t, false, x509LeafArgs(dir))
	keyPath := filepath.Join(dir, "member-1-key.pem")
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(keyPath)
	res := x509Run(t, true, x509LeafArgs(dir))
	if !res.Changed || x509Mode(t, keyPath) != 0o644 {
		t.Fatalf("check mode: changed=%v mode %04o", res.Changed, x509Mode(t, keyPath))
	}
	res = x509Run(t, false, x509LeafArgs(dir))
	if !res.Changed || res.Data["changed_reason"] != "key mode 0644 -> 0600" || x509Mode(t, keyPath) != 0o600 {
		t.Fatalf("mode repair: %+v mode %04o", res, x509Mode(t, keyPath))
	}
	after, _ := os.ReadFile(keyPath)
	if string(before) != string(after) {
		t.Fatal("mode repair replaced the key")
	}
}

func TestX509CheckModeWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	res := x509Run(t, true, x509CAArgs(dir))
	if !res.Changed || !strings.HasPrefix(res.Msg, "ca would be generated") {
		t.Fatalf("check CA: %+v", res)
	}
	res = x509Run(t, true, x509LeafArgs(dir))
	if !res.Changed {
		t.Fatalf("check leaf without CA: %+v", res)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check mode created %s: %v", dir, err)
	}
	x509Run(t, false, x509CAArgs(dir))
	x509Run(t, false, x509LeafArgs(dir))
	certBefore, _ := os.ReadFile(filepath.Join(dir, "member-1.pem"))
	args := x509LeafArgs(dir)
	args["dns_names"] = []any{"changed"}
	res = x509Run(t, true, args)
	if !res.Changed || res.Data["changed_reason"] != "dns_names changed" {
		t.Fatalf("check leaf SAN change: %+v", res)
	}
	if res := x509Run(t, true, x509LeafArgs(dir)); res.Changed {
		t.Fatalf("check mode predicted a change for an up-to-date cert: %v", res.Msg)
	}
	certAfter, _ := os.ReadFile(filepath.Join(dir, "member-1.pem"))
	if string(certBefore) != string(certAfter) {
		t.Fatal("check mode rewrote the certificate")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestX509ConcurrentCAOnce(t *testing.T) {
	dir := t.TempDir()
	const n = 6
	results := make([]*Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := X509{}.Run(context.Background(), &Env{}, x509CAArgs(dir))
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res
		}()
	}
	wg.Wait()
	changed := 0
	for _, r := range results {
		if r == nil {
			t.FailNow()
		}
		if r.Changed {
			changed++
		}
		if r.Data["serial"] != results[0].Data["serial"] {
			t.Fatalf("hosts saw different CAs: %v vs %v", r.Data["serial"], results[0].Data["serial"])
		}
	}
	if changed != 1 {
		t.Fatalf("%d of %d concurrent runs generated the CA, want 1", changed, n)
	}
}

func TestX509RSAAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	ca := x509CAArgs(dir)
	ca["key_type"] = "rsa"
	x509Run(t, false, ca)
	x509Run(t, false, x509LeafArgs(dir))
	k, err := x509ReadKey(filepath.Join(dir, "ca-key.pem"))
	if err != nil || x509KeyType(k) != "rsa" {
		t.Fatalf("rsa CA key: %v %v", k, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "member-1-key.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := x509Run(t, false, x509LeafArgs(dir)); r.Data["changed_reason"] != "unreadable key" {
		t.Fatalf("corrupt key: %+v", r)
	}
	os.Remove(filepath.Join(dir, "member-1-key.pem"))
	if r := x509Run(t, false, x509LeafArgs(dir)); r.Data["changed_reason"] != "key missing" {
		t.Fatalf("missing key: %+v", r)
	}
	// A key swapped in from another cert.
	other := x509LeafArgs(dir)
	other["name"] = "other"
	x509Run(t, false, other)
	b, _ := os.ReadFile(filepath.Join(dir, "other-key.pem"))
	os.WriteFile(filepath.Join(dir, "member-1-key.pem"), b, 0o600)
	if r := x509Run(t, false, x509LeafArgs(dir)); r.Data["changed_reason"] != "key does not match certificate" {
		t.Fatalf("mismatched key: %+v", r)
	}
}

func TestX509ArgErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args map[string]any
		key  string
	}{
		{map[string]any{"path": dir, "name": "x"}, ""},
		{map[string]any{"path": dir, "name": "x", "ca": true, "ca_name": "y"}, "ca_name"},
		{map[string]any{"path": dir, "name": "x", "ca": true, "bogus": 1}, "bogus"},
		{map[string]any{"path": dir, "name": "a/b", "ca": true}, "name"},
		{map[string]any{"path": dir, "name": "x", "ca_name": "ca", "ip_addresses": []any{"300.1.1.1"}}, "ip_addresses"},
		{map[string]any{"path": dir, "name": "x", "ca_name": "ca", "usages": []any{"code_signing"}}, "usages"},
		{map[string]any{"path": dir, "name": "x", "ca": true, "key_type": "dsa"}, "key_type"},
		{map[string]any{"path": dir, "name": "x", "ca": true, "validity_days": 10}, "renew_before_days"},
		{map[string]any{"path": dir, "name": "x", "ca": "maybe"}, "ca"},
		{map[string]any{"name": "x", "ca": true}, "path"},
	}
	for _, c := range cases {
		_, err := X509{}.Run(context.Background(), &Env{}, c.args)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Key != c.key {
			t.Errorf("%v: got %v, want ArgError on %q", c.args, err, c.key)
		}
	}
	// Signing with a CA that does not exist is an error outside check mode.
	_, err := X509{}.Run(context.Background(), &Env{}, map[string]any{"path": dir, "name": "x", "ca_name": "nope"})
	if err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("missing CA: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 1 {
		t.Errorf("failed runs left files: %v", entries)
	}
}

func TestX509Diff(t *testing.T) {
	dir := t.TempDir()
	x509Run(t, false, x509CAArgs(dir))
	x509Run(t, false, x509LeafArgs(dir))
	args := x509LeafArgs(dir)
	args["dns_names"] = []any{"etcd-1", "localhost", "etcd-1.lab"}
	for _, check := range []bool{true, false} {
		res, err := X509{}.Run(context.Background(), &Env{Check: check, Diff: true}, args)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Diff, "\n-dns_names: etcd-1, localhost\n") || !strings.Contains(res.Diff, "\n+dns_names: etcd-1, etcd-1.lab, localhost\n") ||
			strings.Contains(res.Diff, "common_name") == false || strings.Contains(res.Diff, "-ca: false") {
			t.Fatalf("check=%v diff:\n%s", check, res.Diff)
		}
	}
	res, err := X509{}.Run(context.Background(), &Env{Diff: true}, args)
	if err != nil || res.Changed || res.Diff != "" {
		t.Fatalf("unchanged run has a diff: %+v %v", res, err)
	}
}

// TestX509NeverContactsHost: the module works on the control machine only,
// whatever connection the engine hands it (the CA key never travels).
func TestX509NeverContactsHost(t *testing.T) {
	fake := connection.NewFake("h1")
	dir := t.TempDir()
	for _, args := range []map[string]any{x509CAArgs(dir), x509LeafArgs(dir), x509LeafArgs(dir)} {
		if _, err := (X509{}).Run(context.Background(), &Env{Conn: fake, Host: "h1", Diff: true}, args); err != nil {
			t.Fatal(err)
		}
	}
	if fake.RoundTrips() != 0 || len(fake.Requests()) != 0 || len(fake.Uploads()) != 0 {
		t.Fatalf("x509 contacted the host: %d round trips", fake.RoundTrips())
	}
}

func benchX509(b *testing.B, keyType string, regenerate bool) {
	dir := b.TempDir()
	ca := x509CAArgs(dir)
	ca["key_type"] = keyType
	if _, err := (X509{}).Run(context.Background(), &Env{}, ca); err != nil {
		b.Fatal(err)
	}
	leaf := x509LeafArgs(dir)
	leaf["key_type"] = keyType
	for i := 0; b.Loop(); i++ {
		if regenerate {
			leaf["common_name"] = fmt.Sprintf("etcd-%d", i)
		}
		res, err := X509{}.Run(context.Background(), &Env{}, leaf)
		if err != nil || (regenerate && !res.Changed) {
			b.Fatalf("%v %v", res, err)
		}
	}
}

func BenchmarkX509UnchangedECDSA(b *testing.B) { benchX509(b, "ecdsa", false) }
func BenchmarkX509GenerateECDSA(b *testing.B)  { benchX509(b, "ecdsa", true) }
func BenchmarkX509GenerateRSA(b *testing.B)    { benchX509(b, "rsa", true) }

// TestX509IPAmongDNSNamesIsAnIPSAN: a VIP in dns_names (the pki role's
// etcd_extra_sans) lands in the certificate's IP SANs, where a client
// connecting by address looks, and a second run is unchanged.
func TestX509IPAmongDNSNamesIsAnIPSAN(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	x509Run(t, false, x509CAArgs(dir))
	args := x509LeafArgs(dir)
	args["dns_names"] = []any{"etcd-1", "localhost", "10.20.0.20", "127.0.0.1", "fd00::20"}
	x509Run(t, false, args)
	cert, err := x509ReadCert(filepath.Join(dir, "member-1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cert.DNSNames, ","); got != "etcd-1,localhost" {
		t.Errorf("DNS SANs %s", got)
	}
	if got := strings.Join(x509IPStrings(cert.IPAddresses), ","); got != "10.0.0.1,10.20.0.20,127.0.0.1,fd00::20" {
		t.Errorf("IP SANs %s", got)
	}
	if res := x509Run(t, false, args); res.Changed {
		t.Errorf("second run changed: %v", res.Data["changed_reason"])
	}
}
