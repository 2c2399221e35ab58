package httpbackend_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// TestMinRate has a server drip the body a byte at a time, never stalling
// long enough for the idle timeout: the minimum rate ends it, as a timeout
// (context.DeadlineExceeded, the sentinel that crosses the plugin
// boundary), once the idle timeout's worth of waiting has passed.
func TestMinRate(t *testing.T) {
	body := make([]byte, 4096)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for i := range body {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	b := open(t, srv.URL, httpbackend.Options{BaseDelay: time.Millisecond, IdleTimeout: 200 * time.Millisecond, MinRate: 1000})
	got, _, err := getAll(context.Background(), b, "f")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v after %d bytes, want a timeout", err, len(got))
	}
	if len(got) >= len(body) {
		t.Fatalf("read the whole dripped body (%d bytes)", len(got))
	}
}

// TestMinRateOff keeps reading a slow body when the rule is off.
func TestMinRateOff(t *testing.T) {
	body := make([]byte, 30)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for i := range body {
			w.Write(body[i : i+1])
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	defer srv.Close()
	b := open(t, srv.URL, httpbackend.Options{IdleTimeout: 100 * time.Millisecond, MinRate: -1})
	got, _, err := getAll(context.Background(), b, "f")
	if err != nil || len(got) != len(body) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}

// TestEnvOptions: the plugin's environment tunes it, and a malformed
// value is an error naming the variable.
func TestEnvOptions(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	t.Setenv(httpbackend.EnvAttempts, "2")
	t.Setenv(httpbackend.EnvIdleTimeout, "1s")
	t.Setenv(httpbackend.EnvHeaderTimeout, "1s")
	t.Setenv(httpbackend.EnvMinRate, "0")
	b, err := httpbackend.Open(context.Background(), sdk.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Get(context.Background(), "f")
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("got %v, want a failure after 2 attempts", err)
	}
	t.Setenv(httpbackend.EnvIdleTimeout, "soon")
	if _, err := httpbackend.Open(context.Background(), sdk.Config{Address: srv.URL}); !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), httpbackend.EnvIdleTimeout) {
		t.Fatalf("got %v, want an invalid %s", err, httpbackend.EnvIdleTimeout)
	}
}
