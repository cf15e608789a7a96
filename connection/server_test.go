package connection

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testServer is an in-process SSH server that runs "exec" requests with the
// local /bin/sh (as sshd does), serves the sftp subsystem and direct-tcpip
// forwards, so the real client code runs in go test without a lab.
type testServer struct {
	ln       net.Listener
	addr     string
	cfg      *ssh.ServerConfig
	hostKeys []ssh.Signer
	home     string // the SFTP working directory, like a login user's home

	mu       sync.Mutex
	conns    []net.Conn
	execs    int
	sessions int // session channels accepted
	accepts  int
	pings    int // keepalive requests
}

// testEnv bundles a server with a client key and known_hosts file.
type testEnv struct {
	srv        *testServer
	keyFile    string
	knownHosts string
	dir        string
}

func newSigner(t testing.TB, rsaKey bool) ssh.Signer {
	t.Helper()
	var s ssh.Signer
	var err error
	if rsaKey {
		k, gerr := rsa.GenerateKey(rand.Reader, 2048)
		if gerr != nil {
			t.Fatal(gerr)
		}
		s, err = ssh.NewSignerFromKey(k)
	} else {
		_, k, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		s, err = ssh.NewSignerFromKey(k)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t testing.TB, clientKey ssh.PublicKey, hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if clientKey != nil && string(k.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
		PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if string(pw) == "s3cret" {
				return nil, nil
			}
			return nil, errors.New("bad password")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, addr: ln.Addr().String(), cfg: cfg, hostKeys: hostKeys, home: t.TempDir()}
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.killConns() })
	return s
}

// newTestEnv starts a server with an ed25519 host key and writes a client
// key and a known_hosts file that trusts the server.
func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	client, keyFile := newKeyFile(t, dir, "")
	srv := startServer(t, client.PublicKey(), newSigner(t, false))
	env := &testEnv{srv: srv, dir: dir, keyFile: keyFile, knownHosts: filepath.Join(dir, "known_hosts")}
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKeys[0].PublicKey())
	if err := os.WriteFile(env.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return env
}

// newKeyFile writes a fresh ed25519 client key in OpenSSH format,
// encrypted when passphrase is set.
func newKeyFile(t testing.TB, dir, passphrase string) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "id_ed25519_*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, f.Name()
}

func (s *testServer) hostPort() (string, int) {
	h, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

func (s *testServer) killConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *testServer) acceptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

func (s *testServer) pingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

func (s *testServer) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func (s *testServer) execCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.execs
}

func (s *testServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.accepts++
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *testServer) handle(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go func() {
		for r := range reqs {
			if r.Type == "keepalive@openssh.com" {
				s.mu.Lock()
				s.pings++
				s.mu.Unlock()
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.sessions++
			s.mu.Unlock()
			go s.session(ch, creqs)
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.ConnectionFailed, "bad payload")
				continue
			}
			tc, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				tc.Close()
				continue
			}
			go ssh.DiscardRequests(creqs)
			go func() { _, _ = io.Copy(tc, ch); tc.(*net.TCPConn).CloseWrite() }()
			go func() { _, _ = io.Copy(ch, tc); ch.Close(); tc.Close() }()
		default:
			nc.Reject(ssh.UnknownChannelType, "no")
		}
	}
}

func (s *testServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var proc *os.Process
	var mu sync.Mutex
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			s.mu.Lock()
			s.execs++
			s.mu.Unlock()
			cmd := exec.Command("/bin/sh", "-c", p.Command)
			// Like sshd: the session's process is a session leader.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Stdout = ch
			cmd.Stderr = ch.Stderr()
			stdin, err := cmd.StdinPipe()
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			if err := cmd.Start(); err != nil {
				req.Reply(false, nil)
				ch.Close()
				continue
			}
			mu.Lock()
			proc = cmd.Process
			mu.Unlock()
			req.Reply(true, nil)
			go func() { _, _ = io.Copy(stdin, ch); stdin.Close() }()
			go func() {
				err := cmd.Wait()
				rc := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					rc = ee.ExitCode()
				}
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], uint32(rc))
				_, _ = ch.SendRequest("exit-status", false, b[:])
				ch.Close()
			}()
		case "subsystem":
			var p struct{ Name string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || p.Name != "sftp" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.home))
			if err != nil {
				ch.Close()
				continue
			}
			go func() { _ = srv.Serve(); ch.Close() }()
		case "signal":
			var p struct{ Signal string }
			_ = ssh.Unmarshal(req.Payload, &p)
			mu.Lock()
			if proc != nil && p.Signal == "TERM" {
				_ = proc.Signal(syscall.SIGTERM)
			}
			mu.Unlock()
			req.Reply(true, nil)
		default:
			req.Reply(false, nil)
		}
	}
}

// dial connects to the env's server as root with the test key.
func (e *testEnv) config() SSHConfig {
	h, p := e.srv.hostPort()
	return SSHConfig{Host: "testhost", Addr: h, Port: p, User: "root", KeyFiles: []string{e.keyFile}, KnownHosts: []string{e.knownHosts}, Timeout: 5 * time.Second, KeepAlive: time.Minute}
}

func (e *testEnv) dial(t testing.TB) *sshConn {
	t.Helper()
	c, err := DialSSH(context.Background(), e.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*sshConn)
}
