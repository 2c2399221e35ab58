package trust_test

import (
	"crypto/sha256"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
)

// fuzzNow is inside the validity of every manifest fuzzManifests makes.
var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fuzzWorld is a one-key mirror: the committed key of testdata signs every
// role, so seeds signed once stay valid in every later run.
type fuzzWorld struct {
	key      *keys.PrivateKey
	ks       *trust.KeySet
	root     []byte
	files    map[string][]byte     // role → a validly signed file
	payloads map[[32]byte]struct{} // sha256 of every signed part signed here
}

var loadFuzzWorld = sync.OnceValues(func() (*fuzzWorld, error) {
	k, err := keys.LoadPrivateKey("testdata/fuzz-key.json")
	if err != nil {
		return nil, err
	}
	id := k.ID()
	w := &fuzzWorld{key: k, files: map[string][]byte{}, payloads: map[[32]byte]struct{}{}}
	if w.ks, err = trust.NewKeySet("timestamp", map[string]*manifest.KeyInfo{id: k.Public().KeyInfo()}, 1); err != nil {
		return nil, err
	}
	root := manifest.NewRoot(fuzzNow)
	for _, r := range root.Roles {
		r.Keys[id] = k.Public().KeyInfo()
		r.Threshold = 1
	}
	ix := manifest.NewIndex(fuzzNow)
	ix.Owners["alice"] = manifest.Owner{Name: "Alice", Keys: map[string]*manifest.KeyInfo{id: k.Public().KeyInfo()}, Threshold: 1}
	c := manifest.NewComponent("hello", "says hello", fuzzNow)
	c.Platforms["linux/amd64"] = map[string]manifest.VersionItem{"v1.0.0": {URL: "/hello-v1.0.0-linux-amd64.tar.gz", Entry: "hello", Length: 3,
		Hashes: map[string]string{"sha256": "00"}, Released: manifest.FormatTime(fuzzNow)}}
	sn := manifest.NewSnapshot(fuzzNow)
	sn.Meta["/root.json"] = manifest.FileVersion{Version: 1, Length: 1}
	sn.Meta["/index.json"] = manifest.FileVersion{Version: 1, Length: 1}
	sn.Meta["/hello.json"] = manifest.FileVersion{Version: 1, Length: 1}
	ts := manifest.NewTimestamp(fuzzNow)
	for role, v := range map[string]manifest.Signed{"root": root, "index": ix, "component": c, "snapshot": sn, "timestamp": ts} {
		env, err := manifest.NewEnvelope(v)
		if err != nil {
			return nil, err
		}
		sig, err := k.Sign(env.Signed)
		if err != nil {
			return nil, err
		}
		if err := env.AddSignature(id, sig); err != nil {
			return nil, err
		}
		b, err := env.Bytes()
		if err != nil {
			return nil, err
		}
		w.files[role] = b
		w.payloads[sha256.Sum256(env.Signed)] = struct{}{}
	}
	w.root = w.files["root"]
	return w, nil
})

// FuzzVerifySigned: a signature verifies only over the exact bytes that
// were signed. Seeded with validly signed manifests of every type
// (testdata/fuzz/FuzzVerifySigned, signed with testdata/fuzz-key.json), the
// fuzzer mutates whole files: when the signed part is not one this key
// signed, no signature may count, neither through a key set nor through
// the trusted state's timestamp, snapshot, index and component steps;
// mutations elsewhere (signatures, keyids, the envelope) must never panic.
// RSA under coverage instrumentation is slow, and the engine minimizes
// every new input for up to a minute by default; run it with
// -fuzzminimizetime=2s.
func FuzzVerifySigned(f *testing.F) {
	w, err := loadFuzzWorld()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range w.files {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		env, err := manifest.ParseEnvelope(file)
		known := false
		if err == nil {
			_, known = w.payloads[sha256.Sum256(env.Signed)]
			n, err := w.ks.Count("fuzz.json", env)
			if err == nil && n > 0 && !known {
				t.Fatalf("a signature counted over bytes the key never signed: %q", env.Signed)
			}
		}
		st, err := trust.New(w.root, func() time.Time { return fuzzNow })
		if err != nil {
			t.Fatal(err)
		}
		if err := st.UpdateTimestamp(file, 0); err == nil && !known {
			t.Fatalf("UpdateTimestamp accepted unsigned bytes: %q", file)
		}
		if _, err := st.VerifyComponent("hello", file); err == nil && !known {
			t.Fatalf("VerifyComponent accepted unsigned bytes: %q", file)
		}
		if err := st.UpdateRoot(file); err == nil && !known {
			t.Fatalf("UpdateRoot accepted unsigned bytes: %q", file)
		}
		if _, err := trust.New(file, st.Now); err == nil && !known {
			t.Fatalf("trust.New accepted an unsigned root: %q", file)
		}
	})
}

// TestFuzzSeedsSigned keeps the committed seeds honest: each must still be
// validly signed by the committed key, or the fuzzer would only ever
// mutate rejects.
func TestFuzzSeedsSigned(t *testing.T) {
	w, err := loadFuzzWorld()
	if err != nil {
		t.Fatal(err)
	}
	dir := "testdata/fuzz/FuzzVerifySigned"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		file, ok := corpusBytes(b)
		if !ok {
			t.Fatalf("%s is not a []byte corpus entry", e.Name())
		}
		env, err := manifest.ParseEnvelope(file)
		if err != nil {
			continue
		}
		if n, err := w.ks.Count(e.Name(), env); err == nil && n == 1 {
			valid++
		}
	}
	if valid < 5 {
		t.Fatalf("%d validly signed seeds in %s, want one per manifest type", valid, dir)
	}
}

// corpusBytes decodes a one-value []byte corpus file of the fuzzing engine.
func corpusBytes(b []byte) ([]byte, bool) {
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	if !ok {
		return nil, false
	}
	s, ok = strings.CutSuffix(strings.TrimRight(s, "\n"), ")")
	if !ok {
		return nil, false
	}
	u, err := strconv.Unquote(s)
	return []byte(u), err == nil
}
