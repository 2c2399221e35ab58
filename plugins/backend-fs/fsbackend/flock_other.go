//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fsbackend

import (
	"errors"
	"io/fs"
	"os"

	"github.com/mirrorkit/mirror/sdk"
)

// flockSupported is false: without flock there is no lock shared across
// processes, so Lock and ConditionalPut are reported off.
const flockSupported = false

var errLocked = errors.New("lock held elsewhere")

func tryLock(f *os.File) error { return sdk.ErrUnsupported }

func unlockFile(f *os.File) error { return nil }

// fileID has no inode to offer here; ETags fall back to time and size.
func fileID(fi fs.FileInfo) (dev, ino uint64) { return 0, 0 }
