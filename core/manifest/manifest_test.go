package manifest

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 23, 30, 13, 987654321, time.UTC)

func TestFormatTime(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"utc drops fraction", now, "2026-11-22T23:30:13Z"},
		{"zone converted to utc", time.Date(2026, 11, 23, 7, 30, 13, 0, time.FixedZone("CST", 8*3600)), "2026-11-22T23:30:13Z"},
		{"epoch", time.Unix(0, 0), "1970-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatTime(tc.in); got != tc.want {
				t.Errorf("FormatTime = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRenew(t *testing.T) {
	tests := []struct {
		name        string
		base        Base
		lifetime    time.Duration
		wantExpires string
		wantVersion uint64
	}{
		{"extends and bumps", Base{Expires: "2026-12-01T00:00:00Z", Version: 3}, LifetimeTimestamp, "2026-12-22T23:30:13Z", 4},
		{"never shortens", Base{Expires: "2030-01-01T00:00:00+08:00", Version: 3}, LifetimeTimestamp, "2030-01-01T00:00:00+08:00", 4},
		{"snapshot stays at zero", Base{Expires: "2026-12-01T00:00:00Z", Version: 0}, LifetimeSnapshot, "2026-12-22T23:30:13Z", 0},
		{"unparsable counts as zero", Base{Expires: "garbage", Version: 1}, LifetimeComponent, "2031-11-21T23:30:13Z", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.base
			b.Renew(now, tc.lifetime)
			if b.Expires != tc.wantExpires || b.Version != tc.wantVersion {
				t.Errorf("Renew = %q v%d, want %q v%d", b.Expires, b.Version, tc.wantExpires, tc.wantVersion)
			}
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"versioned name", VersionedName(3, "greet"), "3.greet.json"},
		{"manifest url", ManifestURL("greet"), "/greet.json"},
		{"versioned url", VersionedURL("/index.json", 15), "/15.index.json"},
		{"versioned url nested", VersionedURL("/a/b/root.json", 2), "/a/b/2.root.json"},
		{"versioned url bare", VersionedURL("root.json", 2), "2.root.json"},
		{"tarball", TarballName("hello", "v1.0.0", "linux", "amd64"), "hello-v1.0.0-linux-amd64.tar.gz"},
		{"tarball any", TarballName("shout", "v0.1.0", "any", "any"), "shout-v0.1.0-any-any.tar.gz"},
		{"platform", Platform("linux", "amd64"), "linux/amd64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestValidComponentID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"hello", true},
		{"tidb-dashboard", true},
		{"pd_recover", true},
		{"9lives", true},
		{"", false},
		{"-lead", false},
		{"_lead", false},
		{"Hello", false},
		{"has space", false},
		{"a/b", false},
		{"..", false},
		{"a..b", false},
		{"v1.0", false},
		{"root", false},
		{"index", false},
		{"snapshot", false},
		{"timestamp", false},
		{"héllo", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			if err := ValidComponentID(tc.id); (err == nil) != tc.ok {
				t.Errorf("ValidComponentID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
		})
	}
}

func TestValidVersion(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"v1.0.0", true},
		{"v2.1.0-nightly-20261122", true},
		{"v1.0.0-rc.1+build.5", true},
		{"1.0.0", false},
		{"v1", false},
		{"v1.2", false},
		{"v1.2.3.4", false},
		{"", false},
		{"nightly", false},
		{"v1.0.0/../x", false},
	}
	for _, tc := range tests {
		t.Run(tc.v, func(t *testing.T) {
			if err := ValidVersion(tc.v); (err == nil) != tc.ok {
				t.Errorf("ValidVersion(%q) = %v, want ok=%v", tc.v, err, tc.ok)
			}
		})
	}
}

func TestValidPlatform(t *testing.T) {
	tests := []struct {
		goos, goarch string
		ok           bool
	}{
		{"any", "any", true},
		{"linux", "amd64", true},
		{"linux", "arm64", true},
		{"darwin", "amd64", true},
		{"darwin", "arm64", true},
		{"windows", "amd64", false},
		{"linux", "any", false},
		{"any", "amd64", false},
		{"linux", "386", false},
	}
	for _, tc := range tests {
		t.Run(tc.goos+"/"+tc.goarch, func(t *testing.T) {
			if err := ValidPlatform(tc.goos, tc.goarch); (err == nil) != tc.ok {
				t.Errorf("ValidPlatform = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestConstructorsEncode(t *testing.T) {
	tests := []struct {
		name string
		v    Signed
		want string
	}{
		{"root", NewRoot(now), `{"_type":"root","expires":"2027-11-22T23:30:13Z","roles":{"index":{"keys":{},"threshold":1,"url":"/index.json"},"root":{"keys":{},"threshold":3,"url":"/root.json"},"snapshot":{"keys":{},"threshold":1,"url":"/snapshot.json"},"timestamp":{"keys":{},"threshold":1,"url":"/timestamp.json"}},"spec_version":"0.1.0","version":1}`},
		{"index", NewIndex(now), `{"_type":"index","components":{},"default_components":[],"expires":"2027-11-22T23:30:13Z","owners":{},"spec_version":"0.1.0","version":1}`},
		{"snapshot", NewSnapshot(now), `{"_type":"snapshot","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":0}`},
		{"timestamp", NewTimestamp(now), `{"_type":"timestamp","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":1}`},
		{"component", NewComponent("hello", "C <hello> & world", now), `{"_type":"component","description":"C <hello> & world","expires":"2031-11-21T23:30:13Z","id":"hello","nightly":"","platforms":{},"spec_version":"0.1.0","version":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := NewEnvelope(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(env.Signed) != tc.want {
				t.Errorf("signed = %s\nwant     %s", env.Signed, tc.want)
			}
			whole, err := env.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"signatures":null,"signed":` + tc.want + `}`; string(whole) != want {
				t.Errorf("Bytes = %s", whole)
			}
			// The fresh envelope must read back as its own type.
			back, err := ParseEnvelope(whole)
			if err != nil {
				t.Fatal(err)
			}
			if err := back.Decode(newLike(tc.v)); err != nil {
				t.Errorf("Decode: %v", err)
			}
			if TypeOf(tc.v) != tc.v.Header().Type {
				t.Errorf("TypeOf = %q, header says %q", TypeOf(tc.v), tc.v.Header().Type)
			}
		})
	}
}

func newLike(v Signed) Signed {
	switch v.(type) {
	case *Root:
		return &Root{}
	case *Index:
		return &Index{}
	case *Snapshot:
		return &Snapshot{}
	case *Timestamp:
		return &Timestamp{}
	}
	return &Component{}
}

func TestAddSignature(t *testing.T) {
	env, err := NewEnvelope(NewTimestamp(now))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.AddSignature("aa", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := env.AddSignature("aa", []byte{4}); err == nil {
		t.Error("duplicate key id accepted")
	}
	if err := env.AddSignature("", []byte{4}); err == nil {
		t.Error("empty key id accepted")
	}
	if err := env.AddSignature("bb", nil); err == nil {
		t.Error("empty signature accepted")
	}
	if len(env.Signatures) != 1 || env.Signatures[0].Sig != base64.StdEncoding.EncodeToString([]byte{1, 2, 3}) {
		t.Errorf("signatures = %+v", env.Signatures)
	}
	whole, err := env.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(whole), `{"signatures":[{"keyid":"aa","sig":"AQID"}],"signed":{"_type":"timestamp"`) {
		t.Errorf("Bytes = %s", whole)
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	const body = `{"_type":"timestamp","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":1}`
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ``},
		{"array", `[]`},
		{"null", `null`},
		{"string", `"x"`},
		{"no signed", `{"signatures":[]}`},
		{"signed null", `{"signatures":[],"signed":null}`},
		{"signed array", `{"signatures":[],"signed":[]}`},
		{"signed string", `{"signatures":[],"signed":"x"}`},
		{"unknown member", `{"signatures":[],"signed":` + body + `,"extra":1}`},
		{"case folded member", `{"signatures":[],"Signed":` + body + `}`},
		{"trailing data", `{"signatures":[],"signed":` + body + `}{}`},
		{"signatures object", `{"signatures":{},"signed":` + body + `}`},
		{"signature unknown field", `{"signatures":[{"keyid":"a","sig":"AQ==","x":1}],"signed":` + body + `}`},
		{"signature empty keyid", `{"signatures":[{"keyid":"","sig":"AQ=="}],"signed":` + body + `}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if env, err := ParseEnvelope([]byte(tc.in)); err == nil {
				t.Errorf("accepted: %+v", env)
			}
		})
	}
	if _, err := ParseEnvelope([]byte(`{"signatures":null,"signed":` + body + `}`)); err != nil {
		t.Errorf("null signatures rejected: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name   string
		signed string
		into   Signed
		want   string
	}{
		{"wrong type", `{"_type":"snapshot","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":1}`, &Timestamp{}, "_type"},
		{"spec version", `{"_type":"timestamp","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.2.0","version":1}`, &Timestamp{}, "spec_version"},
		{"bad expires", `{"_type":"timestamp","expires":"tomorrow","meta":{},"spec_version":"0.1.0","version":1}`, &Timestamp{}, "expires"},
		{"unknown field", `{"_type":"timestamp","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":1,"x":1}`, &Timestamp{}, "unknown field"},
		{"old index threshold", `{"_type":"index","components":{"a":{"hidden":false,"owner":"o","standalone":false,"threshold":1,"url":"/a.json","yanked":false}},"default_components":[],"expires":"2026-12-22T23:30:13Z","owners":{},"spec_version":"0.1.0","version":1}`, &Index{}, "threshold"},
		{"negative version", `{"_type":"timestamp","expires":"2026-12-22T23:30:13Z","meta":{},"spec_version":"0.1.0","version":-1}`, &Timestamp{}, "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := &Envelope{Signed: []byte(tc.signed)}
			err := env.Decode(tc.into)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), TypeOf(tc.into)) {
				t.Errorf("error %q does not name %q and the type", err, tc.want)
			}
		})
	}
}

func TestComponentLookup(t *testing.T) {
	item := func(entry string, yanked bool) VersionItem { return VersionItem{Entry: entry, Yanked: yanked} }
	c := &Component{Platforms: map[string]map[string]VersionItem{
		"linux/amd64": {
			"v1.0.0":                  item("bin", false),
			"v1.1.0":                  item("bin", true),
			"v1.2.0":                  item("", false),
			"v2.0.0-rc.1":             item("bin", false),
			"v2.1.0-nightly-20261122": item("bin", false),
		},
		"linux/arm64": {},
		"any/any": {
			"v0.9.0": item("bin", false),
		},
		"darwin/arm64": {
			"v3.0.0-beta":    item("bin", false),
			"v3.0.0-alpha":   item("bin", false),
			"v4.0.0-nightly": item("bin", false),
		},
		"darwin/amd64": {
			"v5.0.0": item("bin", true),
		},
	}}
	lookups := []struct {
		name, platform, version string
		ok                      bool
	}{
		{"exact", "linux/amd64", "v1.0.0", true},
		{"yanked still an item", "linux/amd64", "v1.1.0", true},
		{"empty entry absent", "linux/amd64", "v1.2.0", false},
		{"no any fallback when key exists", "linux/arm64", "v0.9.0", false},
		{"any fallback when key absent", "windows/amd64", "v0.9.0", true},
		{"exact does not mix any", "linux/amd64", "v0.9.0", false},
	}
	for _, tc := range lookups {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := c.Item(tc.platform, tc.version); ok != tc.ok {
				t.Errorf("Item(%s, %s) ok = %v, want %v", tc.platform, tc.version, ok, tc.ok)
			}
		})
	}
	if n := len(c.VersionsFor("linux/amd64")); n != 4 {
		t.Errorf("VersionsFor linux/amd64 has %d versions, want 4", n)
	}
	latest := []struct {
		name, platform string
		includeYanked  bool
		want           string
		ok             bool
	}{
		{"stable beats prerelease and nightly", "linux/amd64", false, "v1.0.0", true},
		{"yanked included", "linux/amd64", true, "v1.1.0", true},
		{"empty platform", "linux/arm64", false, "", false},
		{"any fallback", "freebsd/amd64", false, "v0.9.0", true},
		{"prerelease when no stable", "darwin/arm64", false, "v3.0.0-beta", true},
		{"only yanked", "darwin/amd64", false, "", false},
		{"only yanked included", "darwin/amd64", true, "v5.0.0", true},
	}
	for _, tc := range latest {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.LatestStable(tc.platform, tc.includeYanked)
			if got != tc.want || ok != tc.ok {
				t.Errorf("LatestStable = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if !IsNightly("v2.1.0-nightly-20261122") || IsNightly("v2.1.0") {
		t.Error("IsNightly")
	}
}

func TestRootValidate(t *testing.T) {
	key := func() *KeyInfo {
		return &KeyInfo{Type: KeyTypeRSA, Scheme: SchemeRSAPSS, Value: map[string]string{"public": "PEM"}}
	}
	good := func() *Root {
		r := NewRoot(now)
		for name, role := range r.Roles {
			for i := uint64(0); i < role.Threshold; i++ {
				role.Keys[name+string(rune('a'+i))] = key()
			}
		}
		return r
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("good root: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(r *Root)
	}{
		{"missing role", func(r *Root) { delete(r.Roles, RoleSnapshot) }},
		{"nil role", func(r *Root) { r.Roles[RoleIndex] = nil }},
		{"wrong url", func(r *Root) { r.Roles[RoleIndex].URL = "/idx.json" }},
		{"zero threshold", func(r *Root) { r.Roles[RoleIndex].Threshold = 0 }},
		{"too few keys", func(r *Root) { r.Roles[RoleRoot].Threshold = 4 }},
		{"keytype", func(r *Root) { r.Roles[RoleTimestamp].Keys["timestampa"].Type = "ed25519" }},
		{"scheme", func(r *Root) { r.Roles[RoleTimestamp].Keys["timestampa"].Scheme = "rsa-pkcs1" }},
		{"private key", func(r *Root) { r.Roles[RoleTimestamp].Keys["timestampa"].Value["private"] = "x" }},
		{"no public", func(r *Root) { r.Roles[RoleTimestamp].Keys["timestampa"].Value = nil }},
		{"nil key", func(r *Root) { r.Roles[RoleTimestamp].Keys["timestampa"] = nil }},
		{"wrong type", func(r *Root) { r.Type = TypeIndex }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.mutate(r)
			if err := r.Validate(); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestIndexValidate(t *testing.T) {
	good := func() *Index {
		ix := NewIndex(now)
		ix.Owners["alice"] = Owner{Name: "Alice", Threshold: 1, Keys: map[string]*KeyInfo{
			"k": {Type: KeyTypeRSA, Scheme: SchemeRSAPSS, Value: map[string]string{"public": "PEM"}},
		}}
		ix.Components["hello"] = ComponentItem{Owner: "alice", URL: "/hello.json"}
		ix.DefaultComponents = []string{"hello"}
		return ix
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("good index: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(ix *Index)
	}{
		{"unknown owner", func(ix *Index) { ix.Components["x"] = ComponentItem{Owner: "bob", URL: "/x.json"} }},
		{"bad component id", func(ix *Index) { ix.Components["X y"] = ComponentItem{Owner: "alice", URL: "/X y.json"} }},
		{"role as component", func(ix *Index) { ix.Components["root"] = ComponentItem{Owner: "alice", URL: "/root.json"} }},
		{"wrong url", func(ix *Index) { ix.Components["x"] = ComponentItem{Owner: "alice", URL: "/y.json"} }},
		{"missing default", func(ix *Index) { ix.DefaultComponents = []string{"nope"} }},
		{"owner named like a role", func(ix *Index) { ix.Owners[RoleTimestamp] = ix.Owners["alice"] }},
		{"empty owner id", func(ix *Index) { ix.Owners[""] = ix.Owners["alice"] }},
		{"owner zero threshold", func(ix *Index) { o := ix.Owners["alice"]; o.Threshold = 0; ix.Owners["alice"] = o }},
		{"owner threshold above keys", func(ix *Index) { o := ix.Owners["alice"]; o.Threshold = 2; ix.Owners["alice"] = o }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := good()
			tc.mutate(ix)
			if err := ix.Validate(); err == nil {
				t.Error("accepted")
			}
		})
	}
}
