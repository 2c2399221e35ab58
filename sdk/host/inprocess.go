package host

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// inProcess is a plugin's gRPC server running in this process, reached
// over an in-memory connection: the whole protocol minus the subprocess.
type inProcess struct {
	srv  *grpc.Server
	cc   *grpc.ClientConn
	once sync.Once
	dead atomic.Bool
}

func (p *inProcess) exited() bool { return p.dead.Load() }

func (p *inProcess) stop() {
	p.once.Do(func() {
		p.dead.Store(true)
		p.cc.Close()
		p.srv.GracefulStop()
	})
}

// kill drops every connection at once, as a crashed plugin would.
func (p *inProcess) kill() error {
	p.dead.Store(true)
	p.srv.Stop()
	return nil
}

// serveInProcess starts a gRPC server with register's service and dials it.
func serveInProcess(kind string, register func(*grpc.Server)) (*conn, *grpc.ClientConn, error) {
	lis := bufconn.Listen(4 * wire.ChunkSize)
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, fmt.Errorf("dial in-process %s plugin: %w", kind, err)
	}
	return &conn{kind: kind, name: "in-process", proc: &inProcess{srv: srv, cc: cc}, timeout: timeoutFromEnv()}, cc, nil
}

// InProcessBackend serves the backend f opens inside this process and
// returns a client for it that crosses the same gRPC protocol, message
// chunking and error table as a plugin subprocess. It is for tests, such as
// conformance suites, that want the protocol without building a plugin.
// Kill drops the connection as a crash would.
func InProcessBackend(ctx context.Context, f sdk.BackendFactory, cfg sdk.Config) (*Backend, error) {
	c, cc, err := serveInProcess(wire.BackendPluginName, func(s *grpc.Server) {
		wire.RegisterBackendServer(s, serve.NewBackendServer(f))
	})
	if err != nil {
		return nil, err
	}
	return openBackend(ctx, c, wire.NewBackendClient(cc), cfg)
}

// InProcessSigner is InProcessBackend for a signer.
func InProcessSigner(ctx context.Context, f sdk.SignerFactory, cfg sdk.Config) (*Signer, error) {
	c, cc, err := serveInProcess(wire.SignerPluginName, func(s *grpc.Server) {
		wire.RegisterSignerServer(s, serve.NewSignerServer(f))
	})
	if err != nil {
		return nil, err
	}
	return openSigner(ctx, c, wire.NewSignerClient(cc), cfg)
}
