package connection

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func (c *sshConn) Get(ctx context.Context, path string, become bool) ([]byte, error) {
	req := Request{Script: getScript(path), Become: become, ReadOnly: true}
	res, err := c.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	return getResult(c.cfg.Host, path, req, res)
}

func (c *sshConn) Put(ctx context.Context, up Upload) error {
	content := up.Content
	if content == nil {
		content = bytes.NewReader(nil)
	}
	head, err := io.ReadAll(io.LimitReader(content, SmallPutLimit+1))
	if err != nil {
		return fmt.Errorf("%s: put %s: reading content: %w", c.cfg.Host, up.Path, err)
	}
	if len(head) <= inlinePutLimit {
		small := up
		small.Content, small.Size = bytes.NewReader(head), int64(len(head))
		req, temp, _, err := PutRequest(small)
		if err != nil {
			return fmt.Errorf("%s: put %s: %w", c.cfg.Host, up.Path, err)
		}
		res, err := c.Run(ctx, req)
		if err != nil {
			c.cleanupPut(ctx, up, temp, "")
			return err
		}
		return PutResult(c.cfg.Host, up, req, res)
	}
	tag := newMarker()[3:]
	if len(head) <= SmallPutLimit {
		// The content goes as stdin.
		req := Request{Stdin: head, Become: up.Become, BecomeUser: up.BecomeUser, Script: putScript(up, "", tag, nil)}
		res, err := c.Run(ctx, req)
		if err != nil {
			c.cleanupPut(ctx, up, putTemp(up.Path, tag), "")
			return err
		}
		return PutResult(c.cfg.Host, up, req, res)
	}
	// The lock first: taking it removes uploads older than it, and an
	// upload made before it would be one.
	c.mu.Lock()
	need := c.needLock(shellKey(up.Become, up.BecomeUser))
	c.mu.Unlock()
	if need {
		if _, err := c.Run(ctx, Request{Script: ":", ReadOnly: true, Become: up.Become, BecomeUser: up.BecomeUser}); err != nil {
			return fmt.Errorf("put %s: %w", up.Path, err)
		}
	}
	tmp, err := c.upload(ctx, io.MultiReader(bytes.NewReader(head), content))
	if err != nil {
		return err
	}
	req := Request{Script: putScript(up, tmp, tag, nil), Become: up.Become, BecomeUser: up.BecomeUser, Inline: true}
	res, err := c.Run(ctx, req)
	if err != nil {
		c.cleanupPut(ctx, up, putTemp(up.Path, tag), tmp)
		return fmt.Errorf("put %s: %w", up.Path, err)
	}
	if err = CheckResult(c.cfg.Host, req, res); err != nil {
		// The script removes the upload itself; this is for the failures.
		if cl, _, err := c.sftpClient(); err == nil {
			_ = cl.Remove(tmp)
		}
		return fmt.Errorf("put %s: %w", up.Path, err)
	}
	return nil
}

// putCleanupBound bounds the cleanup after a cancelled put: it waits for
// the removal (so an interrupted run leaves nothing behind) but never hangs
// an interrupt on a host that stopped answering.
const putCleanupBound = 10 * time.Second

// cleanupPut removes a cancelled put's temp files: cancelling kills the
// script's process group, so its own trap never runs. Only after a
// cancellation: a script that ran removed them itself.
// The temp file beside the destination is removed as the put's user, the
// upload in the login user's home (if any) as the login user.
func (c *sshConn) cleanupPut(ctx context.Context, up Upload, beside, upload string) {
	if ctx.Err() == nil {
		return
	}
	c.cleanupTemps(ctx, Request{Become: up.Become, BecomeUser: up.BecomeUser}, []string{beside})
	if upload != "" {
		c.cleanupTemps(ctx, Request{}, []string{upload})
	}
}

// upload copies r to a private temp file in the login user's home over
// SFTP and returns its path.
func (c *sshConn) upload(ctx context.Context, r io.Reader) (string, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	type answer struct {
		path string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		p, err := c.sftpUpload(r)
		got <- answer{p, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			if c.lost() {
				return "", c.unreachable(a.err)
			}
			return "", fmt.Errorf("%s: upload: %w", c.cfg.Host, a.err)
		}
		return a.path, nil
	case <-ctx.Done():
		// Closing the SFTP channel aborts the transfer at once; the
		// goroutine then removes its partial upload over a fresh client.
		// That is waited for, within a bound, so an interrupted run that
		// exits next leaves nothing behind; a goroutine blocked reading
		// the caller's content is not (it cleans up when it returns).
		c.abortSFTP()
		bound := time.NewTimer(putCleanupBound)
		defer bound.Stop()
		select {
		case <-got:
		case <-bound.C:
			c.sftpMu.Lock()
			if c.sftp != nil {
				c.sftp.Close()
				c.sftp = nil
			}
			c.sftpMu.Unlock()
		}
		return "", ctx.Err()
	}
}

func (c *sshConn) abortSFTP() {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.sftpCh != nil {
		c.sftpCh.Close()
		c.sftpCh = nil
	}
}

// sftpClient returns the host's SFTP client, starting it on first use.
func (c *sshConn) sftpClient() (*sftp.Client, string, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp != nil {
		return c.sftp, c.sftpHome, nil
	}
	ch, reqs, err := c.client.OpenChannel("session", nil)
	if err != nil {
		return nil, "", err
	}
	c.rt.Add(1)
	go ssh.DiscardRequests(reqs)
	c.abortMu.Lock()
	c.sftpCh = ch
	c.abortMu.Unlock()
	// Pipelined like the shell: the subsystem request does not wait for
	// its reply; the SFTP version exchange follows at once.
	if _, err := ch.SendRequest("subsystem", false, ssh.Marshal(struct{ Name string }{"sftp"})); err != nil {
		c.abortSFTP()
		return nil, "", err
	}
	cl, err := sftp.NewClientPipe(ch, ch, sftp.UseConcurrentWrites(true))
	if err != nil {
		c.abortSFTP()
		return nil, "", err
	}
	c.rt.Add(1)
	home, err := cl.RealPath(".")
	if err != nil {
		cl.Close()
		c.abortSFTP()
		return nil, "", err
	}
	c.rt.Add(1)
	c.sftp, c.sftpHome = cl, home
	return cl, home, nil
}

// dropSFTP forgets cl after a failure (it may be an aborted client), so
// the next upload starts a fresh one.
func (c *sshConn) dropSFTP(cl *sftp.Client) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp == cl {
		c.sftp = nil
		cl.Close()
		c.abortSFTP()
	}
}

func (c *sshConn) sftpUpload(r io.Reader) (string, error) {
	cl, home, err := c.sftpClient()
	if err != nil {
		return "", err
	}
	tmp := strings.TrimSuffix(home, "/") + "/.gokube-upload-" + newMarker()[3:]
	if err := c.sftpWrite(cl, tmp, r); err != nil {
		if cl.Remove(tmp) != nil {
			// An aborted client cannot remove its partial upload; a fresh
			// one can (a few round trips, only after a cancellation).
			c.dropSFTP(cl)
			if ncl, _, nerr := c.sftpClient(); nerr == nil {
				_ = ncl.Remove(tmp)
			}
		}
		c.dropSFTP(cl)
		return "", err
	}
	return tmp, nil
}

func (c *sshConn) sftpWrite(cl *sftp.Client, tmp string, r io.Reader) error {
	f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	c.rt.Add(1)
	// Private before any content arrives: uploads may be secrets.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	c.rt.Add(1)
	n, err := f.ReadFrom(r)
	c.rt.Add((n + sftpWindow - 1) / sftpWindow)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	c.rt.Add(1)
	return err
}
