package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cjson "github.com/gibson042/canonicaljson-go"
	"golang.org/x/mod/semver"
)

// The fuzz targets of attack catalogue §4 that concern this package's
// encoding, names and times. Seeds are added here and committed under
// testdata/fuzz/<target>, so plain `go test` replays them; run one with
// `go test -fuzz=FuzzX -fuzztime=30s ./core/manifest`.

// FuzzCanonicalDifferential: our canonical encoder against
// gibson042/canonicaljson-go, the library stock tiup signs with, byte for
// byte on arbitrary JSON values, and the properties the write API and the
// envelope rely on: canonical bytes are a fixed point of decoding (with
// UseNumber, as the server decodes posted manifests) and re-encoding, so a
// manifest signed by stock tiup keeps its signed bytes; Envelope.Bytes,
// which splices the signed bytes in verbatim, equals the library's encoding
// of the envelope; and a manifest type encodes to the canonical form of
// its own JSON.
func FuzzCanonicalDifferential(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[true,false,null],"c":{"z":"\u2028<&>","y":1.5,"x":-0,"w":1e300}}`,
		`{"_type":"timestamp","expires":"2031-01-01T00:00:00Z","meta":{"/snapshot.json":{"hashes":{"sha256":"00"},"length":1}},"spec_version":"0.1.0","version":12345678901234567890}`,
		`["\ud800",  "é", "\u0000", 0.1, 100000000000000000000000, -1E-7]`,
		`"plain"`, `12`, `{"":{"":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeNumbers(data)
		if err != nil {
			return
		}
		ours, errOurs := Encode(v)
		theirs, errTheirs := cjson.Marshal(v)
		if (errOurs == nil) != (errTheirs == nil) {
			t.Fatalf("Encode error %v, canonicaljson error %v", errOurs, errTheirs)
		}
		if errOurs != nil {
			return
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("Encode %q, canonicaljson %q", ours, theirs)
		}
		if !json.Valid(ours) {
			t.Fatalf("Encode wrote invalid JSON %q", ours)
		}
		again, err := decodeNumbers(ours)
		if err != nil {
			t.Fatalf("canonical bytes %q do not decode: %v", ours, err)
		}
		if twice, err := Encode(again); err != nil || !bytes.Equal(twice, ours) {
			t.Fatalf("canonical bytes are not a fixed point: %q, then %q (%v)", ours, twice, err)
		}
		if len(ours) > 0 && ours[0] == '{' {
			env := &Envelope{Signed: ours, Signatures: []Signature{{KeyID: "k", Sig: base64.StdEncoding.EncodeToString(data[:min(len(data), 16)])}}}
			whole, err := env.Bytes()
			if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			// The signed part as a value, not a json.RawMessage: the
			// library re-decodes a RawMessage into float64 and would round
			// a large integer that Bytes rightly keeps.
			lib, err := cjson.Marshal(struct {
				Signatures []Signature `json:"signatures"`
				Signed     any         `json:"signed"`
			}{env.Signatures, again})
			if err != nil {
				t.Fatalf("canonicaljson of the envelope: %v", err)
			}
			if !bytes.Equal(whole, lib) {
				t.Fatalf("Envelope.Bytes %q, canonicaljson %q", whole, lib)
			}
			back, err := ParseEnvelope(whole)
			if err != nil || !bytes.Equal(back.Signed, ours) {
				t.Fatalf("the envelope does not parse back to its signed bytes: %v", err)
			}
		}
		for _, typed := range []Signed{&Root{}, &Index{}, &Component{}, &Snapshot{}, &Timestamp{}} {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if dec.Decode(typed) != nil {
				continue
			}
			enc, err := Encode(typed)
			if err != nil {
				t.Fatalf("Encode %T: %v", typed, err)
			}
			generic, err := decodeNumbers(enc)
			if err != nil {
				t.Fatalf("Encode %T wrote %q: %v", typed, enc, err)
			}
			if canon, err := cjson.Marshal(generic); err != nil || !bytes.Equal(canon, enc) {
				t.Fatalf("%T encodes to %q, its canonical form is %q (%v)", typed, enc, canon, err)
			}
		}
	})
}

// decodeNumbers decodes one JSON value keeping numbers as written, as the
// write API does.
func decodeNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fs.ErrInvalid
	}
	return v, nil
}

var componentIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// FuzzComponentName: a component ID that ValidComponentID accepts matches
// the allowlist, is no role name, is a local path element in every file
// name derived from it, and needs no escaping in a URL.
func FuzzComponentName(f *testing.F) {
	for _, s := range []string{"hello", "tidb-lightning", "a_b", "0", "..", "../x", "a/b", "Hello", "timestamp", "root", "-x", "x\x00", "é", strings.Repeat("a", 129), "con", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidComponentID(id) != nil {
			return
		}
		if !componentIDPattern.MatchString(id) || len(id) > MaxComponentIDLen || isRoleName(id) {
			t.Fatalf("accepted %q", id)
		}
		for _, name := range []string{id, VersionedName(7, id), TarballName(id, "v1.0.0", "linux", "amd64"), strings.TrimPrefix(ManifestURL(id), "/")} {
			if !filepath.IsLocal(name) || !fs.ValidPath(name) || strings.ContainsAny(name, `/\`) {
				t.Fatalf("%q gives the file name %q, which is not one local path element", id, name)
			}
			if url.PathEscape(name) != name {
				t.Fatalf("%q gives %q, which needs escaping in a URL", id, name)
			}
		}
	})
}

// FuzzMirrorURLPath: VersionedURL never panics and only inserts "N." after
// the last slash; for a valid component, the URLs clients fetch round-trip
// through URL parsing to the file names the mirror stores.
func FuzzMirrorURLPath(f *testing.F) {
	f.Add("/index.json", uint64(15))
	f.Add("/hello.json", uint64(1))
	f.Add("", uint64(0))
	f.Add("no-slash.json", uint64(18446744073709551615))
	f.Add("/a/b/c.json", uint64(2))
	f.Fuzz(func(t *testing.T, u string, n uint64) {
		got := VersionedURL(u, n)
		i := strings.LastIndexByte(u, '/') + 1
		if !strings.HasPrefix(got, u[:i]) || !strings.HasSuffix(got, "."+u[i:]) {
			t.Fatalf("VersionedURL(%q, %d) = %q", u, n, got)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(u, "/"), ".json")
		if ValidComponentID(id) != nil || u != ManifestURL(id) {
			return
		}
		want := "/" + VersionedName(n, id)
		if got != VersionedURL(ManifestURL(id), n) || got != want {
			t.Fatalf("VersionedURL(%q, %d) = %q, want %q", u, n, got, want)
		}
		parsed, err := url.Parse("http://mirror.example" + got)
		if err != nil || parsed.Path != want || parsed.RawQuery != "" || parsed.Fragment != "" {
			t.Fatalf("%q does not round-trip through a URL: %v %q", got, err, parsed)
		}
		if key := strings.TrimPrefix(parsed.Path, "/"); !filepath.IsLocal(key) || !fs.ValidPath(key) {
			t.Fatalf("%q names no local file", got)
		}
	})
}

// FuzzVersionOrder: the order LatestStable picks "latest" by is total on
// valid versions: irreflexive, antisymmetric, total and transitive, so the
// answer never depends on map iteration order.
func FuzzVersionOrder(f *testing.F) {
	f.Add("v1.0.0", "v1.0.0+build", "v1.0.0-rc.1")
	f.Add("v1", "v1.0.0", "v1.0")
	f.Add("v2.0.0", "v10.0.0", "v2.0.0-nightly-20260101")
	f.Add("v0.0.1-alpha.10", "v0.0.1-alpha.9", "v0.0.1-alpha")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for _, v := range []string{a, b, c} {
			if !semver.IsValid(v) {
				return
			}
			if higher(v, v) {
				t.Fatalf("higher(%q, %q)", v, v)
			}
		}
		for _, p := range [][2]string{{a, b}, {b, c}, {a, c}} {
			x, y := p[0], p[1]
			if x != y && higher(x, y) == higher(y, x) {
				t.Fatalf("higher(%q, %q) = higher(%q, %q) = %v", x, y, y, x, higher(x, y))
			}
		}
		if higher(a, b) && higher(b, c) && !higher(a, c) {
			t.Fatalf("%q > %q > %q but not %q > %q", a, b, c, a, c)
		}
		// LatestStable is the maximum under higher (a stable version
		// before any prerelease, nightlies never), so it does not depend on
		// the order it meets the versions in: map iteration is random.
		latest := func(vs ...string) string {
			var stable, best string
			for _, v := range vs {
				if IsNightly(v) {
					continue
				}
				if higher(v, best) {
					best = v
				}
				if semver.Prerelease(v) == "" && higher(v, stable) {
					stable = v
				}
			}
			if stable != "" {
				return stable
			}
			return best
		}
		want := latest(a, b, c)
		if other := latest(c, b, a); other != want {
			t.Fatalf("the latest of %q %q %q depends on their order: %q or %q", a, b, c, want, other)
		}
		comp := &Component{Platforms: map[string]map[string]VersionItem{PlatformAny: {}}}
		for _, v := range []string{a, b, c} {
			comp.Platforms[PlatformAny][v] = VersionItem{Entry: "x"}
		}
		for range 3 {
			if got, ok := comp.LatestStable("linux/amd64", false); got != want || ok != (want != "") {
				t.Fatalf("LatestStable of %q %q %q = %q %v, want %q", a, b, c, got, ok, want)
			}
		}
	})
}

// FuzzExpires: parsing an expiry never panics, and what parses round-trips
// through FormatTime to the same instant (to the second), whatever offset
// it was written with; real TiUP manifests use +08:00.
func FuzzExpires(f *testing.F) {
	for _, s := range []string{"2031-01-01T00:00:00Z", "2031-01-01T08:00:00+08:00", "2026-11-23T12:00:00.999999999-07:30", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59+23:59", "2031-02-30T00:00:00Z", "2031-01-01 00:00:00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := &Base{Expires: s}
		at, err := b.ExpiresAt()
		if err != nil {
			return
		}
		formatted := FormatTime(at)
		if !strings.HasSuffix(formatted, "Z") {
			t.Fatalf("FormatTime(%v) = %q, not UTC", at, formatted)
		}
		back, err := (&Base{Expires: formatted}).ExpiresAt()
		if err != nil {
			t.Fatalf("FormatTime wrote %q, which does not parse: %v", formatted, err)
		}
		if !back.Equal(at.Truncate(time.Second)) {
			t.Fatalf("%q → %q → %v, want %v", s, formatted, back, at.Truncate(time.Second))
		}
		if FormatTime(back) != formatted {
			t.Fatalf("FormatTime is not stable on %q", formatted)
		}
	})
}
