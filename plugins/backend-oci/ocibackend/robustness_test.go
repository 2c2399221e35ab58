package ocibackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/internal/testregistry"
	"github.com/mirrorkit/mirror/sdk"
)

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// wantOldOrNew checks that key holds exactly old or exactly new, never a
// mix or nothing, and says which.
func wantOldOrNew(t *testing.T, b sdk.Backend, key string, old, new []byte) bool {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s) after the restart: %v", key, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read %s after the restart: %v", key, err)
	}
	switch {
	case bytes.Equal(got, new):
		return true
	case bytes.Equal(got, old):
		return false
	}
	t.Fatalf("%s holds %d bytes that are neither the old nor the new content", key, len(got))
	return false
}

// TestRegistryRestart restarts Debian's docker-registry in the middle of a
// Put. In the default streamed mode the Put fails and the run again
// completes. With chunk-size set, between two chunks the upload resumes on
// the restarted registry and the Put succeeds; in the middle of a chunk the
// registry may have kept part of it and then refuse the resent chunk: the
// Put then fails with advice to run again, and the run again succeeds.
// Every way, the key holds the old content or the new, never a part.
func TestRegistryRestart(t *testing.T) {
	const chunk = 1 << 20
	newData := randomBytes(1, 12*chunk+123)
	oldData := []byte("the old content")
	opts := sdk.PutOptions{Size: int64(len(newData)), SizeKnown: true, SHA256: hexSum(newData)}

	t.Run("between chunks", func(t *testing.T) {
		reg := realRegistry(t)
		var patched atomic.Int32
		host := proxy(t, reg.Host(), func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r)
				if r.Method == http.MethodPatch {
					patched.Add(1)
				}
			})
		})
		b := openBackend(t, address(host, freshRepo("restart")), map[string]string{"chunk-size": fmt.Sprint(chunk)})
		ctx := context.Background()
		if _, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(oldData), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := b.Put(ctx, "big.tar.gz", pr, opts)
			pr.CloseWithError(err)
			done <- err
		}()
		// Four whole chunks: the reader then waits for the fifth and the
		// fourth PATCH is the last request until more comes.
		if _, err := pw.Write(newData[:4*chunk]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return patched.Load() == 4 })
		reg.Restart()
		if _, err := pw.Write(newData[4*chunk:]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatalf("Put across a restart between chunks: %v", err)
		}
		if !wantOldOrNew(t, b, "big.tar.gz", oldData, newData) {
			t.Fatal("the Put succeeded but the key holds the old content")
		}
	})

	t.Run("streamed", func(t *testing.T) {
		// The default mode sends a large file in one streamed PATCH, which
		// cannot be sent again: the Put fails, the key keeps its old
		// content, and the Put run again succeeds.
		reg := realRegistry(t)
		paused, resume := make(chan struct{}), make(chan struct{})
		var patches atomic.Int32
		host := proxy(t, reg.Host(), func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPatch && patches.Add(1) == 1 {
					r.Body = &pausingBody{r: r.Body, after: 5 * chunk, paused: paused, resume: resume}
				}
				next.ServeHTTP(w, r)
			})
		})
		b := openBackend(t, address(host, freshRepo("restart")), nil)
		ctx := context.Background()
		if _, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(oldData), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(newData), opts)
			done <- err
		}()
		select {
		case <-paused:
		case err := <-done:
			t.Fatalf("Put ended (%v) before the upload was under way", err)
		case <-time.After(time.Minute):
			t.Fatal("the upload never started")
		}
		reg.Stop()
		close(resume)
		reg.Start()
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "run again") {
			t.Fatalf("Put whose upload broke off = %v, want an error saying to run again", err)
		}
		if wantOldOrNew(t, b, "big.tar.gz", oldData, newData) {
			t.Fatal("the Put failed but the key holds the new content")
		}
		if _, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(newData), opts); err != nil {
			t.Fatalf("Put run again after the restart: %v", err)
		}
		if !wantOldOrNew(t, b, "big.tar.gz", oldData, newData) {
			t.Fatal("the Put run again succeeded but the key holds the old content")
		}
	})

	t.Run("during a chunk", func(t *testing.T) {
		reg := realRegistry(t)
		paused, resume := make(chan struct{}), make(chan struct{})
		var patches atomic.Int32
		host := proxy(t, reg.Host(), func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPatch && patches.Add(1) == 3 {
					// Half of the third chunk reaches the registry, then
					// the registry dies under it.
					r.Body = &pausingBody{r: r.Body, after: chunk / 2, paused: paused, resume: resume}
				}
				next.ServeHTTP(w, r)
			})
		})
		b := openBackend(t, address(host, freshRepo("restart")), map[string]string{"chunk-size": fmt.Sprint(chunk)})
		ctx := context.Background()
		if _, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(oldData), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(newData), opts)
			done <- err
		}()
		select {
		case <-paused:
		case err := <-done:
			t.Fatalf("Put ended (%v) before the third chunk", err)
		case <-time.After(time.Minute):
			t.Fatal("the third chunk never came")
		}
		reg.Stop()
		close(resume)
		reg.Start()
		err := <-done
		stored := wantOldOrNew(t, b, "big.tar.gz", oldData, newData)
		switch {
		case err == nil && !stored:
			t.Fatal("the Put succeeded but the key holds the old content")
		case err != nil && stored:
			t.Fatalf("the Put failed (%v) but the key holds the new content", err)
		case err != nil:
			t.Logf("Put across the restart failed cleanly: %v", err)
			if !strings.Contains(err.Error(), "run again") {
				t.Errorf("the error does not say to run again: %v", err)
			}
			if _, err := b.Put(ctx, "big.tar.gz", bytes.NewReader(newData), opts); err != nil {
				t.Fatalf("Put run again after the restart: %v", err)
			}
			if !wantOldOrNew(t, b, "big.tar.gz", oldData, newData) {
				t.Fatal("the Put run again succeeded but the key holds the old content")
			}
		default:
			t.Log("Put across the restart succeeded")
		}
	})
}

// pausingBody passes after bytes of a request body, then waits for resume.
type pausingBody struct {
	r      io.ReadCloser
	after  int
	n      int
	once   sync.Once
	paused chan struct{}
	resume chan struct{}
}

func (p *pausingBody) Read(b []byte) (int, error) {
	if p.n >= p.after {
		p.once.Do(func() { close(p.paused) })
		<-p.resume
		return 0, errors.New("the connection to the registry broke")
	}
	if len(b) > p.after-p.n {
		b = b[:p.after-p.n]
	}
	n, err := p.r.Read(b)
	p.n += n
	return n, err
}

func (p *pausingBody) Close() error { return p.r.Close() }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRegistryAuth: a docker-registry with htpasswd auth works with the
// credentials `docker login` would write to the Docker config, and without
// them fails with one line naming the registry and how to log in, in
// process and across the plugin boundary.
func TestRegistryAuth(t *testing.T) {
	reg := realRegistry(t, testregistry.WithAuth("mirror", "s3cret-pw"))
	addr := address(reg.Host(), freshRepo("auth"))
	ctx := context.Background()
	good := t.TempDir()
	if err := reg.WriteDockerConfig(good); err != nil {
		t.Fatal(err)
	}
	wrong := t.TempDir()
	// "mirror:wrong" in base64.
	if err := os.WriteFile(filepath.Join(wrong, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":"bWlycm9yOndyb25n"}}}`, reg.Host())), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		config string
		want   string // "" for success
	}{
		{"docker config", good, ""},
		{"no credentials", t.TempDir(), fmt.Sprintf("registry %s needs credentials: run `docker login %s` or set DOCKER_CONFIG", reg.Host(), reg.Host())},
		{"wrong password", wrong, fmt.Sprintf("registry %s refused the credentials: run `docker login %s` or set DOCKER_CONFIG", reg.Host(), reg.Host())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", tt.config)
			check := func(t *testing.T, b sdk.Backend, inProcess bool) {
				_, err := b.Put(ctx, "timestamp.json", strings.NewReader("{}"), sdk.PutOptions{})
				if tt.want == "" {
					if err != nil {
						t.Fatalf("Put with credentials: %v", err)
					}
					if _, err := b.Stat(ctx, "timestamp.json"); err != nil {
						t.Fatal(err)
					}
					u, err := b.Lock(ctx, "write")
					if err != nil {
						t.Fatal(err)
					}
					u()
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Put = %v, want one line containing %q", err, tt.want)
				}
				if inProcess && !errors.Is(err, fs.ErrPermission) {
					t.Errorf("Put = %v, want it to wrap fs.ErrPermission", err)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "bWlycm9y") {
					t.Errorf("the error shows a credential: %v", err)
				}
			}
			t.Run("in-process", func(t *testing.T) {
				check(t, openBackend(t, addr, fastLease), true)
			})
			t.Run("plugin process", func(t *testing.T) {
				check(t, pluginBackend(t, addr, fastLease), false)
			})
		})
	}
}
