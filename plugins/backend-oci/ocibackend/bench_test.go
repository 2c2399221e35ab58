package ocibackend_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mirrorkit/mirror/sdk"
)

// BenchmarkPutGet stores and reads a 64 MiB file through the backend, beside
// go-containerregistry's own blob push and pull (what crane does) of the
// same bytes, against the in-memory registry and, when installed,
// Debian's docker-registry. Put is given the size but no digest, so every
// iteration uploads (with a digest, a blob already there is not sent again);
// "chunks=8MiB" is the chunk-size option's mode.
func BenchmarkPutGet(b *testing.B) {
	data := randomBytes(3, 64<<20)
	b.Run("in-memory registry", func(b *testing.B) { benchmarkPutGet(b, memRegistry(b, nil), data) })
	b.Run("docker-registry", func(b *testing.B) { benchmarkPutGet(b, realRegistry(b).Host(), data) })
}

// pushSeq makes every baseline push a new blob, across runs of -count too.
var pushSeq atomic.Uint64

func benchmarkPutGet(b *testing.B, host string, data []byte) {
	ctx := context.Background()
	repo := freshRepo("bench")
	be := openBackend(b, address(host, repo), nil)
	chunked := openBackend(b, address(host, repo), map[string]string{"chunk-size": "8388608"})
	opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true}
	for _, m := range []struct {
		name string
		be   sdk.Backend
	}{{"Put", be}, {"Put chunks=8MiB", chunked}} {
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := m.be.Put(ctx, "big.tar.gz", bytes.NewReader(data), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rc, _, err := be.Get(ctx, "big.tar.gz")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	ref, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	var digest v1.Hash
	b.Run("ggcr push", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			// New first bytes each time: ggcr skips a blob the registry
			// has, and the point is to measure an upload.
			binary.BigEndian.PutUint64(data, pushSeq.Add(1))
			l := static.NewLayer(data, types.OCILayer)
			if err := remote.WriteLayer(ref, l); err != nil {
				b.Fatal(err)
			}
			if digest, err = l.Digest(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ggcr pull", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			l, err := remote.Layer(ref.Digest(digest.String()))
			if err != nil {
				b.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
