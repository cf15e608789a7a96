package connection

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"regexp"
	"strings"
	"sync"
)

// Fake is a Conn for unit tests of modules and the engine: it records every
// request and upload, answers Run from scripted rules, and keeps an in-memory
// file map so Put followed by Get behaves like a host. Each Run, Put and Get
// counts one round trip, as on SSH.
type Fake struct {
	host string

	mu          sync.Mutex
	rules       []fakeRule
	def         Result
	unreachable error
	requests    []Request
	uploads     []FakeUpload
	files       map[string]FakeFile
	rt          int64
	closed      bool
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
}

// FakeUpload is one recorded Put with its content read out.
type FakeUpload struct {
	Upload
	Data []byte
}

// FakeFile is a file in the Fake's in-memory map.
type FakeFile struct {
	Data  []byte
	Mode  uint32
	Owner string
	Group string
}

type fakeRule struct {
	substr string
	re     *regexp.Regexp
	fn     func(Request) (Result, error)
	res    Result
}

// NewFake returns a Fake for host whose default answer is RC 0, no output.
func NewFake(host string) *Fake {
	return &Fake{host: host, files: map[string]FakeFile{}}
}

// On answers res to every request whose script contains substr. Rules are
// tried in the order they were added; the first match wins.
func (f *Fake) On(substr string, res Result) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, fakeRule{substr: substr, res: res})
	return f
}

// OnRegexp answers res to every request whose script matches re.
func (f *Fake) OnRegexp(re string, res Result) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, fakeRule{re: regexp.MustCompile(re), res: res})
	return f
}

// OnFunc answers requests whose script contains substr ("" matches all)
// with fn, for answers that depend on the request (its stdin, env).
func (f *Fake) OnFunc(substr string, fn func(Request) (Result, error)) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, fakeRule{substr: substr, fn: fn})
	return f
}

// SetDefault is the answer when no rule matches.
func (f *Fake) SetDefault(res Result) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.def = res
	return f
}

// SetUnreachable makes every later call fail with an *UnreachableError
// wrapping err (nil makes the host reachable again).
func (f *Fake) SetUnreachable(err error) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable = err
	return f
}

// SetDialer replaces the Dialer used by DialContext (default: net.Dialer on
// the control machine, which suits tests with a local listener).
func (f *Fake) SetDialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dial = d
	return f
}

// SetFile puts a file in the in-memory map, as if it existed on the host.
func (f *Fake) SetFile(path string, data []byte, mode uint32) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = FakeFile{Data: bytes.Clone(data), Mode: mode}
	return f
}

// File returns a file of the in-memory map.
func (f *Fake) File(path string) (FakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, ok := f.files[path]
	return ff, ok
}

// Requests returns every request run so far, in order.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Uploads returns every Put so far, in order.
func (f *Fake) Uploads() []FakeUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FakeUpload(nil), f.uploads...)
}

// Reset forgets recorded requests and uploads and zeroes the round-trip
// counter; rules and files stay.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests, f.uploads, f.rt = nil, nil, 0
}

func (f *Fake) Host() string { return f.host }

func (f *Fake) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.closed {
		return fmt.Errorf("%s: connection closed", f.host)
	}
	if f.unreachable != nil {
		return &UnreachableError{Host: f.host, Err: f.unreachable}
	}
	return nil
}

func (f *Fake) Run(ctx context.Context, req Request) (Result, error) {
	f.mu.Lock()
	if err := f.check(ctx); err != nil {
		f.mu.Unlock()
		return Result{}, err
	}
	f.rt++
	req.Stdin = bytes.Clone(req.Stdin)
	f.requests = append(f.requests, req)
	var rule *fakeRule
	for i := range f.rules {
		r := &f.rules[i]
		if (r.re != nil && r.re.MatchString(req.Script)) || (r.re == nil && strings.Contains(req.Script, r.substr)) {
			rule = r
			break
		}
	}
	res := f.def
	f.mu.Unlock()
	if rule != nil {
		if rule.fn != nil {
			return rule.fn(req)
		}
		res = rule.res
	}
	res.Stdout = bytes.Clone(res.Stdout)
	res.Stderr = bytes.Clone(res.Stderr)
	return res, nil
}

func (f *Fake) Put(ctx context.Context, up Upload) error {
	f.mu.Lock()
	if err := f.check(ctx); err != nil {
		f.mu.Unlock()
		return err
	}
	f.mu.Unlock()
	var data []byte
	if up.Content != nil {
		var err error
		if data, err = io.ReadAll(up.Content); err != nil {
			return fmt.Errorf("%s: put %s: %w", f.host, up.Path, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rt++
	rec := up
	rec.Content = nil
	rec.Size = int64(len(data))
	f.uploads = append(f.uploads, FakeUpload{Upload: rec, Data: data})
	mode := up.Mode
	if mode == 0 {
		mode = 0o644
		if old, ok := f.files[up.Path]; ok {
			mode = old.Mode
		}
	}
	f.files[up.Path] = FakeFile{Data: bytes.Clone(data), Mode: mode, Owner: up.Owner, Group: up.Group}
	return nil
}

func (f *Fake) Get(ctx context.Context, path string, become bool) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	f.rt++
	ff, ok := f.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: %s: %w", f.host, path, fs.ErrNotExist)
	}
	return bytes.Clone(ff.Data), nil
}

func (f *Fake) RoundTrips() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rt
}

func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// DialContext implements Dialer; it counts one round trip like a forward.
func (f *Fake) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	if err := f.check(ctx); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.rt++
	d := f.dial
	f.mu.Unlock()
	if d != nil {
		return d(ctx, network, addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}
