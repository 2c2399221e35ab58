package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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

var manifestFile = regexp.MustCompile(`^(?:\d+\.)?([a-z0-9_-]+)\.json$`)

// manifestFiles lists the manifest files of a fixture mirror dir.
func manifestFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && manifestFile.MatchString(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no manifests in %s", dir)
	}
	return out
}

// newFor returns an empty value of the manifest type a file name implies.
func newFor(name string) Signed {
	base := manifestFile.FindStringSubmatch(name)[1]
	switch base {
	case "root":
		return &Root{}
	case "index":
		return &Index{}
	case "snapshot":
		return &Snapshot{}
	case "timestamp":
		return &Timestamp{}
	}
	return &Component{}
}

func TestFixtureRoundTrip(t *testing.T) {
	root := fixtures(t)
	for _, sub := range []string{"mirror", "clone-explicit"} {
		for _, path := range manifestFiles(t, filepath.Join(root, sub)) {
			t.Run(sub+"/"+filepath.Base(path), func(t *testing.T) {
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				env, err := ParseEnvelope(raw)
				if err != nil {
					t.Fatalf("ParseEnvelope: %v", err)
				}
				if len(env.Signatures) == 0 {
					t.Errorf("no signatures")
				}
				v := newFor(filepath.Base(path))
				if err := env.Decode(v); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				enc, err := Encode(v)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc, env.Signed) {
					t.Errorf("Encode(decoded) differs from the signed bytes")
				}
				whole, err := env.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(whole, raw) {
					t.Errorf("Bytes() differs from the file")
				}
				switch m := v.(type) {
				case *Root:
					if err := m.Validate(); err != nil {
						t.Errorf("Validate: %v", err)
					}
				case *Index:
					if err := m.Validate(); err != nil {
						t.Errorf("Validate: %v", err)
					}
				case *Component:
					if err := ValidComponentID(m.ID); err != nil {
						t.Errorf("component id: %v", err)
					}
					for plat, versions := range m.Platforms {
						goos, goarch, _ := strings.Cut(plat, "/")
						if err := ValidPlatform(goos, goarch); err != nil {
							t.Errorf("platform: %v", err)
						}
						for ver, item := range versions {
							if err := ValidVersion(ver); err != nil {
								t.Errorf("version: %v", err)
							}
							if want := "/" + TarballName(m.ID, ver, goos, goarch); item.URL != want {
								t.Errorf("%s %s url = %q, want %q", plat, ver, item.URL, want)
							}
						}
					}
				}
			})
		}
	}
}

func loadComponent(t *testing.T, path string) *Component {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	c := &Component{}
	if err := env.Decode(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLatestStableFixtures(t *testing.T) {
	root := fixtures(t)
	tests := []struct {
		name          string
		file          string
		platform      string
		includeYanked bool
		want          string
		ok            bool
	}{
		{"hello", "mirror/6.hello.json", "linux/amd64", false, "v1.3.0", true},
		{"hello yanked included", "mirror/6.hello.json", "linux/amd64", true, "v1.3.0", true},
		{"hello missing platform", "mirror/6.hello.json", "darwin/arm64", false, "", false},
		{"greet amd64", "mirror/12.greet.json", "linux/amd64", false, "v2.0.1", true},
		{"greet arm64", "mirror/12.greet.json", "linux/arm64", false, "v2.0.1", true},
		{"shout any fallback", "mirror/1.shout.json", "darwin/arm64", false, "v0.1.0", true},
		{"clone greet skips yanked", "clone-explicit/10.greet.json", "linux/amd64", false, "v2.0.0", true},
		{"clone greet yanked included", "clone-explicit/10.greet.json", "linux/amd64", true, "v2.0.0", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := loadComponent(t, filepath.Join(root, tc.file))
			got, ok := c.LatestStable(tc.platform, tc.includeYanked)
			if got != tc.want || ok != tc.ok {
				t.Errorf("LatestStable = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFixtureComponentLookup(t *testing.T) {
	root := fixtures(t)
	greet := loadComponent(t, filepath.Join(root, "mirror/12.greet.json"))
	if greet.Nightly != "v2.1.0-nightly-20261122" {
		t.Errorf("greet nightly = %q", greet.Nightly)
	}
	if _, ok := greet.Item("linux/amd64", greet.Nightly); !ok {
		t.Errorf("nightly item missing")
	}
	hello := loadComponent(t, filepath.Join(root, "mirror/6.hello.json"))
	item, ok := hello.Item("linux/amd64", "v1.1.0")
	if !ok || !item.Yanked {
		t.Errorf("hello v1.1.0 = %+v, %v; want a yanked item", item, ok)
	}
	if n := len(hello.VersionsFor("linux/amd64")); n != 4 {
		t.Errorf("hello has %d versions, want 4", n)
	}
}
