package ocibackend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/mirrorkit/mirror/internal/testregistry"
	"github.com/mirrorkit/mirror/sdk"
)

// memServer runs the in-memory registry behind middleware.
func memServer(t *testing.T, middleware func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if middleware != nil {
		h = middleware(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// sleeps records the backend's waits instead of waiting, so retry tests
// check the delays without taking them.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) list() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

func newTestBackend(t *testing.T, addr string, opts map[string]string) *Backend {
	t.Helper()
	b, err := open(sdk.Config{Address: addr, Options: opts}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func roundTrip(t *testing.T, b *Backend, key string, data []byte) {
	t.Helper()
	ctx := context.Background()
	opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true, SHA256: sha(data)}
	if _, err := b.Put(ctx, key, bytes.NewReader(data), opts); err != nil {
		t.Fatalf("Put: %v", err)
	}
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v; want the %d put", len(got), err, len(data))
	}
}

// TestRetryAfter: a registry that answers 503 and 429 with Retry-After for a
// while is waited for as it asks, and the Put and Get then succeed.
func TestRetryAfter(t *testing.T) {
	var n atomic.Int32
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, http.StatusTooManyRequests)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
			http.Error(w, "busy", http.StatusServiceUnavailable)
		},
		func(w http.ResponseWriter) { http.Error(w, "bad gateway", http.StatusBadGateway) },
	}
	host := memServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				next.ServeHTTP(w, r) // the handshake has fewer attempts
				return
			}
			if i := int(n.Add(1)) - 1; i < len(answers) {
				answers[i](w)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	b := newTestBackend(t, "oci+http://"+host+"/retry/m", nil)
	var s sleeps
	b.sleep = s.sleep
	roundTrip(t, b, "timestamp.json", []byte(`{"signed":{}}`))
	got := s.list()
	if len(got) != len(answers) {
		t.Fatalf("waited %v, want %d waits", got, len(answers))
	}
	if got[0] != 2*time.Second || got[1] != time.Second {
		t.Errorf("waits %v: want 2s then 1s, as Retry-After said", got)
	}
	if got[2] < 2*time.Second || got[2] > 3*time.Second {
		t.Errorf("wait for an HTTP-date Retry-After 3s ahead = %v", got[2])
	}
	if got[3] <= 0 || got[3] > retryMaxDelay {
		t.Errorf("backoff without Retry-After = %v", got[3])
	}
}

// TestRetryChunk: chunks refused with 503 are sent again, and the blob
// arrives whole.
func TestRetryChunk(t *testing.T) {
	var patches, refused atomic.Int32
	host := memServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				// Refuse every other chunk once, the first included.
				if patches.Add(1)%2 == 1 {
					refused.Add(1)
					w.Header().Set("Retry-After", "1")
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	b := newTestBackend(t, "oci+http://"+host+"/retry/chunks", map[string]string{"chunk-size": "65536"})
	var s sleeps
	b.sleep = s.sleep
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB: over the 1 MiB sent whole, 48 chunks
	roundTrip(t, b, "big.tar.gz", data)
	if refused.Load() < 20 {
		t.Errorf("only %d chunks were refused; the test did not exercise retries", refused.Load())
	}
}

// TestRetryGivesUp: a registry that never recovers gets a bounded number of
// attempts (fewer at the first contact, where a wrong address is likelier
// than a restart) and a one-line error; a Retry-After of an hour is not
// waited for.
func TestRetryGivesUp(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		handshake  bool // fail the first contact too
		wantWaits  int
		wantErr    string
	}{
		{"always 503", "", false, retryAttempts - 1, "kept answering 503 Service Unavailable; try again later"},
		{"503 from the first contact", "", true, firstContactAttempts - 1, "kept answering 503 Service Unavailable; try again later"},
		{"retry after an hour", "3600", false, 0, "is throttling: it asks to retry after 1h0m0s"},
		{"retry after an hour at first contact", "3600", true, 0, "is throttling: it asks to retry after 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := memServer(t, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/v2/" && !tt.handshake {
						next.ServeHTTP(w, r)
						return
					}
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					http.Error(w, "down", http.StatusServiceUnavailable)
				})
			})
			b := newTestBackend(t, "oci+http://"+host+"/down/m", nil)
			var s sleeps
			b.sleep = s.sleep
			_, err := b.Stat(context.Background(), "timestamp.json")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Stat = %v, want one line containing %q", err, tt.wantErr)
			}
			if got := len(s.list()); got != tt.wantWaits {
				t.Errorf("%d waits, want %d", got, tt.wantWaits)
			}
		})
	}
}

// TestAuthErrors: a registry refusing every request gives one line naming
// the registry and how to log in, wrapping fs.ErrPermission, with and without
// credentials in the Docker config.
func TestAuthErrors(t *testing.T) {
	host := memServer(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		})
	})
	tests := []struct {
		name   string
		config string // config.json, "" for none
		want   string
	}{
		{"no credentials", "", fmt.Sprintf("registry %s needs credentials: run `docker login %s` or set DOCKER_CONFIG", host, host)},
		{"wrong credentials", fmt.Sprintf(`{"auths":{%q:{"auth":"dXNlcjp3cm9uZw=="}}}`, host), fmt.Sprintf("registry %s refused the credentials: run `docker login %s` or set DOCKER_CONFIG", host, host)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("DOCKER_CONFIG", dir)
			b := newTestBackend(t, "oci+http://"+host+"/private/m", nil)
			var s sleeps
			b.sleep = s.sleep
			_, err := b.Put(context.Background(), "timestamp.json", strings.NewReader("{}"), sdk.PutOptions{})
			if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Put = %v, want one line wrapping fs.ErrPermission with %q", err, tt.want)
			}
			if len(s.list()) != 0 {
				t.Errorf("a refusal was retried: %v", s.list())
			}
		})
	}
}

// TestHTTPSOnly: an oci:// address never falls back to plain HTTP, even on
// loopback where go-containerregistry would; the error says to use
// oci+http://.
func TestHTTPSOnly(t *testing.T) {
	var plain atomic.Int32
	host := memServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			plain.Add(1)
			next.ServeHTTP(w, r)
		})
	})
	b := newTestBackend(t, "oci://"+host+"/secure/m", nil)
	_, err := b.Stat(context.Background(), "timestamp.json")
	if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "oci+http://"+host+"/secure/m") {
		t.Fatalf("Stat = %v, want advice to use oci+http://", err)
	}
	if n := plain.Load(); n != 0 {
		t.Errorf("%d plain-HTTP requests reached the registry", n)
	}
	b = newTestBackend(t, "oci://"+host+"/secure/m", map[string]string{"insecure": "true"})
	if _, err := b.Stat(context.Background(), "timestamp.json"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat with insecure=true = %v, want ErrNotFound", err)
	}
}

// TestHTTPS: an oci:// address speaks TLS to the registry (here the
// in-memory one behind httptest's TLS server, whose certificate the
// backend's transport is made to trust) for every operation.
func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	b := newTestBackend(t, "oci://"+host+"/secure/m", fastOptions)
	b.c.retry.inner = httpsGuard{srv.Client().Transport}
	roundTrip(t, b, "hello-v1.0.0-linux-amd64.tar.gz", bytes.Repeat([]byte("x"), 2<<20))
	ctx := context.Background()
	u, err := b.Lock(ctx, "write")
	if err != nil {
		t.Fatal(err)
	}
	if err := u(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := b.List(ctx, "", func(o sdk.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"hello-v1.0.0-linux-amd64.tar.gz"}) {
		t.Errorf("List = %q", keys)
	}
}

// fastOptions make lease tests quick.
var fastOptions = map[string]string{"lease-settle": "100ms", "lease-ttl": "3s"}

// TestListPages: List follows the tag list's pages, by Link header
// (distribution) or by the last tag (the in-memory registry sends none).
func TestListPages(t *testing.T) {
	old := tagPage
	tagPage = 3
	t.Cleanup(func() { tagPage = old })
	hosts := map[string]func(t *testing.T) string{
		"in-memory registry": func(t *testing.T) string { return memServer(t, nil) },
		"docker-registry":    func(t *testing.T) string { return testregistry.Start(t).Host() },
	}
	for name, start := range hosts {
		t.Run(name, func(t *testing.T) {
			b := newTestBackend(t, "oci+http://"+start(t)+"/pages/m", nil)
			ctx := context.Background()
			var want []string
			for i := range 10 {
				key := fmt.Sprintf("f%02d.json", i)
				want = append(want, key)
				if _, err := b.Put(ctx, key, strings.NewReader(key), sdk.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			u, err := b.Lock(ctx, "write") // a lease tag among the pages
			if err != nil {
				t.Fatal(err)
			}
			defer u()
			var got []string
			if err := b.List(ctx, "", func(o sdk.ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("List = %q, want %q", got, want)
			}
		})
	}
}

func TestOpenAddress(t *testing.T) {
	tests := []struct {
		name      string
		addr      string
		opts      map[string]string
		wantRepo  string
		wantHTTP  bool
		wantError string
	}{
		{name: "https", addr: "oci://registry.example.com/team/mirror", wantRepo: "registry.example.com/team/mirror"},
		{name: "port and trailing slash", addr: "oci://registry.example.com:5000/m/", wantRepo: "registry.example.com:5000/m"},
		{name: "plain http", addr: "oci+http://127.0.0.1:5000/test/m", wantRepo: "127.0.0.1:5000/test/m", wantHTTP: true},
		{name: "insecure option", addr: "oci://reg.local:5000/m", opts: map[string]string{"insecure": "true"}, wantRepo: "reg.local:5000/m", wantHTTP: true},
		{name: "tuning options", addr: "oci://r.io/m", opts: map[string]string{"chunk-size": "1048576", "lease-ttl": "1m", "lease-settle": "2s", "mount-from": "other/m, r.io/third"}, wantRepo: "r.io/m"},
		{name: "other scheme", addr: "https://r.io/m", wantError: "want oci://REGISTRY/REPO"},
		{name: "no repository", addr: "oci://r.io", wantError: "with a repository"},
		{name: "empty repository", addr: "oci://r.io/", wantError: "with a repository"},
		{name: "uppercase repository", addr: "oci://r.io/Mirror", wantError: "not a valid name"},
		{name: "credentials", addr: "oci://me:secret@r.io/m", wantError: "docker login"},
		{name: "query", addr: "oci://r.io/m?insecure=true", wantError: "no query"},
		{name: "bad insecure", addr: "oci://r.io/m", opts: map[string]string{"insecure": "yes"}, wantError: "want true or false"},
		{name: "tiny chunks", addr: "oci://r.io/m", opts: map[string]string{"chunk-size": "10"}, wantError: "at least 1024"},
		{name: "settle too long", addr: "oci://r.io/m", opts: map[string]string{"lease-ttl": "3s", "lease-settle": "2s"}, wantError: "at most a third"},
		{name: "bad mount source", addr: "oci://r.io/m", opts: map[string]string{"mount-from": "Bad Name"}, wantError: "not a valid name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := open(sdk.Config{Address: tt.addr, Options: tt.opts}, "")
			if tt.wantError != "" {
				if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("open(%q) = %v, want fs.ErrInvalid saying %q", tt.addr, err, tt.wantError)
				}
				if strings.Contains(fmt.Sprint(err), "secret") {
					t.Errorf("the error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Repository(); got != tt.wantRepo {
				t.Errorf("Repository() = %q, want %q", got, tt.wantRepo)
			}
			if b.c.insecure != tt.wantHTTP {
				t.Errorf("insecure = %v, want %v", b.c.insecure, tt.wantHTTP)
			}
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.v, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}
