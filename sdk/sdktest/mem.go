package sdktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mirrorkit/mirror/sdk"
)

// MemBackend is an sdk.Backend that keeps its objects in memory. It passes
// TestBackend and is meant as a fixture for tests of code that drives a
// backend, and as a reference for plugin authors; objects are held whole,
// so it is no place for large mirrors. It offers everything but local
// files, staging included (sdk.Stager). The zero value is not usable; call
// NewMemBackend.
type MemBackend struct {
	mu     sync.Mutex
	objs   map[string]memObject
	staged map[string][]byte        // staged content by sha256, never collected
	gen    uint64                   // counts writes, making every ETag new
	locks  map[string]chan struct{} // one token per lock name
}

type memObject struct {
	data []byte
	etag string
}

var (
	_ sdk.Backend = (*MemBackend)(nil)
	_ sdk.Stager  = (*MemBackend)(nil)
)

// NewMemBackend returns an empty MemBackend.
func NewMemBackend() *MemBackend {
	return &MemBackend{objs: map[string]memObject{}, staged: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

// Capabilities reports everything except LocalFiles.
func (m *MemBackend) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: true, Stage: true}, nil
}

// checkKey refuses keys that are not fs.ValidPath file paths.
func checkKey(op, key string) error {
	if key == "." || !fs.ValidPath(key) {
		return &fs.PathError{Op: op, Path: key, Err: fs.ErrInvalid}
	}
	return nil
}

func (m *MemBackend) lookup(op, key string) (memObject, error) {
	if err := checkKey(op, key); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return memObject{}, &fs.PathError{Op: op, Path: key, Err: sdk.ErrNotFound}
	}
	return o, nil
}

func (o memObject) info(key string) sdk.ObjectInfo {
	return sdk.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag}
}

// Stat returns the object's info.
func (m *MemBackend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	o, err := m.lookup("stat", key)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	return o.info(key), nil
}

// Get returns a reader over the object as it was when Get was called. The
// reader fails once ctx is done, as a remote backend's would.
func (m *MemBackend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	o, err := m.lookup("get", key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	return io.NopCloser(&ctxReader{ctx: ctx, r: bytes.NewReader(o.data)}), o.info(key), nil
}

// Put reads r whole, checks opts and then stores the object under the lock,
// so readers see the old object or the new one. With opts.Staged it takes
// the content Stage kept under opts.SHA256 instead of reading r.
func (m *MemBackend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := checkKey("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if opts.IfMatch != "" && opts.IfNoneMatch {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: IfMatch and IfNoneMatch together: %w", key, fs.ErrInvalid)
	}
	var data []byte
	var err error
	if opts.Staged {
		data, err = m.stagedContent(ctx, key, opts)
	} else {
		data, err = readChecked(ctx, "put "+key, r, opts)
	}
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, exists := m.objs[key]
	switch {
	case opts.IfNoneMatch && exists:
		return sdk.ObjectInfo{}, &fs.PathError{Op: "put", Path: key, Err: sdk.ErrExist}
	case opts.IfMatch != "" && !exists:
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: if-match %s, but the key is missing: %w", key, opts.IfMatch, sdk.ErrConflict)
	case opts.IfMatch != "" && cur.etag != opts.IfMatch:
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: if-match %s, current etag %s: %w", key, opts.IfMatch, cur.etag, sdk.ErrConflict)
	}
	m.gen++
	o := memObject{data: data, etag: strconv.FormatUint(m.gen, 10)}
	m.objs[key] = o
	return o.info(key), nil
}

// readChecked reads r whole, as opts allow, and checks it against them.
// op names the call in errors.
func readChecked(ctx context.Context, op string, r io.Reader, opts sdk.PutOptions) ([]byte, error) {
	var src io.Reader = &ctxReader{ctx: ctx, r: r}
	if opts.SizeKnown {
		// One byte past the expected size proves the stream too long.
		src = io.LimitReader(src, opts.Size+1)
	}
	data, err := io.ReadAll(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// A source that ends cleanly after a cancel still must not commit.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if opts.SizeKnown && int64(len(data)) != opts.Size {
		return nil, fmt.Errorf("%s: got %d bytes or more, want %d: %w", op, len(data), opts.Size, sdk.ErrIntegrity)
	}
	if opts.SHA256 != "" {
		if got := shaHex(data); got != opts.SHA256 {
			return nil, fmt.Errorf("%s: sha256 %s, want %s: %w", op, got, opts.SHA256, sdk.ErrIntegrity)
		}
	}
	return data, nil
}

func shaHex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// stagedContent is what a Put with opts.Staged stores: the content staged
// under opts.SHA256, of opts.Size bytes.
func (m *MemBackend) stagedContent(ctx context.Context, key string, opts sdk.PutOptions) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("put %s: %w", key, err)
	}
	if opts.SHA256 == "" || !opts.SizeKnown {
		return nil, fmt.Errorf("put %s: a staged put needs SHA256 and Size: %w", key, fs.ErrInvalid)
	}
	m.mu.Lock()
	data, ok := m.staged[opts.SHA256]
	m.mu.Unlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("put %s: no content staged with sha256 %s: %w", key, opts.SHA256, sdk.ErrNotFound)
	case int64(len(data)) != opts.Size:
		return nil, fmt.Errorf("put %s: the content staged with sha256 %s has %d bytes, want %d: %w", key, opts.SHA256, len(data), opts.Size, sdk.ErrIntegrity)
	}
	return data, nil
}

// Stage reads r whole, checks it against opts and keeps it by its sha256
// for a Put with PutOptions.Staged; nothing becomes visible.
func (m *MemBackend) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	if opts.IfMatch != "" || opts.IfNoneMatch || opts.Staged {
		return "", fmt.Errorf("stage: IfMatch, IfNoneMatch and Staged do not apply: %w", fs.ErrInvalid)
	}
	data, err := readChecked(ctx, "stage", r, opts)
	if err != nil {
		return "", err
	}
	sum := shaHex(data)
	m.mu.Lock()
	m.staged[sum] = data
	m.mu.Unlock()
	return sum, nil
}

// List calls fn, in key order, for a snapshot of the objects under prefix
// taken when List was called, so fn may call back into the backend.
func (m *MemBackend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	m.mu.Lock()
	var infos []sdk.ObjectInfo
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, o.info(k))
		}
	}
	m.mu.Unlock()
	slices.SortFunc(infos, func(a, b sdk.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (m *MemBackend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := checkKey("delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok {
		return &fs.PathError{Op: "delete", Path: key, Err: sdk.ErrNotFound}
	}
	delete(m.objs, key)
	return nil
}

// Lock takes the lock called name, waiting until it is free or ctx is done.
// Calling the returned function again does nothing.
func (m *MemBackend) Lock(ctx context.Context, name string) (func() error, error) {
	m.mu.Lock()
	tok, ok := m.locks[name]
	if !ok {
		tok = make(chan struct{}, 1)
		m.locks[name] = tok
	}
	m.mu.Unlock()
	select {
	case tok <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
	}
	var once sync.Once
	return func() error {
		once.Do(func() { <-tok })
		return nil
	}, nil
}

// ctxReader fails reads once its context is done.
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
