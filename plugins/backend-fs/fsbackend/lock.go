package fsbackend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"
)

// Polling bounds for a contended flock. flock(2) cannot wait on a context,
// so a waiter retries a non-blocking attempt, backing off up to pollMax.
const (
	pollMin = 2 * time.Millisecond
	pollMax = 50 * time.Millisecond
)

// Lock takes the writer lock called name: an exclusive flock on the file
// .lock-<name> in the mirror directory (created if needed), so writers in
// different processes, and different Backend values in one process,
// serialize. It waits until the lock is free or ctx is done, and returns the
// function that releases it; calling that function again does nothing. A name
// must be one path element not starting with a dot. Where the platform has no
// flock, Lock returns sdk.ErrUnsupported.
func (b *Backend) Lock(ctx context.Context, name string) (func() error, error) {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") || !fs.ValidPath(name) {
		return nil, fmt.Errorf("lock %q: a lock name is one path element not starting with a dot: %w", name, fs.ErrInvalid)
	}
	root, err := b.openRoot(true)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	unlock, err := acquire(ctx, root, lockPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return unlock, nil
}

// lockCommit serializes commits on this mirror directory: first among this
// value's goroutines, then across processes and values through a flock.
func (b *Backend) lockCommit(ctx context.Context, root *os.Root) (func() error, error) {
	b.commitMu.Lock()
	if !flockSupported {
		return func() error { b.commitMu.Unlock(); return nil }, nil
	}
	unlock, err := acquire(ctx, root, commitLockName)
	if err != nil {
		b.commitMu.Unlock()
		return nil, fmt.Errorf("take the commit lock: %w", err)
	}
	return func() error {
		err := unlock()
		b.commitMu.Unlock()
		return err
	}, nil
}

// acquire opens the lock file and polls for an exclusive flock on it.
func acquire(ctx context.Context, root *os.Root, file string) (func() error, error) {
	f, err := root.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	wait := pollMin
	for {
		err := tryLock(f)
		if err == nil {
			break
		}
		if !errors.Is(err, errLocked) {
			f.Close()
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, pollMax)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			// Closing the descriptor releases the flock too; unlocking
			// first makes the release explicit and reports its error.
			uerr = unlockFile(f)
			if cerr := f.Close(); uerr == nil {
				uerr = cerr
			}
		})
		return uerr
	}, nil
}
