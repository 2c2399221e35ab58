package publish_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// keyRing is an in-process KeySource for tests.
type keyRing map[string]*keys.PrivateKey

func (k keyRing) Signer(_ context.Context, id string) (sdk.Signer, error) {
	if key, ok := k[id]; ok {
		return key.Signer(), nil
	}
	return nil, fmt.Errorf("key %s: %w", id[:16], publish.ErrMissingKey)
}

var (
	poolOnce sync.Once
	pool     []*keys.PrivateKey
)

func testKeys(t testing.TB) []*keys.PrivateKey {
	poolOnce.Do(func() {
		pool = make([]*keys.PrivateKey, 6)
		var wg sync.WaitGroup
		for i := range pool {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pool[i], _ = keys.Generate()
			}()
		}
		wg.Wait()
	})
	return pool
}

// fixture is a fresh mirror on the fs backend with one owner, alice
// (pool[4]), and the role keys of pool[0..3].
type fixture struct {
	dir   string
	ring  keyRing
	owner *keys.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	dir := t.TempDir()
	f := mirrorOn(t, fsbackend.New(dir))
	f.dir = dir
	return f
}

// mirrorOn initializes a mirror on b with the fixture's keys and owner
// alice.
func mirrorOn(t testing.TB, b sdk.Backend) *fixture {
	t.Helper()
	k := testKeys(t)
	f := &fixture{ring: keyRing{}, owner: k[4]}
	for _, key := range k[:4] {
		f.ring[key.ID()] = key
	}
	roles := map[string][]sdk.Signer{
		manifest.RoleRoot: {k[0].Signer()}, manifest.RoleIndex: {k[1].Signer()},
		manifest.RoleSnapshot: {k[2].Signer()}, manifest.RoleTimestamp: {k[3].Signer()},
	}
	ctx := context.Background()
	if err := publish.Init(ctx, b, roles, now); err != nil {
		t.Fatal(err)
	}
	w := &publish.Writer{Backend: b, Keys: f.ring, Clock: clock}
	if err := w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		tx.Index.Owners["alice"] = manifest.Owner{Name: "Alice", Threshold: 1,
			Keys: map[string]*manifest.KeyInfo{f.owner.ID(): f.owner.Public().KeyInfo()}}
		tx.IndexChanged()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// writer returns a writer over its own backend value, as a separate
// process would have.
func (f *fixture) writer() *publish.Writer {
	return &publish.Writer{Backend: fsbackend.New(f.dir), Keys: f.ring, Clock: clock}
}

// addVersion stages one version of a component (a manifest-only change, to
// keep the test about ordering and conflicts).
func (f *fixture) addVersion(ctx context.Context, tx *publish.Txn, id, version string) error {
	c, err := tx.Component(ctx, id)
	if err != nil {
		return err
	}
	if c == nil {
		c = manifest.NewComponent(id, "", tx.Now())
		tx.Index.Components[id] = manifest.ComponentItem{Owner: "alice", URL: manifest.ManifestURL(id)}
		tx.IndexChanged()
	} else {
		c.Renew(tx.Now(), manifest.LifetimeComponent)
	}
	if c.Platforms["any/any"] == nil {
		c.Platforms["any/any"] = map[string]manifest.VersionItem{}
	}
	c.Platforms["any/any"][version] = manifest.VersionItem{URL: "/x.tar.gz", Entry: "x",
		Hashes: map[string]string{"sha256": "00"}, Length: 1, Released: manifest.FormatTime(tx.Now())}
	env, err := manifest.NewEnvelope(c)
	if err != nil {
		return err
	}
	if err := publish.SignWith(ctx, env, f.owner.Signer()); err != nil {
		return err
	}
	return tx.PutComponent(env)
}

// open verifies the mirror as a fresh client would.
func (f *fixture) open(t testing.TB) *repo.Repo {
	t.Helper()
	anchor, err := os.ReadFile(filepath.Join(f.dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), fsbackend.New(f.dir), repo.Options{Anchor: anchor, Clock: clock})
	if err != nil {
		t.Fatalf("mirror does not verify: %v", err)
	}
	return r
}

// TestConcurrentWriters: N writers at once on one mirror, each with its own
// backend value (the lock is a file lock, as across processes); every
// version lands and the manifest versions are dense.
func TestConcurrentWriters(t *testing.T) {
	f := newFixture(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := f.writer()
			errs <- w.Update(context.Background(), func(ctx context.Context, tx *publish.Txn) error {
				return f.addVersion(ctx, tx, "hello", fmt.Sprintf("v1.0.%d", i))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := f.open(t)
	c, _, err := r.Component(context.Background(), "hello", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c.Platforms["any/any"]); got != n {
		t.Fatalf("%d versions landed, want %d", got, n)
	}
	if c.Version != n {
		t.Fatalf("component manifest version %d, want %d", c.Version, n)
	}
	for v := uint64(1); v <= n; v++ {
		if _, err := os.Stat(filepath.Join(f.dir, manifest.VersionedName(v, "hello"))); err != nil {
			t.Errorf("version %d of hello.json missing: %v", v, err)
		}
	}
	// 1 timestamp from init, 1 from grant, 1 per writer.
	if got := r.State().Timestamp.Version; got != n+2 {
		t.Errorf("timestamp version %d, want %d", got, n+2)
	}
}

// TestCrashBeforeCommitPoint: a writer that dies after writing snapshot.json
// but before timestamp.json leaves a mirror whose committed state is intact
// for the files it names, and the next writer rolls it forward.
func TestCrashBeforeCommitPoint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	crash := errors.New("simulated crash")
	w := f.writer()
	w.BeforeCommitPoint = func(context.Context) error { return crash }
	err := w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		return f.addVersion(ctx, tx, "hello", "v1.0.0")
	})
	if !errors.Is(err, crash) {
		t.Fatalf("got %v", err)
	}
	// The next write completes; nothing is lost.
	if err := f.writer().Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		return f.addVersion(ctx, tx, "hello", "v1.0.1")
	}); err != nil {
		t.Fatalf("write after crash: %v", err)
	}
	c, _, err := f.open(t).Component(ctx, "hello", false)
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for v := range c.Platforms["any/any"] {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	if len(versions) != 2 {
		t.Fatalf("versions after recovery: %v, want v1.0.0 and v1.0.1", versions)
	}
}

// TestNonOwnerRefused: a component signed by a key that is not its owner's
// is refused at commit and nothing is written.
func TestNonOwnerRefused(t *testing.T) {
	f := newFixture(t)
	stranger := testKeys(t)[5]
	ctx := context.Background()
	before, _ := os.ReadFile(filepath.Join(f.dir, "timestamp.json"))
	err := f.writer().Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		c := manifest.NewComponent("evil", "", tx.Now())
		tx.Index.Components["evil"] = manifest.ComponentItem{Owner: "alice", URL: "/evil.json"}
		tx.IndexChanged()
		env, _ := manifest.NewEnvelope(c)
		if err := publish.SignWith(ctx, env, stranger.Signer()); err != nil {
			return err
		}
		return tx.PutComponent(env)
	})
	if err == nil {
		t.Fatal("a stranger's component was committed")
	}
	after, _ := os.ReadFile(filepath.Join(f.dir, "timestamp.json"))
	if string(before) != string(after) {
		t.Fatal("the timestamp changed")
	}
	if _, err := os.Stat(filepath.Join(f.dir, "1.evil.json")); !os.IsNotExist(err) {
		t.Fatal("1.evil.json was written")
	}
}

// TestMissingRoleKey: without the snapshot key nothing can be committed,
// and the error says which key and where to point.
func TestMissingRoleKey(t *testing.T) {
	f := newFixture(t)
	w := f.writer()
	ring := keyRing{}
	for id, k := range f.ring {
		if k != testKeys(t)[2] {
			ring[id] = k
		}
	}
	w.Keys = ring
	err := w.Update(context.Background(), func(ctx context.Context, tx *publish.Txn) error {
		return f.addVersion(ctx, tx, "hello", "v1.0.0")
	})
	if !errors.Is(err, publish.ErrMissingKey) {
		t.Fatalf("got %v", err)
	}
}
