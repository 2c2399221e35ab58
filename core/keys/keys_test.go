package keys

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// fixtureDir is the stock tiup fixture tree, reached from this package dir.
const fixtureDir = "../../../shared/fixtures/tiup-v1-mirror"

func fixtures(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(fixtureDir); err != nil {
		t.Skipf("fixtures not present: %v", err)
	}
	return fixtureDir
}

// genKey shares one generated key across tests: RSA-2048 generation is slow
// on a two-core machine.
var genKey = sync.OnceValues(Generate)

func testKey(t *testing.T) *PrivateKey {
	t.Helper()
	k, err := genKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readEnvelope(t *testing.T, path string, v manifest.Signed) *manifest.Envelope {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Decode(v); err != nil {
		t.Fatal(err)
	}
	return env
}

// verifyThreshold applies tiup's rules: signatures by unknown keys are
// ignored, a known key's bad signature is an error, and the valid count must
// reach the threshold. Declared key IDs must match the computed ones.
func verifyThreshold(t *testing.T, env *manifest.Envelope, keys map[string]*manifest.KeyInfo, threshold uint64) error {
	t.Helper()
	valid := uint64(0)
	for _, s := range env.Signatures {
		ki, ok := keys[s.KeyID]
		if !ok {
			continue
		}
		id, err := KeyID(ki)
		if err != nil {
			return err
		}
		if id != s.KeyID {
			t.Errorf("declared key id %s, computed %s", s.KeyID, id)
		}
		pub, err := ParseKeyInfo(ki)
		if err != nil {
			return err
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return err
		}
		if err := pub.Verify(env.Signed, sig); err != nil {
			return err
		}
		valid++
	}
	if valid < threshold {
		return errors.New("threshold not met")
	}
	return nil
}

func TestFixtureSignatures(t *testing.T) {
	root := fixtures(t)
	for _, sub := range []string{"mirror", "clone-explicit"} {
		dir := filepath.Join(root, sub)
		t.Run(sub, func(t *testing.T) { verifyMirror(t, dir) })
	}
}

var versioned = regexp.MustCompile(`^(\d+)\.([a-z0-9_-]+)\.json$`)

func verifyMirror(t *testing.T, dir string) {
	rootV1 := &manifest.Root{}
	rootEnv := readEnvelope(t, filepath.Join(dir, "root.json"), rootV1)
	roots := []*manifest.Root{rootV1}
	role := func(r *manifest.Root, name string) (map[string]*manifest.KeyInfo, uint64) {
		return r.Roles[name].Keys, r.Roles[name].Threshold
	}
	keys, th := role(rootV1, manifest.RoleRoot)
	if err := verifyThreshold(t, rootEnv, keys, th); err != nil {
		t.Errorf("root.json with its own keys: %v", err)
	}
	if err := ValidateRootKeyIDs(rootV1); err != nil {
		t.Errorf("root.json key ids: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var indexes []*manifest.Index
	var indexFiles, componentFiles []string
	for _, e := range entries {
		m := versioned.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch m[2] {
		case "root":
			r := &manifest.Root{}
			env := readEnvelope(t, path, r)
			for i, signer := range []*manifest.Root{r, rootV1} {
				keys, th := role(signer, manifest.RoleRoot)
				if err := verifyThreshold(t, env, keys, th); err != nil {
					t.Errorf("%s with root %d keys: %v", e.Name(), i, err)
				}
			}
			if err := ValidateRootKeyIDs(r); err != nil {
				t.Errorf("%s key ids: %v", e.Name(), err)
			}
			roots = append(roots, r)
		case "index":
			indexFiles = append(indexFiles, path)
		default:
			componentFiles = append(componentFiles, path)
		}
	}
	latest := roots[len(roots)-1]
	for _, path := range indexFiles {
		ix := &manifest.Index{}
		env := readEnvelope(t, path, ix)
		// Rotation kept the index key, so every root in force must accept
		// every index.
		for i, r := range roots {
			keys, th := role(r, manifest.RoleIndex)
			if err := verifyThreshold(t, env, keys, th); err != nil {
				t.Errorf("%s with root %d index role: %v", filepath.Base(path), i, err)
			}
		}
		if err := ValidateIndexKeyIDs(ix); err != nil {
			t.Errorf("%s owner key ids: %v", filepath.Base(path), err)
		}
		indexes = append(indexes, ix)
	}
	for _, name := range []string{manifest.RoleSnapshot, manifest.RoleTimestamp} {
		var v manifest.Signed = &manifest.Snapshot{}
		if name == manifest.RoleTimestamp {
			v = &manifest.Timestamp{}
		}
		env := readEnvelope(t, filepath.Join(dir, name+".json"), v)
		keys, th := role(latest, name)
		if err := verifyThreshold(t, env, keys, th); err != nil {
			t.Errorf("%s.json: %v", name, err)
		}
	}
	slices.SortFunc(indexes, func(a, b *manifest.Index) int { return int(b.Version) - int(a.Version) })
	for _, path := range componentFiles {
		c := &manifest.Component{}
		env := readEnvelope(t, path, c)
		verified := false
		// Newest index first; an older component version may only verify
		// against the owner keys of the index of its era.
		for _, ix := range indexes {
			item, ok := ix.Components[c.ID]
			if !ok {
				continue
			}
			owner := ix.Owners[item.Owner]
			if verifyThreshold(t, env, owner.Keys, owner.Threshold) == nil {
				verified = true
				break
			}
		}
		if !verified {
			t.Errorf("%s: no index owner's keys verify it", filepath.Base(path))
		}
	}
}

func TestEveryByteMutationFails(t *testing.T) {
	root := fixtures(t)
	dir := filepath.Join(root, "mirror")
	r := &manifest.Root{}
	readEnvelope(t, filepath.Join(dir, "root.json"), r)
	env := readEnvelope(t, filepath.Join(dir, "timestamp.json"), &manifest.Timestamp{})
	if len(env.Signatures) != 1 {
		t.Fatalf("want one signature, got %d", len(env.Signatures))
	}
	pub, err := ParseKeyInfo(r.Roles[manifest.RoleTimestamp].Keys[env.Signatures[0].KeyID])
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(env.Signed, sig); err != nil {
		t.Fatalf("original: %v", err)
	}
	msg := bytes.Clone(env.Signed)
	for i := range msg {
		msg[i] ^= 0x01
		if err := pub.Verify(msg, sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("byte %d flipped: Verify = %v, want ErrBadSignature", i, err)
		}
		msg[i] ^= 0x01
	}
	for i := range sig {
		bad := bytes.Clone(sig)
		bad[i] ^= 0x80
		if err := pub.Verify(env.Signed, bad); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("signature byte %d flipped: Verify = %v", i, err)
		}
	}
	if err := pub.Verify(env.Signed, sig[:len(sig)-1]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("truncated signature: %v", err)
	}
}

func TestFixtureKeyIDs(t *testing.T) {
	root := fixtures(t)
	rootOf := func(sub string) *manifest.Root {
		r := &manifest.Root{}
		readEnvelope(t, filepath.Join(root, sub, "root.json"), r)
		return r
	}
	indexOf := func(sub, name string) *manifest.Index {
		ix := &manifest.Index{}
		readEnvelope(t, filepath.Join(root, sub, name), ix)
		return ix
	}
	for _, sub := range []string{"mirror", "clone-explicit"} {
		t.Run(sub, func(t *testing.T) {
			r := rootOf(sub)
			keyDir := filepath.Join(root, sub, "keys")
			entries, err := os.ReadDir(keyDir)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadDir(keyDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != len(entries) {
				t.Errorf("LoadDir found %d keys, want %d", len(loaded), len(entries))
			}
			latestIndex := map[string]string{"mirror": "15.index.json", "clone-explicit": "1.index.json"}[sub]
			ix := indexOf(sub, latestIndex)
			for _, e := range entries {
				prefix, roleName, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
				ki, err := ReadKeyFile(filepath.Join(keyDir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				id, err := KeyID(ki)
				if err != nil {
					t.Fatal(err)
				}
				if KeyFileName(id, roleName) != e.Name() || !strings.HasPrefix(id, prefix) {
					t.Errorf("%s: id %s", e.Name(), id)
				}
				if _, ok := loaded[id]; !ok {
					t.Errorf("%s: LoadDir lacks %s", e.Name(), id)
				}
				pub, err := ParseKeyInfo(ki)
				if err != nil {
					t.Fatal(err)
				}
				if pub.ID() != id {
					t.Errorf("%s: PublicKey.ID %s != KeyID %s", e.Name(), pub.ID(), id)
				}
				var stored map[string]*manifest.KeyInfo
				if rl, ok := r.Roles[roleName]; ok {
					stored = rl.Keys
				} else if o, ok := ix.Owners[roleName]; ok {
					stored = o.Keys
				} else {
					t.Fatalf("%s: no role or owner %q", e.Name(), roleName)
				}
				got, ok := stored[id]
				if !ok {
					t.Fatalf("%s: id %s not declared", e.Name(), id)
				}
				if got.Value["public"] != pub.PEM() {
					t.Errorf("%s: declared public PEM differs from derived", e.Name())
				}
			}
		})
	}
	ix := indexOf("mirror", "15.index.json")
	for _, owner := range []string{"alice", "bob"} {
		t.Run("owner "+owner, func(t *testing.T) {
			k, err := LoadPrivateKey(filepath.Join(root, "owner-keys", owner+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ix.Owners[owner].Keys[k.ID()]; !ok {
				t.Errorf("owner %s key %s not in the index", owner, k.ID())
			}
		})
	}
}

func TestFixtureKeyFilesRewriteExactly(t *testing.T) {
	root := fixtures(t)
	var paths []string
	for _, pattern := range []string{"mirror/keys/*.json", "clone-explicit/keys/*.json", "owner-keys/*.json"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) != 15 {
		t.Fatalf("found %d key files, want 15", len(paths))
	}
	tmp := t.TempDir()
	for i, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := LoadPrivateKey(path)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(tmp, strings.Repeat("x", i+1)+".json")
			if err := k.WriteFile(out); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rewritten key file differs")
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
		})
	}
	leftovers, err := filepath.Glob(filepath.Join(tmp, ".*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestGeneratedKeyRoundTrip(t *testing.T) {
	k := testKey(t)
	if k.key.N.BitLen() != 2048 {
		t.Errorf("modulus %d bits", k.key.N.BitLen())
	}
	dir := t.TempDir()
	priv := filepath.Join(dir, KeyFileName(k.ID(), "index"))
	if err := k.WriteFile(priv); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(priv); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteFile = %v, want fs.ErrExist", err)
	}
	pubPath := filepath.Join(dir, "pub.json")
	if err := WritePublicKeyFile(k.Public(), pubPath); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKeyFile(k.Public(), pubPath); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WritePublicKeyFile = %v, want fs.ErrExist", err)
	}
	back, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != k.ID() || len(k.ID()) != 64 {
		t.Errorf("ID after reload %s, before %s", back.ID(), k.ID())
	}
	pki, err := ReadKeyFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := KeyID(pki); err != nil || id != k.ID() {
		t.Errorf("public file id %s, %v; want %s", id, err, k.ID())
	}
	if _, err := LoadPrivateKey(pubPath); err == nil {
		t.Error("LoadPrivateKey accepted a public key file")
	}
	if _, err := LoadDir(dir); err == nil {
		t.Error("LoadDir accepted a public key file")
	}
	pubBytes, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubBytes, []byte(`{"keytype":"rsa","keyval":{"public":"-----BEGIN PUBLIC KEY-----\n`)) ||
		!bytes.HasSuffix(pubBytes, []byte(`-----END PUBLIC KEY-----\n"},"scheme":"rsassa-pss-sha256"}`+"\n")) {
		t.Errorf("public key file layout: %s", pubBytes)
	}

	payload := []byte(`{"_type":"timestamp"}`)
	sig, err := back.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(base64.StdEncoding.EncodeToString(sig)) != 344 {
		t.Errorf("signature is %d bytes", len(sig))
	}
	if err := k.Public().Verify(payload, sig); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// tiup's maximum salt: verifying with a hash-length salt must fail.
	digest := sha256.Sum256(payload)
	if err := rsa.VerifyPSS(k.key.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: sha256.Size}); err == nil {
		t.Error("signature uses a hash-length salt, want the maximum")
	}
	short, err := rsa.SignPSS(rand.Reader, k.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify(payload, short); err != nil {
		t.Errorf("hash-length salt signature: %v", err)
	}
	if err := k.Public().Verify([]byte("other"), sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong payload: %v", err)
	}
}

func TestSDKRoundTrip(t *testing.T) {
	k := testKey(t)
	s := k.Public().SDK()
	if s.KeyType != "rsa" || s.Scheme != "rsassa-pss-sha256" || s.PEM != k.Public().PEM() {
		t.Errorf("SDK = %+v", s)
	}
	p, err := FromSDK(s)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) || p.ID() != k.ID() {
		t.Error("FromSDK changed the key")
	}
	bad := []struct {
		name   string
		mutate func(s *struct{ KeyType, Scheme, PEM string })
	}{
		{"keytype", func(s *struct{ KeyType, Scheme, PEM string }) { s.KeyType = "ed25519" }},
		{"scheme", func(s *struct{ KeyType, Scheme, PEM string }) { s.Scheme = "rsa-pkcs1v15-sha256" }},
		{"pem", func(s *struct{ KeyType, Scheme, PEM string }) { s.PEM = "junk" }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			v := struct{ KeyType, Scheme, PEM string }{s.KeyType, s.Scheme, s.PEM}
			tc.mutate(&v)
			s2 := s
			s2.KeyType, s2.Scheme, s2.PEM = v.KeyType, v.Scheme, v.PEM
			if _, err := FromSDK(s2); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func pemOf(label string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: label, Bytes: der}))
}

func TestParseKeyInfoRejects(t *testing.T) {
	k := testKey(t)
	pub := k.Public().PEM()
	priv := k.KeyInfo().Value["private"]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ki := func(typ, scheme string, val map[string]string) *manifest.KeyInfo {
		return &manifest.KeyInfo{Type: typ, Scheme: scheme, Value: val}
	}
	tests := []struct {
		name string
		ki   *manifest.KeyInfo
	}{
		{"nil", nil},
		{"keytype", ki("ed25519", manifest.SchemeRSAPSS, map[string]string{"public": pub})},
		{"scheme", ki("rsa", "rsa-pkcs1v15", map[string]string{"public": pub})},
		{"no keyval", ki("rsa", manifest.SchemeRSAPSS, nil)},
		{"both forms", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"public": pub, "private": priv})},
		{"not pem", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"public": "abc"})},
		{"trailing after pem", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"public": pub + "x"})},
		{"wrong label", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"public": strings.ReplaceAll(pub, "PUBLIC KEY", "CERTIFICATE")})},
		{"small key", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"public": pemOf("PUBLIC KEY", smallDER)})},
		{"small private key", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"private": pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small))})},
		{"private garbage", ki("rsa", manifest.SchemeRSAPSS, map[string]string{"private": pemOf("PRIVATE KEY", []byte("garbage"))})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseKeyInfo(tc.ki); err == nil {
				t.Error("ParseKeyInfo accepted")
			}
			if _, err := KeyID(tc.ki); err == nil {
				t.Error("KeyID accepted")
			}
		})
	}
}

func TestParsePrivateKeyInfoForms(t *testing.T) {
	k := testKey(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		t.Fatal(err)
	}
	forms := []struct {
		name, pem string
	}{
		{"tiup pkcs1 under PRIVATE KEY", pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.key))},
		{"pkcs1 under RSA PRIVATE KEY", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.key))},
		{"pkcs8 under PRIVATE KEY", pemOf("PRIVATE KEY", pkcs8)},
	}
	for _, tc := range forms {
		t.Run(tc.name, func(t *testing.T) {
			ki := &manifest.KeyInfo{Type: "rsa", Scheme: manifest.SchemeRSAPSS, Value: map[string]string{"private": tc.pem}}
			got, err := ParsePrivateKeyInfo(ki)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID() != k.ID() {
				t.Error("different key")
			}
			if id, err := KeyID(ki); err != nil || id != k.ID() {
				t.Errorf("KeyID = %s, %v", id, err)
			}
		})
	}
	// The written form is tiup's mislabelled PKCS#1.
	block, _ := pem.Decode([]byte(k.KeyInfo().Value["private"]))
	if block.Type != "PRIVATE KEY" || !bytes.Equal(block.Bytes, x509.MarshalPKCS1PrivateKey(k.key)) {
		t.Error("KeyInfo private form is not PKCS#1 under PRIVATE KEY")
	}
}

func TestErrorsHideKeyMaterial(t *testing.T) {
	k := testKey(t)
	privPEM := k.KeyInfo().Value["private"]
	lines := strings.Split(privPEM, "\n")
	// A private key with a corrupted body, a wrong label and a bad scheme:
	// none of the errors may echo any line of it.
	corrupt := strings.Join(append(append([]string{}, lines[:3]...), append([]string{"AAAA" + lines[3][4:]}, lines[4:]...)...), "\n")
	cases := []*manifest.KeyInfo{
		{Type: "rsa", Scheme: manifest.SchemeRSAPSS, Value: map[string]string{"private": corrupt}},
		{Type: "rsa", Scheme: manifest.SchemeRSAPSS, Value: map[string]string{"private": strings.ReplaceAll(privPEM, "PRIVATE KEY", "SECRET")}},
		{Type: "rsa", Scheme: "bad", Value: map[string]string{"private": privPEM}},
	}
	dir := t.TempDir()
	for i, ki := range cases {
		errs := []error{}
		if _, err := ParsePrivateKeyInfo(ki); err != nil {
			errs = append(errs, err)
		}
		path := filepath.Join(dir, strings.Repeat("k", i+1)+".json")
		writeRaw(t, path, ki)
		if _, err := LoadPrivateKey(path); err != nil {
			errs = append(errs, err)
		}
		if len(errs) != 2 {
			t.Fatalf("case %d: want two errors, got %v", i, errs)
		}
		for _, err := range errs {
			for _, line := range lines[1 : len(lines)-2] {
				if strings.Contains(err.Error(), line[:16]) {
					t.Errorf("case %d: error leaks key material: %v", i, err)
				}
			}
		}
	}
}

func writeRaw(t *testing.T, path string, ki *manifest.KeyInfo) {
	t.Helper()
	b, err := encodeKeyFile(ki)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadKeyFileRejects(t *testing.T) {
	k := testKey(t)
	good, err := encodeKeyFile(k.Public().KeyInfo())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"not json", "hello"},
		{"unknown field", `{"keytype":"rsa","keyval":{},"scheme":"rsassa-pss-sha256","x":1}`},
		{"trailing", string(good) + "{}"},
		{"no key", `{"keytype":"rsa","keyval":{},"scheme":"rsassa-pss-sha256"}`},
		{"huge", `{"keytype":"` + strings.Repeat("a", maxKeyFileSize) + `"}`},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.Repeat("f", i+1)+".json")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadKeyFile(path); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKeyFileName(t *testing.T) {
	tests := []struct {
		name, id, role, want string
	}{
		{"full id", "6963be8377f51ad0d7632a2a748e18bfb6bc41c276fee698b58eaeaedfbdc602", "index", "6963be8377f51ad0-index.json"},
		{"short id kept", "abc", "root", "abc-root.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := KeyFileName(tc.id, tc.role); got != tc.want {
				t.Errorf("KeyFileName = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateKeyIDsRejects(t *testing.T) {
	k := testKey(t)
	r := manifest.NewRoot(time.Unix(0, 0))
	r.Roles[manifest.RoleIndex].Keys[k.ID()] = k.Public().KeyInfo()
	if err := ValidateRootKeyIDs(r); err != nil {
		t.Fatalf("good root: %v", err)
	}
	r.Roles[manifest.RoleIndex].Keys["00"+k.ID()[2:]] = k.Public().KeyInfo()
	if err := ValidateRootKeyIDs(r); err == nil {
		t.Error("root with a wrong key id accepted")
	}
	ix := manifest.NewIndex(time.Unix(0, 0))
	ix.Owners["alice"] = manifest.Owner{Threshold: 1, Keys: map[string]*manifest.KeyInfo{k.ID(): k.Public().KeyInfo()}}
	if err := ValidateIndexKeyIDs(ix); err != nil {
		t.Fatalf("good index: %v", err)
	}
	ix.Owners["bob"] = manifest.Owner{Threshold: 1, Keys: map[string]*manifest.KeyInfo{k.ID(): {Type: "rsa", Scheme: manifest.SchemeRSAPSS}}}
	if err := ValidateIndexKeyIDs(ix); err == nil {
		t.Error("index with an unparsable key accepted")
	}
}
