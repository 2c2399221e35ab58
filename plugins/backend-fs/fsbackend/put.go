package fsbackend

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// copyChunk bounds each kernel copy in PutFile, so a cancelled context is
// noticed between chunks without giving up copy_file_range.
const copyChunk = 8 << 20

// Put stores r under key atomically. It checks opts while streaming: a wrong
// length or digest wraps sdk.ErrIntegrity and stores nothing. IfNoneMatch
// fails with sdk.ErrExist when the key is present; IfMatch fails with
// sdk.ErrConflict when the current ETag differs or the key is missing.
// Directories on the way are created with mode 0755, the file with 0644.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	root, tmp, err := b.begin(ctx, "put", key, opts)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	var h hash.Hash
	var w io.Writer = tmp.f
	if opts.SHA256 != "" {
		h = sha256.New()
		w = io.MultiWriter(tmp.f, h)
	}
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if opts.SizeKnown {
		// One byte past the expected size is enough to know the stream is
		// too long; reading the rest would only fill the disk.
		src = io.LimitReader(src, opts.Size+1)
	}
	// Plugin streams arrive in chunks of up to 1 MiB; io.Copy's 32 KiB
	// buffer would cut each into 32 writes and 32 hash calls.
	buf := getBuffer()
	n, err := io.CopyBuffer(w, src, *buf)
	putBuffer(buf)
	if err == nil {
		err = ctx.Err() // a source that ends cleanly after a cancel must not commit
	}
	if err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := verify(key, n, h, opts); err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, err
	}
	return b.finish(ctx, root, "put", key, tmp, opts)
}

// PutFile stores the file at src under key, as Put would. The bytes move
// with io.Copy between two *os.File values, which Linux turns into
// copy_file_range (or sendfile), so they never pass through user space; the
// digest, when asked for, is computed from the stored copy, which is what a
// reader will get, chunk by chunk on another core while later chunks copy.
func (b *Backend) PutFile(ctx context.Context, key, src string, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := writable("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := checkOptions("put", key, opts); err != nil {
		return sdk.ObjectInfo{}, err
	}
	in, err := os.Open(src)
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: source %s is not a regular file: %w", key, src, fs.ErrInvalid)
	}
	if opts.SizeKnown && fi.Size() != opts.Size {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: source is %d bytes, want %d: %w", key, fi.Size(), opts.Size, sdk.ErrIntegrity)
	}
	root, tmp, err := b.begin(ctx, "put", key, opts)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	var h hash.Hash
	if opts.SHA256 != "" {
		h = sha256.New()
	}
	n, err := copyHashing(ctx, tmp.f, in, h)
	if err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := verify(key, n, h, opts); err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, err
	}
	return b.finish(ctx, root, "put", key, tmp, opts)
}

// begin validates a write and creates its temporary file next to the final
// name.
func (b *Backend) begin(ctx context.Context, op, key string, opts sdk.PutOptions) (*os.Root, *tempFile, error) {
	if err := writable(op, key); err != nil {
		return nil, nil, err
	}
	if err := checkOptions(op, key, opts); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	root, err := b.openRoot(true)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	dir := parentDir(key)
	if dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return nil, nil, fmt.Errorf("%s %s: an object is in the way of directory %s: %w", op, key, dir, sdk.ErrExist)
			}
			return nil, nil, mapErr(op, key, err)
		}
	}
	tmp, err := createTemp(root, dir)
	if err != nil {
		return nil, nil, mapErr(op, key, err)
	}
	return root, tmp, nil
}

func checkOptions(op, key string, opts sdk.PutOptions) error {
	if opts.IfMatch != "" && opts.IfNoneMatch {
		return fmt.Errorf("%s %s: IfMatch and IfNoneMatch together: %w", op, key, fs.ErrInvalid)
	}
	if opts.SizeKnown && opts.Size < 0 {
		return fmt.Errorf("%s %s: negative expected size %d: %w", op, key, opts.Size, fs.ErrInvalid)
	}
	if opts.SHA256 != "" {
		if d, err := hex.DecodeString(opts.SHA256); err != nil || len(d) != sha256.Size || hex.EncodeToString(d) != opts.SHA256 {
			return fmt.Errorf("%s %s: expected sha256 %q is not 64 lowercase hex digits: %w", op, key, opts.SHA256, fs.ErrInvalid)
		}
	}
	return nil
}

// verify checks the length and digest of what was written.
func verify(key string, n int64, h hash.Hash, opts sdk.PutOptions) error {
	if opts.SizeKnown && n != opts.Size {
		if n > opts.Size {
			return fmt.Errorf("put %s: more than the expected %d bytes: %w", key, opts.Size, sdk.ErrIntegrity)
		}
		return fmt.Errorf("put %s: %d bytes, want %d: %w", key, n, opts.Size, sdk.ErrIntegrity)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != opts.SHA256 {
			return fmt.Errorf("put %s: sha256 %s, want %s: %w", key, got, opts.SHA256, sdk.ErrIntegrity)
		}
	}
	return nil
}

// finish makes the temporary file durable and commits it under key.
func (b *Backend) finish(ctx context.Context, root *os.Root, op, key string, tmp *tempFile, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	// The data must be on disk before the name points at it, or a crash
	// right after the rename could leave an empty or partial file there.
	if err := tmp.f.Sync(); err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, fmt.Errorf("%s %s: sync: %w", op, key, err)
	}
	if err := tmp.f.Close(); err != nil {
		tmp.f = nil
		tmp.discard()
		return sdk.ObjectInfo{}, fmt.Errorf("%s %s: close: %w", op, key, err)
	}
	tmp.f = nil
	fi, err := b.commit(ctx, root, op, key, tmp.name, opts)
	if err != nil {
		tmp.discard()
		return sdk.ObjectInfo{}, err
	}
	// The rename is durable only once the directory is.
	if err := syncDir(root, parentDir(key)); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("%s %s: sync directory: %w", op, key, err)
	}
	return infoOf(key, fi), nil
}

// commit moves the closed temporary file to key under the commit lock and
// returns its info. On failure the temporary file is left for the caller to
// remove.
func (b *Backend) commit(ctx context.Context, root *os.Root, op, key, tmpName string, opts sdk.PutOptions) (fs.FileInfo, error) {
	unlock, err := b.lockCommit(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	defer unlock()

	if opts.IfNoneMatch {
		// link(2) fails when the name exists, so create-only holds even
		// against writers that ignore the commit lock.
		if err := root.Link(tmpName, key); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, &fs.PathError{Op: op, Path: key, Err: sdk.ErrExist}
			}
			return nil, mapErr(op, key, err)
		}
		fi, err := root.Stat(key)
		if err != nil {
			return nil, mapErr(op, key, err)
		}
		// The object is committed; a leftover temporary name is harmless
		// because nothing serves it, so a failed remove is not an error.
		_ = root.Remove(tmpName)
		return fi, nil
	}

	cur, err := root.Stat(key)
	switch {
	case err == nil && cur.IsDir():
		return nil, fmt.Errorf("%s %s: a directory has that name: %w", op, key, sdk.ErrExist)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, mapErr(op, key, err)
	}
	exists := err == nil
	if opts.IfMatch != "" {
		if !exists {
			return nil, fmt.Errorf("%s %s: if-match %s, but the key is missing: %w", op, key, opts.IfMatch, sdk.ErrConflict)
		}
		if got := etag(cur); got != opts.IfMatch {
			return nil, fmt.Errorf("%s %s: if-match %s, current etag %s: %w", op, key, opts.IfMatch, got, sdk.ErrConflict)
		}
	}
	fi, err := root.Stat(tmpName)
	if err != nil {
		return nil, mapErr(op, key, err)
	}
	if exists && !fi.ModTime().After(cur.ModTime()) {
		// Keep modification times strictly growing along the key, so a
		// reused inode can never bring back an old ETag (see the package
		// documentation).
		if err := root.Chtimes(tmpName, time.Time{}, cur.ModTime().Add(time.Nanosecond)); err != nil {
			return nil, mapErr(op, key, err)
		}
		if fi, err = root.Stat(tmpName); err != nil {
			return nil, mapErr(op, key, err)
		}
	}
	if err := root.Rename(tmpName, key); err != nil {
		return nil, mapErr(op, key, err)
	}
	return fi, nil
}

// tempFile is a write in progress, named so that nothing serves or lists it.
type tempFile struct {
	root *os.Root
	name string
	f    *os.File
}

func createTemp(root *os.Root, dir string) (*tempFile, error) {
	var rnd [12]byte
	for {
		rand.Read(rnd[:])
		name := path.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// The umask may have narrowed the mode; mirrors are world-readable.
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			root.Remove(name)
			return nil, err
		}
		return &tempFile{root: root, name: name, f: f}, nil
	}
}

// discard closes and removes the temporary file after a failure. Errors are
// dropped: the failure being reported matters more, and a leftover
// temporary file is invisible to readers.
func (t *tempFile) discard() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	_ = t.root.Remove(t.name)
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader stops a stream when its context is done, so a cancelled upload
// does not keep writing.
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

// copyHashing copies in to out in chunks, checking ctx between them. When h
// is set, a second goroutine hashes each chunk from out (the stored bytes,
// read back from the page cache) while the next one copies, so verifying
// costs little more than copying.
func copyHashing(ctx context.Context, out, in *os.File, h hash.Hash) (int64, error) {
	var ends chan int64
	hashed := make(chan error, 1)
	if h != nil {
		ends = make(chan int64, 4)
		go func() {
			// Read back in large pieces: with io.Copy's 32 KiB buffer the
			// pread calls cost more than the hashing they feed.
			buf := getBuffer()
			defer putBuffer(buf)
			var off int64
			var err error
			for end := range ends {
				if err == nil {
					_, err = io.CopyBuffer(h, io.NewSectionReader(out, off, end-off), *buf)
				}
				off = end
			}
			hashed <- err
		}()
	}
	n, err := copyChunks(ctx, out, in, ends)
	if ends != nil {
		close(ends)
		if herr := <-hashed; err == nil && herr != nil {
			err = fmt.Errorf("hash the copy: %w", herr)
		}
	}
	return n, err
}

// copyChunks copies in to out copyChunk bytes at a time, reporting the end
// offset of each chunk on ends when it is not nil.
func copyChunks(ctx context.Context, out, in *os.File, ends chan<- int64) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		c, err := io.CopyN(out, in, copyChunk)
		n += c
		if c > 0 && ends != nil {
			ends <- n
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// bufferSize is the buffer Put copies through and PutFile reads its copy
// back with: the plugin protocol's chunk size.
const bufferSize = 1 << 20

var buffers = sync.Pool{New: func() any {
	b := make([]byte, bufferSize)
	return &b
}}

func getBuffer() *[]byte  { return buffers.Get().(*[]byte) }
func putBuffer(b *[]byte) { buffers.Put(b) }
