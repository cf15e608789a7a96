package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rotationWriter writes keys to an etcd cluster the way a well-behaved
// client does during a CA rotation: it trusts whatever CA files the
// control machine holds, presents the client certificate currently on
// disk, and fails over between the members. A write fails only when no
// member took it.
type rotationWriter struct {
	pki       string
	endpoints []string
	ok, bad   atomic.Int64
	mu        sync.Mutex
	lastErr   string
}

func (w *rotationWriter) client() (*http.Client, error) {
	pool := x509.NewCertPool()
	for _, f := range []string{"etcd-ca.pem", "etcd-ca-prev.pem", "etcd-ca-next.pem"} {
		if b, err := os.ReadFile(filepath.Join(w.pki, f)); err == nil {
			pool.AppendCertsFromPEM(b)
		}
	}
	var pair tls.Certificate
	var err error
	// The x509 module writes the certificate and the key one after the
	// other: a pair read between the two does not match yet.
	for range 20 {
		if pair, err = tls.LoadX509KeyPair(filepath.Join(w.pki, "etcd-client.pem"), filepath.Join(w.pki, "etcd-client-key.pem")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: 3 * time.Second}, nil
}

func (w *rotationWriter) write(n int64) {
	c, err := w.client()
	var errs []string
	if err == nil {
		body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "rotation/%06d", n)), "value": base64.StdEncoding.EncodeToString([]byte("v"))})
		for _, e := range w.endpoints {
			resp, perr := c.Post(e+"/v3/kv/put", "application/json", bytes.NewReader(body))
			if perr == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					w.ok.Add(1)
					return
				}
				perr = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			errs = append(errs, fmt.Sprintf("%s: %v", e, perr))
		}
	} else {
		errs = append(errs, err.Error())
	}
	w.bad.Add(1)
	w.mu.Lock()
	w.lastErr = strings.Join(errs, "; ")
	w.mu.Unlock()
}

// certIssuedBy reports whether the PEM certificate file was signed by the
// CA in the PEM file ca.
func certIssuedBy(t *testing.T, certFile, caFile string) bool {
	t.Helper()
	read := func(f string) *x509.Certificate {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return read(certFile).CheckSignatureFrom(read(caFile)) == nil
}

// TestEtcdCARotation: etcd-rotate-ca.yml refuses, changing nothing, while
// a member is down; then it replaces the CA of a running
// 3-member cluster (trust both, new certificates, drop the old CA; each
// step one member at a time) while a client writes throughout: no write
// fails, every write is there afterwards, the members trust the new CA
// alone, and etcd.yml afterwards changes nothing.
func TestEtcdCARotation(t *testing.T) {
	e := setupN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e.resetHosts(t, ctx, 1, 2, 3)
	work := t.TempDir()
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
	inv := e.inventory(t, work, "rot", map[string][]int{"etcd": {1, 2, 3}})
	pki := filepath.Join(work, "pki")
	r := e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd.yml"))
	if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
		t.Fatalf("bootstrap: exit %d\n%s", r.code, tail(r.out, 60))
	}
	oldCA, err := os.ReadFile(filepath.Join(pki, "etcd-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}

	// A member down: restarting the others would lose the quorum, so the
	// rotation refuses before anything changes (no next CA, no restart).
	if out, err := e.ssh(t, 3, "systemctl stop etcd"); err != nil {
		t.Fatalf("stop etcd on host 3: %v %s", err, out)
	}
	started := map[int]string{}
	for i := 1; i <= 2; i++ {
		started[i], _ = e.ssh(t, i, "systemctl show etcd -p ExecMainStartTimestampMonotonic --value")
	}
	r = e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd-rotate-ca.yml"))
	t.Logf("rotation with a member down:\n%s", grepLines(r.out, "FAILED!"))
	if r.code == 0 || !strings.Contains(r.out, "rot-3: etcd is not healthy") || !strings.Contains(r.out, "Nothing was changed") {
		t.Errorf("rotation with a member down: exit %d\n%s", r.code, tail(r.out, 40))
	}
	if b, _ := os.ReadFile(filepath.Join(pki, "etcd-ca.pem")); !bytes.Equal(b, oldCA) {
		t.Errorf("pki/etcd-ca.pem changed by a refused rotation")
	}
	if _, err := os.Stat(filepath.Join(pki, "etcd-ca-next.pem")); err == nil {
		t.Errorf("a refused rotation made the next CA")
	}
	for i := 1; i <= 2; i++ {
		if now, _ := e.ssh(t, i, "systemctl show etcd -p ExecMainStartTimestampMonotonic --value"); now != started[i] {
			t.Errorf("host %d: etcd restarted by a refused rotation", i)
		}
	}
	if out, err := e.ssh(t, 3, "systemctl start etcd"); err != nil {
		t.Fatalf("start etcd on host 3: %v %s", err, out)
	}
	waitFor(t, "member 3 healthy again", 3*time.Minute, func() error {
		out, err := curlEtcd(pki, e.lab.Hosts()[2].Addr, "/health", "", true)
		if err != nil || !strings.Contains(out, `"health":"true"`) {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	saved := t.TempDir()
	for _, f := range []string{"etcd-client.pem", "etcd-client-key.pem", "etcd-ca.pem"} {
		b, _ := os.ReadFile(filepath.Join(pki, f))
		if err := os.WriteFile(filepath.Join(saved, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	w := &rotationWriter{pki: pki}
	for i := 1; i <= 3; i++ {
		w.endpoints = append(w.endpoints, "https://"+e.lab.Hosts()[i-1].Addr+":2379")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var n atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			w.write(n.Add(1))
		}
	}()
	start := time.Now()
	r = e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd-rotate-ca.yml"))
	took := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("rotation %s: %d writes, %d failed\n%s\n%s", took.Round(time.Second), w.ok.Load(), w.bad.Load(),
		grepLines(r.out, "PLAY ["), grepLines(r.out, "members healthy"))
	if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
		t.Fatalf("rotation: exit %d\n%s", r.code, tail(r.out, 80))
	}
	if w.bad.Load() != 0 || w.ok.Load() < 10 {
		t.Errorf("writes during the rotation: %d ok, %d failed (last: %s)", w.ok.Load(), w.bad.Load(), w.lastErr)
	}
	// Restarts, one member at a time, in each of the three steps.
	if c := strings.Count(r.out, "TASK [etcd : restart the member]"); c != 9 {
		t.Errorf("restart tasks: %d, want 9 (3 steps x 3 members)", c)
	}

	newCA, _ := os.ReadFile(filepath.Join(pki, "etcd-ca.pem"))
	if bytes.Equal(newCA, oldCA) || bytes.Count(newCA, []byte("BEGIN CERTIFICATE")) != 1 {
		t.Fatalf("pki/etcd-ca.pem after the rotation: old CA or not one certificate\n%s", newCA)
	}
	if _, err := os.Stat(filepath.Join(pki, "etcd-ca-next.pem")); err == nil {
		t.Errorf("etcd-ca-next.pem left behind")
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("rot-%d", i)
		if !certIssuedBy(t, filepath.Join(pki, "etcd-member-"+name+".pem"), filepath.Join(pki, "etcd-ca.pem")) {
			t.Errorf("%s's certificate is not from the new CA", name)
		}
		out, err := e.ssh(t, i, "cat /etc/etcd/ssl/ca.pem")
		if err != nil || strings.TrimSpace(out) != strings.TrimSpace(string(newCA)) {
			t.Errorf("host %d trusts %q, want the new CA alone (%v)", i, out, err)
		}
	}
	// Every acknowledged write is there.
	addr1 := e.lab.Hosts()[0].Addr
	if got := etcdCount(t, pki, addr1, "rotation/"); got != fmt.Sprint(w.ok.Load()) {
		t.Errorf("keys after the rotation: %s, want %d", got, w.ok.Load())
	}
	// The old client certificate (old CA) is refused now; the new one works.
	if out, err := curlEtcd(saved, addr1, "/health", "", true); err == nil && strings.Contains(out, `"health"`) {
		t.Errorf("old client certificate still accepted: %s", out)
	}
	// A run of etcd.yml afterwards finds every certificate current.
	r = e.play(t, ctx, "-i", inv, filepath.Join(work, "etcd.yml"))
	for i := 1; i <= 3; i++ {
		if rc := r.recap[fmt.Sprintf("rot-%d", i)]; r.code != 0 || rc.changed != 0 {
			t.Errorf("etcd.yml after the rotation: exit %d, rot-%d %+v\n%s", r.code, i, rc, tail(r.out, 40))
		}
	}
}
