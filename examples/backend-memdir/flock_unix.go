//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// flockSupported says Lock and the cross-process commit lock work here.
const flockSupported = true

// pollEvery is how often a waiting Lock retries; flock has no wait with a
// deadline, and a mirror's writers hold their lock for seconds, not
// microseconds.
const pollEvery = 20 * time.Millisecond

// acquire takes an exclusive flock on the file at path (created if needed),
// retrying until it is free or ctx is done. A flock belongs to an open file
// description, so two acquires in one process exclude each other too. The
// returned function releases the lock; calling it again does nothing.
func acquire(ctx context.Context, path string) (func() error, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
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
		t := time.NewTimer(pollEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return sync.OnceValue(func() error {
		// Closing the descriptor releases the flock.
		return f.Close()
	}), nil
}
