package faulttest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/mirrorkit/mirror/plugins/signer-local/localsigner"
	"github.com/mirrorkit/mirror/sdk"
)

// Signer is the faulty signer: a localsigner.Signer whose Sign calls follow
// a Plan. PublicKey always answers honestly, so the host knows which key it
// expects a signature from.
type Signer struct {
	s    *localsigner.Signer
	plan *Plan
	rec  recorder
}

var _ sdk.Signer = (*Signer)(nil)

// OpenSigner is the sdk.SignerFactory of mirror-signer-faulty. The
// reference is faulty:///abs/key.json, a TiUP private key file; the plan
// comes from $MIRROR_FAULT_PLAN.
func OpenSigner(ctx context.Context, cfg sdk.Config) (sdk.Signer, error) {
	plan, err := LoadPlan()
	if err != nil {
		return nil, err
	}
	return NewSigner(cfg.Address, plan)
}

// NewSigner returns the faulty signer over the key file named by ref.
func NewSigner(ref string, plan *Plan) (*Signer, error) {
	path, ok := strings.CutPrefix(ref, Scheme+"://")
	if !ok || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open faulty signer %q: want faulty:///absolute/key.json: %w", ref, fs.ErrInvalid)
	}
	s, err := localsigner.Load(path)
	if err != nil {
		return nil, err
	}
	return &Signer{s: s, plan: plan, rec: recorder{plan: plan, plugin: "signer"}}, nil
}

// PublicKey returns the key's public half.
func (s *Signer) PublicKey(ctx context.Context) (sdk.PublicKey, error) {
	s.rec.log(Call{Op: "PublicKey"})
	return s.s.PublicKey(ctx)
}

// Sign signs payload, or misbehaves as the plan says.
func (s *Signer) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	n, err := s.rec.next("signs")
	if err != nil {
		return nil, fmt.Errorf("faulty signer: %w", err)
	}
	c := Call{Op: "Sign", Sign: n, Size: int64(len(payload))}
	p := s.plan.Signer
	if p.Fault == "" || n == 0 || (p.At != 0 && p.At != n) {
		sig, err := s.s.Sign(ctx, payload)
		c.Err = errText(err)
		s.rec.log(c)
		return sig, err
	}
	c.Fault = p.Fault
	s.rec.log(c)
	switch p.Fault {
	case SignCrash:
		die()
	case SignHang:
		hang()
	case SignOtherBytes:
		return s.s.Sign(ctx, append(append([]byte{}, payload...), '\n'))
	case SignGarbage:
		sig := make([]byte, 256) // an RSA-2048 signature's length
		rand.Read(sig)
		return sig, nil
	case SignHuge:
		sig := make([]byte, HugeSignatureSize)
		rand.Read(sig)
		return sig, nil
	}
	return nil, fmt.Errorf("sign: %w", ErrInjected)
}
