// Package connection runs commands and moves files on one host: over one
// long-lived SSH connection per host, on the control machine itself, or in a
// recording fake for unit tests. Every implementation counts its round trips
// so tests can assert them instead of timings.
package connection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// Request is one shell script to run on the host. The script is run by
// /bin/sh; it may be many lines. Batching several probes into one Request is
// how the executor keeps a warm run to a handful of round trips.
type Request struct {
	// Script is the shell script to run (passed to /bin/sh).
	Script string
	// Stdin is fed to the script's standard input.
	Stdin []byte
	// Become runs the script as BecomeUser (root when empty) through sudo.
	Become     bool
	BecomeUser string
	// Env is exported before the script runs.
	Env map[string]string
	// Dir is the working directory ("" keeps the login directory).
	Dir string
	// ReadOnly marks a script that changes nothing on the host. Check mode
	// (the Dry connection) runs read-only scripts and only records the others.
	ReadOnly bool
	// OwnShell runs the script as its own /bin/sh process, so that $$ and
	// $0 are its own, as a user's shell or command task expects. Other
	// scripts (gokube's own probes, writes and reads) run in a forked
	// subshell of the session's shell: one process start less per request
	// (Inline ones in that shell itself: no fork at all).
	OwnShell bool
	// Inline runs the script in the session's shell itself, not a forked
	// subshell: a fork costs as much as a small program's start on a busy
	// host, and a cold run sends a request per changed file. Only for
	// gokube's own scripts written for it: they neither exit, nor cd, nor
	// set options, traps or exported variables they do not put back, and
	// end with their status (putScript). Ignored with Env, Dir or OwnShell,
	// and where the session could not read its umask at the start.
	Inline bool
}

// Result is what a script returned. A non-zero RC is not an error of the
// connection; callers turn it into an *ExitError when it means failure.
type Result struct {
	Stdout []byte
	Stderr []byte
	RC     int
}

// Upload describes a file to place on the host atomically: it is written to
// a temporary file beside Path and renamed over it, so an interrupted run
// leaves either the old or the new file, never half of one.
type Upload struct {
	Path       string
	Content    io.Reader
	Size       int64
	Mode       uint32 // permission bits, e.g. 0o644
	Owner      string // "" leaves the default
	Group      string
	Become     bool
	BecomeUser string
}

// Conn is one host's connection. Implementations are safe for use by one
// goroutine at a time per host; the executor never runs two tasks of the same
// host at once.
type Conn interface {
	// Host is the inventory name of the host.
	Host() string
	// Run runs one script. The returned error is a transport error
	// (*UnreachableError, context cancellation), never a non-zero exit.
	Run(ctx context.Context, req Request) (Result, error)
	// Put places a file atomically (temp file + rename).
	Put(ctx context.Context, up Upload) error
	// Get reads a whole file from the host.
	Get(ctx context.Context, path string, become bool) ([]byte, error)
	// RoundTrips is the number of network round trips made so far
	// (handshake included for SSH).
	RoundTrips() int64
	// Close ends the connection.
	Close() error
}

// Dialer is an optional interface: connections that can forward a TCP port
// from the control machine to an address seen from the host (health checks
// of services that listen only on the host's loopback).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// BatchDialer is an optional interface of a Dialer: it opens one forward per
// address, all at once. Their channel opens leave together and their answers
// come back together, so the batch costs one round trip, however many
// addresses (a health report that asks every apiserver waits once, not once
// per apiserver). conns[i] or errs[i] is set for addrs[i].
type BatchDialer interface {
	DialAll(ctx context.Context, network string, addrs []string) (conns []net.Conn, errs []error)
}

// DialAll opens one forward per address through d: at once when d is a
// BatchDialer, else one after the other.
func DialAll(ctx context.Context, d Dialer, network string, addrs []string) ([]net.Conn, []error) {
	if b, ok := d.(BatchDialer); ok {
		return b.DialAll(ctx, network, addrs)
	}
	conns, errs := make([]net.Conn, len(addrs)), make([]error, len(addrs))
	for i, a := range addrs {
		conns[i], errs[i] = d.DialContext(ctx, network, a)
	}
	return conns, errs
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Host   string
	Cmd    string
	RC     int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: %q exited %d: %s", e.Host, firstLine(e.Cmd), e.RC, e.Stderr)
}

// UnreachableError means the host could not be reached or the connection was
// lost; the executor reports the host UNREACHABLE, not FAILED.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("%s: unreachable: %v", e.Host, e.Err) }
func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err is or wraps an *UnreachableError.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i] + " ..."
		}
	}
	return s
}
