package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// Backend is a backend plugin seen from the host. It implements sdk.Backend,
// sdk.LocalFiler and sdk.Stager; LocalPath and PutFile fail with
// sdk.ErrUnsupported unless Caps().LocalFiles is set, Stage unless
// Caps().Stage is. It is safe for concurrent use. Close it
// when done: the plugin process lives until then.
type Backend struct {
	c    *conn
	rpc  wire.BackendClient
	caps sdk.Capabilities
}

var (
	_ sdk.Backend    = (*Backend)(nil)
	_ sdk.LocalFiler = (*Backend)(nil)
	_ sdk.Stager     = (*Backend)(nil)
)

// StartBackend starts the backend plugin cmd, opens it with cfg and fetches
// its capabilities. logger receives the plugin's log lines; nil discards
// them. ctx bounds the opening, not the plugin's lifetime.
func StartBackend(ctx context.Context, cmd *exec.Cmd, cfg sdk.Config, logger hclog.Logger) (*Backend, error) {
	c, raw, err := start(cmd, wire.BackendPluginName, func(cc *grpc.ClientConn) any {
		return wire.NewBackendClient(cc)
	}, logger)
	if err != nil {
		return nil, err
	}
	return openBackend(ctx, c, raw.(wire.BackendClient), cfg)
}

// openBackend opens the backend on a started connection and caches its
// capabilities; on failure it stops the plugin.
func openBackend(ctx context.Context, c *conn, rpc wire.BackendClient, cfg sdk.Config) (*Backend, error) {
	b := &Backend{c: c, rpc: rpc}
	if _, err := b.rpc.Open(ctx, wire.ConfigToProto(cfg)); err != nil {
		err = c.wrap(err)
		c.close()
		return nil, fmt.Errorf("open backend %s: %w", cfg.Address, err)
	}
	caps, err := b.rpc.Capabilities(ctx, &wire.Empty{})
	if err != nil {
		err = c.wrap(err)
		c.close()
		return nil, fmt.Errorf("capabilities of backend %s: %w", cfg.Address, err)
	}
	b.caps = wire.CapsFromProto(caps)
	return b, nil
}

// Caps returns the capabilities the plugin reported when it started.
func (b *Backend) Caps() sdk.Capabilities { return b.caps }

// Close stops the plugin process, gracefully if it can. Calls after Close
// fail with an error wrapping fs.ErrClosed.
func (b *Backend) Close() error { return b.c.close() }

// Kill kills the plugin process with SIGKILL, leaving the client to find out
// as it would after a crash. It exists for tests; Close still cleans up.
func (b *Backend) Kill() error { return b.c.kill() }

// Capabilities returns the cached capabilities; it never calls the plugin.
func (b *Backend) Capabilities(context.Context) (sdk.Capabilities, error) {
	if err := b.c.check(); err != nil {
		return sdk.Capabilities{}, err
	}
	return b.caps, nil
}

// Stat returns an object's info.
func (b *Backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := b.c.check(); err != nil {
		return sdk.ObjectInfo{}, err
	}
	cctx, g := b.c.call(ctx, 0)
	m, err := b.rpc.Stat(cctx, &wire.KeyRequest{Key: key}, smallAnswer)
	if err := g.end("stat "+key, err); err != nil {
		return sdk.ObjectInfo{}, err
	}
	return wire.InfoFromProto(m), nil
}

// Get opens an object for reading. The reader streams the object in chunks
// and is bound to ctx: cancelling ctx makes the next Read fail and cancels
// the plugin's read. The caller must close it.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := b.c.check(); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	if sdk.CallerVerifies(ctx) {
		sctx = metadata.AppendToOutgoingContext(sctx, wire.CallerVerifiesHeader, "1")
	}
	wd := b.c.watch(cancel)
	wd.arm()
	stream, err := b.rpc.Get(sctx, &wire.KeyRequest{Key: key}, chunkAnswer)
	if err != nil {
		wd.disarm()
		cancel()
		return nil, sdk.ObjectInfo{}, wd.check(b.c, "get "+key, b.c.wrap(err))
	}
	first, err := stream.Recv()
	wd.disarm()
	if err != nil {
		cancel()
		return nil, sdk.ObjectInfo{}, wd.check(b.c, "get "+key, b.c.wrap(err))
	}
	info := first.GetInfo()
	if info == nil {
		cancel()
		return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: backend plugin sent data before the object's info", key)
	}
	return &getReader{c: b.c, stream: stream, cancel: cancel, wd: wd, key: key}, wire.InfoFromProto(info), nil
}

// getReader turns the Get stream back into an io.Reader.
type getReader struct {
	c      *conn
	stream grpc.ServerStreamingClient[wire.GetResponse]
	cancel context.CancelFunc
	wd     *watchdog
	key    string
	buf    []byte
	err    error
}

func (r *getReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.wd.arm()
		m, err := r.stream.Recv()
		r.wd.disarm()
		switch {
		case err == io.EOF:
			r.err = io.EOF
		case err != nil:
			r.err = r.wd.check(r.c, "get "+r.key, r.c.wrap(err))
		default:
			r.buf = m.GetChunk()
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close ends the stream, cancelling the plugin's read if it is still going.
func (r *getReader) Close() error {
	r.cancel()
	return nil
}

// Put streams r to the plugin in chunks of at most 1 MiB. If reading r
// fails, the stream is cancelled, so the plugin stores nothing. With
// opts.Staged it sends the header alone and never reads r; a plugin that
// did not report Capabilities.Stage is not asked, since it would store an
// empty object: that fails with sdk.ErrUnsupported.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := b.c.check(); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if opts.Staged {
		if !b.caps.Stage {
			return sdk.ObjectInfo{}, fmt.Errorf("put %s: backend plugin %s does not stage content: %w", key, b.c.name, sdk.ErrUnsupported)
		}
		r = nil
	}
	hdr := &wire.PutHeader{Key: key, Options: wire.PutOptionsToProto(opts)}
	m, err := sendPut(ctx, b.c, "put "+key, b.rpc.Put, hdr, r)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	return wire.InfoFromProto(m), nil
}

// Stage streams r to the plugin as Put does, to be stored by a later Put
// with sdk.PutOptions.Staged; see sdk.Stager. It fails with
// sdk.ErrUnsupported unless Caps().Stage is set. The plugin's answer is
// checked: a sha256 that is not 64 lowercase hex digits, or not the one
// opts asked for, is an error.
func (b *Backend) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	if err := b.c.check(); err != nil {
		return "", err
	}
	if !b.caps.Stage {
		return "", fmt.Errorf("stage: backend plugin %s does not stage content: %w", b.c.name, sdk.ErrUnsupported)
	}
	hdr := &wire.PutHeader{Options: wire.PutOptionsToProto(opts)}
	m, err := sendPut(ctx, b.c, "stage", b.rpc.Stage, hdr, r)
	if err != nil {
		return "", err
	}
	sum := m.GetSha256()
	if !isSHA256Hex(sum) || opts.SHA256 != "" && sum != opts.SHA256 {
		return "", fmt.Errorf("stage: backend plugin %s answered sha256 %.80q, want 64 lowercase hex digits%s", b.c.name, sum, wantedSum(opts.SHA256))
	}
	return sum, nil
}

// wantedSum completes Stage's message about a bad answer.
func wantedSum(want string) string {
	if want == "" {
		return ""
	}
	return " equal to " + want
}

// isSHA256Hex reports whether s is a sha256 in lowercase hex.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sendPut runs one Put-shaped call (Put or Stage): the header, then r in
// chunks of at most 1 MiB (nothing when r is nil), then the plugin's
// answer, every wait on the plugin under the watchdog. If reading r fails,
// or ctx is done before the end, the stream is cancelled, so the plugin
// stores nothing.
func sendPut[Resp any](ctx context.Context, c *conn, what string,
	open func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[wire.PutRequest, Resp], error),
	hdr *wire.PutHeader, r io.Reader) (*Resp, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := c.watch(cancel)
	defer wd.disarm()
	stream, err := open(sctx, smallAnswer)
	if err != nil {
		return nil, c.wrap(err)
	}
	// send reports the plugin's verdict when it ended the call early: Send
	// then only says io.EOF and the status comes from CloseAndRecv.
	send := func(m *wire.PutRequest) error {
		wd.arm()
		err := stream.Send(m)
		if err == io.EOF {
			_, err = stream.CloseAndRecv()
			if err == nil {
				err = fmt.Errorf("%s: backend plugin ended the upload early", what)
			}
		}
		wd.disarm()
		return wd.check(c, what, c.wrap(err))
	}
	if err := send(&wire.PutRequest{Msg: &wire.PutRequest_Header{Header: hdr}}); err != nil {
		return nil, err
	}
	if r != nil {
		// One buffer for every chunk: Send marshals the message into gRPC's
		// own buffer before it returns, and the host installs no stats
		// handler that could keep the message, so the next read may
		// overwrite it.
		buf := make([]byte, wire.ChunkSize)
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				if err := send(&wire.PutRequest{Msg: &wire.PutRequest_Chunk{Chunk: buf[:n]}}); err != nil {
					return nil, err
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				cancel()
				return nil, fmt.Errorf("%s: read source: %w", what, rerr)
			}
		}
	}
	// A source that ends cleanly after the caller gave up must not commit:
	// the half-close would race the cancellation to the plugin, and with
	// nothing but a Unix socket between them it can win.
	if err := ctx.Err(); err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	wd.arm()
	m, err := stream.CloseAndRecv()
	wd.disarm()
	if err != nil {
		return nil, wd.check(c, what, c.wrap(err))
	}
	return m, nil
}

// List calls fn for every object under prefix as the plugin streams them;
// an error from fn cancels the listing and is returned as is.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	if err := b.c.check(); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := b.c.watch(cancel)
	defer wd.disarm()
	stream, err := b.rpc.List(sctx, &wire.ListRequest{Prefix: prefix}, smallAnswer)
	if err != nil {
		return b.c.wrap(err)
	}
	for {
		wd.arm()
		m, err := stream.Recv()
		wd.disarm()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wd.check(b.c, "list "+prefix, b.c.wrap(err))
		}
		if err := fn(wire.InfoFromProto(m)); err != nil {
			return err
		}
	}
}

// Delete removes an object.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.c.check(); err != nil {
		return err
	}
	cctx, g := b.c.call(ctx, 0)
	_, err := b.rpc.Delete(cctx, &wire.KeyRequest{Key: key}, smallAnswer)
	return g.end("delete "+key, err)
}

// Lock takes the backend's lock, waiting until it is free or ctx is done.
// ctx governs only the wait: once taken, the lock is held by a stream that
// lives until unlock is called, Close is called or this process dies, and
// the plugin releases it in each case. unlock returns the plugin's error
// from releasing; calling it again returns nil.
func (b *Backend) Lock(ctx context.Context, name string) (func() error, error) {
	if err := b.c.check(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, err := b.rpc.Lock(sctx)
	if err != nil {
		cancel()
		return nil, b.c.wrap(err)
	}
	if err := stream.Send(&wire.LockRequest{Name: name}); err != nil {
		if err == io.EOF {
			// The plugin already ended the call; Recv has its status.
			_, err = stream.Recv()
		}
		cancel()
		return nil, b.c.wrap(err)
	}
	acquired := make(chan error, 1)
	go func() {
		m, err := stream.Recv()
		if err == nil && !m.GetAcquired() {
			err = fmt.Errorf("lock %s: backend plugin answered without the lock", name)
		}
		acquired <- err
	}()
	select {
	case <-ctx.Done():
		cancel()
		<-acquired
		return nil, ctx.Err()
	case err := <-acquired:
		if err != nil {
			cancel()
			return nil, b.c.wrap(err)
		}
	}
	var once sync.Once
	var uerr error
	unlock := func() error {
		once.Do(func() {
			defer cancel()
			if err := stream.CloseSend(); err != nil {
				uerr = b.c.wrap(err)
				return
			}
			// The plugin ends the call once it has released the lock; its
			// status is the release's error.
			if _, err := stream.Recv(); err != io.EOF {
				if err == nil {
					err = errors.New("backend plugin sent an unexpected message")
				}
				uerr = fmt.Errorf("unlock %s: %w", name, b.c.wrap(err))
			}
		})
		return uerr
	}
	return unlock, nil
}

// LocalPath returns the path of an object's file on this machine.
func (b *Backend) LocalPath(ctx context.Context, key string) (string, error) {
	if err := b.c.check(); err != nil {
		return "", err
	}
	cctx, g := b.c.call(ctx, 0)
	m, err := b.rpc.LocalPath(cctx, &wire.KeyRequest{Key: key}, smallAnswer)
	if err := g.end("local path "+key, err); err != nil {
		return "", err
	}
	return m.GetPath(), nil
}

// PutFile stores the local file at path under key without streaming it
// through the protocol.
func (b *Backend) PutFile(ctx context.Context, key, path string, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := b.c.check(); err != nil {
		return sdk.ObjectInfo{}, err
	}
	// Staged content is stored with Put; a PutFile names a file to copy.
	if opts.Staged {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: a staged put goes through Put, not PutFile: %w", key, fs.ErrInvalid)
	}
	// The plugin copies the whole file inside this one call: allow a
	// floor of 16 MiB/s on top of the timeout.
	var extra time.Duration
	if opts.SizeKnown {
		extra = time.Duration(opts.Size/(16<<20)) * time.Second
	}
	cctx, g := b.c.call(ctx, extra)
	m, err := b.rpc.PutFile(cctx, &wire.PutFileRequest{Key: key, Path: path, Options: wire.PutOptionsToProto(opts)}, smallAnswer)
	if err := g.end("put "+key, err); err != nil {
		return sdk.ObjectInfo{}, err
	}
	return wire.InfoFromProto(m), nil
}
