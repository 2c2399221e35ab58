//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package fsbackend

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// flockSupported says Lock and the cross-process commit lock work here.
const flockSupported = true

// errLocked reports a flock held by someone else.
var errLocked = syscall.EWOULDBLOCK

func tryLock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return err
	}
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// fileID returns the device and inode number behind fi.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
