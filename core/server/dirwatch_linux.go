package server

import (
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// dirWatch tells the small-file cache when a file of the mirror's
// directory changes, through inotify, so that a cached copy can be served
// with no system call at all: the stat that otherwise checks each copy was
// a tenth of a manifest request's cost. Events are read and applied under
// one lock, both by a goroutine woken by the poller and synchronously by
// drain, which every cache miss calls before it reads the disk: the kernel
// queues an event within the rename or write that causes it, so once a
// reader has seen a file's new bytes, the events of everything written
// before it (the snapshot before the timestamp) have been applied too.
type dirWatch struct {
	mu     sync.Mutex
	f      *os.File
	rc     syscall.RawConn
	cache  *smallCache
	buf    []byte
	broken bool // the queue overflowed or the directory went away
}

const watchMask = syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_TO | syscall.IN_MOVED_FROM |
	syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MODIFY | syscall.IN_ATTRIB |
	syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// watchDir starts watching dir for c, or returns nil when inotify is not
// available (the cache then checks each copy with a stat).
func watchDir(dir string, c *smallCache) *dirWatch {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, watchMask); err != nil {
		syscall.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	w := &dirWatch{f: f, rc: rc, cache: c, buf: make([]byte, 64<<10)}
	go w.loop()
	return w
}

// ok reports whether cached copies may be trusted without a stat.
func (w *dirWatch) ok() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.broken
}

func (w *dirWatch) loop() {
	// The callback drains what is queued and returns false, which makes
	// the poller wait for the next event; Read returns once f is closed.
	w.rc.Read(func(fd uintptr) bool {
		return w.readLocked(int(fd))
	})
}

// drain applies the events queued so far.
func (w *dirWatch) drain() {
	if w == nil {
		return
	}
	// Control, not Read: the loop's Read holds the descriptor's read
	// lock while it waits for events.
	w.rc.Control(func(fd uintptr) {
		w.readLocked(int(fd))
	})
}

// readLocked reads and applies every queued event; it reports true when
// the watch is over (closed or broken).
func (w *dirWatch) readLocked(fd int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		n, err := syscall.Read(fd, w.buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return err != syscall.EAGAIN
		}
		w.apply(w.buf[:n])
		if w.broken {
			return true
		}
	}
}

func (w *dirWatch) apply(b []byte) {
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		name := b[syscall.SizeofInotifyEvent:end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		b = b[end:]
		if ev.Mask&(syscall.IN_Q_OVERFLOW|syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
			// Events were lost or the directory is gone: from now on
			// every copy is checked with a stat again.
			w.broken = true
			w.cache.invalidateAll()
			return
		}
		w.cache.invalidate(string(name))
	}
}

func (w *dirWatch) close() {
	if w != nil {
		w.f.Close()
	}
}
