package connection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestSSHHostKeys(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()

	// Unknown host: refused, with the fingerprint; not retried.
	cfg := env.config()
	cfg.KnownHosts = []string{filepath.Join(env.dir, "empty_known_hosts")}
	_, err := DialSSH(ctx, cfg)
	var hk *HostKeyError
	fp := ssh.FingerprintSHA256(env.srv.hostKeys[0].PublicKey())
	if !errors.As(err, &hk) || !IsUnreachable(err) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "testhost") {
		t.Fatalf("unknown host: %v", err)
	}
	// Accepted when asked, and written down for next time.
	cfg.AcceptNewHostKeys = true
	c, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg.AcceptNewHostKeys = false
	c, err = DialSSH(ctx, cfg)
	if err != nil {
		t.Fatalf("after accepting: %v", err)
	}
	c.Close()
	if st, _ := os.Stat(cfg.KnownHosts[0]); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode: %v", st)
	}

	// Changed key: always refused, even with AcceptNewHostKeys.
	other := newSigner(t, false)
	srv2 := startServer(t, nil, other)
	h, p := srv2.hostPort()
	cfg2 := env.config()
	cfg2.Addr, cfg2.Port = h, p
	cfg2.AcceptNewHostKeys = true
	kh := filepath.Join(env.dir, "kh2")
	addKnownHost(t, kh, srv2.addr, env.srv.hostKeys[0].PublicKey())
	cfg2.KnownHosts = []string{kh}
	_, err = DialSSH(ctx, cfg2)
	if !errors.As(err, &hk) || len(hk.Known) != 1 || !strings.Contains(err.Error(), ssh.FingerprintSHA256(other.PublicKey())) || !strings.Contains(err.Error(), "CHANGED") {
		t.Fatalf("changed key: %v", err)
	}
	if n := srv2.acceptCount(); n != 1 {
		t.Errorf("changed key: %d connection attempts, want 1", n)
	}
	t.Log(err)
}

// TestSSHHostKeyAlgorithms: the server has an ed25519 and an RSA key but
// known_hosts records only RSA; the client must ask for RSA.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	dir := t.TempDir()
	client, keyFile := newKeyFile(t, dir, "")
	rsaKey := newSigner(t, true)
	srv := startServer(t, client.PublicKey(), newSigner(t, false), rsaKey)
	kh := filepath.Join(dir, "known_hosts")
	addKnownHost(t, kh, srv.addr, rsaKey.PublicKey())
	h, p := srv.hostPort()
	cfg := SSHConfig{Host: "h", Addr: h, Port: p, User: "root", KeyFiles: []string{keyFile}, KnownHosts: []string{kh}}
	hks, _ := newHostKeys("h", cfg.KnownHosts, false)
	algos := hks.algorithms(srv.addr)
	if len(algos) == 0 || algos[0] != ssh.KeyAlgoRSASHA512 {
		t.Errorf("algorithms %v", algos)
	}
	c, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestSSHAuth(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	cfg := env.config()
	_, enc := newKeyFile(t, env.dir, "pass")
	cfg.KeyFiles = []string{enc}
	if _, err := DialSSH(ctx, cfg); !errors.Is(err, ErrPassphraseNeeded) || !strings.Contains(err.Error(), enc) {
		t.Errorf("encrypted key: %v", err)
	}
	// The right passphrase decrypts, but the server does not know that key:
	// an authentication failure, not retried.
	cfg.KeyPassphrase = "pass"
	before := env.srv.acceptCount()
	_, err := DialSSH(ctx, cfg)
	if !IsUnreachable(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong key: %v", err)
	}
	if n := env.srv.acceptCount() - before; n != 1 {
		t.Errorf("auth failure: %d connection attempts, want 1", n)
	}
	cfg.Password = "s3cret"
	c, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatalf("password: %v", err)
	}
	c.Close()
}

func TestSSHDialerAndJump(t *testing.T) {
	env := newTestEnv(t)
	c := env.dial(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(a, a); a.Close() }()
		}
	}()
	nc, err := c.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(nc, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "ping" {
		t.Errorf("forward: %q %v", buf, err)
	}
	nc.Close()

	// Jump: reach a second server through the first one's client.
	client2, key2 := newKeyFile(t, env.dir, "")
	srv2 := startServer(t, client2.PublicKey(), newSigner(t, false))
	addKnownHost(t, env.knownHosts, srv2.addr, srv2.hostKeys[0].PublicKey())
	h, p := srv2.hostPort()
	jump := env.config()
	cfg := SSHConfig{Host: "inner", Addr: h, Port: p, User: "root", KeyFiles: []string{key2}, KnownHosts: []string{env.knownHosts}, Jump: &jump}
	jc, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if out := run(t, jc, Request{Script: "echo via"}).Stdout; string(out) != "via\n" {
		t.Errorf("jump: %q", out)
	}
	if srv2.execCount() != 1 {
		t.Errorf("target server ran %d sessions", srv2.execCount())
	}
	if knownhosts.Normalize(srv2.addr) == "" {
		t.Fatal("normalize")
	}
}

// TestSSHCredentialErrors: every credential that cannot log in is
// UNREACHABLE (exit 4), named, and never retried: a missing key file, an
// encrypted key without its passphrase, a file that is not a key, no
// credentials at all, and a key the server refuses.
func TestSSHCredentialErrors(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	_, enc := newKeyFile(t, env.dir, "pass")
	notKey := filepath.Join(env.dir, "not-a-key")
	if err := os.WriteFile(notKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, wrong := newKeyFile(t, t.TempDir(), "")
	missing := filepath.Join(env.dir, "missing")
	t.Setenv("SSH_AUTH_SOCK", "")
	for _, c := range []struct {
		name, key, want string
	}{
		{"missing", missing, "private key: open " + missing},
		{"encrypted", enc, "private key " + enc + ": key is encrypted"},
		{"not a key", notKey, "private key " + notKey},
		{"none", "", "no SSH credentials"},
		{"refused", wrong, "authentication failed as \"root\""},
	} {
		cfg := env.config()
		cfg.KeyFiles = nil
		if c.key != "" {
			cfg.KeyFiles = []string{c.key}
		}
		before := env.srv.acceptCount()
		_, err := DialSSH(ctx, cfg)
		if !IsUnreachable(err) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), cfg.Host+": unreachable: ") {
			t.Errorf("%s: %v, want unreachable with %q", c.name, err, c.want)
		}
		if strings.Count(err.Error(), cfg.Host+":") != 1 {
			t.Errorf("%s: host named more than once: %v", c.name, err)
		}
		if n := env.srv.acceptCount() - before; c.name != "refused" && n != 0 || c.name == "refused" && n != 1 {
			t.Errorf("%s: %d connection attempts", c.name, n)
		}
	}
}

// TestSSHHostKeyTypeChanged: known_hosts records an RSA key, the server
// now has only an ed25519 key: the host key changed, said so (not "no
// common algorithm"), and not retried.
func TestSSHHostKeyTypeChanged(t *testing.T) {
	dir := t.TempDir()
	client, keyFile := newKeyFile(t, dir, "")
	srv := startServer(t, client.PublicKey(), newSigner(t, false))
	kh := filepath.Join(dir, "known_hosts")
	old := newSigner(t, true)
	addKnownHost(t, kh, srv.addr, old.PublicKey())
	h, p := srv.hostPort()
	cfg := SSHConfig{Host: "h", Addr: h, Port: p, User: "root", KeyFiles: []string{keyFile}, KnownHosts: []string{kh}, AcceptNewHostKeys: true}
	_, err := DialSSH(context.Background(), cfg)
	var hk *HostKeyError
	if !IsUnreachable(err) || !errors.As(err, &hk) || !strings.Contains(err.Error(), "HOST KEY CHANGED") ||
		!strings.Contains(err.Error(), ssh.FingerprintSHA256(old.PublicKey())) || !strings.Contains(err.Error(), "ssh-ed25519") ||
		strings.Contains(err.Error(), "no common algorithm") {
		t.Fatalf("type changed: %v", err)
	}
	if n := srv.acceptCount(); n != 1 {
		t.Errorf("%d connection attempts, want 1", n)
	}
}
