package faulttest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// ErrInjected is the error an error_at fault returns.
var ErrInjected = fmt.Errorf("injected fault: input/output error")

// Backend is the faulty backend: an fsbackend.Backend whose calls follow a
// Plan. It is safe for concurrent use, as the fs backend is.
type Backend struct {
	fs      *fsbackend.Backend
	plan    *Plan
	rec     recorder
	journal *journal
}

var (
	_ sdk.Backend    = (*Backend)(nil)
	_ sdk.LocalFiler = (*Backend)(nil)
)

// OpenBackend is the sdk.BackendFactory of mirror-backend-faulty. The
// address is faulty:///abs/dir (or a plain absolute path, under
// `mirror --backend faulty`); the plan comes from $MIRROR_FAULT_PLAN.
func OpenBackend(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
	plan, err := LoadPlan()
	if err != nil {
		return nil, err
	}
	return NewBackend(cfg.Address, plan)
}

// NewBackend returns the faulty backend over the mirror directory named by
// addr, following plan.
func NewBackend(addr string, plan *Plan) (*Backend, error) {
	dir := addr
	if rest, ok := strings.CutPrefix(addr, Scheme+"://"); ok {
		dir = rest
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("open faulty backend %q: want faulty:///absolute/dir: %w", addr, fs.ErrInvalid)
	}
	b := &Backend{fs: fsbackend.New(dir), plan: plan, rec: recorder{plan: plan, plugin: "backend"}}
	if plan.Backend.Volatile != "" {
		b.journal = &journal{state: plan.State, dir: b.fs.Dir(), mode: plan.Backend.Volatile}
	}
	return b, nil
}

// Capabilities are the fs backend's.
func (b *Backend) Capabilities(ctx context.Context) (sdk.Capabilities, error) {
	return b.fs.Capabilities(ctx)
}

func (b *Backend) corrupt(key string) bool {
	for _, k := range b.plan.Backend.CorruptRead {
		if k == key {
			return true
		}
	}
	return false
}

// Stat is the fs backend's, unless the key hangs.
func (b *Backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if key == b.plan.Backend.HangRead && key != "" {
		b.rec.log(Call{Op: "Stat", Key: key, Fault: "hang"})
		hang()
	}
	info, err := b.fs.Stat(ctx, key)
	b.rec.log(Call{Op: "Stat", Key: key, Err: errText(err)})
	return info, err
}

// Get is the fs backend's; a corrupt_read key comes back with its middle
// byte flipped.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if key == b.plan.Backend.HangRead && key != "" {
		b.rec.log(Call{Op: "Get", Key: key, Fault: "hang"})
		hang()
	}
	rc, info, err := b.fs.Get(ctx, key)
	c := Call{Op: "Get", Key: key, Err: errText(err)}
	if err == nil && b.corrupt(key) && info.Size > 0 {
		c.Fault = "corrupt_read"
		rc = &flipReader{r: rc, at: info.Size / 2}
	}
	b.rec.log(c)
	return rc, info, err
}

// flipReader flips the byte at offset at.
type flipReader struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x55
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// List is the fs backend's, or a flood of made-up objects.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	if n := b.plan.Backend.ListFlood; n > 0 {
		b.rec.log(Call{Op: "List", Key: prefix, Fault: "list_flood"})
		// A misbehaving plugin: it neither stops when told to nor looks at
		// the context; only the host can cut it off.
		for i := range n {
			fn(sdk.ObjectInfo{Key: fmt.Sprintf("%sflood/%08d", prefix, i), Size: 1})
		}
		return nil
	}
	err := b.fs.List(ctx, prefix, fn)
	b.rec.log(Call{Op: "List", Key: prefix, Err: errText(err)})
	return err
}

// LocalPath is the fs backend's, except for keys whose reads are corrupted
// or hang: those must be read through Get.
func (b *Backend) LocalPath(ctx context.Context, key string) (string, error) {
	if key == b.plan.Backend.HangRead && key != "" {
		b.rec.log(Call{Op: "LocalPath", Key: key, Fault: "hang"})
		hang()
	}
	if b.corrupt(key) {
		b.rec.log(Call{Op: "LocalPath", Key: key, Fault: "corrupt_read"})
		return "", fmt.Errorf("local path %s: %w", key, sdk.ErrUnsupported)
	}
	p, err := b.fs.LocalPath(ctx, key)
	b.rec.log(Call{Op: "LocalPath", Key: key, Err: errText(err)})
	return p, err
}

// Put stores r under key, following the plan.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	return b.write(ctx, "Put", key, opts, func() ([]byte, error) { return io.ReadAll(r) },
		func() (sdk.ObjectInfo, error) { return b.fs.Put(ctx, key, r, opts) })
}

// PutFile stores the file at src under key, following the plan.
func (b *Backend) PutFile(ctx context.Context, key, src string, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	return b.write(ctx, "PutFile", key, opts, func() ([]byte, error) { return os.ReadFile(src) },
		func() (sdk.ObjectInfo, error) { return b.fs.PutFile(ctx, key, src, opts) })
}

// write runs one Put or PutFile: read gives the bytes the host sent, for
// the faults that handle them themselves; do is the real write.
func (b *Backend) write(ctx context.Context, op, key string, opts sdk.PutOptions, read func() ([]byte, error), do func() (sdk.ObjectInfo, error)) (sdk.ObjectInfo, error) {
	c := Call{Op: op, Key: key, IfNoneMatch: opts.IfNoneMatch, IfMatch: opts.IfMatch != "", Size: opts.Size}
	if _, err := b.fs.Stat(ctx, key); err == nil {
		c.Existed = true
	}
	seq, err := b.rec.next("mutations")
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("faulty backend: %w", err)
	}
	c.Seq = seq
	p := b.plan.Backend
	switch at := func(k int) bool { return k > 0 && seq == k }; {
	case at(p.ErrorAt):
		c.Fault, c.Err = "error", ErrInjected.Error()
		b.rec.log(c)
		return sdk.ObjectInfo{}, fmt.Errorf("%s %s: %w", strings.ToLower(op), key, ErrInjected)
	case at(p.HangAt):
		c.Fault = "hang"
		b.rec.log(c)
		hang()
	case at(p.DropWriteAt):
		data, err := read()
		if err != nil {
			return sdk.ObjectInfo{}, err
		}
		c.Fault = "drop_write"
		b.rec.log(c)
		return sdk.ObjectInfo{Key: key, Size: int64(len(data)), ETag: fmt.Sprintf("dropped-%d", seq), ModTime: time.Now()}, nil
	case at(p.TornWriteAt):
		data, err := read()
		if err != nil {
			return sdk.ObjectInfo{}, err
		}
		c.Fault = "torn_write"
		if b.journal != nil {
			b.journal.begin(seq, op, key)
		}
		b.rec.log(c)
		// In place, no temporary file, no rename, no fsync: the half that
		// reached the file is what a reader or a restart finds.
		final := filepath.Join(b.fs.Dir(), filepath.FromSlash(key))
		os.MkdirAll(filepath.Dir(final), 0o755)
		os.WriteFile(final, data[:len(data)/2], 0o644)
		die()
	}
	if b.journal != nil {
		if err := b.journal.begin(seq, op, key); err != nil {
			return sdk.ObjectInfo{}, fmt.Errorf("faulty backend journal: %w", err)
		}
	}
	info, err := do()
	if b.journal != nil {
		b.journal.end(seq, op, err)
	}
	c.Err = errText(err)
	b.crashAfter(seq, &c)
	b.rec.log(c)
	return info, err
}

// crashAfter kills the process when seq is the plan's crash point, after
// the call reached storage and before its answer leaves.
func (b *Backend) crashAfter(seq int, c *Call) {
	if seq == 0 || seq != b.plan.Backend.CrashAfterMutations {
		return
	}
	c.Fault = "crash"
	b.rec.log(*c)
	die()
}

// Delete removes key, following the plan.
func (b *Backend) Delete(ctx context.Context, key string) error {
	c := Call{Op: "Delete", Key: key}
	seq, err := b.rec.next("mutations")
	if err != nil {
		return fmt.Errorf("faulty backend: %w", err)
	}
	c.Seq = seq
	p := b.plan.Backend
	switch at := func(k int) bool { return k > 0 && seq == k }; {
	case at(p.ErrorAt):
		c.Fault, c.Err = "error", ErrInjected.Error()
		b.rec.log(c)
		return fmt.Errorf("delete %s: %w", key, ErrInjected)
	case at(p.HangAt):
		c.Fault = "hang"
		b.rec.log(c)
		hang()
	case at(p.DropWriteAt):
		c.Fault = "drop_write"
		b.rec.log(c)
		return nil
	case at(p.TornWriteAt):
		c.Fault = "crash"
		b.rec.log(c)
		die()
	}
	if b.journal != nil {
		if err := b.journal.begin(seq, "Delete", key); err != nil {
			return fmt.Errorf("faulty backend journal: %w", err)
		}
	}
	err = b.fs.Delete(ctx, key)
	if b.journal != nil {
		b.journal.end(seq, "Delete", err)
	}
	c.Err = errText(err)
	b.crashAfter(seq, &c)
	b.rec.log(c)
	return err
}

// Lock takes the fs backend's writer lock, following the plan. A lock
// "dropped" by the plan is acknowledged without being taken.
func (b *Backend) Lock(ctx context.Context, name string) (func() error, error) {
	c := Call{Op: "Lock", Key: name}
	seq, err := b.rec.next("mutations")
	if err != nil {
		return nil, fmt.Errorf("faulty backend: %w", err)
	}
	c.Seq = seq
	p := b.plan.Backend
	switch at := func(k int) bool { return k > 0 && seq == k }; {
	case at(p.ErrorAt):
		c.Fault, c.Err = "error", ErrInjected.Error()
		b.rec.log(c)
		return nil, fmt.Errorf("lock %s: %w", name, ErrInjected)
	case at(p.HangAt):
		c.Fault = "hang"
		b.rec.log(c)
		hang()
	case at(p.DropWriteAt):
		c.Fault = "drop_write"
		b.rec.log(c)
		return func() error { return nil }, nil
	case at(p.TornWriteAt):
		c.Fault = "crash"
		b.rec.log(c)
		die()
	}
	unlock, err := b.fs.Lock(ctx, name)
	c.Err = errText(err)
	b.crashAfter(seq, &c)
	b.rec.log(c)
	if err != nil {
		return nil, err
	}
	return func() error {
		err := unlock()
		b.rec.log(Call{Op: "Unlock", Key: name, Err: errText(err)})
		return err
	}, nil
}

// Close releases the fs backend.
func (b *Backend) Close() error { return b.fs.Close() }

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
