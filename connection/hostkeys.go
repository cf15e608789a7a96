package connection

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key that is not known or does not match
// known_hosts. Retrying cannot fix it, so the dialer does not retry.
type HostKeyError struct {
	Host        string // inventory name
	Addr        string // host:port dialed
	KeyType     string
	Fingerprint string   // SHA256 fingerprint offered by the server
	Known       []string // "file:line SHA256:..." of the keys on record (changed key)
	Revoked     bool
	Files       []string
	// Offered is the server's host key types when none is of a type on
	// record (the key's type changed): the server never showed a key.
	Offered []string
}

func (e *HostKeyError) Error() string {
	switch {
	case len(e.Offered) > 0:
		return fmt.Sprintf("%s (%s): HOST KEY CHANGED: known_hosts has %s but the server offers only host keys of type %s; refusing to connect (possible man-in-the-middle; if the host was reinstalled, remove the old entry)",
			e.Host, e.Addr, strings.Join(e.Known, ", "), strings.Join(e.Offered, ", "))
	case e.Revoked:
		return fmt.Sprintf("%s (%s): host key %s %s is marked revoked in known_hosts; refusing to connect", e.Host, e.Addr, e.KeyType, e.Fingerprint)
	case len(e.Known) == 0:
		return fmt.Sprintf("%s (%s): host key %s %s is not in known_hosts (%s); verify it and add it, or accept new host keys explicitly",
			e.Host, e.Addr, e.KeyType, e.Fingerprint, strings.Join(e.Files, ", "))
	default:
		return fmt.Sprintf("%s (%s): HOST KEY CHANGED: the server offers %s %s but known_hosts has %s; refusing to connect (possible man-in-the-middle; if the host was reinstalled, remove the old entry)",
			e.Host, e.Addr, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "))
	}
}

// hostKeys checks server keys against known_hosts files.
type hostKeys struct {
	host   string
	files  []string
	accept bool
	cb     ssh.HostKeyCallback // nil when no file exists yet

	mu  sync.Mutex
	err error // the last refusal, kept because the handshake may reword it
}

func newHostKeys(host string, files []string, accept bool) (*hostKeys, error) {
	if len(files) == 0 {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("%s: no known_hosts file given and no home directory: %w", host, err)
		}
		files = []string{filepath.Join(home, ".ssh", "known_hosts")}
	}
	hk := &hostKeys{host: host, files: files, accept: accept}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: known_hosts: %w", host, err)
		}
	}
	if len(existing) > 0 {
		cb, err := knownhosts.New(existing...)
		if err != nil {
			return nil, fmt.Errorf("%s: known_hosts: %w", host, err)
		}
		hk.cb = cb
	}
	return hk, nil
}

// probeKey is a key no known_hosts line can hold; checking it makes
// knownhosts list every key on record for an address.
type probeKey struct{}

func (probeKey) Type() string                        { return "gokube-probe" }
func (probeKey) Marshal() []byte                     { return []byte("gokube-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// known lists the keys on record for addr as "file:line type fingerprint".
func (hk *hostKeys) known(addr string) []string {
	if hk.cb == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(hk.cb(addr, &net.TCPAddr{IP: net.IPv4zero, Port: 22}, probeKey{}), &ke) {
		return nil
	}
	var out []string
	for _, w := range ke.Want {
		out = append(out, fmt.Sprintf("%s:%d %s %s", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key)))
	}
	return out
}

// typeChanged turns a handshake that found no common host key algorithm
// into the host key error it is: known_hosts records keys for addr, the
// client asked for their types only (algorithms), and the server has none
// of them, so the host's key is not the one on record. Nil otherwise.
func (hk *hostKeys) typeChanged(addr string, err error) *HostKeyError {
	var ne *ssh.AlgorithmNegotiationError
	if !errors.As(err, &ne) || ne.What != "host key" {
		return nil
	}
	known := hk.known(addr)
	if len(known) == 0 {
		return nil
	}
	return &HostKeyError{Host: hk.host, Addr: addr, Known: known, Offered: ne.RequestedAlgorithms, Files: hk.files}
}

// algorithms lists the host key algorithms recorded for addr, so the
// client asks the server for a key type it can verify instead of failing
// with a mismatch on another type. Nil means no record: use the defaults.
func (hk *hostKeys) algorithms(addr string) []string {
	if hk.cb == nil {
		return nil
	}
	err := hk.cb(addr, &net.TCPAddr{IP: net.IPv4zero, Port: 22}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

func (hk *hostKeys) callback(hostport string, remote net.Addr, key ssh.PublicKey) error {
	err := hk.check(hostport, remote, key)
	if err != nil {
		hk.mu.Lock()
		hk.err = err
		hk.mu.Unlock()
	}
	return err
}

func (hk *hostKeys) lastErr() error {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	return hk.err
}

func (hk *hostKeys) check(hostport string, remote net.Addr, key ssh.PublicKey) error {
	kerr := &HostKeyError{Host: hk.host, Addr: hostport, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Files: hk.files}
	var err error = &knownhosts.KeyError{}
	if hk.cb != nil {
		err = hk.cb(hostport, remote, key)
	}
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		kerr.Revoked = true
		return kerr
	case errors.As(err, &ke) && len(ke.Want) > 0:
		for _, w := range ke.Want {
			kerr.Known = append(kerr.Known, fmt.Sprintf("%s:%d %s %s", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key)))
		}
		return kerr
	case errors.As(err, &ke):
		if !hk.accept {
			return kerr
		}
		if err := appendKnownHost(hk.files[0], hostport, key); err != nil {
			return fmt.Errorf("%s: accepting new host key: %w", hk.host, err)
		}
		return nil
	default:
		return err
	}
}

func appendKnownHost(file, hostport string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One write of one line: concurrent dials appending to the same file
	// do not interleave within a line.
	_, err = f.Write([]byte(knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
