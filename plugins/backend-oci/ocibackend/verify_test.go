package ocibackend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
)

// flipFirstByte corrupts the first byte of a response body.
type flipFirstByte struct {
	http.ResponseWriter
	done bool
}

func (w *flipFirstByte) Write(p []byte) (int, error) {
	if !w.done && len(p) > 0 {
		w.done = true
		q := append([]byte(nil), p...)
		q[0] ^= 0xff
		return w.ResponseWriter.Write(q)
	}
	return w.ResponseWriter.Write(p)
}

// TestGetHashUnlessCallerVerifies: a registry that serves other bytes of
// the right length for a blob is caught by the backend's own sha256
// (ErrIntegrity), unless the caller said it verifies the content itself
// (sdk.WithCallerVerifies), in which case the check would only repeat the
// caller's and is skipped; the length is checked either way.
func TestGetHashUnlessCallerVerifies(t *testing.T) {
	var corrupt atomic.Bool
	host := memRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if corrupt.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				w = &flipFirstByte{ResponseWriter: w}
			}
			next.ServeHTTP(w, r)
		})
	})
	b := openBackend(t, address(host, freshRepo("verify")), nil)
	ctx := context.Background()
	body := []byte("a tarball's bytes, served wrong by the registry")
	sum := sha256.Sum256(body)
	if _, err := b.Put(ctx, "x.tar.gz", bytes.NewReader(body), sdk.PutOptions{Size: int64(len(body)), SizeKnown: true, SHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	corrupt.Store(true)
	read := func(ctx context.Context) ([]byte, error) {
		rc, _, err := b.Get(ctx, "x.tar.gz")
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	if _, err := read(ctx); !errors.Is(err, sdk.ErrIntegrity) {
		t.Errorf("Get of a corrupted blob = %v, want ErrIntegrity", err)
	}
	got, err := read(sdk.WithCallerVerifies(ctx))
	if err != nil {
		t.Fatalf("Get of a corrupted blob for a verifying caller = %v, want its bytes for the caller to check", err)
	}
	if len(got) != len(body) || bytes.Equal(got, body) {
		t.Errorf("the verifying caller got %q, want the corrupted bytes of the same length", got)
	}
}
