package repo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
)

func hashes(b []byte) map[string]string {
	s256, s512 := sha256.Sum256(b), sha512.Sum512(b)
	return map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])}
}

// endless is a reader that never ends: the attacker's "endless data".
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.n += int64(len(p))
	return len(p), nil
}

func TestVerifier(t *testing.T) {
	content := bytes.Repeat([]byte("tiup"), 1000)
	good := hashes(content)
	tests := []struct {
		name   string
		body   io.Reader
		length uint64
		hashes map[string]string
		what   string // the HashError's What, "" for success
	}{
		{"exact", bytes.NewReader(content), uint64(len(content)), good, ""},
		{"longer than signed", bytes.NewReader(append(content, 'x')), uint64(len(content)), good, "length"},
		{"shorter than signed", bytes.NewReader(content[:10]), uint64(len(content)), good, "length"},
		{"sha256 differs", bytes.NewReader(content), uint64(len(content)), map[string]string{"sha256": hashes([]byte("x"))["sha256"], "sha512": good["sha512"]}, "sha256"},
		{"sha512 differs", bytes.NewReader(content), uint64(len(content)), map[string]string{"sha256": good["sha256"], "sha512": hashes([]byte("x"))["sha512"]}, "sha512"},
		{"no hash signed", bytes.NewReader(content), uint64(len(content)), map[string]string{}, "sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := repo.NewVerifier(io.NopCloser(tc.body), "x.tar.gz", tc.length, tc.hashes)
			_, err := io.Copy(io.Discard, v)
			if tc.what == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *trust.HashError
			if !errors.As(err, &he) || he.What != tc.what {
				t.Fatalf("got %v, want a %s HashError", err, tc.what)
			}
			if !errors.Is(err, trust.ErrUntrusted) {
				t.Fatal("not untrusted")
			}
		})
	}
}

// TestVerifierStopsEndlessData: the reader asks for at most one byte past
// the signed length, so an endless stream is cut off there.
func TestVerifierStopsEndlessData(t *testing.T) {
	src := &endless{}
	v := repo.NewVerifier(io.NopCloser(src), "x.tar.gz", 1<<20, hashes(nil))
	_, err := io.Copy(io.Discard, v)
	var he *trust.HashError
	if !errors.As(err, &he) || he.What != "length" {
		t.Fatalf("got %v", err)
	}
	if src.n > 1<<20+1 {
		t.Fatalf("read %d bytes from an endless stream with a 1 MiB cap", src.n)
	}
}

const fixtureDir = "../../../shared/fixtures/tiup-v1-mirror/mirror"

var fixtureNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// TestOpenFixtureAndRollback opens the stock-tiup mirror through the fs
// backend, saves the trusted state, and then refuses an older timestamp
// served later (a freeze or rollback attack).
func TestOpenFixtureAndRollback(t *testing.T) {
	if _, err := os.Stat(fixtureDir); err != nil {
		t.Skip("fixtures not available")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixtureDir)); err != nil {
		t.Fatal(err)
	}
	anchor, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	store := repo.MemStore{}
	ctx := context.Background()
	clock := func() time.Time { return fixtureNow }
	r, err := repo.Open(ctx, fsbackend.New(dir), repo.Options{Anchor: anchor, Store: store, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if r.State().Root.Version != 2 {
		t.Fatalf("root version %d after the chain, want 2", r.State().Root.Version)
	}
	if _, ok := store["2.root.json"]; !ok {
		t.Fatal("2.root.json not saved")
	}
	c, _, err := r.Component(ctx, "hello", false)
	if err != nil {
		t.Fatal(err)
	}
	item, ok := c.Item("linux/amd64", "v1.3.0")
	if !ok {
		t.Fatal("hello v1.3.0 missing")
	}
	rc, err := r.OpenTarball(ctx, item)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("fixture tarball does not verify: %v", err)
	}
	rc.Close()
	if _, _, err := r.Component(ctx, "legacy", false); err == nil {
		t.Fatal("a yanked component was returned")
	}

	// Pretend the client once trusted a newer timestamp than the mirror now
	// serves: version 99, signed with the fixture's timestamp key (a saved
	// timestamp that no longer verifies would count as absent).
	store["timestamp.json"] = resignedTimestamp(t, store["timestamp.json"], 99)
	_, err = repo.Open(ctx, fsbackend.New(dir), repo.Options{Anchor: anchor, Store: store, Clock: clock})
	var ve *trust.VersionError
	if !errors.As(err, &ve) {
		t.Fatalf("rollback not refused: %v", err)
	}
}

// resignedTimestamp returns timestamp b with another version, signed with
// the fixture mirror's timestamp key.
func resignedTimestamp(t *testing.T, b []byte, version uint64) []byte {
	t.Helper()
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	var ts manifest.Timestamp
	if err := env.Decode(&ts); err != nil {
		t.Fatal(err)
	}
	ts.Version = version
	k, err := keys.LoadPrivateKey(filepath.Join(fixtureDir, "keys", "2ea6274906d6d9eb-timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := manifest.NewEnvelope(&ts)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(out.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.AddSignature(k.ID(), sig); err != nil {
		t.Fatal(err)
	}
	nb, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return nb
}
