package connection

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SSHConfig says how to reach one host.
type SSHConfig struct {
	Host              string // inventory name (for messages)
	Addr              string // host or IP
	Port              int    // default 22
	User              string
	KeyFiles          []string // private keys; the agent is used too when SSH_AUTH_SOCK is set
	KeyPassphrase     string   // for encrypted key files
	Password          string   // password authentication, only when set
	KnownHosts        []string // default ~/.ssh/known_hosts
	AcceptNewHostKeys bool     // unknown hosts are added to KnownHosts[0]; changed keys are always refused
	BecomePassword    string   // sudo password; empty means sudo -n
	Jump              *SSHConfig
	Timeout           time.Duration // dial timeout (default 10s)

	// Lock, when set, is the run's per-host lock, taken by the first
	// shell the connection opens, and by its first become shell (see
	// RunLock).
	Lock *RunLock

	// KeepAlive is the interval of keepalive requests (default 5s); a
	// connection that does not answer within two intervals is closed.
	KeepAlive time.Duration
}

// ErrPassphraseNeeded is wrapped by DialSSH's error when a key file is
// encrypted and SSHConfig.KeyPassphrase is empty, so a CLI can prompt.
var ErrPassphraseNeeded = errors.New("key is encrypted: a passphrase is needed")

// SmallPutLimit is the largest content Put sends through the shell; larger
// files go over SFTP.
const SmallPutLimit = 256 << 10

const (
	dialAttempts = 3
	// sftpWindow approximates the bytes pkg/sftp keeps in flight (64
	// concurrent 32 KiB writes): one round trip per window.
	sftpWindow = 64 * 32 << 10
)

type sshConn struct {
	cfg    SSHConfig
	client *ssh.Client
	jump   *sshConn
	rt     atomic.Int64
	wire   atomic.Int64 // bytes on this host's socket (WireBytes)
	// busy counts what waits on the connection (a run, an upload, an
	// open forward, a jump host's target): the keepalive pings an idle
	// connection less often.
	busy atomic.Int32
	done chan struct{} // closed when the SSH connection ends
	stop chan struct{} // closed by Close
	once sync.Once

	mu     sync.Mutex
	shells map[string]*shellSession
	// lockShell and userLockShell are the shells that took the root lock
	// and the login's per-user lock (Lock set); lockErr is the refusal
	// once a shell was refused one.
	lockShell     *shellSession
	userLockShell *shellSession
	lockErr       error
	// runSem serializes Runs: a shell carries one frame at a time. The
	// executor never overlaps a host's tasks, but a delegated task might.
	runSem chan struct{}

	// sftpMu guards starting the SFTP client (transfers share it without
	// the lock); abortMu guards sftpCh so a cancellation can close the
	// channel under a running transfer.
	sftpMu   sync.Mutex
	sftp     *sftp.Client
	sftpHome string
	abortMu  sync.Mutex
	sftpCh   ssh.Channel

	// pre is a session channel opened as soon as the connection is up
	// (preopen), taken by the first shell (under mu): sshd sets a session
	// up (PAM, ~100 ms on a lab host) while the executor renders the first
	// probe batch, instead of after.
	pre <-chan openedChannel
}

// openedChannel is a session channel being opened: its requests are
// already discarded (a channel's requests must be read or the connection
// stalls).
type openedChannel struct {
	ch  ssh.Channel
	err error
}

// openSession opens a session channel in the background.
func (c *sshConn) openSession() <-chan openedChannel {
	got := make(chan openedChannel, 1)
	go func() {
		ch, reqs, err := c.client.OpenChannel("session", nil)
		if err == nil {
			go ssh.DiscardRequests(reqs)
		}
		got <- openedChannel{ch, err}
	}()
	return got
}

// DialSSH connects to cfg.Addr and authenticates. It retries a few times
// with backoff, except on failures retrying cannot fix (authentication,
// host keys). Connection failures are *UnreachableError.
func DialSSH(ctx context.Context, cfg SSHConfig) (Conn, error) {
	c, err := dialSSH(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Every user of a connection runs a shell first; a jump host's
	// connection (dialSSH's own) only carries the target's.
	c.pre = c.openSession()
	return c, nil
}

func (cfg *SSHConfig) setDefaults() {
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 5 * time.Second
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Addr
	}
	if cfg.User == "" {
		if u, err := user.Current(); err == nil {
			cfg.User = u.Username
		}
	}
}

func dialSSH(ctx context.Context, cfg SSHConfig) (*sshConn, error) {
	cfg.setDefaults()
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%s: no address to connect to", cfg.Host)
	}
	if strings.ContainsAny(cfg.BecomePassword, "\r\n") {
		return nil, fmt.Errorf("%s: become password must not contain a newline", cfg.Host)
	}
	// Credentials that cannot work make the host unreachable, as a key the
	// server refuses does: the same exit code (4) for every "cannot log in".
	creds, closeAgent, err := loadCredentials(cfg)
	if err != nil {
		return nil, &UnreachableError{Host: cfg.Host, Err: err}
	}
	defer closeAgent()
	hk, err := newHostKeys(cfg.Host, cfg.KnownHosts, cfg.AcceptNewHostKeys)
	if err != nil {
		return nil, err
	}
	var jump *sshConn
	if cfg.Jump != nil {
		if jump, err = dialSSH(ctx, jumpConfig(cfg)); err != nil {
			return nil, err
		}
	}
	hostport := net.JoinHostPort(cfg.Addr, strconv.Itoa(cfg.Port))
	ccfg := &ssh.ClientConfig{
		User:              cfg.User,
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms(hostport),
		Timeout:           cfg.Timeout,
	}
	var lastErr error
	for attempt := 0; attempt < dialAttempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(attempt*attempt) * 500 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				if jump != nil {
					jump.Close()
				}
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		c, err := dialOnce(ctx, cfg, hostport, ccfg, creds, jump)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			if jump != nil {
				jump.Close()
			}
			return nil, ctx.Err()
		}
		if hkErr := hk.lastErr(); hkErr != nil {
			lastErr = hkErr
			break
		}
		if kerr := hk.typeChanged(hostport, err); kerr != nil {
			lastErr = kerr
			break
		}
		lastErr = err
		if strings.Contains(err.Error(), "unable to authenticate") {
			lastErr = fmt.Errorf("authentication failed as %q: %w", cfg.User, err)
			break
		}
		// A timeout already waited the whole dial timeout: a host that is
		// off or cut off would only multiply it. Refused or reset
		// connections (sshd restarting) are worth another try.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	if jump != nil {
		jump.Close()
	}
	return nil, &UnreachableError{Host: cfg.Host, Err: lastErr}
}

// jumpConfig is cfg.Jump with what it leaves unset taken from cfg: the
// jump host is checked against the same known_hosts and reached with the
// same keys and timeout unless it says otherwise.
func jumpConfig(cfg SSHConfig) SSHConfig {
	jc := *cfg.Jump
	if len(jc.KnownHosts) == 0 {
		jc.KnownHosts = cfg.KnownHosts
		jc.AcceptNewHostKeys = cfg.AcceptNewHostKeys
	}
	if len(jc.KeyFiles) == 0 {
		jc.KeyFiles, jc.KeyPassphrase = cfg.KeyFiles, cfg.KeyPassphrase
	}
	if jc.Timeout == 0 {
		jc.Timeout = cfg.Timeout
	}
	if jc.Host == "" {
		jc.Host = cfg.Host + " via jump " + jc.Addr
	}
	return jc
}

func dialOnce(ctx context.Context, cfg SSHConfig, hostport string, base *ssh.ClientConfig, creds *credentials, jump *sshConn) (*sshConn, error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := &sshConn{cfg: cfg, jump: jump, done: make(chan struct{}), stop: make(chan struct{}), shells: map[string]*shellSession{}, runSem: make(chan struct{}, 1)}
	var raw net.Conn
	var err error
	if jump != nil {
		// The target's connection rides on the jump host's for as long
		// as both live (the target's Close closes the jump host's).
		jump.busy.Add(1)
		raw, err = jump.client.DialContext(dctx, "tcp", hostport)
	} else {
		var d net.Dialer
		raw, err = d.DialContext(dctx, "tcp", hostport)
	}
	if err != nil {
		return nil, err
	}
	raw = countingConn{Conn: raw, n: &c.wire}
	// Round trips of the handshake: TCP connect (or the jump host's
	// channel open), version and KEXINIT, key exchange, service request,
	// the "none" auth probe the client always starts with, then what the
	// auth methods count.
	c.rt.Add(5)
	ccfg := *base
	ccfg.Auth = creds.methods(&c.rt)
	// The handshake does not take a context; a deadline on the socket
	// bounds it, and cancellation closes the socket.
	_ = raw.SetDeadline(time.Now().Add(cfg.Timeout))
	stopWatch := context.AfterFunc(dctx, func() { raw.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(raw, hostport, &ccfg)
	stopWatch()
	if err != nil {
		raw.Close()
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("SSH handshake with %s timed out after %v: %w", hostport, cfg.Timeout, context.DeadlineExceeded)
		}
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	c.client = ssh.NewClient(sc, chans, reqs)
	go func() {
		_ = c.client.Wait()
		close(c.done)
	}()
	go c.keepalive()
	return c, nil
}

// idlePingEvery is how many keepalive intervals an idle connection goes
// between pings (60 s by default): nothing waits on it, so a dead peer is
// found by the pings of its next use, and a ping a minute keeps state in
// NATs and firewalls. Every connection of a run stays open for the whole
// run, most of them idle while --forks others work: pinging each every
// 5 s was ~20% of gokube's CPU in a 1000-host run (issue 14).
const idlePingEvery = 12

// keepalive closes a connection whose peer stopped answering, so that
// every pending read fails instead of hanging.
func (c *sshConn) keepalive() {
	t := time.NewTicker(c.cfg.KeepAlive)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-c.done:
			return
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.busy.Load() == 0 {
			if idle++; idle < idlePingEvery {
				continue
			}
		}
		idle = 0
		if !c.ping(max(2*c.cfg.KeepAlive, minPingWait)) {
			c.client.Close()
			return
		}
	}
}

// minPingWait is the least time a keepalive's answer is waited for: a
// busy control machine's own lag (tests use a 10 ms interval, and a loaded
// CI machine once took longer to answer in-process) is not a lost peer.
const minPingWait = 2 * time.Second

// ping reports whether the server answers a keepalive within d.
func (c *sshConn) ping(d time.Duration) bool {
	ok := make(chan bool, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		ok <- err == nil
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ok:
		return r
	case <-t.C:
		return false
	case <-c.done:
		return false
	}
}

func (c *sshConn) Host() string { return c.cfg.Host }

// WireBytes implements WireCounter: the bytes sent and received on this
// host's connection, handshake included.
func (c *sshConn) WireBytes() int64 { return c.wire.Load() }

// RoundTrips includes the jump host's handshake when there is one.
func (c *sshConn) RoundTrips() int64 {
	n := c.rt.Load()
	if c.jump != nil {
		n += c.jump.RoundTrips()
	}
	return n
}

func (c *sshConn) Close() error {
	c.once.Do(func() { close(c.stop) })
	c.mu.Lock()
	for k, s := range c.shells {
		s.close()
		delete(c.shells, k)
	}
	c.mu.Unlock()
	c.abortSFTP()
	err := c.client.Close()
	if c.jump != nil {
		c.jump.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (c *sshConn) closed() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (c *sshConn) unreachable(err error) error {
	return &UnreachableError{Host: c.cfg.Host, Err: err}
}

// lost decides, after a failed exchange, whether the connection itself is
// gone (the host is unreachable) or only the shell ended.
func (c *sshConn) lost() bool {
	select {
	case <-c.done:
		return true
	default:
	}
	if c.ping(c.cfg.KeepAlive) {
		return false
	}
	c.client.Close()
	return true
}

// DialContext implements Dialer: a direct-tcpip channel to addr as seen
// from the host.
func (c *sshConn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.forward(ctx, network, addr)
	c.rt.Add(1)
	if err != nil {
		if ctx.Err() == nil && c.lost() {
			return nil, c.unreachable(err)
		}
		return nil, fmt.Errorf("%s: forward to %s: %w", c.cfg.Host, addr, err)
	}
	return conn, nil
}

// forward opens a direct-tcpip channel, counted busy until closed.
func (c *sshConn) forward(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.busy.Add(1)
	return &busyConn{Conn: conn, c: c}, nil
}

// busyConn is a forward that keeps its connection busy until closed.
type busyConn struct {
	net.Conn
	c    *sshConn
	once sync.Once
}

func (b *busyConn) Close() error {
	b.once.Do(func() { b.c.busy.Add(-1) })
	return b.Conn.Close()
}

// DialAll implements BatchDialer: one direct-tcpip channel per address, the
// opens sent together (one goroutine each; the SSH transport writes them
// back to back) and awaited together: one round trip.
func (c *sshConn) DialAll(ctx context.Context, network string, addrs []string) ([]net.Conn, []error) {
	conns, errs := make([]net.Conn, len(addrs)), make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = c.forward(ctx, network, a)
		}()
	}
	wg.Wait()
	c.rt.Add(1)
	lost, asked := false, false
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() == nil && !asked {
			// One keepalive tells for the whole batch whether the
			// connection is gone or only some addresses refused.
			lost, asked = c.lost(), true
		}
		if lost {
			errs[i] = c.unreachable(err)
			continue
		}
		errs[i] = fmt.Errorf("%s: forward to %s: %w", c.cfg.Host, addrs[i], err)
	}
	return conns, errs
}
