package main_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// signedHeader is the part of a manifest the admin tests look at.
type signedHeader struct {
	Version uint64 `json:"version"`
	Expires string `json:"expires"`
}

// readManifest reads the envelope and header of a manifest file.
func readManifest(t *testing.T, path string) (*manifest.Envelope, signedHeader, time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var h signedHeader
	if err := json.Unmarshal(env.Signed, &h); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	exp, err := time.Parse(time.RFC3339, h.Expires)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return env, h, exp
}

// currentManifest returns the path of the newest N.<name>.json the
// mirror's snapshot names.
func currentManifest(t *testing.T, s *sandbox, name string) string {
	t.Helper()
	env, _, _ := readManifest(t, s.path("m", "snapshot.json"))
	var snap struct {
		Meta map[string]struct {
			Version uint64 `json:"version"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(env.Signed, &snap); err != nil {
		t.Fatal(err)
	}
	fv, ok := snap.Meta["/"+name+".json"]
	if !ok {
		t.Fatalf("snapshot has no /%s.json", name)
	}
	return s.path("m", strconv.FormatUint(fv.Version, 10)+"."+name+".json")
}

// near reports whether t is within a minute of want, enough for the time a
// command takes.
func near(t, want time.Time) bool { return t.Sub(want).Abs() < time.Minute }

// publishVersion packages src/hello as another version of hello and
// publishes it.
func publishVersion(s *sandbox, version string) {
	s.t.Helper()
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", version)
	s.must("publish", "hello", version, "package/hello-"+version+"-"+platform+".tar.gz", "hello")
}

// TestModify: yanking, hiding and describing change what list and install
// see, and each change is a new component manifest signed by the owner.
func TestModify(t *testing.T) {
	s := newMirror(t)
	publishVersion(s, "v0.0.2")

	_, before, beforeExp := readManifest(t, currentManifest(t, s, "hello"))
	s.must("modify", "hello:v0.0.2", "--yank")
	_, after, afterExp := readManifest(t, currentManifest(t, s, "hello"))
	if after.Version != before.Version+1 || afterExp.Before(beforeExp) {
		t.Errorf("modify: manifest v%d expiring %s after v%d expiring %s", after.Version, after.Expires, before.Version, before.Expires)
	}
	if out := s.must("list", "hello").stdout; strings.Contains(out, "v0.0.2") || !strings.Contains(out, "v0.0.1") {
		t.Errorf("list hello after yanking v0.0.2:\n%s", out)
	}
	if out := s.must("list", "hello", "--all").stdout; !strings.Contains(out, "v0.0.2 (yanked)") {
		t.Errorf("list hello --all does not show v0.0.2 yanked:\n%s", out)
	}
	s.fail(5, "yanked", "install", "hello:v0.0.2")
	if got := strings.TrimSpace(s.must("install", "hello").stdout); !strings.Contains(got, "v0.0.1") {
		t.Errorf("latest install went to %s, want v0.0.1", got)
	}
	s.must("modify", "hello:v0.0.2", "--yank=false")
	if out := s.must("list", "hello").stdout; !strings.Contains(out, "v0.0.2") {
		t.Errorf("list hello after un-yanking v0.0.2:\n%s", out)
	}

	s.must("modify", "hello", "--desc", "says hello politely")
	if out := s.must("list").stdout; !strings.Contains(out, "says hello politely") {
		t.Errorf("list does not show the new description:\n%s", out)
	}

	s.must("modify", "hello", "--hide")
	if out := s.must("list").stdout; strings.Contains(out, "hello") {
		t.Errorf("list shows hidden hello:\n%s", out)
	}
	if out := s.must("list", "--all").stdout; !strings.Contains(out, "hello") {
		t.Errorf("list --all lacks hidden hello:\n%s", out)
	}
	s.must("install", "hello:v0.0.2") // hidden is not yanked
	s.must("modify", "hello", "--hide=false")

	s.must("modify", "hello", "--yank")
	if out := s.must("list", "--all").stdout; strings.Contains(out, "hello") {
		t.Errorf("list --all shows yanked hello:\n%s", out)
	}
	s.fail(5, "hello", "install", "hello:v0.0.1")
	// A yanked component is still the owner's to modify: the yank is undone.
	s.must("modify", "hello", "--yank=false")
	if out := s.must("list").stdout; !strings.Contains(out, "hello") {
		t.Errorf("list lacks hello after un-yanking it:\n%s", out)
	}
	s.must("verify")
}

// TestModifyRefused: refused modifications exit with the documented code,
// say why in one line, and leave the mirror unchanged.
func TestModifyRefused(t *testing.T) {
	s := newMirror(t)
	publishVersion(s, "v0.0.2-nightly.20261123")
	s.must("genkey", "-n", "mallory")
	mallory := filepath.Join(s.home, "keys", "mallory.json")
	cases := []struct {
		name string
		code int
		msg  string
		args []string
	}{
		{"yank a nightly", 1, "nightly", []string{"modify", "hello:v0.0.2-nightly.20261123", "--yank"}},
		{"non-owner key", 1, "not a key of owner alice", []string{"modify", "hello", "--hide", "-k", mallory}},
		{"non-owner yanks a version", 1, "not a key of owner alice", []string{"modify", "hello:v0.0.1", "--yank", "-k", mallory}},
		{"unknown component", 5, "nothere", []string{"modify", "nothere", "--hide"}},
		{"unknown version", 5, "v9.9.9", []string{"modify", "hello:v9.9.9", "--yank"}},
		{"desc with a version", 64, "only --yank", []string{"modify", "hello:v0.0.1", "--yank", "--desc", "x"}},
		{"hide with a version", 64, "only --yank", []string{"modify", "hello:v0.0.1", "--hide"}},
		{"version without yank", 64, "--yank", []string{"modify", "hello:v0.0.1"}},
		{"bad version", 64, "version", []string{"modify", "hello:1.0", "--yank"}},
		{"bad component", 64, "component", []string{"modify", "../x", "--hide"}},
		{"missing key", 5, "key", []string{"modify", "hello", "--hide", "-k", "nope.json"}},
		{"no argument", 64, "modify", []string{"modify"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			before := treeDigest(t, s.path("m"))
			s.fail(tc.code, tc.msg, tc.args...)
			if treeDigest(t, s.path("m")) != before {
				t.Fatal("the mirror changed")
			}
		})
	}
}

// TestRenewComponent: renew bumps the version and only ever moves the
// expiry later, also for an expired manifest.
func TestRenewComponent(t *testing.T) {
	s := newMirror(t)
	_, h0, exp0 := readManifest(t, currentManifest(t, s, "hello"))

	// Ten days on, the default 5 years run from then.
	later := time.Now().UTC().Add(10 * 24 * time.Hour).Truncate(time.Second)
	r := s.runEnv([]string{"MIRROR_TEST_NOW=" + later.Format(time.RFC3339)}, "renew", "hello")
	if r.code != 0 {
		t.Fatalf("renew: exit %d: %s", r.code, r.stderr)
	}
	_, h1, exp1 := readManifest(t, currentManifest(t, s, "hello"))
	if h1.Version != h0.Version+1 {
		t.Errorf("renew: version %d, want %d", h1.Version, h0.Version+1)
	}
	if !near(exp1, later.Add(manifest.LifetimeComponent)) || !exp1.After(exp0) {
		t.Errorf("renew: expires %s, want about %s", exp1, later.Add(manifest.LifetimeComponent))
	}

	// --days 1 would shorten it: the later expiry is kept, with a note.
	r = s.must("renew", "hello", "--days", "1")
	if !strings.Contains(r.stderr, "never shortens") {
		t.Errorf("renew --days 1 printed no note: %q", r.stderr)
	}
	_, h2, exp2 := readManifest(t, currentManifest(t, s, "hello"))
	if h2.Version != h1.Version+1 || !exp2.Equal(exp1) {
		t.Errorf("renew --days 1: version %d expiring %s, want %d expiring %s", h2.Version, exp2, h1.Version+1, exp1)
	}

	// Six years on the manifest has expired; renew still works.
	expired := exp2.Add(365 * 24 * time.Hour)
	r = s.runEnv([]string{"MIRROR_TEST_NOW=" + expired.Format(time.RFC3339)}, "renew", "hello", "--days", "30")
	if r.code != 0 {
		t.Fatalf("renew of an expired manifest: exit %d: %s", r.code, r.stderr)
	}
	if _, _, exp3 := readManifest(t, currentManifest(t, s, "hello")); !near(exp3, expired.Add(30*24*time.Hour)) {
		t.Errorf("renew of an expired manifest: expires %s, want %s", exp3, expired.Add(30*24*time.Hour))
	}
}

// TestRenewRoles: renewing timestamp and snapshot keeps a mirror nobody
// publishes to verifiable long after the default 30 days.
func TestRenewRoles(t *testing.T) {
	s := newMirror(t)
	future := []string{"MIRROR_TEST_NOW=" + time.Now().UTC().Add(100*24*time.Hour).Format(time.RFC3339)}
	if r := s.runEnv(future, "verify"); r.code != 3 || !strings.Contains(r.stdout, "expired") {
		t.Fatalf("verify 100 days on without renewal: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	start := time.Now().UTC()
	s.must("renew", "--role", "timestamp", "--days", "400")
	_, ts, tsExp := readManifest(t, s.path("m", "timestamp.json"))
	if !near(tsExp, start.Add(400*24*time.Hour)) {
		t.Errorf("timestamp expires %s, want about %s", tsExp, start.Add(400*24*time.Hour))
	}
	s.must("renew", "--role", "snapshot", "--days", "400")
	if _, _, snapExp := readManifest(t, s.path("m", "snapshot.json")); !near(snapExp, start.Add(400*24*time.Hour)) {
		t.Errorf("snapshot expires %s, want about 400 days on", snapExp)
	}
	// The snapshot commit renewed the timestamp too, without shortening it.
	_, ts2, ts2Exp := readManifest(t, s.path("m", "timestamp.json"))
	if ts2.Version != ts.Version+1 || !ts2Exp.Equal(tsExp) {
		t.Errorf("timestamp after snapshot renewal: v%d expiring %s, want v%d expiring %s", ts2.Version, ts2Exp, ts.Version+1, tsExp)
	}
	if r := s.runEnv(future, "verify"); r.code != 0 {
		t.Fatalf("verify 100 days on after renewal: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	// A shorter --days keeps the later expiry.
	r := s.must("renew", "--role", "timestamp", "--days", "1")
	if _, _, exp := readManifest(t, s.path("m", "timestamp.json")); !exp.Equal(tsExp) || !strings.Contains(r.stderr, "never shortens") {
		t.Errorf("renew --days 1: timestamp expires %s, want %s kept; stderr %q", exp, tsExp, r.stderr)
	}

	_, ix, _ := readManifest(t, currentManifest(t, s, "index"))
	s.must("renew", "--role", "index", "--days", "800")
	_, ix2, ixExp := readManifest(t, currentManifest(t, s, "index"))
	if ix2.Version != ix.Version+1 || !near(ixExp, start.Add(800*24*time.Hour)) {
		t.Errorf("renew --role index: v%d expiring %s, want v%d expiring about %s", ix2.Version, ixExp, ix.Version+1, start.Add(800*24*time.Hour))
	}
	s.must("verify")
}

// TestRenewRefused: wrong uses of renew change nothing.
func TestRenewRefused(t *testing.T) {
	s := newMirror(t)
	s.must("genkey", "-n", "mallory")
	cases := []struct {
		name string
		code int
		msg  string
		args []string
	}{
		{"root", 64, "mirror rotate", []string{"renew", "--role", "root"}},
		{"unknown role", 64, "role", []string{"renew", "--role", "owner"}},
		{"component and role", 64, "not both", []string{"renew", "hello", "--role", "index"}},
		{"neither", 64, "renew", []string{"renew"}},
		{"negative days", 64, "days", []string{"renew", "hello", "--days", "-1"}},
		{"owner key for a role", 64, "-k", []string{"renew", "--role", "timestamp", "-k", filepath.Join(s.home, "keys", "private.json")}},
		{"unknown component", 5, "nothere", []string{"renew", "nothere"}},
		{"non-owner key", 1, "not a key of owner alice", []string{"renew", "hello", "-k", filepath.Join(s.home, "keys", "mallory.json")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			before := treeDigest(t, s.path("m"))
			s.fail(tc.code, tc.msg, tc.args...)
			if treeDigest(t, s.path("m")) != before {
				t.Fatal("the mirror changed")
			}
		})
	}
}

// TestSign: a second key's signature is added to a copy of a manifest; the
// signed bytes and the first signature are untouched, and every signature
// in the file verifies with its key.
func TestSign(t *testing.T) {
	s := newMirror(t)
	s.must("genkey", "-n", "bob")
	alice := filepath.Join(s.home, "keys", "private.json")
	bob := filepath.Join(s.home, "keys", "bob.json")
	orig, err := os.ReadFile(currentManifest(t, s, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	copyPath := s.path("hello.json")
	if err := os.WriteFile(copyPath, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	s.must("sign", "hello.json", "-k", bob)
	env0, _, _ := readManifest(t, currentManifest(t, s, "hello"))
	env1, _, _ := readManifest(t, copyPath)
	if string(env1.Signed) != string(env0.Signed) {
		t.Fatal("sign changed the signed bytes")
	}
	if len(env1.Signatures) != 2 || env1.Signatures[0] != env0.Signatures[0] {
		t.Fatalf("signatures after sign: %+v", env1.Signatures)
	}
	checkSignatures(t, env1, alice, bob)
	b, _ := os.ReadFile(copyPath)
	if canon, _ := env1.Bytes(); string(canon) != string(b) {
		t.Error("the signed file is not canonical")
	}

	before := treeDigest(t, s.dir)
	s.fail(1, "already signed by key", "sign", "hello.json", "-k", bob)
	s.fail(1, "already signed by key", "sign", "hello.json", "-k", alice)
	s.fail(64, "mirror rotate", "sign", "http://127.0.0.1:8080/rotate")
	s.fail(5, "nope.json", "sign", "nope.json")
	if treeDigest(t, s.dir) != before {
		t.Fatal("a refused sign changed files")
	}
}

// TestSignRecanonicalizes: a manifest whose signed part is not canonical
// is re-encoded before it is signed, as stock tiup does.
func TestSignRecanonicalizes(t *testing.T) {
	s := newSandbox(t)
	s.must("genkey")
	key := filepath.Join(s.home, "keys", "private.json")
	s.write("m.json", `{ "signed": {"version": 1, "_type": "component", "id": "x"}, "signatures": [] }`, 0o600)
	r := s.must("sign", "m.json")
	if !strings.Contains(r.stderr, "re-encoded") {
		t.Errorf("no note about re-encoding: %q", r.stderr)
	}
	b, err := os.ReadFile(s.path("m.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(env.Signed), `{"_type":"component","id":"x","version":1}`; got != want {
		t.Errorf("signed = %s, want %s", got, want)
	}
	checkSignatures(t, env, key)
	if info, err := os.Stat(s.path("m.json")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("file mode after sign: %v %v", info.Mode(), err)
	}
}

// checkSignatures verifies that the envelope carries one valid signature by
// each of the private key files, and no other.
func checkSignatures(t *testing.T, env *manifest.Envelope, keyFiles ...string) {
	t.Helper()
	if len(env.Signatures) != len(keyFiles) {
		t.Fatalf("%d signatures, want %d", len(env.Signatures), len(keyFiles))
	}
	for _, f := range keyFiles {
		k, err := keys.LoadPrivateKey(f)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, sig := range env.Signatures {
			if sig.KeyID != k.ID() {
				continue
			}
			found = true
			raw, err := base64.StdEncoding.DecodeString(sig.Sig)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Public().Verify(env.Signed, raw); err != nil {
				t.Errorf("signature by %s does not verify: %v", k.ID()[:16], err)
			}
		}
		if !found {
			t.Errorf("no signature by %s", k.ID()[:16])
		}
	}
}
