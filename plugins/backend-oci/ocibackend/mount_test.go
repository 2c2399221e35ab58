package ocibackend_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
)

// TestBlobStoredOnce: a tarball put under two keys of one mirror, and into a
// second mirror of the same registry, crosses the wire once. On the real
// registry the second mirror mounts it from the first (blobs are linked per
// repository there); the in-memory registry shares blobs across repositories,
// so the existence check finds it. Without mount-from, the second mirror of
// the real registry has to upload it again, which shows the mount is what
// saved the upload.
func TestBlobStoredOnce(t *testing.T) {
	data := make([]byte, 3<<20)
	r := rand.NewChaCha8([32]byte{9})
	r.Read(data)
	opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true, SHA256: hexSum(data)}
	for _, real := range []bool{false, true} {
		name := "in-memory registry"
		if real {
			name = "docker-registry"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var cnt requestCounter
			var host string
			if real {
				host = proxy(t, realRegistry(t).Host(), cnt.middleware)
			} else {
				host = memRegistry(t, cnt.middleware)
			}
			repoA, repoB, repoC := freshRepo("mount"), freshRepo("mount"), freshRepo("mount")
			a := openBackend(t, address(host, repoA), nil)
			b := openBackend(t, address(host, repoB), map[string]string{"mount-from": repoA})
			put := func(be sdk.Backend, key string) {
				t.Helper()
				if _, err := be.Put(ctx, key, bytes.NewReader(data), opts); err != nil {
					t.Fatalf("Put(%s): %v", key, err)
				}
			}
			uploaded := func() int64 {
				cnt.mu.Lock()
				defer cnt.mu.Unlock()
				return cnt.bytes
			}
			put(a, "hello-v1.0.0-linux-amd64.tar.gz")
			if got := uploaded(); got != int64(len(data)) {
				t.Fatalf("first Put uploaded %d bytes, want %d", got, len(data))
			}
			put(a, "hello-v1.0.0-linux-arm64.tar.gz")
			put(b, "hello-v1.0.0-linux-amd64.tar.gz")
			if got := uploaded(); got != int64(len(data)) {
				t.Errorf("after the copies, %d bytes uploaded, want still %d", got, len(data))
			}
			if real && cnt.get("mount") != 1 {
				t.Errorf("%d mount requests, want 1", cnt.get("mount"))
			}
			rc, _, err := b.Get(ctx, "hello-v1.0.0-linux-amd64.tar.gz")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("Get from the mounting mirror: %d bytes, %v", len(got), err)
			}
			if real {
				c := openBackend(t, address(host, repoC), nil)
				put(c, "hello-v1.0.0-linux-amd64.tar.gz")
				if got := uploaded(); got != 2*int64(len(data)) {
					t.Errorf("a mirror without mount-from uploaded %d bytes in all, want %d", got, 2*len(data))
				}
			}
			// Without a digest the backend cannot know the blob before
			// reading it, and uploads: the core always passes one for
			// tarballs.
			before := uploaded()
			if _, err := a.Put(ctx, "no-digest.tar.gz", bytes.NewReader(data), sdk.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if uploaded() == before {
				t.Error("a Put without a digest uploaded nothing; the counter is broken")
			}
		})
	}
}
