package sdktest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

func TestMemBackend(t *testing.T) {
	sdktest.TestBackend(t, func(t *testing.T) sdk.Backend { return sdktest.NewMemBackend() })
}

// edSigner signs with Ed25519: the suite needs a correct signer, not a TiUP
// one, and the standard library has no RSA-PSS key small enough to generate
// quickly under -race.
type edSigner struct {
	key ed25519.PrivateKey
	pub sdk.PublicKey
}

func newEdSigner(t *testing.T) *edSigner {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return &edSigner{key: key, pub: sdk.PublicKey{KeyType: "ed25519", Scheme: "ed25519", PEM: pemText}}
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

func TestEdSigner(t *testing.T) {
	sdktest.TestSigner(t, func(t *testing.T) sdk.Signer { return newEdSigner(t) }, verifyEd)
}

// brokenEnv selects, in a re-executed test binary, the broken implementation
// TestBroken runs the suites against.
const brokenEnv = "SDKTEST_BROKEN"

// Broken backends: each wraps MemBackend and breaks one contract.
type (
	plainNotFound       struct{ *sdktest.MemBackend }
	ignoresIfNoneMatch  struct{ *sdktest.MemBackend }
	storesBadData       struct{ *sdktest.MemBackend }
	racyCompareAndSwap  struct{ *sdktest.MemBackend }
	lockExcludesNothing struct{ *sdktest.MemBackend }
	commitsAfterCancel  struct{ *sdktest.MemBackend }
	listsExtraKey       struct{ *sdktest.MemBackend }
	sameSignature       struct{ *edSigner }
)

func (b plainNotFound) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	info, err := b.MemBackend.Stat(ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return info, errors.New("no such key")
	}
	return info, err
}

func (b ignoresIfNoneMatch) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	opts.IfNoneMatch = false
	return b.MemBackend.Put(ctx, key, r, opts)
}

// Put stores first and checks afterwards.
func (b storesBadData) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	info, err := b.MemBackend.Put(ctx, key, r, sdk.PutOptions{IfMatch: opts.IfMatch, IfNoneMatch: opts.IfNoneMatch})
	if err != nil {
		return info, err
	}
	if opts.SizeKnown && info.Size != opts.Size {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, sdk.ErrIntegrity)
	}
	return info, nil
}

// Put compares and then swaps, with room for another writer in between.
func (b racyCompareAndSwap) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if opts.IfMatch != "" {
		cur, err := b.Stat(ctx, key)
		if err != nil || cur.ETag != opts.IfMatch {
			return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, sdk.ErrConflict)
		}
		time.Sleep(10 * time.Millisecond)
		opts.IfMatch = ""
	}
	return b.MemBackend.Put(ctx, key, r, opts)
}

func (lockExcludesNothing) Lock(context.Context, string) (func() error, error) {
	return func() error { return nil }, nil
}

func (b commitsAfterCancel) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	return b.MemBackend.Put(context.WithoutCancel(ctx), key, r, opts)
}

func (b listsExtraKey) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	if err := b.MemBackend.List(ctx, prefix, fn); err != nil {
		return err
	}
	return fn(sdk.ObjectInfo{Key: prefix + "ghost"})
}

func (sameSignature) Sign(context.Context, []byte) ([]byte, error) {
	return make([]byte, ed25519.SignatureSize), nil
}

// broken lists each broken implementation with the subtest that must catch
// it and a piece of the failure message it must produce.
var broken = []struct {
	name    string
	run     string // -test.run pattern under TestBroken
	want    string
	backend func() sdk.Backend
	signer  func(t *testing.T) sdk.Signer
}{
	{"plain not found", "Backend/Missing", "want an error wrapping sdk.ErrNotFound",
		func() sdk.Backend { return plainNotFound{sdktest.NewMemBackend()} }, nil},
	{"ignores IfNoneMatch", "Backend/Conditional", "want an error wrapping sdk.ErrExist",
		func() sdk.Backend { return ignoresIfNoneMatch{sdktest.NewMemBackend()} }, nil},
	{"stores bad data", "Backend/Integrity", "the failed write stored something",
		func() sdk.Backend { return storesBadData{sdktest.NewMemBackend()} }, nil},
	{"racy compare-and-swap", "Backend/ConcurrentIfMatch", "both won a compare-and-swap",
		func() sdk.Backend { return racyCompareAndSwap{sdktest.NewMemBackend()} }, nil},
	{"lock excludes nothing", "Backend/Lock", "second Lock returned",
		func() sdk.Backend { return lockExcludesNothing{sdktest.NewMemBackend()} }, nil},
	{"commits after cancel", "Backend/CancelPut", "cancelled mid-stream succeeded",
		func() sdk.Backend { return commitsAfterCancel{sdktest.NewMemBackend()} }, nil},
	{"lists an extra key", "Backend/List", "ghost",
		func() sdk.Backend { return listsExtraKey{sdktest.NewMemBackend()} }, nil},
	{"same signature for everything", "Signer/Sign", "verify Sign",
		nil, func(t *testing.T) sdk.Signer { return sameSignature{newEdSigner(t)} }},
}

// TestBroken runs a suite against the broken implementation brokenEnv
// names; it is a child of TestSuitesCatchBrokenImplementations, which
// expects it to fail.
func TestBroken(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuitesCatchBrokenImplementations")
	}
	for _, b := range broken {
		if b.name != name {
			continue
		}
		t.Run("Backend", func(t *testing.T) {
			if b.backend == nil {
				t.Skip("a signer")
			}
			sdktest.TestBackend(t, func(*testing.T) sdk.Backend { return b.backend() })
		})
		t.Run("Signer", func(t *testing.T) {
			if b.signer == nil {
				t.Skip("a backend")
			}
			sdktest.TestSigner(t, b.signer, verifyEd)
		})
		return
	}
	t.Fatalf("no broken implementation %q", name)
}

// TestSuitesCatchBrokenImplementations shows that the suites can fail: each
// broken implementation, run in a child test process, must fail with the
// expected message.
func TestSuitesCatchBrokenImplementations(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("in a child")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(exe, "-test.run=^TestBroken$/^"+strings.ReplaceAll(b.run, "/", "$/^")+"$", "-test.short", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+b.name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed (or did not run: %v) against a backend that %s:\n%s", err, b.name, out)
			}
			if !strings.Contains(string(out), b.want) {
				t.Errorf("the suite failed against a backend that %s, but without %q:\n%s", b.name, b.want, out)
			}
		})
	}
}
