package httpbackend_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// The test binary doubles as the plugin (see sdk/plugintest), so the
// plugin side is this package's code built like the test, -race included.
func TestMain(m *testing.M) {
	plugintest.Serve(httpbackend.Open, nil)
	os.Exit(m.Run())
}

// seeded are the objects the static server holds, by key and size: the
// conformance suite needs nothing stored for a read-only backend, and the
// read checks below use these.
var seeded = []struct {
	key  string
	size int64
}{
	{"empty", 0},
	{"timestamp.json", 13},
	{"a/b/c/nested.txt", 100},
	{"chunks/1m1", 1<<20 + 1},
	{"tarballs/8m.tar.gz", 8 << 20},
	{"tarballs/64m.tar.gz", 64 << 20},
}

// seedContent is the deterministic content of a seeded object.
func seedContent(i int, n int64) io.Reader {
	var seed [32]byte
	seed[0] = byte(i + 1)
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

// staticServer serves a directory holding the seeded objects with Go's
// file server (Range, If-Range, Last-Modified), as any static web server
// hosting a mirror would; it returns the base URL and the digests.
func staticServer(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	sums := map[string]string{}
	for i, o := range seeded {
		if o.size > 8<<20 && testing.Short() {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(o.key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(f, h), seedContent(i, o.size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		sums[o.key] = hex.EncodeToString(h.Sum(nil))
	}
	// The mirror sits below the server's root, as it often does behind a
	// shared web server.
	mux := http.NewServeMux()
	mux.Handle("/mirrors/m/", http.StripPrefix("/mirrors/m", http.FileServer(http.Dir(dir))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/mirrors/m", sums
}

// factories open the backend under test three ways: in-process, over the
// protocol in memory and across the real plugin boundary.
func factories(t *testing.T, base string) map[string]func(t *testing.T) sdk.Backend {
	return map[string]func(t *testing.T) sdk.Backend{
		"in-process": func(t *testing.T) sdk.Backend {
			b, err := httpbackend.Open(t.Context(), sdk.Config{Address: base})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { b.(io.Closer).Close() })
			return b
		},
		"protocol in memory": func(t *testing.T) sdk.Backend {
			b, err := host.InProcessBackend(openContext(t), httpbackend.Open, sdk.Config{Address: base})
			if err != nil {
				t.Fatalf("InProcessBackend: %v", err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		"plugin process": func(t *testing.T) sdk.Backend {
			return plugintest.Backend(t, sdk.Config{Address: base})
		},
	}
}

func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConformance runs the sdk.Backend suite against the http backend over
// a real loopback static server. The backend is read-only, so the suite
// runs its read-side checks (capabilities, missing and invalid keys,
// refused writes, no lock).
func TestConformance(t *testing.T) {
	base, _ := staticServer(t)
	for name, factory := range factories(t, base) {
		t.Run(name, func(t *testing.T) { sdktest.TestBackend(t, factory) })
	}
}

// TestReadSide reads every seeded object through each of the three paths,
// whole, concurrently and cancelled mid-stream: what the suite's
// round-trip checks would do for a backend that can also write.
func TestReadSide(t *testing.T) {
	base, sums := staticServer(t)
	for name, factory := range factories(t, base) {
		t.Run(name, func(t *testing.T) {
			b := factory(t)
			ctx := openContext(t)
			var wg sync.WaitGroup
			for _, o := range seeded {
				want, ok := sums[o.key]
				if !ok {
					continue // large content under -short
				}
				wg.Go(func() {
					st, err := b.Stat(ctx, o.key)
					if err != nil || st.Key != o.key || st.Size != o.size {
						t.Errorf("Stat(%q) = %+v, %v; want key and size %d", o.key, st, err, o.size)
					}
					rc, info, err := b.Get(ctx, o.key)
					if err != nil {
						t.Errorf("Get(%q): %v", o.key, err)
						return
					}
					defer rc.Close()
					if info.Key != o.key || info.Size != o.size || info.ModTime != st.ModTime {
						t.Errorf("Get(%q) info = %+v, want key, size %d and Stat's time %v", o.key, info, o.size, st.ModTime)
					}
					h := sha256.New()
					n, err := io.Copy(h, rc)
					if got := hex.EncodeToString(h.Sum(nil)); err != nil || n != o.size || got != want {
						t.Errorf("read Get(%q) = %d bytes, sha256 %s, %v; want %d bytes, %s", o.key, n, got, err, o.size, want)
					}
				})
			}
			wg.Wait()

			// A directory on the server is no object, whether the server
			// lists it, redirects to it or refuses it.
			for _, key := range []string{"a", "a/b", "tarballs"} {
				if st, err := b.Stat(ctx, key); !errors.Is(err, sdk.ErrNotFound) {
					t.Errorf("Stat(%q) of a directory = %+v, %v; want sdk.ErrNotFound", key, st, err)
				}
				rc, _, err := b.Get(ctx, key)
				if rc != nil {
					rc.Close()
				}
				if !errors.Is(err, sdk.ErrNotFound) {
					t.Errorf("Get(%q) of a directory = %v, want sdk.ErrNotFound", key, err)
				}
			}

			cctx, cancel := context.WithCancel(ctx)
			rc, _, err := b.Get(cctx, "tarballs/8m.tar.gz")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
				t.Fatal(err)
			}
			cancel()
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, rc)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("reading on after cancel = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reader still blocks 10s after its context was cancelled")
			}
		})
	}
}
