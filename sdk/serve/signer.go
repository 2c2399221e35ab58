package serve

import (
	"context"
	"errors"
	"sync"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// SignerServer is the gRPC Signer service over an implementation that its
// factory opens on the host's first call, Open.
type SignerServer struct {
	factory sdk.SignerFactory

	mu sync.RWMutex
	s  sdk.Signer
}

var _ wire.SignerServer = (*SignerServer)(nil)

// NewSignerServer returns the Signer service for signers f opens.
func NewSignerServer(f sdk.SignerFactory) *SignerServer {
	return &SignerServer{factory: f}
}

func (s *SignerServer) signer() (sdk.Signer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.s == nil {
		return nil, wire.ToStatus(errors.New("signer plugin: not opened"))
	}
	return s.s, nil
}

// Open opens the signer for the host's configuration; it may run once.
func (s *SignerServer) Open(ctx context.Context, cfg *wire.Config) (*wire.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		return nil, wire.ToStatus(errors.New("open signer plugin: already open"))
	}
	sg, err := s.factory(ctx, wire.ConfigFromProto(cfg))
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	s.s = sg
	return &wire.Empty{}, nil
}

// PublicKey returns the signer's public key.
func (s *SignerServer) PublicKey(ctx context.Context, _ *wire.Empty) (*wire.PublicKey, error) {
	sg, err := s.signer()
	if err != nil {
		return nil, err
	}
	k, err := sg.PublicKey(ctx)
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	return wire.PublicKeyToProto(k), nil
}

// Sign signs a payload.
func (s *SignerServer) Sign(ctx context.Context, req *wire.SignRequest) (*wire.SignResponse, error) {
	sg, err := s.signer()
	if err != nil {
		return nil, err
	}
	sig, err := sg.Sign(ctx, req.GetPayload())
	if err != nil {
		return nil, wire.ToStatus(err)
	}
	return &wire.SignResponse{Signature: sig}, nil
}
