package connection

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
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
	wire   atomic.Int64  // bytes on this host's socket (WireBytes)
	done   chan struct{} // closed when the SSH connection ends
	stop   chan struct{} // closed by Close
	once   sync.Once

	mu     sync.Mutex
	shells map[string]*shellSession
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
}

// DialSSH connects to cfg.Addr and authenticates. It retries a few times
// with backoff, except on failures retrying cannot fix (authentication,
// host keys). Connection failures are *UnreachableError.
func DialSSH(ctx context.Context, cfg SSHConfig) (Conn, error) {
	c, err := dialSSH(ctx, cfg)
	if err != nil {
		return nil, err
	}
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
	creds, closeAgent, err := loadCredentials(cfg)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	hk, err := newHostKeys(cfg.Host, cfg.KnownHosts, cfg.AcceptNewHostKeys)
	if err != nil {
		return nil, err
	}
	var jump *sshConn
	if cfg.Jump != nil {
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
		if jump, err = dialSSH(ctx, jc); err != nil {
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

func dialOnce(ctx context.Context, cfg SSHConfig, hostport string, base *ssh.ClientConfig, creds *credentials, jump *sshConn) (*sshConn, error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := &sshConn{cfg: cfg, jump: jump, done: make(chan struct{}), stop: make(chan struct{}), shells: map[string]*shellSession{}, runSem: make(chan struct{}, 1)}
	var raw net.Conn
	var err error
	if jump != nil {
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

// credentials are loaded once per DialSSH; methods builds the auth
// methods of one attempt, counting the round trips they make.
type credentials struct {
	signers  []ssh.Signer
	password string
}

func loadCredentials(cfg SSHConfig) (*credentials, func(), error) {
	cr := &credentials{password: cfg.Password}
	for _, f := range cfg.KeyFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: private key: %w", cfg.Host, err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			if cfg.KeyPassphrase == "" {
				return nil, nil, fmt.Errorf("%s: private key %s: %w (or load the key into ssh-agent)", cfg.Host, f, ErrPassphraseNeeded)
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(cfg.KeyPassphrase))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: private key %s: %w", cfg.Host, f, err)
		}
		cr.signers = append(cr.signers, s)
	}
	closeAgent := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			// Agent signers sign through this connection during the
			// handshake; it is closed once the dial is over.
			if as, err := agent.NewClient(ac).Signers(); err == nil {
				cr.signers = append(cr.signers, as...)
			}
			closeAgent = func() { ac.Close() }
		}
	}
	if len(cr.signers) == 0 && cr.password == "" {
		closeAgent()
		return nil, nil, fmt.Errorf("%s: no SSH credentials: give a private key, a password, or run ssh-agent", cfg.Host)
	}
	return cr, closeAgent, nil
}

// methods returns the auth methods for one attempt. The client asks the
// server about each key (one round trip, on the first PublicKey call)
// and signs with the accepted one (one more), so counting those
// calls counts authentication round trips exactly.
func (cr *credentials) methods(rt *atomic.Int64) []ssh.AuthMethod {
	var auth []ssh.AuthMethod
	if len(cr.signers) > 0 {
		counted := make([]ssh.Signer, len(cr.signers))
		for i, s := range cr.signers {
			counted[i] = countSigner(s, rt)
		}
		auth = append(auth, ssh.PublicKeys(counted...))
	}
	if pw := cr.password; pw != "" {
		auth = append(auth,
			ssh.PasswordCallback(func() (string, error) {
				rt.Add(1)
				return pw, nil
			}),
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				rt.Add(1)
				ans := make([]string, len(qs))
				for i := range ans {
					ans[i] = pw
				}
				return ans, nil
			}))
	}
	return auth
}

// The wrappers keep the signer's interface level (plain, algorithm,
// multi-algorithm) because the client picks signature algorithms by it.
type countedSigner struct {
	ssh.Signer
	rt      *atomic.Int64
	queried *atomic.Bool // the client reads the key more than once per query
}

func (s countedSigner) PublicKey() ssh.PublicKey {
	if !s.queried.Swap(true) {
		s.rt.Add(1)
	}
	return s.Signer.PublicKey()
}

func (s countedSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s.rt.Add(1)
	return s.Signer.Sign(r, data)
}

type countedAlgSigner struct {
	countedSigner
	as ssh.AlgorithmSigner
}

func (s countedAlgSigner) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	s.rt.Add(1)
	return s.as.SignWithAlgorithm(r, data, algo)
}

type countedMultiSigner struct {
	countedAlgSigner
	algos []string
}

func (s countedMultiSigner) Algorithms() []string { return s.algos }

func countSigner(s ssh.Signer, rt *atomic.Int64) ssh.Signer {
	cs := countedSigner{Signer: s, rt: rt, queried: new(atomic.Bool)}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return cs
	}
	cas := countedAlgSigner{countedSigner: cs, as: as}
	if ms, ok := s.(ssh.MultiAlgorithmSigner); ok {
		return countedMultiSigner{countedAlgSigner: cas, algos: ms.Algorithms()}
	}
	return cas
}

// keepalive closes a connection whose peer stopped answering, so that
// every pending read fails instead of hanging.
func (c *sshConn) keepalive() {
	t := time.NewTicker(c.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.stop:
			return
		case <-t.C:
		}
		if !c.ping(2 * c.cfg.KeepAlive) {
			c.client.Close()
			return
		}
	}
}

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

// shellSession is one long-lived /bin/sh on the host.
type shellSession struct {
	ch      ssh.Channel
	r       *bufio.Reader
	pending []byte // preamble (and sudo password) sent with the first frame
	stderr  *tailBuffer
	errDone chan struct{} // closed when stderr reached EOF
	dead    atomic.Bool
}

// stderrTail is the end of the shell's own stderr (sudo's complaints),
// waiting briefly for it to be complete.
func (s *shellSession) stderrTail() string {
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.errDone:
	case <-t.C:
	}
	return strings.TrimSpace(s.stderr.String())
}

func (s *shellSession) close() {
	s.dead.Store(true)
	s.ch.Close()
}

// kill ends the session and what runs in it: TERM reaches the shell (sudo
// relays it), whose trap kills the script's process group.
func (s *shellSession) kill() {
	s.dead.Store(true)
	_, _ = s.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{"TERM"}))
	s.ch.Close()
}

func shellKey(become bool, user string) string {
	if !become {
		return ""
	}
	if user == "" {
		user = "root"
	}
	return user
}

// shellCommand is the session's command and what must be written before
// the preamble.
func (c *sshConn) shellCommand(key string) (string, []byte) {
	if key == "" || (key == "root" && c.cfg.User == "root") || key == c.cfg.User {
		return "exec /bin/sh", nil
	}
	if c.cfg.BecomePassword == "" {
		return "exec sudo -H -n -u " + shQuote(key) + " -- /bin/sh", nil
	}
	// The password is the first line of the session's stdin, read by an
	// outer shell into its environment; sudo gets it from an askpass
	// program that is printenv: sudo runs the askpass with the prompt as
	// its argument, so the prompt "GK_PW" makes it print the password.
	// Unlike sudo -S this never lets sudo read the frames that follow as
	// password attempts, whether or not it asks (NOPASSWD, cached
	// credentials), and no secret touches the disk or a command line.
	inner := "unset GK_PW SUDO_ASKPASS; exec /bin/sh"
	outer := `IFS= read -r GK_PW || exit 1; export GK_PW
SUDO_ASKPASS=$(command -v printenv) || { echo "gokube: printenv not found for sudo askpass" >&2; exit 1; }
export SUDO_ASKPASS
exec sudo -A -H -p GK_PW -u ` + shQuote(key) + " -- /bin/sh -c " + shQuote(inner)
	return "exec /bin/sh -c " + shQuote(outer), []byte(c.cfg.BecomePassword + "\n")
}

// openShell opens a session channel and starts the shell without waiting
// for the exec reply: the first frame follows at once, so opening costs
// the channel-open round trip only.
func (c *sshConn) openShell(ctx context.Context, key string) (*shellSession, error) {
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	got := make(chan opened, 1)
	go func() {
		ch, reqs, err := c.client.OpenChannel("session", nil)
		got <- opened{ch, reqs, err}
	}()
	var o opened
	select {
	case o = <-got:
	case <-ctx.Done():
		go func() {
			if o := <-got; o.err == nil {
				o.ch.Close()
				go ssh.DiscardRequests(o.reqs)
			}
		}()
		return nil, ctx.Err()
	}
	c.rt.Add(1)
	if o.err != nil {
		if c.lost() {
			return nil, c.unreachable(o.err)
		}
		return nil, fmt.Errorf("%s: open session: %w", c.cfg.Host, o.err)
	}
	go ssh.DiscardRequests(o.reqs)
	cmd, prefix := c.shellCommand(key)
	if _, err := o.ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{cmd})); err != nil {
		o.ch.Close()
		return nil, c.unreachable(err)
	}
	s := &shellSession{
		ch:      o.ch,
		r:       bufio.NewReaderSize(o.ch, 64<<10),
		pending: append(prefix, shellPreamble...),
		stderr:  &tailBuffer{max: 4 << 10},
		errDone: make(chan struct{}),
	}
	go func() {
		_, _ = io.Copy(s.stderr, o.ch.Stderr())
		close(s.errDone)
	}()
	return s, nil
}

func (c *sshConn) shell(ctx context.Context, become bool, user string) (*shellSession, error) {
	key := shellKey(become, user)
	c.mu.Lock()
	s := c.shells[key]
	c.mu.Unlock()
	if s != nil && !s.dead.Load() {
		return s, nil
	}
	s, err := c.openShell(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.shells[key] = s
	c.mu.Unlock()
	return s, nil
}

func (c *sshConn) Run(ctx context.Context, req Request) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if c.closed() {
		return Result{}, fmt.Errorf("%s: connection closed", c.cfg.Host)
	}
	marker, frame, err := frameFor(req)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", c.cfg.Host, err)
	}
	select {
	case c.runSem <- struct{}{}:
		defer func() { <-c.runSem }()
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	s, err := c.shell(ctx, req.Become, req.BecomeUser)
	if err != nil {
		return Result{}, err
	}
	if s.pending != nil {
		frame = append(s.pending, frame...)
		s.pending = nil
	}
	type answer struct {
		res Result
		err error
	}
	got := make(chan answer, 1)
	c.rt.Add(1)
	go func() {
		if _, err := s.ch.Write(frame); err != nil {
			got <- answer{err: err}
			return
		}
		res, err := readFrame(s.r, marker)
		got <- answer{res, err}
	}()
	select {
	case a := <-got:
		if a.err == nil {
			return a.res, nil
		}
		s.close()
		if c.closed() {
			return Result{}, fmt.Errorf("%s: connection closed", c.cfg.Host)
		}
		if c.lost() {
			return Result{}, c.unreachable(a.err)
		}
		if tail := s.stderrTail(); tail != "" {
			return Result{}, fmt.Errorf("%s: shell%s ended: %s", c.cfg.Host, becomeNote(req.Become, req.BecomeUser), tail)
		}
		return Result{}, fmt.Errorf("%s: shell%s: %w", c.cfg.Host, becomeNote(req.Become, req.BecomeUser), a.err)
	// In the two cases below the exchange goroutine is not waited for:
	// closing a channel does not unblock its reader until the peer
	// confirms, and a silent peer never does. The session is dead, so the
	// goroutine's late answer goes nowhere.
	case <-ctx.Done():
		s.kill()
		return Result{}, ctx.Err()
	case <-c.done:
		s.close()
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, c.unreachable(errors.New("connection lost"))
	}
}

func (c *sshConn) Get(ctx context.Context, path string, become bool) ([]byte, error) {
	req := Request{Script: getScript(path), Become: become, ReadOnly: true}
	res, err := c.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	return getResult(c.cfg.Host, path, req, res)
}

func (c *sshConn) Put(ctx context.Context, up Upload) error {
	content := up.Content
	if content == nil {
		content = bytes.NewReader(nil)
	}
	head, err := io.ReadAll(io.LimitReader(content, SmallPutLimit+1))
	if err != nil {
		return fmt.Errorf("%s: put %s: reading content: %w", c.cfg.Host, up.Path, err)
	}
	if len(head) <= SmallPutLimit {
		req := Request{Script: putScript(up, ""), Stdin: head, Become: up.Become, BecomeUser: up.BecomeUser}
		res, err := c.Run(ctx, req)
		if err != nil {
			return err
		}
		if err := CheckResult(c.cfg.Host, req, res); err != nil {
			return fmt.Errorf("put %s: %w", up.Path, err)
		}
		return nil
	}
	tmp, err := c.upload(ctx, io.MultiReader(bytes.NewReader(head), content))
	if err != nil {
		return err
	}
	req := Request{Script: putScript(up, tmp), Become: up.Become, BecomeUser: up.BecomeUser}
	res, err := c.Run(ctx, req)
	if err == nil {
		err = CheckResult(c.cfg.Host, req, res)
	}
	if err != nil {
		// The script removes the upload itself; this is for the failures.
		if cl, _, err := c.sftpClient(); err == nil {
			_ = cl.Remove(tmp)
		}
		return fmt.Errorf("put %s: %w", up.Path, err)
	}
	return nil
}

// upload copies r to a private temp file in the login user's home over
// SFTP and returns its path.
func (c *sshConn) upload(ctx context.Context, r io.Reader) (string, error) {
	type answer struct {
		path string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		p, err := c.sftpUpload(r)
		got <- answer{p, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			if c.lost() {
				return "", c.unreachable(a.err)
			}
			return "", fmt.Errorf("%s: upload: %w", c.cfg.Host, a.err)
		}
		return a.path, nil
	case <-ctx.Done():
		// Closing the SFTP channel aborts the transfer at once. The
		// goroutine is not waited for: it may be blocked reading the
		// caller's content; it cleans up under sftpMu when it returns.
		c.abortSFTP()
		c.sftpMu.Lock()
		if c.sftp != nil {
			c.sftp.Close()
			c.sftp = nil
		}
		c.sftpMu.Unlock()
		return "", ctx.Err()
	}
}

func (c *sshConn) abortSFTP() {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.sftpCh != nil {
		c.sftpCh.Close()
		c.sftpCh = nil
	}
}

// sftpClient returns the host's SFTP client, starting it on first use.
func (c *sshConn) sftpClient() (*sftp.Client, string, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp != nil {
		return c.sftp, c.sftpHome, nil
	}
	ch, reqs, err := c.client.OpenChannel("session", nil)
	if err != nil {
		return nil, "", err
	}
	c.rt.Add(1)
	go ssh.DiscardRequests(reqs)
	c.abortMu.Lock()
	c.sftpCh = ch
	c.abortMu.Unlock()
	// Pipelined like the shell: the subsystem request does not wait for
	// its reply; the SFTP version exchange follows at once.
	if _, err := ch.SendRequest("subsystem", false, ssh.Marshal(struct{ Name string }{"sftp"})); err != nil {
		c.abortSFTP()
		return nil, "", err
	}
	cl, err := sftp.NewClientPipe(ch, ch, sftp.UseConcurrentWrites(true))
	if err != nil {
		c.abortSFTP()
		return nil, "", err
	}
	c.rt.Add(1)
	home, err := cl.RealPath(".")
	if err != nil {
		cl.Close()
		c.abortSFTP()
		return nil, "", err
	}
	c.rt.Add(1)
	c.sftp, c.sftpHome = cl, home
	return cl, home, nil
}

// dropSFTP forgets cl after a failure (it may be an aborted client), so
// the next upload starts a fresh one.
func (c *sshConn) dropSFTP(cl *sftp.Client) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp == cl {
		c.sftp = nil
		cl.Close()
		c.abortSFTP()
	}
}

func (c *sshConn) sftpUpload(r io.Reader) (string, error) {
	cl, home, err := c.sftpClient()
	if err != nil {
		return "", err
	}
	tmp := strings.TrimSuffix(home, "/") + "/.gokube-upload-" + newMarker()[3:]
	if err := c.sftpWrite(cl, tmp, r); err != nil {
		if cl.Remove(tmp) != nil {
			// An aborted client cannot remove its partial upload; a fresh
			// one can (a few round trips, only after a cancellation).
			c.dropSFTP(cl)
			if ncl, _, nerr := c.sftpClient(); nerr == nil {
				_ = ncl.Remove(tmp)
			}
		}
		c.dropSFTP(cl)
		return "", err
	}
	return tmp, nil
}

func (c *sshConn) sftpWrite(cl *sftp.Client, tmp string, r io.Reader) error {
	f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	c.rt.Add(1)
	// Private before any content arrives: uploads may be secrets.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	c.rt.Add(1)
	n, err := f.ReadFrom(r)
	c.rt.Add((n + sftpWindow - 1) / sftpWindow)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	c.rt.Add(1)
	return err
}

// DialContext implements Dialer: a direct-tcpip channel to addr as seen
// from the host.
func (c *sshConn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	c.rt.Add(1)
	if err != nil {
		if ctx.Err() == nil && c.lost() {
			return nil, c.unreachable(err)
		}
		return nil, fmt.Errorf("%s: forward to %s: %w", c.cfg.Host, addr, err)
	}
	return conn, nil
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
