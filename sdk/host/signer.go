package host

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// Signer is a signer plugin seen from the host; it implements sdk.Signer and
// is safe for concurrent use. Close it when done.
type Signer struct {
	c   *conn
	rpc wire.SignerClient
}

var _ sdk.Signer = (*Signer)(nil)

// StartSigner starts the signer plugin cmd and opens it with cfg. logger
// receives the plugin's log lines; nil discards them. ctx bounds the
// opening, not the plugin's lifetime.
func StartSigner(ctx context.Context, cmd *exec.Cmd, cfg sdk.Config, logger hclog.Logger) (*Signer, error) {
	c, raw, err := start(cmd, wire.SignerPluginName, func(cc *grpc.ClientConn) any {
		return wire.NewSignerClient(cc)
	}, logger)
	if err != nil {
		return nil, err
	}
	return openSigner(ctx, c, raw.(wire.SignerClient), cfg)
}

// openSigner opens the signer on a started connection; on failure it stops
// the plugin.
func openSigner(ctx context.Context, c *conn, rpc wire.SignerClient, cfg sdk.Config) (*Signer, error) {
	s := &Signer{c: c, rpc: rpc}
	if _, err := s.rpc.Open(ctx, wire.ConfigToProto(cfg)); err != nil {
		err = c.wrap(err)
		c.close()
		return nil, fmt.Errorf("open signer %s: %w", cfg.Address, err)
	}
	return s, nil
}

// Close stops the plugin process, gracefully if it can.
func (s *Signer) Close() error { return s.c.close() }

// Kill kills the plugin process with SIGKILL, as a crash would. It exists
// for tests; Close still cleans up.
func (s *Signer) Kill() error { return s.c.kill() }

// PublicKey returns the public half of the plugin's key.
func (s *Signer) PublicKey(ctx context.Context) (sdk.PublicKey, error) {
	if err := s.c.check(); err != nil {
		return sdk.PublicKey{}, err
	}
	cctx, g := s.c.call(ctx, 0)
	m, err := s.rpc.PublicKey(cctx, &wire.Empty{}, smallAnswer)
	if err := g.end("public key", err); err != nil {
		return sdk.PublicKey{}, err
	}
	return wire.PublicKeyFromProto(m), nil
}

// Sign signs payload with the plugin's key.
func (s *Signer) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := s.c.check(); err != nil {
		return nil, err
	}
	cctx, g := s.c.call(ctx, 0)
	m, err := s.rpc.Sign(cctx, &wire.SignRequest{Payload: payload}, smallAnswer)
	if err := g.end("sign", err); err != nil {
		return nil, err
	}
	return m.GetSignature(), nil
}
