package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sync"
	"time"

	"gokube/connection"
	"gokube/inventory"
)

// connPool dials each host once per run and keeps the connection.
type connPool struct {
	r  *run
	mu sync.Mutex
	m  map[string]*pooled
}

type pooled struct {
	// use serialises tasks on one connection: a host's own tasks and tasks
	// delegated to it from other hosts (a Conn serves one goroutine).
	use  sync.Mutex
	once sync.Once
	conn connection.Conn
	dry  connection.Conn
	err  error
}

func newConnPool(r *run) *connPool { return &connPool{r: r, m: map[string]*pooled{}} }

func (p *connPool) get(ctx context.Context, host string, check bool) (connection.Conn, error) {
	p.mu.Lock()
	e, ok := p.m[host]
	if !ok {
		e = &pooled{}
		p.m[host] = e
	}
	p.mu.Unlock()
	e.once.Do(func() {
		c, err := p.r.dial(ctx, host)
		// Under p.mu: the progress ticker reads the counters of e.conn
		// from another goroutine (roundTrips, wireBytes).
		p.mu.Lock()
		e.conn, e.err = c, err
		if err == nil {
			e.dry = connection.NewDry(c)
		}
		p.mu.Unlock()
	})
	if e.err != nil {
		return nil, e.err
	}
	if check {
		return e.dry, nil
	}
	return e.conn, nil
}

// lock reserves host's connection for one task; it returns the unlock.
func (p *connPool) lock(host string) func() {
	p.mu.Lock()
	e, ok := p.m[host]
	if !ok {
		e = &pooled{}
		p.m[host] = e
	}
	p.mu.Unlock()
	e.use.Lock()
	return e.use.Unlock
}

func (p *connPool) roundTrips(host string) int64 {
	c := p.conn(host)
	if c == nil {
		return 0
	}
	return c.RoundTrips()
}

// conn is host's connection once dialled, or nil.
func (p *connPool) conn(host string) connection.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[host]; ok {
		return e.conn
	}
	return nil
}

// wireBytes is what host's connection moved on the network so far (0 for
// connections that do not count, like local ones).
func (p *connPool) wireBytes(host string) int64 {
	if wc, ok := p.conn(host).(connection.WireCounter); ok {
		return wc.WireBytes()
	}
	return 0
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.m {
		if e.conn != nil {
			e.conn.Close()
		}
	}
}

// newRunLock is this run's lock: a random id, who runs it and since when,
// so a second run's refusal says who to ask.
func newRunLock(wait int) *connection.RunLock {
	var id [8]byte
	_, _ = rand.Read(id[:])
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += "@" + h
	}
	return &connection.RunLock{ID: hex.EncodeToString(id[:]), User: who, Start: time.Now(), Wait: wait}
}

func isLocalName(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }

func (r *run) dial(ctx context.Context, host string) (connection.Conn, error) {
	h, inInv := r.inv.Host(host)
	var vars map[string]any
	var cverr error
	if inInv {
		vars, cverr = r.connVars(host, h.Vars)
	}
	if r.opts.ConnFactory != nil {
		if cverr != nil {
			return nil, &connection.UnreachableError{Host: host, Err: cverr}
		}
		return r.opts.ConnFactory(host, vars)
	}
	if !inInv {
		// The implicit localhost serves delegations (the pki role's
		// certificates in the playbook's directory): locking the control
		// machine for them would make two deployments of different
		// clusters from one machine wait for each other. An inventory host
		// with connection local is a target like any other: it is locked.
		if isLocalName(host) {
			return connection.NewLocal(host), nil
		}
		return nil, fmt.Errorf("delegate_to: host %q is not in the inventory", host)
	}
	cv, err := inventory.CheckConnVarsOf(host, vars)
	if err = errors.Join(cverr, err); err != nil {
		return nil, &connection.UnreachableError{Host: host, Err: err}
	}
	if cv.Connection == "local" {
		return connection.NewLocalLocked(host, r.lock), nil
	}
	cfg := r.sshConfig(host, cv)
	if cv.ProxyJump == nil {
		cv.ProxyJump = r.opts.ProxyJump
	}
	if cv.ProxyJump != nil {
		j := connection.SSHConfig{Host: host + " (jump)", Addr: cv.ProxyJump.Addr, Port: cv.ProxyJump.Port,
			User: cv.ProxyJump.User, KeyFiles: cfg.KeyFiles, KnownHosts: cfg.KnownHosts,
			AcceptNewHostKeys: cfg.AcceptNewHostKeys, Timeout: cfg.Timeout}
		if j.User == "" {
			j.User = cfg.User
		}
		cfg.Jump = &j
	}
	return connection.DialSSH(ctx, cfg)
}

// connVars is the host's variables with its connection variables as the
// run sees them: extra vars win over the inventory (all names of one
// setting: -e ansible_host beats the inventory's gokube_host too), play
// vars over the inventory, and templated values are rendered with the
// host's variables, so the run dials what its variables say.
func (r *run) connVars(host string, inv map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(inv))
	for k, v := range inv {
		out[k] = v
	}
	sc := r.hostScope(host)
	if sc == nil {
		return out, nil
	}
	var errs []error
	for _, group := range inventory.ConnVarGroups() {
		fromExtra := false
		for _, k := range group {
			_, ok := r.extra[k]
			fromExtra = fromExtra || ok
		}
		for _, k := range group {
			if fromExtra {
				if _, ok := r.extra[k]; !ok {
					delete(out, k)
					continue
				}
			}
			if !sc.has(k) {
				continue
			}
			v, err := sc.get(k)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				continue
			}
			out[k] = v
		}
	}
	return out, errors.Join(errs...)
}

// sshConfig: inventory variables win over command-line defaults, as in
// Ansible.
func (r *run) sshConfig(host string, cv inventory.ConnVars) connection.SSHConfig {
	cfg := connection.SSHConfig{Host: host, Addr: cv.Addr, Port: cv.Port, User: cv.User, Password: cv.Password,
		BecomePassword: cv.BecomePassword, AcceptNewHostKeys: r.opts.AcceptNewHostKeys, Timeout: r.opts.ConnectTimeout}
	if cfg.User == "" {
		cfg.User = r.opts.User
	}
	if cv.KeyFile != "" {
		cfg.KeyFiles = []string{cv.KeyFile}
	} else if r.opts.PrivateKey != "" {
		cfg.KeyFiles = []string{r.opts.PrivateKey}
	}
	if cv.KnownHostsFile != "" {
		cfg.KnownHosts = []string{cv.KnownHostsFile}
	} else if r.opts.KnownHosts != "" {
		cfg.KnownHosts = []string{r.opts.KnownHosts}
	}
	if cfg.BecomePassword == "" {
		cfg.BecomePassword = r.opts.BecomePassword
	}
	cfg.Lock = r.lock
	return cfg
}
