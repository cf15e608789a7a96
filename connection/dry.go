package connection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Dry is the check-mode connection: read-only requests run on the inner
// connection so modules can inspect the host, everything else is recorded
// and answered with success, so modules keep one code path for both modes.
type Dry struct {
	inner Conn

	mu       sync.Mutex
	recorded []string
}

// NewDry wraps inner for check mode.
func NewDry(inner Conn) *Dry { return &Dry{inner: inner} }

// Inner is the wrapped connection.
func (d *Dry) Inner() Conn { return d.inner }

// Recorded lists, in order, what would have been done, one human-readable
// entry per mutation.
func (d *Dry) Recorded() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.recorded...)
}

func (d *Dry) record(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recorded = append(d.recorded, s)
}

func (d *Dry) Host() string { return d.inner.Host() }

func (d *Dry) Run(ctx context.Context, req Request) (Result, error) {
	if req.ReadOnly {
		return d.inner.Run(ctx, req)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	d.record("run" + becomeNote(req.Become, req.BecomeUser) + ": " + strings.TrimSpace(req.Script))
	return Result{}, nil
}

func (d *Dry) Put(ctx context.Context, up Upload) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	size := up.Size
	if up.Content != nil {
		n, err := io.Copy(io.Discard, up.Content)
		if err != nil {
			return fmt.Errorf("%s: put %s: %w", d.Host(), up.Path, err)
		}
		size = n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "put%s: %s (%d bytes", becomeNote(up.Become, up.BecomeUser), up.Path, size)
	if up.Mode != 0 {
		fmt.Fprintf(&b, ", mode %04o", up.Mode)
	}
	if up.Owner != "" {
		fmt.Fprintf(&b, ", owner %s", up.Owner)
	}
	if up.Group != "" {
		fmt.Fprintf(&b, ", group %s", up.Group)
	}
	b.WriteString(")")
	d.record(b.String())
	return nil
}

func (d *Dry) Get(ctx context.Context, path string, become bool) ([]byte, error) {
	return d.inner.Get(ctx, path, become)
}

// RoundTrips is what the run would have cost: the inner connection's real
// round trips plus one per recorded mutation (the request or small Put it
// would have sent).
func (d *Dry) RoundTrips() int64 {
	d.mu.Lock()
	n := int64(len(d.recorded))
	d.mu.Unlock()
	return d.inner.RoundTrips() + n
}

func (d *Dry) Close() error { return d.inner.Close() }

// DialContext forwards through the inner connection: probing a service is
// read-only.
func (d *Dry) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if dl, ok := d.inner.(Dialer); ok {
		return dl.DialContext(ctx, network, addr)
	}
	return nil, errors.New(d.Host() + ": connection cannot forward ports")
}

// DialAll forwards through the inner connection, like DialContext.
func (d *Dry) DialAll(ctx context.Context, network string, addrs []string) ([]net.Conn, []error) {
	if dl, ok := d.inner.(Dialer); ok {
		return DialAll(ctx, dl, network, addrs)
	}
	errs := make([]error, len(addrs))
	for i := range errs {
		errs[i] = errors.New(d.Host() + ": connection cannot forward ports")
	}
	return make([]net.Conn, len(addrs)), errs
}

func becomeNote(become bool, user string) string {
	if !become {
		return ""
	}
	if user == "" {
		user = "root"
	}
	return " (as " + user + ")"
}
