package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The kernel here has no netem, so wide-area latency for SSH is simulated
// by a forwarder: a detached `gokube lab delay-proxy` process listening on
// the gateway address, one port per host (22000+i), that holds every chunk
// of data for the delay before passing it on, in each direction.

// Delay sets the SSH latency: ms > 0 (re)starts the forwarder, 0 stops it.
// known_hosts and inventory.cfg follow (ansible_host/port point at the
// forwarder while it runs).
func (l *Lab) Delay(ctx context.Context, ms int) error {
	if ms < 0 || ms > 10000 {
		return fmt.Errorf("delay %d ms: want 0..10000", ms)
	}
	return l.locked(ctx, false, func() error {
		if ms == 0 {
			if err := l.stopDelay(); err != nil {
				return err
			}
		} else if err := l.startDelay(ctx, ms); err != nil {
			return err
		}
		return l.writeClientFiles()
	})
}

func (l *Lab) stopDelay() error {
	if l.st.Delay == nil {
		return nil
	}
	p := l.st.Delay.Proc
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if !p.Wait(context.Background(), 5*time.Second) {
		if err := p.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		p.Wait(context.Background(), 5*time.Second)
	}
	l.st.Delay = nil
	return nil
}

// DelayProxyArgs is how the lab starts the forwarder: the gokube binary
// itself (os.Executable) with these arguments. Tests of package lab
// recognise the same arguments in TestMain.
func delayProxyArgs(ms int, maps []string) []string {
	return append([]string{"lab", "delay-proxy", "--delay", strconv.Itoa(ms) + "ms"}, maps...)
}

func (l *Lab) startDelay(ctx context.Context, ms int) error {
	if err := l.stopDelay(); err != nil {
		return err
	}
	sub, err := parseSubnet(l.st.Subnet)
	if err != nil {
		return err
	}
	gw := gatewayAddr(sub).String()
	var maps []string
	for _, h := range l.st.Hosts {
		maps = append(maps, fmt.Sprintf("%s=%s", net.JoinHostPort(gw, strconv.Itoa(delayPortBase+h.Index)), net.JoinHostPort(h.Addr, "22")))
	}
	if len(maps) == 0 {
		return errors.New("delay: the lab has no hosts")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("delay: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(l.cfg.Dir, "delay.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("delay log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self, delayProxyArgs(ms, maps)...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("delay: start forwarder: %w", err)
	}
	p, err := procOf(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Wait()
		return fmt.Errorf("delay: forwarder exited at once (see %s)", logf.Name())
	}
	go func() { _ = cmd.Wait() }()
	l.st.Delay = &delayState{MS: ms, Proc: p}
	// Wait until every port listens, so callers can dial right away.
	first := strings.SplitN(maps[len(maps)-1], "=", 2)[0]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", first, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.Alive() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("delay: forwarder not listening on %s (see %s): %w", first, logf.Name(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunDelayProxy serves the forwarder until ctx ends: each map entry is
// "listen=target"; every byte is held for delay before it is passed on, in
// both directions, so a round trip gains twice the delay.
func RunDelayProxy(ctx context.Context, delay time.Duration, maps []string) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var lc net.ListenConfig
	for _, m := range maps {
		listen, target, ok := strings.Cut(m, "=")
		if !ok {
			return fmt.Errorf("delay-proxy: bad mapping %q, want LISTEN=TARGET", m)
		}
		ln, err := lc.Listen(ctx, "tcp", listen)
		if err != nil {
			return fmt.Errorf("delay-proxy: %w", err)
		}
		lns = append(lns, ln)
		go acceptLoop(ctx, ln, target, delay)
	}
	<-ctx.Done()
	return nil
}

func acceptLoop(ctx context.Context, ln net.Listener, target string, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			d := net.Dialer{Timeout: 5 * time.Second}
			t, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				return
			}
			defer t.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); delayedCopy(t, c, delay) }()
			go func() { defer wg.Done(); delayedCopy(c, t, delay) }()
			wg.Wait()
		}()
	}
}

type chunk struct {
	data []byte
	due  time.Time
}

// delayedCopy copies src to dst, each chunk no earlier than delay after it
// was read. Reading continues while earlier chunks wait, so the delay adds
// latency without cutting throughput (up to the queue's size).
func delayedCopy(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{data: buf[:n], due: time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if w := time.Until(c.due); w > 0 {
			time.Sleep(w)
		}
		if _, err := dst.Write(c.data); err != nil {
			// Unblock the reader so it ends too.
			_ = src.Close()
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
