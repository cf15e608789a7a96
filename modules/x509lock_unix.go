//go:build unix

package modules

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// x509Flock takes an exclusive flock on path. flock locks belong to the open
// file description, so two goroutines of this process exclude each other as
// well as two gokube processes sharing a pki folder. It polls rather than
// blocks so a cancelled run does not hang on a lock.
func x509Flock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
