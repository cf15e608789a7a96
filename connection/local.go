package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Local runs requests on the control machine with the same semantics as
// SSH: /bin/sh scripts, become through sudo (or directly when already
// root), atomic Put. RoundTrips counts requests.
type Local struct {
	host string
	rt   atomic.Int64
	uid  int

	// The run lock (see RunLock), taken before the first request as the
	// SSH shells take theirs: the root lock when gokube runs as root, the
	// per-user lock otherwise (a become through sudo takes no root lock:
	// the process that would hold it, gokube, is not root). gokube's own
	// pid holds it; Close removes it.
	lock     *RunLock
	lockMu   sync.Mutex
	lockDone bool
	lockPath string
	lockLine string // written by this connection, "" when shared or none
	lockErr  error
}

// NewLocal returns a Conn on the control machine named host that takes no
// run lock.
func NewLocal(host string) Conn { return NewLocalLocked(host, nil) }

// NewLocalLocked returns a Conn on the control machine named host that
// takes the run lock lock (nil: none) before its first request.
func NewLocalLocked(host string, lock *RunLock) Conn {
	return &Local{host: host, uid: os.Getuid(), lock: lock}
}

func (l *Local) Host() string { return l.host }

func (l *Local) RoundTrips() int64 { return l.rt.Load() }

func (l *Local) Close() error {
	l.lockMu.Lock()
	defer l.lockMu.Unlock()
	releaseLock(l.lockPath, l.lockLine)
	l.lockLine = ""
	return nil
}

// takeLock takes the run lock once; a refusal stays for every request.
func (l *Local) takeLock(ctx context.Context) error {
	if l.lock == nil {
		return nil
	}
	l.lockMu.Lock()
	defer l.lockMu.Unlock()
	if l.lockDone {
		return l.lockErr
	}
	path, err := localLockPath(l.uid)
	if err != nil {
		// No home to hold it: unlocked, as where the shell cannot make it.
		l.lockDone = true
		return nil
	}
	line, err := takeLock(ctx, l.lock, path, os.Getpid())
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // cancelled while waiting: not a refusal
	}
	var le *LockedError
	if errors.As(err, &le) {
		le.Host = l.host
	} else if err != nil {
		err = fmt.Errorf("%s: run lock: %w", l.host, err)
	}
	l.lockDone, l.lockPath, l.lockLine, l.lockErr = true, path, line, err
	return err
}

func (l *Local) Run(ctx context.Context, req Request) (Result, error) {
	return l.run(ctx, req, bytes.NewReader(req.Stdin))
}

func (l *Local) run(ctx context.Context, req Request, stdin io.Reader) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := l.takeLock(ctx); err != nil {
		return Result{}, err
	}
	env, err := envPrelude(req)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", l.host, err)
	}
	l.rt.Add(1)
	// The prelude runs in the outer shell so that sudo's environment reset
	// cannot drop the variables; the script itself runs as its own file-less
	// "sh -c" with its own $0, like the SSH path.
	wrapper := env + `exec /bin/sh -c "$1" gokube`
	args := []string{"/bin/sh", "-c", wrapper, "gokube", req.Script}
	var cred *syscall.Credential
	if req.Become {
		target := req.BecomeUser
		if target == "" {
			target = "root"
		}
		switch {
		case l.uid == 0 && target == "root":
		case l.uid == 0:
			c, home, err := lookupCredential(target)
			if err != nil {
				return Result{}, fmt.Errorf("%s: become %s: %w", l.host, target, err)
			}
			cred = c
			args = append([]string{"/usr/bin/env", "HOME=" + home, "USER=" + target, "LOGNAME=" + target}, args...)
		default:
			args = append([]string{"sudo", "-H", "-n", "-u", target, "--"}, args...)
		}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A process group, so cancellation kills what the script started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// WaitDelay also runs after a normal exit, until the output pipes drain:
	// 2 s expired on a machine at load 50 (ErrWaitDelay failed a task whose
	// script had succeeded). It only has to stop a hang on a grandchild that
	// escaped the process group and holds stdout, so it is generous.
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.RC = ee.ExitCode()
		if res.RC < 0 {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.RC = 128 + int(ws.Signal())
			}
		}
	default:
		return Result{}, fmt.Errorf("%s: run: %w", l.host, err)
	}
	return res, nil
}

func lookupCredential(name string) (*syscall.Credential, string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, "", err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, "", err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, "", err
	}
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, u.HomeDir, nil
}

func (l *Local) Put(ctx context.Context, up Upload) error {
	content := up.Content
	if content == nil {
		content = bytes.NewReader(nil)
	}
	req := Request{Script: putScript(up, "", newMarker()[3:], nil), Become: up.Become, BecomeUser: up.BecomeUser}
	res, err := l.run(ctx, req, content)
	if err != nil {
		return err
	}
	if err := CheckResult(l.host, req, res); err != nil {
		return fmt.Errorf("put %s: %w", up.Path, err)
	}
	return nil
}

func (l *Local) Get(ctx context.Context, path string, become bool) ([]byte, error) {
	req := Request{Script: getScript(path), Become: become, ReadOnly: true}
	res, err := l.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	return getResult(l.host, path, req, res)
}

// getResult turns the answer of getScript into content or an error that
// wraps fs.ErrNotExist for a missing file.
func getResult(host, path string, req Request, res Result) ([]byte, error) {
	if res.RC == getRCMissing {
		return nil, fmt.Errorf("%s: %s: %w", host, path, fs.ErrNotExist)
	}
	if err := CheckResult(host, req, res); err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	return res.Stdout, nil
}

// DialContext implements Dialer: the control machine reaches addr directly.
func (l *Local) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	l.rt.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
