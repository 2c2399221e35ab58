package attacktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk"
)

// OCI is the backend of a mirror kept in an OCI registry: go-containerregistry's
// in-memory registry on 127.0.0.1, behind the same kind of fault
// middleware as SRV, written through the OCI backend itself (the layout of
// docs/oci-layout.md) and read by the client through oci+http://.
const OCI = "oci"

// ociStore is a case's registry and what has been pushed to it.
type ociStore struct {
	srv     *httptest.Server
	backend sdk.Backend
	addr    string

	mu     sync.Mutex          // held by sync, never by the handler
	pushed map[string][32]byte // name -> sha256 of the bytes pushed
	// flipBlob corrupts every blob the registry serves.
	flipBlob atomic.Bool
}

func newOCIStore() (*ociStore, error) {
	s := &ociStore{pushed: map[string][32]byte{}}
	reg := registry.New(registry.Logger(nopLogger()))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.flipBlob.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	s.addr = "oci+http://" + strings.TrimPrefix(s.srv.URL, "http://") + "/attack/mirror"
	b, err := ocibackend.Open(context.Background(), sdk.Config{Address: s.addr})
	if err != nil {
		s.srv.Close()
		return nil, err
	}
	s.backend = b
	return s, nil
}

func (s *ociStore) close() {
	if c, ok := s.backend.(io.Closer); ok {
		c.Close()
	}
	s.srv.Close()
}

// sync pushes what differs from the served view and deletes what is no
// longer served.
func (s *ociStore) sync(names map[string]bool, served func(string) ([]byte, bool)) error {
	ctx := context.Background()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.pushed {
		if _, ok := served(name); !ok || !names[name] {
			if err := s.backend.Delete(ctx, name); err != nil {
				return fmt.Errorf("oci delete %s: %w", name, err)
			}
			delete(s.pushed, name)
		}
	}
	for name := range names {
		b, ok := served(name)
		if !ok {
			continue
		}
		sum := sha256.Sum256(b)
		if prev, ok := s.pushed[name]; ok && prev == sum {
			continue
		}
		if _, err := s.backend.Put(ctx, name, bytes.NewReader(b), sdk.PutOptions{}); err != nil {
			return fmt.Errorf("oci put %s: %w", name, err)
		}
		s.pushed[name] = sum
	}
	return nil
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// corruptBlobs makes the registry flip a byte of every blob it serves:
// content that does not match its digest.
func (s *ociStore) corruptBlobs(on bool) { s.flipBlob.Store(on) }
