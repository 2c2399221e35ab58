package publish_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// TestRollForwardWithNothingToAdd: after a commit stopped between
// snapshot.json and timestamp.json, a writer whose own change turns out to
// be nothing (or is refused) still finishes the earlier commit, so the
// mirror does not stay unreadable until some later write.
func TestRollForwardWithNothingToAdd(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	crash := errors.New("simulated crash")
	w := f.writer()
	w.BeforeCommitPoint = func(context.Context) error { return crash }
	if err := w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		return f.addVersion(ctx, tx, "hello", "v1.0.0")
	}); !errors.Is(err, crash) {
		t.Fatalf("got %v", err)
	}
	nothing := errors.New("nothing to do")
	if err := f.writer().Update(ctx, func(context.Context, *publish.Txn) error { return nothing }); !errors.Is(err, nothing) {
		t.Fatalf("got %v", err)
	}
	c, _, err := f.open(t).Component(ctx, "hello", false)
	if err != nil {
		t.Fatalf("the interrupted commit was not finished: %v", err)
	}
	if _, ok := c.Platforms["any/any"]["v1.0.0"]; !ok {
		t.Fatal("the interrupted commit's version is missing")
	}
}

// lossyBackend acknowledges Puts of one key without making them.
type lossyBackend struct {
	sdk.Backend
	drop string
}

func (b lossyBackend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if key == b.drop {
		n, err := io.Copy(io.Discard, r)
		return sdk.ObjectInfo{Key: key, Size: n}, err
	}
	return b.Backend.Put(ctx, key, r, opts)
}

// TestLostWriteStopsTheCommit: a backend that acknowledges a write it never
// made is caught by the read-back before the timestamp moves, whichever
// file it loses; the timestamp stays as it was, and a writer on an honest
// backend then commits.
func TestLostWriteStopsTheCommit(t *testing.T) {
	for _, key := range []string{"1.hello.json", "3.index.json", "snapshot.json", "timestamp.json"} {
		t.Run(key, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			before, _ := os.ReadFile(filepath.Join(f.dir, "timestamp.json"))
			w := f.writer()
			w.Backend = lossyBackend{Backend: fsbackend.New(f.dir), drop: key}
			err := w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
				return f.addVersion(ctx, tx, "hello", "v1.0.0")
			})
			if !errors.Is(err, sdk.ErrIntegrity) {
				t.Fatalf("a lost write of %s: %v", key, err)
			}
			if after, _ := os.ReadFile(filepath.Join(f.dir, "timestamp.json")); !bytes.Equal(before, after) {
				t.Fatal("the timestamp moved over a lost write")
			}
			if err := f.writer().Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
				return f.addVersion(ctx, tx, "hello", "v1.0.0")
			}); err != nil {
				t.Fatalf("the honest re-run: %v", err)
			}
			f.open(t)
		})
	}
}

// TestTornTarballReplaced: a file a commit left behind under a tarball's
// name, that no committed manifest names (a backend tore it, a crash came
// before the timestamp), is replaced by the re-run; a published tarball
// with other bytes is refused.
func TestTornTarballReplaced(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const name = "hello-v1.0.0-any-any.tar.gz"
	data := []byte("the whole tarball")
	if err := os.WriteFile(filepath.Join(f.dir, name), data[:5], 0o644); err != nil {
		t.Fatal(err)
	}
	// publish stages version with the tarball body under name.
	publish1 := func(version string, body []byte) error {
		src := filepath.Join(t.TempDir(), "t.tar.gz")
		if err := os.WriteFile(src, body, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		return f.writer().Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
			c, err := tx.Component(ctx, "hello")
			if err != nil {
				return err
			}
			if c == nil {
				c = manifest.NewComponent("hello", "", tx.Now())
				tx.Index.Components["hello"] = manifest.ComponentItem{Owner: "alice", URL: manifest.ManifestURL("hello")}
				tx.IndexChanged()
				c.Platforms["any/any"] = map[string]manifest.VersionItem{}
			} else {
				c.Renew(tx.Now(), manifest.LifetimeComponent)
			}
			c.Platforms["any/any"][version] = manifest.VersionItem{URL: "/" + name, Entry: "x", Length: uint64(len(body)),
				Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}, Released: manifest.FormatTime(tx.Now())}
			env, err := manifest.NewEnvelope(c)
			if err != nil {
				return err
			}
			if err := publish.SignWith(ctx, env, f.owner.Signer()); err != nil {
				return err
			}
			if err := tx.PutComponent(env); err != nil {
				return err
			}
			tx.AddFile(name, src, int64(len(body)), hex.EncodeToString(sum[:]))
			return nil
		})
	}
	if err := publish1("v1.0.0", data); err != nil {
		t.Fatalf("the torn leftover blocked the publish: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, name)); !bytes.Equal(got, data) {
		t.Fatalf("the leftover was not replaced: %q", got)
	}
	// Now a committed manifest names it: other bytes are refused.
	if err := publish1("v1.0.1", []byte("other bytes, same name")); err == nil {
		t.Fatal("a published tarball was overwritten")
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, name)); !bytes.Equal(got, data) {
		t.Fatal("the published tarball changed")
	}
}
