// Package fsbackend stores a mirror in a local directory. It implements
// sdk.Backend and sdk.LocalFiler; plugins/backend-fs serves it as a plugin
// and tests use it in-process.
//
// Every access goes through an os.Root, so a key can never reach a file
// outside the mirror directory, not even through a symbolic link planted in
// the tree. Writes go to a temporary file in the destination directory that
// is fsynced and then renamed (or hard-linked, for create-only writes) over
// the final name, so a reader or a crash sees the old file or the whole new
// one, never a part.
//
// # ETags
//
// An ETag is the file's device, inode number, modification time in
// nanoseconds and size. Objects are never changed in place: every write
// creates a new file (a new inode) and renames it over the old name, and an
// open descriptor keeps reading the inode it opened. While a file exists no
// other file on its filesystem shares its inode number, so a replacement
// always changes the tag. The one way a tag could come back is inode reuse
// after the old file is gone; ext4 and friends reuse freed inodes eagerly
// and stamp times from a coarse clock, so two replacements within one tick
// could recreate an old tag. Commits therefore run under a commit lock
// (a mutex plus an flock shared by every process using this package), and a
// replacement whose modification time is not later than the file it replaces
// is moved one nanosecond past it. Along the life of a key the modification
// time thus grows strictly, and no tag repeats. This costs one stat per
// write, where a content hash would cost reading every object on every Stat.
package fsbackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/mirrorkit/mirror/sdk"
)

// Names of files the backend keeps for itself. They are never served, listed
// or accepted as keys.
const (
	tmpPrefix  = ".tmp-"
	lockPrefix = ".lock-"
	// commitLockName cannot collide with a Lock name, which may not start
	// with a dot.
	commitLockName = lockPrefix + ".commit"
)

// Backend is a mirror stored in a local directory. It is safe for concurrent
// use, and several Backend values, in one process or many, may share a
// directory. The zero value is not usable; call New or Open.
type Backend struct {
	dir string

	rootMu sync.Mutex
	root   *os.Root
	closed bool

	// commitMu queues this value's commits before they contend for the
	// cross-process flock.
	commitMu sync.Mutex
}

var (
	_ sdk.Backend    = (*Backend)(nil)
	_ sdk.LocalFiler = (*Backend)(nil)
	_ io.Closer      = (*Backend)(nil)
)

// New returns a Backend over the directory root. The directory need not exist
// yet: the first write creates it (mode 0755). A relative root is made
// absolute against the current directory now, so LocalPath stays valid.
func New(root string) *Backend {
	dir, err := filepath.Abs(root)
	if err != nil {
		dir = filepath.Clean(root)
	}
	return &Backend{dir: dir}
}

// Open is the sdk.BackendFactory of the fs backend. cfg.Address is an
// absolute directory path, optionally written as a file:// URL. The backend
// has no options, and refuses any rather than ignore a misspelt one or one
// meant for another backend.
func Open(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
	if len(cfg.Options) > 0 {
		return nil, fmt.Errorf("open fs backend: unknown option %s; the fs backend takes none: %w", strings.Join(slices.Sorted(maps.Keys(cfg.Options)), ", "), fs.ErrInvalid)
	}
	dir, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	return New(dir), nil
}

// parseAddress turns "/abs/dir" or "file:///abs/dir" into a clean absolute
// path.
func parseAddress(addr string) (string, error) {
	dir := addr
	if strings.HasPrefix(addr, "file://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", fmt.Errorf("open fs backend %s: %w", addr, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("open fs backend %s: file URL names host %q, only local paths work: %w", addr, u.Host, fs.ErrInvalid)
		}
		dir = filepath.FromSlash(u.Path)
	}
	if dir == "" || !filepath.IsAbs(dir) {
		return "", fmt.Errorf("open fs backend %q: the address must be an absolute directory path: %w", addr, fs.ErrInvalid)
	}
	return filepath.Clean(dir), nil
}

// Dir returns the absolute path of the mirror directory.
func (b *Backend) Dir() string { return b.dir }

// Close releases the directory handle. Operations after Close fail with
// os.ErrClosed.
func (b *Backend) Close() error {
	b.rootMu.Lock()
	defer b.rootMu.Unlock()
	b.closed = true
	if b.root == nil {
		return nil
	}
	err := b.root.Close()
	b.root = nil
	return err
}

// openRoot returns the handle on the mirror directory, creating the directory
// first when create is set. Without create a missing directory is
// sdk.ErrNotFound, which callers turn into "no such object" or "no objects".
func (b *Backend) openRoot(create bool) (*os.Root, error) {
	b.rootMu.Lock()
	defer b.rootMu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("open fs backend %s: %w", b.dir, os.ErrClosed)
	}
	if b.root != nil {
		return b.root, nil
	}
	if create {
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			return nil, fmt.Errorf("create mirror directory: %w", err)
		}
	}
	r, err := os.OpenRoot(b.dir)
	if err != nil {
		return nil, fmt.Errorf("open mirror directory: %w", err)
	}
	b.root = r
	return r, nil
}

// Capabilities reports everything: the fs backend writes, lists, deletes,
// compares-and-swaps, locks and hands out local paths. Where the platform
// has no flock, Lock and ConditionalPut are reported off, because they would
// then hold only within one process.
func (b *Backend) Capabilities(ctx context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{
		Write:          true,
		List:           true,
		Delete:         true,
		ConditionalPut: flockSupported,
		Lock:           flockSupported,
		LocalFiles:     true,
	}, nil
}

// Stat returns the object's info. A missing key, a directory, or a name the
// backend keeps for itself is sdk.ErrNotFound; an invalid key or one that
// resolves outside the mirror wraps fs.ErrInvalid.
func (b *Backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := readable("stat", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return sdk.ObjectInfo{}, err
	}
	r, err := b.openRoot(false)
	if err != nil {
		return sdk.ObjectInfo{}, mapErr("stat", key, err)
	}
	fi, err := r.Stat(key)
	if err != nil {
		return sdk.ObjectInfo{}, mapErr("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return sdk.ObjectInfo{}, notFound("stat", key)
	}
	return infoOf(key, fi), nil
}

// Get opens the object for reading. The info describes exactly the bytes the
// reader returns: a concurrent Put replaces the name, never the open file.
// Errors are those of Stat.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := readable("get", key); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	r, err := b.openRoot(false)
	if err != nil {
		return nil, sdk.ObjectInfo{}, mapErr("get", key, err)
	}
	f, err := r.Open(key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, mapErr("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, sdk.ObjectInfo{}, mapErr("get", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, sdk.ObjectInfo{}, notFound("get", key)
	}
	return f, infoOf(key, fi), nil
}

// Delete removes the object. A missing key or a directory is
// sdk.ErrNotFound. Emptied directories stay: removing them would race with a
// writer creating a file in them.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := readable("delete", key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := b.openRoot(false)
	if err != nil {
		return mapErr("delete", key, err)
	}
	// The commit lock orders a delete against conditional puts, so a
	// compare-and-swap never resurrects a key deleted after its compare.
	unlock, err := b.lockCommit(ctx, r)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	defer unlock()
	fi, err := r.Lstat(key)
	if err != nil {
		return mapErr("delete", key, err)
	}
	if fi.IsDir() {
		return notFound("delete", key)
	}
	if err := r.Remove(key); err != nil {
		return mapErr("delete", key, err)
	}
	return nil
}

// LocalPath returns the absolute path of the object's file. Errors are those
// of Stat. The path may go through a symbolic link that stays inside the
// mirror.
func (b *Backend) LocalPath(ctx context.Context, key string) (string, error) {
	if _, err := b.Stat(ctx, key); err != nil {
		return "", err
	}
	return filepath.Join(b.dir, filepath.FromSlash(key)), nil
}

// checkKey refuses keys that are not io/fs.ValidPath slash paths naming a
// file, with an error wrapping fs.ErrInvalid.
func checkKey(op, key string) error {
	if key == "." || !fs.ValidPath(key) {
		return &fs.PathError{Op: op, Path: key, Err: fs.ErrInvalid}
	}
	return nil
}

// reserved reports whether some element of key is a name the backend keeps
// for itself.
func reserved(key string) bool {
	for elem := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(elem, tmpPrefix) || strings.HasPrefix(elem, lockPrefix) {
			return true
		}
	}
	return false
}

// readable validates a key for a read or a delete: the backend's own files
// simply do not exist as objects.
func readable(op, key string) error {
	if err := checkKey(op, key); err != nil {
		return err
	}
	if reserved(key) {
		return notFound(op, key)
	}
	return nil
}

// writable validates a key for a write, refusing the backend's own names.
func writable(op, key string) error {
	if err := checkKey(op, key); err != nil {
		return err
	}
	if reserved(key) {
		return fmt.Errorf("%s %s: names starting with %q or %q are reserved: %w", op, key, tmpPrefix, lockPrefix, fs.ErrInvalid)
	}
	return nil
}

func notFound(op, key string) error {
	return &fs.PathError{Op: op, Path: key, Err: sdk.ErrNotFound}
}

// mapErr turns a filesystem error into the sdk's vocabulary: a missing file,
// or a path through a regular file (ENOTDIR), is sdk.ErrNotFound; a path that
// os.Root refuses because it escapes the mirror wraps fs.ErrInvalid.
func mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return notFound(op, key)
	}
	if escapes(err) {
		return fmt.Errorf("%s %s: the path leaves the mirror directory through a symbolic link: %w", op, key, fs.ErrInvalid)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: key, Err: pe.Err}
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// escapes reports an os.Root refusal. os does not export that error; since
// keys are checked by fs.ValidPath first (no "..", no leading slash), the only
// path error os.Root returns without an errno is the escape through a link.
func escapes(err error) bool {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false
	}
	var errno syscall.Errno
	return !errors.As(pe.Err, &errno)
}

func infoOf(key string, fi fs.FileInfo) sdk.ObjectInfo {
	return sdk.ObjectInfo{
		Key:     key,
		Size:    fi.Size(),
		ETag:    etag(fi),
		ModTime: fi.ModTime(),
	}
}

// etag derives the tag described in the package documentation.
func etag(fi fs.FileInfo) string {
	dev, ino := fileID(fi)
	return fmt.Sprintf("%x.%x-%x-%x", dev, ino, fi.ModTime().UnixNano(), fi.Size())
}

// parentDir is the slash directory of key, "." for a top-level key.
func parentDir(key string) string { return path.Dir(key) }
