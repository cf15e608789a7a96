package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
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

// sshDial logs in to a host as user with the lab key, verifying the host
// key against the one the lab generated (never trusting the network).
// TODO(lab): switch to connection.DialSSH once it lands, so waiting for the
// hosts exercises the engine's own client.
func (l *Lab) sshDial(ctx context.Context, h *hostState, addr, user string) (*ssh.Client, error) {
	keyPEM, err := os.ReadFile(l.KeyPath())
	if err != nil {
		return nil, fmt.Errorf("lab key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("lab key: %w", err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		return nil, fmt.Errorf("%s: host key in state: %w", h.Name, err)
	}
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk),
		Timeout:         3 * time.Second,
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// sshCheck logs in as deploy and runs `sudo -n true`: the host is ready
// for playbooks only when that works.
func (l *Lab) sshCheck(ctx context.Context, h *hostState, addr string) error {
	client, err := l.sshDial(ctx, h, addr, "deploy")
	if err != nil {
		return err
	}
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var out bytes.Buffer
	s.Stdout = &out
	s.Stderr = &out
	if err := s.Run("sudo -n true && hostname"); err != nil {
		return fmt.Errorf("login check: %w: %s", err, strings.TrimSpace(out.String()))
	}
	if got := strings.TrimSpace(out.String()); got != h.Name {
		return fmt.Errorf("%s answers as %q", addr, got)
	}
	return nil
}

// RunSSH runs cmd on a host as user (without a system ssh client) and
// returns its exit status.
func (l *Lab) RunSSH(ctx context.Context, name, user, cmd string, stdout, stderr io.Writer) (int, error) {
	l.Hosts()
	h, err := l.host(name)
	if err != nil {
		return 0, err
	}
	var addr string
	for _, x := range l.hostsOf(l.st) {
		if x.Name == h.Name {
			addr = net.JoinHostPort(x.SSHAddr, strconv.Itoa(x.SSHPort))
		}
	}
	client, err := l.sshDial(ctx, h, addr, user)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", h.Name, err)
	}
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", h.Name, err)
	}
	defer s.Close()
	s.Stdout, s.Stderr = stdout, stderr
	err = s.Run(cmd)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", h.Name, err)
	}
	return 0, nil
}
