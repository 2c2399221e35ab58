package trust_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
)

const fixtureDir = "../../../shared/fixtures/tiup-v1-mirror/mirror"

// fixtureNow is inside every fixture manifest's validity (the snapshot and
// timestamp expire on 2026-12-22).
var fixtureNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func fixed(t time.Time) trust.Clock { return func() time.Time { return t } }

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Skipf("fixtures not available: %v", err)
	}
	return b
}

// TestFixtureChain walks the stock-tiup mirror the way the client does,
// its rotated root included, and verifies every current component.
func TestFixtureChain(t *testing.T) {
	st, err := trust.New(readFixture(t, "root.json"), fixed(fixtureNow))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateRoot(readFixture(t, "2.root.json")); err != nil {
		t.Fatalf("2.root.json: %v", err)
	}
	if err := st.CheckRootExpiry(); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateTimestamp(readFixture(t, "timestamp.json"), 31); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateSnapshot(readFixture(t, "snapshot.json"), nil); err != nil {
		t.Fatal(err)
	}
	if st.RootBehind() {
		t.Fatal("root should be current after 2.root.json")
	}
	if err := st.UpdateIndex(readFixture(t, "15.index.json")); err != nil {
		t.Fatal(err)
	}
	for id := range st.Index.Components {
		fv, _ := st.Meta(id)
		c, err := st.VerifyComponent(id, readFixture(t, manifest.VersionedName(fv.Version, id)))
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if c.ID != id {
			t.Errorf("component %s decoded as %s", id, c.ID)
		}
	}
}

func TestFixtureRefusals(t *testing.T) {
	ts := readFixture(t, "timestamp.json")
	tests := []struct {
		name string
		run  func(st *trust.State) error
		want any
	}{
		{"timestamp rollback", func(st *trust.State) error { return st.UpdateTimestamp(ts, 32) }, new(*trust.VersionError)},
		{"timestamp expired", func(st *trust.State) error {
			late, _ := trust.New(readFixture(t, "root.json"), fixed(time.Date(2026, 12, 23, 0, 0, 0, 0, time.UTC)))
			return late.UpdateTimestamp(ts, 0)
		}, new(*trust.ExpiredError)},
		{"timestamp over 1024 bytes", func(st *trust.State) error {
			return st.UpdateTimestamp(append(ts, make([]byte, 1100)...), 0)
		}, new(*trust.HashError)},
		{"index not the one the snapshot names", func(st *trust.State) error {
			if err := st.UpdateRoot(readFixture(t, "2.root.json")); err != nil {
				return err
			}
			if err := st.UpdateTimestamp(ts, 0); err != nil {
				return err
			}
			if err := st.UpdateSnapshot(readFixture(t, "snapshot.json"), nil); err != nil {
				return err
			}
			return st.UpdateIndex(readFixture(t, "14.index.json"))
		}, new(*trust.VersionError)},
		{"snapshot not the one the timestamp pins", func(st *trust.State) error {
			if err := st.UpdateTimestamp(ts, 0); err != nil {
				return err
			}
			b := readFixture(t, "snapshot.json")
			b = []byte(strings.Replace(string(b), `"version":15`, `"version":16`, 1))
			return st.UpdateSnapshot(b, nil)
		}, new(*trust.HashError)},
		{"root 2 presented as the next of itself", func(st *trust.State) error {
			if err := st.UpdateRoot(readFixture(t, "2.root.json")); err != nil {
				return err
			}
			return st.UpdateRoot(readFixture(t, "2.root.json"))
		}, new(*trust.VersionError)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := trust.New(readFixture(t, "root.json"), fixed(fixtureNow))
			if err != nil {
				t.Fatal(err)
			}
			err = tc.run(st)
			if !errors.Is(err, trust.ErrUntrusted) {
				t.Fatalf("got %v, want an untrusted error", err)
			}
			if !errors.As(err, tc.want) {
				t.Fatalf("got %T (%v), want %T", err, err, tc.want)
			}
		})
	}
}

// keyPool hands out pre-generated keys so the simulator tests stay fast.
var (
	poolOnce sync.Once
	pool     []*keys.PrivateKey
)

func testKeys(t *testing.T, n int) []*keys.PrivateKey {
	t.Helper()
	poolOnce.Do(func() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := keys.Generate()
				if err == nil {
					mu.Lock()
					pool = append(pool, k)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if len(pool) < n {
		t.Fatalf("key pool has %d keys, need %d", len(pool), n)
	}
	return pool[:n]
}

func sign(t *testing.T, v manifest.Signed, ks ...*keys.PrivateKey) []byte {
	t.Helper()
	env, err := manifest.NewEnvelope(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		sig, err := k.Sign(env.Signed)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.AddSignature(k.ID(), sig); err != nil {
			t.Fatal(err)
		}
	}
	b, err := env.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newRoot(version uint64, rootKeys []*keys.PrivateKey, threshold uint64, other *keys.PrivateKey) *manifest.Root {
	r := manifest.NewRoot(fixtureNow)
	r.Version = version
	r.Expires = manifest.FormatTime(fixtureNow.Add(time.Duration(version) * 24 * time.Hour))
	r.Roles[manifest.RoleRoot].Threshold = threshold
	for _, k := range rootKeys {
		r.Roles[manifest.RoleRoot].Keys[k.ID()] = k.Public().KeyInfo()
	}
	for _, role := range []string{manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		r.Roles[role].Keys[other.ID()] = other.Public().KeyInfo()
	}
	return r
}

// TestRootChain covers the N to N+1 rules: both thresholds, exact next
// version, no earlier expiry.
func TestRootChain(t *testing.T) {
	k := testKeys(t, 8)
	old := []*keys.PrivateKey{k[0], k[1], k[2]}
	anchor := sign(t, newRoot(1, old, 2, k[7]), old...)
	fresh := []*keys.PrivateKey{k[3], k[4], k[5]}
	mixed := []*keys.PrivateKey{k[0], k[1], k[3]}
	tests := []struct {
		name string
		next []byte
		ok   bool
	}{
		{"old and new thresholds met", sign(t, newRoot(2, mixed, 2, k[7]), k[0], k[1], k[3]), true},
		{"replaced keys signed by old and new", sign(t, newRoot(2, fresh, 2, k[7]), k[0], k[1], k[3], k[4]), true},
		{"new keys only", sign(t, newRoot(2, fresh, 2, k[7]), fresh...), false},
		{"too few old keys", sign(t, newRoot(2, fresh, 2, k[7]), k[0], k[3], k[4]), false},
		{"too few new keys", sign(t, newRoot(2, fresh, 2, k[7]), k[0], k[1], k[3]), false},
		{"version jump", sign(t, newRoot(3, mixed, 2, k[7]), k[0], k[1], k[3]), false},
		{"earlier expiry", func() []byte {
			r := newRoot(2, mixed, 2, k[7])
			r.Expires = manifest.FormatTime(fixtureNow)
			return sign(t, r, k[0], k[1], k[3])
		}(), false},
		{"duplicate signature", func() []byte {
			b := sign(t, newRoot(2, mixed, 2, k[7]), k[0], k[1], k[3])
			env, _ := manifest.ParseEnvelope(b)
			env.Signatures = append(env.Signatures, env.Signatures[0])
			out, _ := env.Bytes()
			return out
		}(), false},
		{"one bad signature by a known key", func() []byte {
			b := sign(t, newRoot(2, mixed, 2, k[7]), k[0], k[1], k[3])
			env, _ := manifest.ParseEnvelope(b)
			env.Signatures[0].Sig = env.Signatures[1].Sig
			out, _ := env.Bytes()
			return out
		}(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := trust.New(anchor, fixed(fixtureNow))
			if err != nil {
				t.Fatal(err)
			}
			err = st.UpdateRoot(tc.next)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if !errors.Is(err, trust.ErrUntrusted) {
					t.Fatalf("got %v, want refusal", err)
				}
				if st.Root.Version != 1 {
					t.Fatal("a refused root replaced the trusted one")
				}
			}
		})
	}
}

// TestKeySetRejectsMislabelledKey: a key declared under an ID that is not
// its own could otherwise count twice toward a threshold.
func TestKeySetRejectsMislabelledKey(t *testing.T) {
	k := testKeys(t, 2)
	declared := map[string]*manifest.KeyInfo{k[0].ID(): k[0].Public().KeyInfo(), k[1].ID(): k[0].Public().KeyInfo()}
	if _, err := trust.NewKeySet("root", declared, 2); !errors.Is(err, trust.ErrUntrusted) {
		t.Fatalf("got %v, want refusal", err)
	}
}

// TestOwnerThreshold: a component needs its owner's threshold of owner keys;
// keys of anyone else do not count.
func TestOwnerThreshold(t *testing.T) {
	k := testKeys(t, 8)
	root := newRoot(1, []*keys.PrivateKey{k[0]}, 1, k[1])
	anchor := sign(t, root, k[0])
	ix := manifest.NewIndex(fixtureNow)
	ix.Owners["alice"] = manifest.Owner{Name: "Alice", Threshold: 2, Keys: map[string]*manifest.KeyInfo{
		k[2].ID(): k[2].Public().KeyInfo(), k[3].ID(): k[3].Public().KeyInfo()}}
	ix.Components["hello"] = manifest.ComponentItem{Owner: "alice", URL: "/hello.json"}
	ixBytes := sign(t, ix, k[1])
	comp := func(signers ...*keys.PrivateKey) []byte {
		return sign(t, manifest.NewComponent("hello", "", fixtureNow), signers...)
	}
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"both owner keys", comp(k[2], k[3]), true},
		{"one owner key", comp(k[2]), false},
		{"one owner key and a stranger", comp(k[2], k[4]), false},
		{"index key", comp(k[1], k[2]), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := trust.New(anchor, fixed(fixtureNow))
			if err != nil {
				t.Fatal(err)
			}
			snap := manifest.NewSnapshot(fixtureNow)
			snap.Meta["/root.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(anchor))}
			snap.Meta["/index.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(ixBytes))}
			snap.Meta["/hello.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(tc.b))}
			snapBytes := sign(t, snap, k[1])
			ts := manifest.NewTimestamp(fixtureNow)
			sum := sha256.Sum256(snapBytes)
			ts.Meta["/snapshot.json"] = manifest.FileHash{Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}, Length: uint64(len(snapBytes))}
			if err := st.UpdateTimestamp(sign(t, ts, k[1]), 0); err != nil {
				t.Fatal(err)
			}
			if err := st.UpdateSnapshot(snapBytes, nil); err != nil {
				t.Fatal(err)
			}
			if err := st.UpdateIndex(ixBytes); err != nil {
				t.Fatal(err)
			}
			_, err = st.VerifyComponent("hello", tc.b)
			if tc.ok != (err == nil) {
				t.Fatalf("ok=%v, err=%v", tc.ok, err)
			}
		})
	}
}
