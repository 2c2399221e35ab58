package ocibackend_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/mirrorkit/mirror/internal/testregistry"
	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
)

// The test binary doubles as the plugin (see sdk/plugintest), so the
// plugin side is this package built with the test's flags, -race included.
func TestMain(m *testing.M) {
	plugintest.Serve(ocibackend.Open, nil)
	os.Exit(m.Run())
}

// fastLease makes lease tests take seconds, not minutes: a claim settles in
// 100ms and a dead holder's lease expires after 3s.
var fastLease = map[string]string{"lease-settle": "100ms", "lease-ttl": "3s"}

// memRegistry starts go-containerregistry's in-memory registry behind an
// httptest server, with middleware (nil for none) in front of it, and
// returns its host:port.
func memRegistry(t testing.TB, middleware func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if middleware != nil {
		h = middleware(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// realRegistry starts Debian's docker-registry (distribution 2.8) through
// internal/testregistry; the test is skipped when it is not installed
// (failed under MIRROR_REQUIRE_REGISTRY=1).
func realRegistry(t testing.TB, opts ...testregistry.Option) *testregistry.Registry {
	t.Helper()
	return testregistry.Start(t, opts...)
}

// proxy puts middleware in front of a registry at host, for counting or
// failing requests to a real server.
func proxy(t testing.TB, host string, middleware func(http.Handler) http.Handler) string {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: host}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	// distribution builds upload locations from the Host header; keep the
	// proxy's so clients come back through it.
	s := httptest.NewServer(middleware(rp))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// freshRepo returns a repository name no other test uses.
func freshRepo(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "/" + hex.EncodeToString(b[:])
}

// address is the oci+http:// address of repo on host.
func address(host, repo string) string { return "oci+http://" + host + "/" + repo }

// openBackend opens an in-process backend, closed when t ends.
func openBackend(t testing.TB, addr string, opts map[string]string) *ocibackend.Backend {
	t.Helper()
	b, err := ocibackend.Open(context.Background(), sdk.Config{Address: addr, Options: opts})
	if err != nil {
		t.Fatalf("Open(%s): %v", addr, err)
	}
	t.Cleanup(func() { b.(io.Closer).Close() })
	return b.(*ocibackend.Backend)
}

// pluginBackend starts the test binary as the backend plugin for addr; it
// is closed when t ends.
func pluginBackend(t *testing.T, addr string, opts map[string]string, env ...string) *host.Backend {
	t.Helper()
	return plugintest.Backend(t, sdk.Config{Address: addr, Options: opts}, env...)
}

// openContext bounds a plugin's start.
func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requestCounter counts requests by a classification of its choosing.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
	bytes  int64 // request body bytes of blob uploads
}

func (c *requestCounter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[k]
}

func (c *requestCounter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := classify(r)
		c.mu.Lock()
		if c.counts == nil {
			c.counts = map[string]int{}
		}
		c.counts[k]++
		if k == "upload-data" {
			c.bytes += r.ContentLength
		}
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// classify names a registry request: "upload-data" is a PATCH, or a PUT
// with a body, to an upload session, that is blob bytes on the wire (but
// for the 2-byte empty config, counted apart).
func classify(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPost && r.URL.Query().Get("from") != "":
		return "mount"
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPost:
		return "upload-start"
	case strings.Contains(p, "/blobs/uploads/") && r.URL.Query().Get("digest") == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a":
		return "upload-empty-config"
	case strings.Contains(p, "/blobs/uploads/") && (r.Method == http.MethodPatch || r.Method == http.MethodPut && r.ContentLength > 0):
		return "upload-data"
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPut:
		return "upload-commit"
	case strings.Contains(p, "/manifests/"):
		return "manifest-" + r.Method
	case strings.Contains(p, "/blobs/"):
		return "blob-" + r.Method
	}
	return r.Method + " " + p
}
