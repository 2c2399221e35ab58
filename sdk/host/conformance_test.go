package host_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// These tests run the conformance suites through the whole protocol (the
// serve side, the wire's chunking and error table, and this package's
// clients) in memory, around implementations that pass the suites
// in-process: any failure is the protocol's. Real plugins run the same
// suites across a process boundary in their own packages; this package may
// not import them.

func TestBackendConformance(t *testing.T) {
	sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
		open := func(context.Context, sdk.Config) (sdk.Backend, error) { return sdktest.NewMemBackend(), nil }
		b, err := host.InProcessBackend(openContext(t), open, sdk.Config{Address: "mem"})
		if err != nil {
			t.Fatalf("InProcessBackend: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestSignerConformance(t *testing.T) {
	sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
		s, err := host.InProcessSigner(openContext(t), openEdSigner, sdk.Config{Address: "generated"})
		if err != nil {
			t.Fatalf("InProcessSigner: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, verifyEd)
}

// openContext bounds opening a plugin.
func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// edSigner signs with a fresh Ed25519 key: a correct signer that needs
// nothing outside the standard library, which is all the protocol carries
// bytes for.
type edSigner struct {
	key ed25519.PrivateKey
	pub sdk.PublicKey
}

func openEdSigner(context.Context, sdk.Config) (sdk.Signer, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("open ed25519 signer: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("open ed25519 signer: %w", err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return &edSigner{key: key, pub: sdk.PublicKey{KeyType: "ed25519", Scheme: "ed25519", PEM: pemText}}, nil
}

func (s *edSigner) PublicKey(context.Context) (sdk.PublicKey, error) { return s.pub, nil }

func (s *edSigner) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return ed25519.Sign(s.key, payload), nil
}

func verifyEd(pub sdk.PublicKey, payload, sig []byte) error {
	block, _ := pem.Decode([]byte(pub.PEM))
	if block == nil {
		return errors.New("verify: no PEM block in the public key")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("verify: public key is %T, want ed25519", k)
	}
	if !ed25519.Verify(ek, payload, sig) {
		return errors.New("verify: signature does not match")
	}
	return nil
}
