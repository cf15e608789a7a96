package connection

import (
	"net"
	"sync"
	"testing"
	"time"
)

// delayForwarder is a TCP proxy that delays every chunk in both directions
// by D and counts round trips independently of the client: a round trip
// is a client-to-server chunk that follows server-to-client traffic.
type delayForwarder struct {
	ln     net.Listener
	target string
	d      time.Duration

	mu     sync.Mutex
	last   int // 0 none, 1 client->server, 2 server->client
	bursts int64
	frozen bool
	conns  []net.Conn
}

func startForwarder(t testing.TB, target string, d time.Duration) *delayForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &delayForwarder{ln: ln, target: target, d: d}
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *delayForwarder) addr() (string, int) {
	a := f.ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// roundTrips is the number of client bursts seen so far.
func (f *delayForwarder) roundTrips() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bursts
}

// freeze stops forwarding in both directions without closing anything,
// like a host that vanished from the network.
func (f *delayForwarder) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
}

func (f *delayForwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, s)
		f.mu.Unlock()
		go f.pump(c, s, 1)
		go f.pump(s, c, 2)
	}
}

type chunk struct {
	at   time.Time
	data []byte
}

func (f *delayForwarder) pump(from, to net.Conn, dir int) {
	q := make(chan chunk, 1024)
	go func() {
		for ch := range q {
			time.Sleep(time.Until(ch.at))
			for {
				f.mu.Lock()
				frozen := f.frozen
				f.mu.Unlock()
				if !frozen {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := to.Write(ch.data); err != nil {
				return
			}
		}
		if tc, ok := to.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	defer close(q)
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			f.mu.Lock()
			if dir == 1 && f.last != 1 {
				f.bursts++
			}
			f.last = dir
			f.mu.Unlock()
			q <- chunk{at: time.Now().Add(f.d), data: append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			return
		}
	}
}
