package connection

import (
	"net"
	"sync/atomic"
)

// WireCounter is an optional interface: connections that count the bytes
// they moved over the network (both directions, as sent on the socket:
// SSH framing and encryption included), for the run's timeline.
type WireCounter interface {
	WireBytes() int64
}

// countingConn counts the bytes read and written on a socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
