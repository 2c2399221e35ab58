package main_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// mustEnv runs a command with extra environment that has to succeed.
func mustEnv(s *sandbox, extra []string, args ...string) result {
	s.t.Helper()
	r := s.runEnv(extra, args...)
	if r.code != 0 {
		s.t.Fatalf("mirror %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// mergeSourceClock is when the source mirror of the merge tests is
// written: a day ago, so that a release time copied by the merge can be
// told from one the merge made up, and the source is still valid now.
func mergeSourceClock() []string {
	return []string{"MIRROR_TEST_NOW=" + time.Now().Add(-24*time.Hour).UTC().Format(time.RFC3339)}
}

// newMergeSandbox makes the base mirror m (owner alice, hello v0.0.1) and
// the source mirror m2 (the same alice key granted; hello v0.0.2 and a new
// standalone component tool v1.0.0).
func newMergeSandbox(t *testing.T) *sandbox {
	s := newMirror(t)
	clock := mergeSourceClock()
	mustEnv(s, clock, "init", "m2")
	mustEnv(s, clock, "--mirror", "m2", "grant", "alice", "--name", "Alice")
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	mustEnv(s, clock, "--mirror", "m2", "publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello", "--desc", "hello from m2")
	s.write("toolsrc/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	s.must("package", "bin", "-C", "toolsrc", "--name", "tool", "--release", "v1.0.0")
	mustEnv(s, clock, "--mirror", "m2", "publish", "tool", "v1.0.0", "package/tool-v1.0.0-"+platform+".tar.gz", "bin/tool", "--desc", "a tool", "--standalone")
	return s
}

// mergeSnapshotMeta returns the versions the snapshot of mirror dir names.
func mergeSnapshotMeta(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	env, _, _ := readManifest(t, filepath.Join(dir, "snapshot.json"))
	var snap manifest.Snapshot
	if err := env.Decode(&snap); err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for k, fv := range snap.Meta {
		out[k] = fv.Version
	}
	return out
}

// mergeComponent reads the current manifest of component id in mirror dir.
func mergeComponent(t *testing.T, dir, id string) *manifest.Component {
	t.Helper()
	v, ok := mergeSnapshotMeta(t, dir)["/"+id+".json"]
	if !ok {
		t.Fatalf("%s has no component %s", dir, id)
	}
	env, _, _ := readManifest(t, filepath.Join(dir, strconv.FormatUint(v, 10)+"."+id+".json"))
	var c manifest.Component
	if err := env.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// mergeIndex reads the current index of mirror dir.
func mergeIndex(t *testing.T, dir string) *manifest.Index {
	t.Helper()
	v := mergeSnapshotMeta(t, dir)["/index.json"]
	env, _, _ := readManifest(t, filepath.Join(dir, strconv.FormatUint(v, 10)+".index.json"))
	var ix manifest.Index
	if err := env.Decode(&ix); err != nil {
		t.Fatal(err)
	}
	return &ix
}

func timestampVersion(t *testing.T, dir string) uint64 {
	t.Helper()
	_, h, _ := readManifest(t, filepath.Join(dir, "timestamp.json"))
	return h.Version
}

// TestMerge: the versions and components the base lacks arrive in one
// commit, verified, installable, with the source's release times, and the
// base's description kept.
func TestMerge(t *testing.T) {
	s := newMergeSandbox(t)
	plat := strings.Replace(platform, "-", "/", 1)
	tsBefore := timestampVersion(t, s.path("m"))
	ixBefore := mergeIndex(t, s.path("m")).Version

	out := s.must("merge", "m2").stdout
	if want := "merged 2 versions of 2 components from " + s.path("m2"); !strings.Contains(out, want) {
		t.Fatalf("merge printed %q, want %q", out, want)
	}
	if got := timestampVersion(t, s.path("m")); got != tsBefore+1 {
		t.Errorf("timestamp version %d after the merge, want %d: one commit", got, tsBefore+1)
	}
	ix := mergeIndex(t, s.path("m"))
	if ix.Version != ixBefore+1 {
		t.Errorf("index version %d, want %d", ix.Version, ixBefore+1)
	}
	if item := ix.Components["tool"]; item.Owner != "alice" || !item.Standalone || item.Hidden {
		t.Errorf("index item of tool = %+v, want owner alice, standalone", item)
	}
	if out := s.must("verify").stdout; !strings.Contains(out, "verified") {
		t.Fatalf("verify: %s", out)
	}

	hello := mergeComponent(t, s.path("m"), "hello")
	if hello.Description != "says hello" {
		t.Errorf("hello description %q, want the base's", hello.Description)
	}
	if _, ok := hello.Platforms[plat]["v0.0.1"]; !ok {
		t.Error("hello v0.0.1 is gone")
	}
	srcHello := mergeComponent(t, s.path("m2"), "hello")
	if got, want := hello.Platforms[plat]["v0.0.2"], srcHello.Platforms[plat]["v0.0.2"]; got.Released != want.Released || got.Hashes["sha256"] != want.Hashes["sha256"] || got.Length != want.Length || got.Entry != want.Entry {
		t.Errorf("merged hello v0.0.2 = %+v, want the source's %+v", got, want)
	}
	tool := mergeComponent(t, s.path("m"), "tool")
	srcTool := mergeComponent(t, s.path("m2"), "tool")
	if tool.Description != "a tool" {
		t.Errorf("tool description %q, want the source's", tool.Description)
	}
	if got, want := tool.Platforms[plat]["v1.0.0"], srcTool.Platforms[plat]["v1.0.0"]; got.Released != want.Released || got.URL != "/tool-v1.0.0-"+platform+".tar.gz" {
		t.Errorf("merged tool v1.0.0 = %+v, want released %s", got, want.Released)
	}

	for spec, want := range map[string]string{"hello:v0.0.2": "hello from the mirror", "tool": "tool"} {
		entry := strings.TrimSpace(s.must("install", spec).stdout)
		b, err := exec.Command(entry).CombinedOutput()
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("run %s: %v: %q", spec, err, b)
		}
	}

	// A second merge finds nothing to add and writes nothing.
	before := treeDigest(t, s.path("m"))
	if out := s.must("merge", "m2").stdout; !strings.Contains(out, "merged 0 versions of 0 components") {
		t.Errorf("second merge printed %q", out)
	}
	if treeDigest(t, s.path("m")) != before {
		t.Error("a merge with nothing to add changed the base")
	}
}

// TestMergeFixture: the mirror stock tiup made merges into a fresh base;
// what it holds verifies, the yanked component and version stay out, and
// the flags and nightly of the source come along.
func TestMergeFixture(t *testing.T) {
	s, clock := fixtureSandbox(t)
	mustEnv(s, clock, "init", "m")
	mustEnv(s, clock, "set", "m")
	mustEnv(s, clock, "genkey")
	mustEnv(s, clock, "grant", "alice")
	fxBefore := treeDigest(t, s.path("fx"))

	out := mustEnv(s, clock, "merge", "fx", "--owner", "alice").stdout
	// hello v1.0.0 v1.2.0 v1.3.0, greet v1.0.0 v1.1.0 v2.0.0 v2.0.1 and
	// its current nightly, gohello, shout and extra one each.
	if want := "merged 11 versions of 5 components from " + s.path("fx"); !strings.Contains(out, want) {
		t.Fatalf("merge printed %q, want %q", out, want)
	}
	if treeDigest(t, s.path("fx")) != fxBefore {
		t.Error("the merge changed its source")
	}
	if out := mustEnv(s, clock, "verify").stdout; !strings.Contains(out, "5 components") {
		t.Errorf("verify: %s", out)
	}
	ix := mergeIndex(t, s.path("m"))
	if _, ok := ix.Components["legacy"]; ok {
		t.Error("the yanked component legacy was merged")
	}
	if !ix.Components["hello"].Standalone || !ix.Components["gohello"].Hidden {
		t.Errorf("flags lost: hello %+v, gohello %+v", ix.Components["hello"], ix.Components["gohello"])
	}
	for id, item := range ix.Components {
		if item.Owner != "alice" {
			t.Errorf("%s is owned by %s, want alice", id, item.Owner)
		}
	}
	hello := mergeComponent(t, s.path("m"), "hello")
	if _, ok := hello.Platforms["linux/amd64"]["v1.1.0"]; ok {
		t.Error("the yanked version hello v1.1.0 was merged")
	}
	if _, err := os.Stat(s.path("m", "hello-v1.1.0-linux-amd64.tar.gz")); err == nil {
		t.Error("the tarball of yanked hello v1.1.0 was copied")
	}
	srcGreet := mergeComponent(t, s.path("fx"), "greet")
	greet := mergeComponent(t, s.path("m"), "greet")
	if greet.Description != srcGreet.Description || greet.Nightly != srcGreet.Nightly || greet.Nightly == "" {
		t.Errorf("greet description %q nightly %q, want %q %q", greet.Description, greet.Nightly, srcGreet.Description, srcGreet.Nightly)
	}
	if got, want := greet.Platforms["linux/arm64"]["v2.0.1"].Released, srcGreet.Platforms["linux/arm64"]["v2.0.1"].Released; got != want {
		t.Errorf("greet v2.0.1 released %q, want %q", got, want)
	}
	entry := strings.TrimSpace(mustEnv(s, clock, "install", "shout", "--os", "linux", "--arch", "amd64").stdout)
	if !strings.Contains(entry, filepath.Join("shout", "v0.1.0")) {
		t.Errorf("shout installed as %s", entry)
	}
}

// TestMergeRefused: a source that does not verify, keys that are not the
// owner's and a version with other hashes each refuse the whole merge,
// and the base stays as it was.
func TestMergeRefused(t *testing.T) {
	helloTar := "hello-v0.0.2-" + platform + ".tar.gz"
	cases := []struct {
		name    string
		prepare func(t *testing.T, s *sandbox) []string // the merge's extra arguments
		code    int
		msg     string
	}{
		{"tampered tarball", func(t *testing.T, s *sandbox) []string {
			if err := flipByte(s.path("m2", helloTar), 40); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 3, helloTar},
		{"broken snapshot signature", func(t *testing.T, s *sandbox) []string {
			breakSnapshotSignature(t, s.path("m2"))
			return nil
		}, 3, "signature by snapshot key"},
		{"keys not the owner's", func(t *testing.T, s *sandbox) []string {
			s.must("genkey", "--name", "mallory")
			return []string{"-k", filepath.Join(s.home, "keys", "mallory.json")}
		}, 1, "missing owner keys for owner alice"},
		{"conflicting hashes", func(t *testing.T, s *sandbox) []string {
			s.write("other/hello", "#!/bin/sh\necho another hello\n", 0o755)
			s.must("package", "hello", "-C", "other", "--name", "hello", "--release", "v0.0.1")
			mustEnv(s, mergeSourceClock(), "--mirror", "m2", "publish", "hello", "v0.0.1", "package/hello-v0.0.1-"+platform+".tar.gz", "hello")
			return nil
		}, 1, "hello v0.0.1 " + strings.Replace(platform, "-", "/", 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMergeSandbox(t)
			extra := tc.prepare(t, s)
			before := treeDigest(t, s.path("m"))
			r := s.fail(tc.code, tc.msg, append([]string{"merge", "m2"}, extra...)...)
			t.Logf("refused: %s", r.stderr)
			if treeDigest(t, s.path("m")) != before {
				t.Fatal("a refused merge changed the base")
			}
		})
	}
}

// breakSnapshotSignature damages the signature of snapshot.json and pins
// the damaged file in a properly re-signed timestamp, so that only the
// snapshot's signature check can catch it.
func breakSnapshotSignature(t *testing.T, dir string) {
	t.Helper()
	env, _, _ := readManifest(t, filepath.Join(dir, "snapshot.json"))
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 0x01
	env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
	snap, err := env.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshot.json"), snap, 0o644); err != nil {
		t.Fatal(err)
	}
	tsKeys, _ := filepath.Glob(filepath.Join(dir, "keys", "*-timestamp.json"))
	if len(tsKeys) != 1 {
		t.Fatalf("timestamp keys: %v", tsKeys)
	}
	k, err := keys.LoadPrivateKey(tsKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	tsEnv, _, _ := readManifest(t, filepath.Join(dir, "timestamp.json"))
	var ts manifest.Timestamp
	if err := tsEnv.Decode(&ts); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(snap)
	ts.Meta = map[string]manifest.FileHash{"/snapshot.json": {Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}, Length: uint64(len(snap))}}
	out, err := manifest.NewEnvelope(&ts)
	if err != nil {
		t.Fatal(err)
	}
	tsSig, err := k.Sign(out.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.AddSignature(k.ID(), tsSig); err != nil {
		t.Fatal(err)
	}
	b, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "timestamp.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
