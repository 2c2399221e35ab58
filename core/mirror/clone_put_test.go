package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// TestPutTarball: a streamed tarball copy splits its checks between the
// clone (length and sha512) and the target's Put (length and sha256), and
// lands only when both pass. Both backends sit behind the plugin protocol,
// so a failure found at the end of the stream, after most chunks already
// reached the target, must still leave nothing there.
func TestPutTarball(t *testing.T) {
	const key = "foo-v1.0.0-linux-amd64.tar.gz"
	content := make([]byte, 3<<20+123) // several protocol chunks
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	flipped := bytes.Clone(content)
	flipped[len(flipped)-10] ^= 1 // in the last chunk
	other := []byte("other content")
	sums, otherSums := hashes(content), hashes(other)

	tests := []struct {
		name   string
		served []byte
		signed map[string]string
		// what is the HashError's What that must stop the copy; "put" is
		// the target's own refusal (sdk.ErrIntegrity); "" means success.
		what string
	}{
		{"intact", content, sums, ""},
		{"tampered byte", flipped, sums, "sha512"},
		{"signed sha512 does not match", content, map[string]string{"sha256": sums["sha256"], "sha512": otherSums["sha512"]}, "sha512"},
		{"signed sha256 does not match", content, map[string]string{"sha256": otherSums["sha256"], "sha512": sums["sha512"]}, "put"},
		{"one byte more", append(bytes.Clone(content), 0), sums, "length"},
		{"one byte short", content[:len(content)-1], sums, "length"},
		{"only sha256 signed, intact", content, map[string]string{"sha256": sums["sha256"]}, ""},
		{"only sha256 signed, tampered", flipped, map[string]string{"sha256": sums["sha256"]}, "sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			src := inProcess(t, sdktest.NewMemBackend())
			if _, err := src.Put(ctx, key, bytes.NewReader(tt.served), sdk.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			dst := inProcess(t, sdktest.NewMemBackend())
			item := manifest.VersionItem{URL: "/" + key, Length: uint64(len(content)), Hashes: tt.signed}
			opts := sdk.PutOptions{Size: int64(len(content)), SizeKnown: true, SHA256: tt.signed["sha256"], IfNoneMatch: true}
			var counted atomic.Int64
			err := putTarball(ctx, src, dst, key, item, opts, func(n int64) { counted.Add(n) })

			var he *trust.HashError
			switch {
			case tt.what == "":
				if err != nil {
					t.Fatalf("putTarball: %v", err)
				}
			case tt.what == "put":
				if !errors.Is(err, sdk.ErrIntegrity) {
					t.Fatalf("putTarball = %v; want the target's refusal, sdk.ErrIntegrity", err)
				}
			case !errors.As(err, &he) || he.What != tt.what:
				t.Fatalf("putTarball = %v; want a *trust.HashError about %s", err, tt.what)
			}

			rc, _, gerr := dst.Get(ctx, key)
			if tt.what != "" {
				if gerr == nil {
					rc.Close()
					t.Fatal("the refused tarball landed in the target")
				}
				if !errors.Is(gerr, fs.ErrNotExist) {
					t.Fatalf("Get after a refused copy: %v", gerr)
				}
				return
			}
			if gerr != nil {
				t.Fatal(gerr)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Errorf("the target holds %d bytes that differ from the source's %d", len(got), len(content))
			}
			if counted.Load() != int64(len(content)) {
				t.Errorf("progress counted %d bytes, want %d", counted.Load(), len(content))
			}
		})
	}
}

// inProcess serves b behind the plugin protocol in this process.
func inProcess(t *testing.T, b sdk.Backend) *host.Backend {
	t.Helper()
	hb, err := host.InProcessBackend(context.Background(), func(context.Context, sdk.Config) (sdk.Backend, error) {
		return b, nil
	}, sdk.Config{Address: "mem"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	return hb
}

func hashes(b []byte) map[string]string {
	s256, s512 := sha256.Sum256(b), sha512.Sum512(b)
	return map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])}
}
