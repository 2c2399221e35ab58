package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// TestSigner runs the sdk.Signer conformance suite as subtests of t.
// factory is called once per subtest and returns the signer under test; it
// may register cleanups on the t it receives. verify checks a signature
// under the scheme the signer claims (for TiUP keys, RSASSA-PSS with
// SHA-256) and returns an error when it does not hold; the suite has no
// cryptography of its own, so a signer is only as checked as verify is.
//
// The suite checks that PublicKey is complete and stable, that signatures
// over empty, small and 1 MiB payloads verify and differ between payloads,
// that concurrent Signs all verify, and that Sign with a cancelled context
// returns promptly, either with an error or with a valid signature.
func TestSigner(t *testing.T, factory func(t *testing.T) sdk.Signer, verify func(pub sdk.PublicKey, payload, sig []byte) error) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s sdk.Signer, pub sdk.PublicKey, verify func(pub sdk.PublicKey, payload, sig []byte) error)
	}{
		{"PublicKey", testPublicKey},
		{"Sign", testSign},
		{"DistinctPayloads", testDistinctPayloads},
		{"ConcurrentSign", testConcurrentSign},
		{"CancelSign", testCancelSign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := factory(t)
			if s == nil {
				t.Fatal("factory returned a nil signer")
			}
			pub, err := s.PublicKey(testContext(t))
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			tt.run(t, s, pub, verify)
		})
	}
}

func testPublicKey(t *testing.T, s sdk.Signer, pub sdk.PublicKey, _ func(sdk.PublicKey, []byte, []byte) error) {
	if pub.KeyType == "" || pub.Scheme == "" || pub.PEM == "" {
		t.Errorf("PublicKey() = %+v, want KeyType, Scheme and PEM all set", pub)
	}
	for range 3 {
		again, err := s.PublicKey(testContext(t))
		if err != nil {
			t.Fatalf("PublicKey again: %v", err)
		}
		if again != pub {
			t.Fatalf("PublicKey changed between calls: %+v, then %+v", pub, again)
		}
	}
}

// payloads are what the suite signs: the empty payload, a small one and
// one large enough to cross any message chunking.
func payloads() []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"empty", []byte{}},
		{"small", []byte(`{"signed":{"_type":"root","version":1}}`)},
		{"1 MiB", bytes.Repeat([]byte("signed bytes "), (1<<20)/13+1)[:1<<20]},
	}
}

func testSign(t *testing.T, s sdk.Signer, pub sdk.PublicKey, verify func(sdk.PublicKey, []byte, []byte) error) {
	for _, p := range payloads() {
		t.Run(p.name, func(t *testing.T) {
			sig, err := s.Sign(testContext(t), p.data)
			if err != nil {
				t.Fatalf("Sign(%d bytes): %v", len(p.data), err)
			}
			if len(sig) == 0 {
				t.Fatalf("Sign(%d bytes) returned an empty signature", len(p.data))
			}
			if err := verify(pub, p.data, sig); err != nil {
				t.Errorf("verify Sign(%d bytes): %v", len(p.data), err)
			}
			// A verify that accepts anything would make the check above
			// worthless; so would a signature that ignores the payload.
			other := append(bytes.Clone(p.data), '!')
			if err := verify(pub, other, sig); err == nil {
				t.Errorf("the signature over %d bytes also verifies for another payload", len(p.data))
			}
		})
	}
}

func testDistinctPayloads(t *testing.T, s sdk.Signer, _ sdk.PublicKey, _ func(sdk.PublicKey, []byte, []byte) error) {
	ctx := testContext(t)
	seen := map[string]string{}
	for _, p := range payloads() {
		sig, err := s.Sign(ctx, p.data)
		if err != nil {
			t.Fatalf("Sign(%s): %v", p.name, err)
		}
		if prev, ok := seen[string(sig)]; ok {
			t.Errorf("payloads %s and %s got the same signature", prev, p.name)
		}
		seen[string(sig)] = p.name
	}
}

func testConcurrentSign(t *testing.T, s sdk.Signer, pub sdk.PublicKey, verify func(sdk.PublicKey, []byte, []byte) error) {
	const signers = 8
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make([]error, signers)
	for i := range signers {
		wg.Go(func() {
			payload := fmt.Appendf(nil, "payload of signer %d", i)
			sig, err := s.Sign(ctx, payload)
			if err != nil {
				errs[i] = fmt.Errorf("sign: %w", err)
				return
			}
			if err := verify(pub, payload, sig); err != nil {
				errs[i] = fmt.Errorf("verify: %w", err)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent signer %d: %v", i, err)
		}
	}
}

func testCancelSign(t *testing.T, s sdk.Signer, pub sdk.PublicKey, verify func(sdk.PublicKey, []byte, []byte) error) {
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	payload := []byte("signed after cancel")
	type result struct {
		sig []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		sig, err := s.Sign(ctx, payload)
		done <- result{sig, err}
	}()
	select {
	case r := <-done:
		// An error is the expected answer; a signature is acceptable only
		// if it is a real one.
		if r.err == nil {
			if err := verify(pub, payload, r.sig); err != nil {
				t.Errorf("Sign with a cancelled context returned a signature that does not verify: %v", err)
			}
		}
	case <-time.After(slowReturn):
		t.Fatalf("Sign with a cancelled context still running after %v", slowReturn)
	}
}
