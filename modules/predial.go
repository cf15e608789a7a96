package modules

import (
	"context"
	"net"
	"net/url"
	"sync"
	"time"

	"gokube/connection"
)

// predialed hands out forwards opened together up front (one round trip
// for all of them when the connection is a BatchDialer), one per use of an
// address, in the order asked for. An address with none left is dialled on
// its own: the retries after a first round that found a problem.
type predialed struct {
	d     connection.Dialer
	mu    sync.Mutex
	ready map[string][]predial
}

type predial struct {
	c   net.Conn
	err error
}

// newPredialed opens one forward per entry of addrs (an address listed
// twice gets two), the dials bounded by timeout.
func newPredialed(ctx context.Context, d connection.Dialer, addrs []string, timeout time.Duration) *predialed {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conns, errs := connection.DialAll(dctx, d, "tcp", addrs)
	p := &predialed{d: d, ready: map[string][]predial{}}
	for i, a := range addrs {
		p.ready[a] = append(p.ready[a], predial{conns[i], errs[i]})
	}
	return p
}

// DialContext is the http.Transport's dial: a forward opened up front, or
// its error, else a new one.
func (p *predialed) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	p.mu.Lock()
	if q := p.ready[addr]; network == "tcp" && len(q) > 0 {
		p.ready[addr] = q[1:]
		p.mu.Unlock()
		return q[0].c, q[0].err
	}
	p.mu.Unlock()
	return p.d.DialContext(ctx, network, addr)
}

// close closes the forwards nobody asked for.
func (p *predialed) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, q := range p.ready {
		for _, x := range q {
			if x.c != nil {
				x.c.Close()
			}
		}
		delete(p.ready, a)
	}
}

// dialAddr is the address http.Transport dials for an https base URL.
func dialAddr(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
