package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// errNotOpened answers a call that arrives before Open; the host never
// sends one, so it signals a broken host rather than a user error.
var errNotOpened = errors.New("backend plugin: not opened")

// BackendServer is the gRPC Backend service over an implementation that its
// factory opens on the host's first call, Open.
type BackendServer struct {
	factory sdk.BackendFactory

	mu sync.RWMutex
	b  sdk.Backend
}

var _ wire.BackendServer = (*BackendServer)(nil)

// NewBackendServer returns the Backend service for backends f opens.
func NewBackendServer(f sdk.BackendFactory) *BackendServer {
	return &BackendServer{factory: f}
}

func (s *BackendServer) backend() (sdk.Backend, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.b == nil {
		return nil, wire.ToStatus(errNotOpened)
	}
	return s.b, nil
}

// Open opens the backend for the host's configuration; it may run once.
func (s *BackendServer) Open(ctx context.Context, cfg *wire.Config) (*wire.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b != nil {
		return nil, wire.ToStatus(errors.New("open backend plugin: already open"))
	}
	b, err := s.factory(ctx, wire.ConfigFromProto(cfg))
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	s.b = b
	return &wire.Empty{}, nil
}

// Capabilities reports the backend's capabilities.
func (s *BackendServer) Capabilities(ctx context.Context, _ *wire.Empty) (*wire.Capabilities, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	c, err := b.Capabilities(ctx)
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	// LocalFiles is a promise that the host may call LocalPath and PutFile,
	// which only hold if the type really implements LocalFiler.
	if _, ok := b.(sdk.LocalFiler); !ok {
		c.LocalFiles = false
	}
	// Likewise Stage promises the Stage call and PutOptions.Staged.
	if _, ok := b.(sdk.Stager); !ok {
		c.Stage = false
	}
	return wire.CapsToProto(c), nil
}

// Stat returns an object's info.
func (s *BackendServer) Stat(ctx context.Context, req *wire.KeyRequest) (*wire.ObjectInfo, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	info, err := b.Stat(ctx, req.GetKey())
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	return wire.InfoToProto(info), nil
}

// Get streams an object: its info first, then chunks of at most
// wire.ChunkSize bytes.
func (s *BackendServer) Get(req *wire.KeyRequest, stream grpc.ServerStreamingServer[wire.GetResponse]) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(wire.CallerVerifiesHeader)) > 0 {
		ctx = sdk.WithCallerVerifies(ctx)
	}
	rc, info, err := b.Get(ctx, req.GetKey())
	if err != nil {
		return wire.ToStatus(err)
	}
	defer rc.Close()
	if err := stream.Send(&wire.GetResponse{Msg: &wire.GetResponse_Info{Info: wire.InfoToProto(info)}}); err != nil {
		return err
	}
	// One buffer for every chunk: Send marshals the message into gRPC's own
	// buffer before it returns, and this server installs no stats handler
	// that could keep the message, so the next read may overwrite it. A
	// fresh megabyte per chunk cost more CPU (zeroing, page faults, GC)
	// than any other step of the stream but the encryption.
	buf := make([]byte, wire.ChunkSize)
	for {
		n, rerr := fill(rc, buf)
		if n > 0 {
			if err := stream.Send(&wire.GetResponse{Msg: &wire.GetResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return wire.ToStatus(rerr)
		}
	}
}

// fill reads into buf until it is full or r fails. Unlike io.ReadFull it
// passes every error on as it is: io.ReadFull reports a short last chunk
// as io.ErrUnexpectedEOF, which would hide a backend's own
// io.ErrUnexpectedEOF (a body cut short) as a clean end.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Put hands the streamed chunks to the backend as an io.Reader, through a
// pipe, so the object is never held in memory whole.
func (s *BackendServer) Put(stream grpc.ClientStreamingServer[wire.PutRequest, wire.ObjectInfo]) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	hdr, body, finish, err := receivePut(stream)
	if err != nil {
		return err
	}
	opts := wire.PutOptionsFromProto(hdr.GetOptions())
	var info sdk.ObjectInfo
	if _, ok := b.(sdk.Stager); opts.Staged && !ok {
		// A backend written before Staged would store the empty body.
		err = fmt.Errorf("put %s: the backend does not stage content: %w", hdr.GetKey(), sdk.ErrUnsupported)
	} else {
		info, err = b.Put(stream.Context(), hdr.GetKey(), body, opts)
	}
	finish()
	if err != nil {
		return wire.ToStatus(err)
	}
	return stream.SendAndClose(wire.InfoToProto(info))
}

// Stage hands the streamed chunks to the backend's Stager as Put does; the
// header carries the options and no key.
func (s *BackendServer) Stage(stream grpc.ClientStreamingServer[wire.PutRequest, wire.StageResponse]) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	st, ok := b.(sdk.Stager)
	if !ok {
		return wire.ToStatus(fmt.Errorf("stage: the backend does not stage content: %w", sdk.ErrUnsupported))
	}
	hdr, body, finish, err := receivePut(stream)
	if err != nil {
		return err
	}
	sum, err := st.Stage(stream.Context(), body, wire.PutOptionsFromProto(hdr.GetOptions()))
	finish()
	if err != nil {
		return wire.ToStatus(err)
	}
	return stream.SendAndClose(&wire.StageResponse{Sha256: sum})
}

// receivePut reads the header of a Put or Stage stream and returns the
// rest as a reader fed from a goroutine. finish must be called once the
// backend is done with body, before the handler returns: it unblocks the
// receiver if the backend stopped reading early and waits for it, since
// Recv must not run after the handler returns.
func receivePut(stream interface {
	Recv() (*wire.PutRequest, error)
}) (hdr *wire.PutHeader, body io.Reader, finish func(), err error) {
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, nil, err
	}
	hdr = first.GetHeader()
	if hdr == nil {
		return nil, nil, nil, wire.ToStatus(errors.New("put: first message carries no header"))
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				pw.Close()
				return
			}
			if err != nil {
				// The host cancelled or died: the backend must see a failed
				// read, not a clean end, so that it stores nothing.
				pw.CloseWithError(err)
				return
			}
			if _, err := pw.Write(m.GetChunk()); err != nil {
				return
			}
		}
	}()
	finish = func() {
		pr.CloseWithError(errPutFinished)
		<-done
	}
	return hdr, pr, finish, nil
}

var errPutFinished = errors.New("put: backend stopped reading")

// List streams the info of every object under the prefix.
func (s *BackendServer) List(req *wire.ListRequest, stream grpc.ServerStreamingServer[wire.ObjectInfo]) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	err = b.List(stream.Context(), req.GetPrefix(), func(info sdk.ObjectInfo) error {
		return stream.Send(wire.InfoToProto(info))
	})
	return wire.ToStatus(err)
}

// Delete removes an object.
func (s *BackendServer) Delete(ctx context.Context, req *wire.KeyRequest) (*wire.Empty, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	if err := b.Delete(ctx, req.GetKey()); err != nil {
		return nil, wire.ToStatus(err)
	}
	return &wire.Empty{}, nil
}

// Lock holds the backend's lock for as long as the stream lives: it answers
// once the lock is taken and releases it when the host closes its side or
// the stream breaks, so a host that dies never leaves the lock held.
func (s *BackendServer) Lock(stream grpc.BidiStreamingServer[wire.LockRequest, wire.LockResponse]) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	unlock, err := b.Lock(stream.Context(), req.GetName())
	if err != nil {
		return wire.ToStatus(err)
	}
	if err := stream.Send(&wire.LockResponse{Acquired: true}); err != nil {
		return errors.Join(err, wire.ToStatus(unlock()))
	}
	// Recv returns io.EOF when the host unlocks and an error when the stream
	// or the connection dies; either way the lock goes.
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	return wire.ToStatus(unlock())
}

// LocalPath returns the path of an object's file.
func (s *BackendServer) LocalPath(ctx context.Context, req *wire.KeyRequest) (*wire.LocalPathResponse, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	lf, ok := b.(sdk.LocalFiler)
	if !ok {
		return nil, wire.ToStatus(sdk.ErrUnsupported)
	}
	p, err := lf.LocalPath(ctx, req.GetKey())
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	return &wire.LocalPathResponse{Path: p}, nil
}

// PutFile stores a local file under a key.
func (s *BackendServer) PutFile(ctx context.Context, req *wire.PutFileRequest) (*wire.ObjectInfo, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	lf, ok := b.(sdk.LocalFiler)
	if !ok {
		return nil, wire.ToStatus(sdk.ErrUnsupported)
	}
	info, err := lf.PutFile(ctx, req.GetKey(), req.GetPath(), wire.PutOptionsFromProto(req.GetOptions()))
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	return wire.InfoToProto(info), nil
}
