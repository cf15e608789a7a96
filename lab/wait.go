package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"gokube/connection"
)

// waitSSH waits until the host's sshd greets, then until a real login as
// deploy (the lab key, the host key the lab wrote, sudo -n) succeeds: a
// banner alone can come before the host's PAM and sudo are ready.
func (l *Lab) waitSSH(ctx context.Context, h *hostState, addr string) error {
	var last error
	for {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = err
			}
			return fmt.Errorf("%s (%s): no SSH: %w", h.Name, addr, last)
		}
		if last = sshBanner(ctx, addr); last == nil {
			if last = l.sshCheck(ctx, h, addr); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sshBanner(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("not an SSH banner: %q", line)
	}
	return nil
}

// dialHost opens the engine's SSH connection (connection.DialSSH) to a
// lab host with the lab key and known_hosts: host keys are checked against
// the ones the lab generated, never learnt from the network.
func (l *Lab) dialHost(ctx context.Context, h Host, user string, timeout time.Duration) (connection.Conn, error) {
	return connection.DialSSH(ctx, connection.SSHConfig{
		Host:       h.Name,
		Addr:       h.SSHAddr,
		Port:       h.SSHPort,
		User:       user,
		KeyFiles:   []string{l.KeyPath()},
		KnownHosts: []string{l.KnownHostsPath()},
		Timeout:    timeout,
	})
}

// sshCheck logs in as deploy and runs `hostname` through sudo: the host is
// ready for playbooks only when that works.
func (l *Lab) sshCheck(ctx context.Context, h *hostState, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, _ := strconv.Atoi(port)
	c, err := l.dialHost(ctx, Host{Name: h.Name, SSHAddr: host, SSHPort: p}, "deploy", 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.Run(ctx, connection.Request{Script: "hostname", Become: true, ReadOnly: true})
	if err != nil {
		return err
	}
	if res.RC != 0 {
		return fmt.Errorf("login check: sudo hostname exited %d: %s", res.RC, strings.TrimSpace(string(res.Stderr)))
	}
	if got := strings.TrimSpace(string(res.Stdout)); got != h.Name {
		return fmt.Errorf("%s answers as %q", addr, got)
	}
	return nil
}

// RunSSH runs cmd on a host as user through the engine's SSH client and
// returns its exit status (for machines without an ssh client; the output
// arrives when the command ends).
func (l *Lab) RunSSH(ctx context.Context, name, user, cmd string, stdout, stderr io.Writer) (int, error) {
	var h *Host
	for _, x := range l.Hosts() {
		if x.Name == name || x.Addr == name || x.Machine == name {
			h = &x
			break
		}
	}
	if h == nil {
		return 0, fmt.Errorf("lab %s has no host %q", l.cfg.Name, name)
	}
	c, err := l.dialHost(ctx, *h, user, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	res, err := c.Run(ctx, connection.Request{Script: cmd})
	if err != nil {
		return 0, err
	}
	_, _ = stdout.Write(res.Stdout)
	_, _ = stderr.Write(res.Stderr)
	return res.RC, nil
}
