package fsbackend_test

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
)

// benchSize is the object the plugin-overhead benchmarks move: large
// enough that the plugin's start and each call's set-up vanish in the
// throughput, so what is measured is the streaming itself.
const benchSize = 500 << 20

// benchBuf is what every variant reads into, so that they differ only in
// where the bytes come from.
const benchBuf = 1 << 20

// drain reads r to its end with buf, as a consumer that hashes or writes
// the bytes would, and returns how many there were.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// benchMirror writes a benchSize object into a fresh directory and starts
// the fs backend plugin over it, as a real subprocess (this test binary
// serving fsbackend, see TestMain).
func benchMirror(b *testing.B) (dir string, pb *host.Backend) {
	b.Helper()
	dir = b.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.tar.gz"))
	if err != nil {
		b.Fatal(err)
	}
	var seed [32]byte
	_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8(seed), benchSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return dir, plugintest.Backend(b, sdk.Config{Address: dir})
}

func wantSize(b *testing.B, n int64, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	if n != benchSize {
		b.Fatalf("moved %d bytes, want %d", n, benchSize)
	}
}

// BenchmarkPluginGet reads a 500 MiB object three ways in one run and
// hashes it with SHA-256 as it goes, as every reader in mirrorkit does
// (tarballs and manifests are verified while they stream): from its file
// directly (the baseline), streamed through the plugin protocol (Get), and
// through the fs fast path (LocalPath, then the file). The file is in the
// page cache after the first pass, so no disk is measured.
func BenchmarkPluginGet(b *testing.B) {
	benchGet(b, func() hash.Hash { return sha256.New() })
}

// BenchmarkPluginGetDrain is BenchmarkPluginGet with a consumer that
// throws the bytes away: the protocol's raw ceiling, against reading a
// cached file at memory speed.
func BenchmarkPluginGetDrain(b *testing.B) {
	benchGet(b, nil)
}

// benchGet runs the three readers; newHash, when not nil, makes the hash
// each pass feeds.
func benchGet(b *testing.B, newHash func() hash.Hash) {
	dir, pb := benchMirror(b)
	ctx := context.Background()
	buf := make([]byte, benchBuf)
	consume := func(b *testing.B, r io.Reader) {
		if newHash != nil {
			h := newHash()
			r = io.TeeReader(r, h)
			defer h.Sum(nil)
		}
		n, err := drain(r, buf)
		wantSize(b, n, err)
	}
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			f, err := os.Open(filepath.Join(dir, "big.tar.gz"))
			if err != nil {
				b.Fatal(err)
			}
			consume(b, f)
			f.Close()
		}
	})
	b.Run("plugin", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			rc, _, err := pb.Get(ctx, "big.tar.gz")
			if err != nil {
				b.Fatal(err)
			}
			consume(b, rc)
			rc.Close()
		}
	})
	b.Run("localpath", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			p, err := pb.LocalPath(ctx, "big.tar.gz")
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			consume(b, f)
			f.Close()
		}
	})
}

// BenchmarkPluginPut stores a 500 MiB file three ways: copied into the
// mirror directory directly (the baseline: create, copy, sync, rename, as
// the backend does), streamed through the plugin protocol (Put) and handed
// over by path (PutFile).
func BenchmarkPluginPut(b *testing.B) {
	dir, pb := benchMirror(b)
	ctx := context.Background()
	src := filepath.Join(dir, "big.tar.gz")
	buf := make([]byte, benchBuf)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			tmp := filepath.Join(dir, ".direct.tmp")
			out, err := os.Create(tmp)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf)
			in.Close()
			if err == nil {
				err = out.Sync()
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp, filepath.Join(dir, "direct.tar.gz"))
			}
			wantSize(b, n, err)
		}
	})
	b.Run("plugin", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			info, err := pb.Put(ctx, "put.tar.gz", in, sdk.PutOptions{Size: benchSize, SizeKnown: true})
			in.Close()
			wantSize(b, info.Size, err)
		}
	})
	b.Run("putfile", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			info, err := pb.PutFile(ctx, "putfile.tar.gz", src, sdk.PutOptions{Size: benchSize, SizeKnown: true})
			wantSize(b, info.Size, err)
		}
	})
}
