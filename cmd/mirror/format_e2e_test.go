package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// dynamicMaps are the objects whose member names are data (key IDs, URLs,
// owners, components, platforms, versions), not fields.
var dynamicMaps = map[string]bool{"keys": true, "meta": true, "owners": true, "components": true, "platforms": true, "hashes": true, "dependencies": true, "roles": true}

// fieldPaths lists the field paths of a manifest file ("signed.roles.*.threshold").
func fieldPaths(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var walk func(prefix string, v any, dynamic bool)
	walk = func(prefix string, v any, dynamic bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				name := k
				if dynamic {
					name = "*"
				}
				p := prefix + "." + name
				set[p] = true
				// A platform's version map is dynamic too.
				walk(p, child, dynamicMaps[k] || (dynamic && strings.HasSuffix(prefix, ".platforms")))
			}
		case []any:
			for _, child := range x {
				walk(prefix+"[]", child, false)
			}
		}
	}
	walk("", v, false)
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// TestFormatMatchesStockTiup: every manifest mirror writes has exactly the
// field set of the same manifest type written by stock tiup 1.16.5, is
// canonical JSON with no trailing newline, and follows the byte rules of
// the spec (§1, §3, §4, §9).
func TestFormatMatchesStockTiup(t *testing.T) {
	fx := filepath.Join(fixtureMirror, "mirror")
	if _, err := os.Stat(fx); err != nil {
		t.Skip("fixtures not available")
	}
	s := newMirror(t)
	pairs := []struct{ ours, stock string }{
		{"root.json", "root.json"},
		{"1.index.json", "1.index.json"},
		{"3.index.json", "15.index.json"},
		{"1.hello.json", "6.hello.json"},
		{"snapshot.json", "snapshot.json"},
		{"timestamp.json", "timestamp.json"},
	}
	for _, p := range pairs {
		ours, err := os.ReadFile(s.path("m", p.ours))
		if err != nil {
			t.Fatal(err)
		}
		stock, err := os.ReadFile(filepath.Join(fx, p.stock))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(fieldPaths(t, ours), "\n"), strings.Join(fieldPaths(t, stock), "\n"); got != want {
			t.Errorf("%s field set differs from stock %s:\nours:\n%s\nstock:\n%s", p.ours, p.stock, got, want)
		}
		env, err := manifest.ParseEnvelope(ours)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := env.Bytes()
		if err != nil || !bytes.Equal(canon, ours) {
			t.Errorf("%s is not canonical JSON", p.ours)
		}
		if bytes.HasSuffix(ours, []byte("\n")) {
			t.Errorf("%s ends in a newline", p.ours)
		}
		if info, _ := os.Stat(s.path("m", p.ours)); info.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", p.ours, info.Mode().Perm())
		}
	}
	ts, _ := os.ReadFile(s.path("m", "timestamp.json"))
	if len(ts) > manifest.MaxTimestampSize {
		t.Errorf("timestamp.json is %d bytes", len(ts))
	}
	var snap manifest.Snapshot
	b, _ := os.ReadFile(s.path("m", "snapshot.json"))
	env, _ := manifest.ParseEnvelope(b)
	if err := env.Decode(&snap); err != nil || snap.Version != 0 {
		t.Errorf("snapshot version %d (%v), stock tiup keeps 0", snap.Version, err)
	}
	if !regexp.MustCompile(`"url":"/hello-v0\.0\.1-` + regexp.QuoteMeta(platform) + `\.tar\.gz"`).Match(mustRead(t, s.path("m", "1.hello.json"))) {
		t.Error("tarball url is not /ID-VER-OS-ARCH.tar.gz")
	}
	// Key files: <id16>-<role>.json, 0600, PKCS#1 under the label PRIVATE KEY.
	ents, _ := os.ReadDir(s.path("m", "keys"))
	roles := map[string]int{}
	for _, e := range ents {
		path := s.path("m", "keys", e.Name())
		k, err := keys.LoadPrivateKey(path)
		if err != nil {
			t.Fatal(err)
		}
		id16, role, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
		if !ok || id16 != k.ID()[:16] {
			t.Errorf("key file %s is not named after its ID %s", e.Name(), k.ID()[:16])
		}
		roles[role]++
		raw := mustRead(t, path)
		if !bytes.Contains(raw, []byte(`-----BEGIN PRIVATE KEY-----\nMIIE`)) || !bytes.HasSuffix(raw, []byte("}\n")) {
			t.Errorf("key file %s is not in tiup's format", e.Name())
		}
	}
	if roles["root"] != 3 || roles["index"] != 1 || roles["snapshot"] != 1 || roles["timestamp"] != 1 {
		t.Errorf("role keys %v, want 3 root and one each of index, snapshot, timestamp", roles)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
