package ocibackend_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// TestStageAheadOfTheLease: what publish does with a large tarball. While
// another writer holds the lease, Stage uploads the blob (it needs no
// lease, and writes no manifest); once the lease is ours, a Put with
// Staged tags the blob without sending a byte of it again.
func TestStageAheadOfTheLease(t *testing.T) {
	data := make([]byte, 3<<20+7)
	rand.NewChaCha8([32]byte{5}).Read(data)
	sum := hexSum(data)
	var cnt requestCounter
	var mu sync.Mutex
	fileManifests := 0 // manifest PUTs other than lease records
	counting := func(next http.Handler) http.Handler {
		return cnt.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "/manifests/_lease-") {
				mu.Lock()
				fileManifests++
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		}))
	}
	manifestPuts := func() int {
		mu.Lock()
		defer mu.Unlock()
		return fileManifests
	}
	uploaded := func() int64 {
		cnt.mu.Lock()
		defer cnt.mu.Unlock()
		return cnt.bytes
	}
	registries(t, counting, func(t *testing.T, host string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		addr := address(host, freshRepo("stage"))
		holder := openBackend(t, addr, fastLease)
		writer := openBackend(t, addr, fastLease)
		unlock, err := holder.Lock(ctx, "write")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		bytesBefore, manifestsBefore := uploaded(), manifestPuts()
		got, err := writer.Stage(ctx, bytes.NewReader(data), sdk.PutOptions{Size: int64(len(data)), SizeKnown: true})
		if err != nil {
			t.Fatalf("Stage while another writer holds the lease: %v", err)
		}
		if got != sum {
			t.Fatalf("Stage returned sha256 %s, want %s", got, sum)
		}
		if n := uploaded() - bytesBefore; n != int64(len(data)) {
			t.Errorf("Stage uploaded %d bytes, want %d", n, len(data))
		}
		if n := manifestPuts() - manifestsBefore; n != 0 {
			t.Errorf("Stage wrote %d manifests, want none", n)
		}
		if err := unlock(); err != nil {
			t.Fatalf("unlock: %v", err)
		}

		unlock, err = writer.Lock(ctx, "write")
		if err != nil {
			t.Fatalf("Lock after the holder let go: %v", err)
		}
		defer unlock()
		bytesBefore = uploaded()
		opts := sdk.PutOptions{Staged: true, Size: int64(len(data)), SizeKnown: true, SHA256: sum, IfNoneMatch: true}
		info, err := writer.Put(ctx, "big-v1.0.0-linux-amd64.tar.gz", nil, opts)
		if err != nil {
			t.Fatalf("Put with Staged: %v", err)
		}
		if info.Size != int64(len(data)) {
			t.Errorf("Put with Staged info = %+v, want size %d", info, len(data))
		}
		if n := uploaded() - bytesBefore; n != 0 {
			t.Errorf("Put with Staged uploaded %d bytes again, want none", n)
		}
		rc, _, err := holder.Get(ctx, "big-v1.0.0-linux-amd64.tar.gz")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		back, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("Get after the Staged Put: %d bytes, %v; want the %d staged", len(back), err, len(data))
		}
	})
}
