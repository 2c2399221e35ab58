package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mirrorkit/mirror/sdk"
)

// Prefixes of the names in a memdir directory. Objects, temporary files and
// lock files each have their own, so no key can ever name one of the
// backend's own files.
const (
	objPrefix  = "o."
	tmpPrefix  = "t."
	lockPrefix = "l."
	// commitLock cannot collide with a Lock name, which may not start with
	// a dot.
	commitLock = lockPrefix + ".commit"
)

// backend is a mirror kept as flat files in one directory. Its ETag is the
// object's sha256, computed when it is read: the example keeps no metadata
// beside the objects, at the price of hashing an object on every Stat. A
// production backend would store the digest it computes in Put.
type backend struct {
	dir string

	// commitMu queues this process's commits before they contend for the
	// cross-process flock on commitLock.
	commitMu sync.Mutex
}

var _ sdk.Backend = (*backend)(nil)

// open is the sdk.BackendFactory: cfg.Address is memdir://PATH, or a plain
// PATH when the user picked the backend by name (--backend memdir). A
// relative PATH is relative to the working directory, which the plugin
// shares with the mirror command that started it.
func open(_ context.Context, cfg sdk.Config) (sdk.Backend, error) {
	// A key this backend does not know is refused, not ignored: a typo in
	// --backend-option must not pass silently.
	for k := range cfg.Options {
		return nil, fmt.Errorf("open memdir: unknown option %s; the memdir backend takes none: %w", k, fs.ErrInvalid)
	}
	p := cfg.Address
	if rest, ok := strings.CutPrefix(p, "memdir://"); ok {
		p = rest
	} else if strings.Contains(p, "://") {
		return nil, fmt.Errorf("open memdir %s: not a memdir:// address: %w", cfg.Address, fs.ErrInvalid)
	}
	if p == "" {
		return nil, fmt.Errorf("open memdir %q: no directory named: %w", cfg.Address, fs.ErrInvalid)
	}
	dir, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("open memdir %s: %w", cfg.Address, err)
	}
	return &backend{dir: dir}, nil
}

// fileName is the flat name of key's file: "/" and every other byte that
// is not safe in a file name are %-escaped, so the mapping is one-to-one.
func fileName(key string) string { return objPrefix + url.PathEscape(key) }

// keyOf reverses fileName; ok is false for the backend's own files.
func keyOf(name string) (string, bool) {
	esc, ok := strings.CutPrefix(name, objPrefix)
	if !ok {
		return "", false
	}
	key, err := url.PathUnescape(esc)
	if err != nil || !validKey(key) {
		return "", false
	}
	return key, true
}

func validKey(key string) bool { return key != "." && fs.ValidPath(key) }

func checkKey(op, key string) error {
	if !validKey(key) {
		return fmt.Errorf("%s %q: not a valid key: %w", op, key, fs.ErrInvalid)
	}
	return nil
}

func (b *backend) path(key string) string { return filepath.Join(b.dir, fileName(key)) }

// Capabilities reports a writable, listable backend with atomic conditional
// writes; Lock works where the platform has flock.
func (b *backend) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: flockSupported}, nil
}

// Stat returns key's size, time and ETag.
func (b *backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := checkKey("stat", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	f, err := os.Open(b.path(key))
	if err != nil {
		return sdk.ObjectInfo{}, mapErr("stat", key, err)
	}
	defer f.Close()
	return infoOf(ctx, key, f)
}

// infoOf describes the open object file f, hashing it for the ETag.
func infoOf(ctx context.Context, key string, f *os.File) (sdk.ObjectInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return sdk.ObjectInfo{}, mapErr("stat", key, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: io.NewSectionReader(f, 0, fi.Size())}); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("hash %s: %w", key, err)
	}
	return sdk.ObjectInfo{Key: key, Size: fi.Size(), ETag: hex.EncodeToString(h.Sum(nil)), ModTime: fi.ModTime()}, nil
}

// Get opens key for reading. The reader is the open file, so a concurrent
// Put, which renames a new file over the name, never changes what it reads.
func (b *backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := checkKey("get", key); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(b.path(key))
	if err != nil {
		return nil, sdk.ObjectInfo{}, mapErr("get", key, err)
	}
	info, err := infoOf(ctx, key, f)
	if err != nil {
		f.Close()
		return nil, sdk.ObjectInfo{}, err
	}
	return &readCloser{Reader: &ctxReader{ctx: ctx, r: f}, Closer: f}, info, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Put streams r into a temporary file, checks it against opts, and renames
// it over key's file under the commit lock, where the conditions of opts
// are checked against the current object.
func (b *backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := checkKey("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if opts.IfMatch != "" && opts.IfNoneMatch {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: IfMatch and IfNoneMatch together: %w", key, fs.ErrInvalid)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(b.dir, tmpPrefix+"*")
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	src := &ctxReader{ctx: ctx, r: r}
	var in io.Reader = src
	if opts.SizeKnown {
		// One byte past the expected size is enough to know it is wrong;
		// reading on would only fill the disk.
		in = io.LimitReader(src, opts.Size+1)
	}
	n, err := io.Copy(tmp, io.TeeReader(in, h))
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := verify(key, n, sum, opts); err != nil {
		return sdk.ObjectInfo{}, err
	}
	// The data must be on disk before the name points at it.
	if err := tmp.Sync(); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	unlock, err := b.lockCommit(ctx)
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer unlock()
	if err := b.checkCondition(ctx, key, opts); err != nil {
		return sdk.ObjectInfo{}, err
	}
	// A caller that gave up must not find its write done after all.
	if err := ctx.Err(); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), b.path(key)); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	committed = true
	return sdk.ObjectInfo{Key: key, Size: n, ETag: sum, ModTime: fi.ModTime()}, nil
}

// verify checks what was written against opts.
func verify(key string, n int64, sum string, opts sdk.PutOptions) error {
	if opts.SizeKnown && n != opts.Size {
		return fmt.Errorf("put %s: %d bytes or more, want %d: %w", key, n, opts.Size, sdk.ErrIntegrity)
	}
	if opts.SHA256 != "" && sum != opts.SHA256 {
		return fmt.Errorf("put %s: sha256 %s, want %s: %w", key, sum, opts.SHA256, sdk.ErrIntegrity)
	}
	return nil
}

// checkCondition tests opts' IfNoneMatch and IfMatch against the current
// object; the caller holds the commit lock, so the answer stays true until
// it renames.
func (b *backend) checkCondition(ctx context.Context, key string, opts sdk.PutOptions) error {
	if !opts.IfNoneMatch && opts.IfMatch == "" {
		return nil
	}
	cur, err := b.Stat(ctx, key)
	switch {
	case opts.IfNoneMatch && err == nil:
		return fmt.Errorf("put %s: %w", key, sdk.ErrExist)
	case opts.IfNoneMatch && errors.Is(err, sdk.ErrNotFound):
		return nil
	case opts.IfMatch != "" && errors.Is(err, sdk.ErrNotFound):
		return fmt.Errorf("put %s: no object to match ETag %s: %w", key, opts.IfMatch, sdk.ErrConflict)
	case err != nil:
		return err
	case cur.ETag != opts.IfMatch:
		return fmt.Errorf("put %s: ETag is %s, not %s: %w", key, cur.ETag, opts.IfMatch, sdk.ErrConflict)
	}
	return nil
}

// List reports every object whose key starts with prefix. The directory is
// flat, so one ReadDir sees them all.
func (b *backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	ents, err := os.ReadDir(b.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, e := range ents {
		key, ok := keyOf(e.Name())
		if !ok || !e.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		info, err := b.Stat(ctx, key)
		if errors.Is(err, sdk.ErrNotFound) {
			// Deleted since ReadDir: it is no longer there to report.
			continue
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes key's file, under the commit lock so that it cannot slip
// between a conditional Put's check and its rename.
func (b *backend) Delete(ctx context.Context, key string) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	if _, err := os.Stat(b.dir); err != nil {
		return mapErr("delete", key, err)
	}
	unlock, err := b.lockCommit(ctx)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	defer unlock()
	if err := os.Remove(b.path(key)); err != nil {
		return mapErr("delete", key, err)
	}
	return nil
}

// Lock takes the writer lock called name, a flock on the file l.NAME,
// waiting until it is free or ctx is done. A name is one path element not
// starting with a dot.
func (b *backend) Lock(ctx context.Context, name string) (func() error, error) {
	if !flockSupported {
		return nil, fmt.Errorf("lock %s: %w", name, sdk.ErrUnsupported)
	}
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") {
		return nil, fmt.Errorf("lock %q: a lock name is one path element not starting with a dot: %w", name, fs.ErrInvalid)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	unlock, err := acquire(ctx, filepath.Join(b.dir, lockPrefix+name))
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return unlock, nil
}

// lockCommit serializes commits on the directory: first among this
// process's goroutines, then across processes through a flock.
func (b *backend) lockCommit(ctx context.Context) (func() error, error) {
	b.commitMu.Lock()
	if !flockSupported {
		return func() error { b.commitMu.Unlock(); return nil }, nil
	}
	unlock, err := acquire(ctx, filepath.Join(b.dir, commitLock))
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

// mapErr words a file error in terms of keys, keeping its sentinel.
func mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", op, key, sdk.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// ctxReader stops a stream once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
