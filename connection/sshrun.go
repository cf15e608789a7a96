package connection

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Buffers every open session keeps for the whole run, sized for the usual
// traffic rather than the largest frame: with one session per inventory
// host they are paid once per host (issue 14's 1000-host runs).
//
//   - shellReadBuf: the frame reader's buffer. Lines longer than it are
//     still read whole (bufio.Reader.ReadString collects them), and
//     payload lines are base64's 76 columns, so it bounds no frame; it
//     only sets how much one Read moves from the channel's memory buffer.
//   - shellStderrBuf: the copy buffer of the shell's own stderr.
//   - frameChunk: the largest single write to the channel. x/crypto/ssh
//     keeps a packet buffer per channel, and its cipher one per
//     connection, as large as the largest packet written so far (up to
//     32 KB after one large frame); writing in chunks caps both, for a
//     few dozen bytes of packet header per chunk.
const (
	shellReadBuf   = 4 << 10
	shellStderrBuf = 512
	frameChunk     = 4 << 10
)

// writeChunks writes p to w in pieces of at most frameChunk bytes.
func writeChunks(w io.Writer, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), frameChunk)
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// shellSession is one long-lived /bin/sh on the host.
type shellSession struct {
	ch      ssh.Channel
	r       *bufio.Reader
	pending []byte // preamble (and sudo password) sent with the first frame
	stderr  *tailBuffer
	errDone chan struct{} // closed when stderr reached EOF
	dead    atomic.Bool
}

// stderrTail is the end of the shell's own stderr (sudo's complaints),
// waiting briefly for it to be complete.
func (s *shellSession) stderrTail() string {
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.errDone:
	case <-t.C:
	}
	return strings.TrimSpace(s.stderr.String())
}

func (s *shellSession) close() {
	s.dead.Store(true)
	s.ch.Close()
}

// kill ends the session and what runs in it: TERM reaches the shell (sudo
// relays it), whose trap kills the script's process group.
func (s *shellSession) kill() {
	s.dead.Store(true)
	_, _ = s.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{"TERM"}))
	s.ch.Close()
}

func shellKey(become bool, user string) string {
	if !become {
		return ""
	}
	if user == "" {
		user = "root"
	}
	return user
}

// shellCommand is the session's command and what must be written before
// the preamble.
func (c *sshConn) shellCommand(key string) (string, []byte) {
	if key == "" || (key == "root" && c.cfg.User == "root") || key == c.cfg.User {
		return "exec /bin/sh", nil
	}
	if c.cfg.BecomePassword == "" {
		return "exec sudo -H -n -u " + shQuote(key) + " -- /bin/sh", nil
	}
	// The password is the first line of the session's stdin, read by an
	// outer shell into its environment; sudo gets it from an askpass
	// program that is printenv: sudo runs the askpass with the prompt as
	// its argument, so the prompt "GK_PW" makes it print the password.
	// Unlike sudo -S this never lets sudo read the frames that follow as
	// password attempts, whether or not it asks (NOPASSWD, cached
	// credentials), and no secret touches the disk or a command line.
	inner := "unset GK_PW SUDO_ASKPASS; exec /bin/sh"
	outer := `IFS= read -r GK_PW || exit 1; export GK_PW
SUDO_ASKPASS=$(command -v printenv) || { echo "gokube: printenv not found for sudo askpass" >&2; exit 1; }
export SUDO_ASKPASS
exec sudo -A -H -p GK_PW -u ` + shQuote(key) + " -- /bin/sh -c " + shQuote(inner)
	return "exec /bin/sh -c " + shQuote(outer), []byte(c.cfg.BecomePassword + "\n")
}

// openShell opens a session channel and starts the shell without waiting
// for the exec reply: the first frame follows at once, so opening costs
// the channel-open round trip only.
func (c *sshConn) openShell(ctx context.Context, key string, lock lockNeed) (*shellSession, error) {
	c.mu.Lock()
	got := c.pre
	c.pre = nil
	c.mu.Unlock()
	if got == nil {
		got = c.openSession()
	}
	var o openedChannel
	select {
	case o = <-got:
	case <-ctx.Done():
		go func() {
			if o := <-got; o.err == nil {
				o.ch.Close()
			}
		}()
		return nil, ctx.Err()
	}
	c.rt.Add(1)
	if o.err != nil {
		if c.lost() {
			return nil, c.unreachable(o.err)
		}
		return nil, fmt.Errorf("%s: open session: %w", c.cfg.Host, o.err)
	}
	cmd, prefix := c.shellCommand(key)
	if _, err := o.ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{cmd})); err != nil {
		o.ch.Close()
		return nil, c.unreachable(err)
	}
	s := &shellSession{
		ch:      o.ch,
		r:       bufio.NewReaderSize(o.ch, shellReadBuf),
		pending: append(prefix, shellPreamble...),
		stderr:  &tailBuffer{max: 4 << 10},
		errDone: make(chan struct{}),
	}
	if lock != (lockNeed{}) {
		s.pending = append(s.pending, c.lockText(key, lock)...)
	}
	go func() {
		// The shell's own stderr is rare and short (a sudo complaint):
		// a small buffer instead of io.Copy's 32 KB, held for as long as
		// the session lives, on every host.
		_, _ = io.CopyBuffer(s.stderr, o.ch.Stderr(), make([]byte, shellStderrBuf))
		close(s.errDone)
	}()
	return s, nil
}

func (c *sshConn) shell(ctx context.Context, become bool, user string) (*shellSession, error) {
	key := shellKey(become, user)
	c.mu.Lock()
	s := c.shells[key]
	c.mu.Unlock()
	if s != nil && !s.dead.Load() {
		return s, nil
	}
	// Runs are serialised (runSem), so no two shells race for the lock.
	c.mu.Lock()
	lock := c.locksFor(key)
	c.mu.Unlock()
	s, err := c.openShell(ctx, key, lock)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.shells[key] = s
	if lock.user {
		c.userLockShell = s
	}
	if lock.root {
		c.lockShell = s
	}
	c.mu.Unlock()
	return s, nil
}

func (c *sshConn) Run(ctx context.Context, req Request) (Result, error) {
	ps, err := c.Send(ctx, []Op{{Req: req}})
	if err != nil {
		return Result{}, err
	}
	return ps[0].Wait(ctx)
}

// shellErr closes a session whose exchange failed with err and says why:
// the connection closed or lost, or the shell ended (its stderr's last
// words, a sudo complaint).
func (c *sshConn) shellErr(s *shellSession, req Request, err error) error {
	s.close()
	if c.closed() {
		return fmt.Errorf("%s: connection closed", c.cfg.Host)
	}
	if c.lost() {
		return c.unreachable(err)
	}
	if tail := s.stderrTail(); tail != "" {
		return fmt.Errorf("%s: shell%s ended: %s", c.cfg.Host, becomeNote(req.Become, req.BecomeUser), tail)
	}
	return fmt.Errorf("%s: shell%s: %w", c.cfg.Host, becomeNote(req.Become, req.BecomeUser), err)
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
