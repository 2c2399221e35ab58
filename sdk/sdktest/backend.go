// Package sdktest holds conformance suites for implementations of the sdk
// interfaces. A plugin author calls TestBackend or TestSigner from an
// ordinary test of the plugin's package, once with the implementation
// in-process and once more across the plugin boundary (sdk/host), so that
// whatever the protocol loses shows up as a failure:
//
//	func TestConformance(t *testing.T) {
//		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
//			return mybackend.New(t.TempDir())
//		})
//	}
//
// The suites import only the standard library and sdk, so depending on them
// pulls nothing of the host into a plugin's tests.
package sdktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// Bounds of the suite's waits. A call that should return "promptly" gets
// slowReturn; a call that should keep blocking is watched for stillBlocked.
const (
	slowReturn   = 10 * time.Second
	stillBlocked = 200 * time.Millisecond
)

// TestBackend runs the sdk.Backend conformance suite as subtests of t.
// factory is called once per subtest and must return an empty backend of its
// own (for example one over t.TempDir()); it may register cleanups on the t
// it receives, and should fail that t if it cannot open the backend.
//
// The suite checks every documented error with errors.Is: missing keys
// (sdk.ErrNotFound), invalid keys (fs.ErrInvalid), PutOptions
// (sdk.ErrIntegrity, sdk.ErrExist, sdk.ErrConflict) and operations that
// Capabilities reports off (sdk.ErrUnsupported). It round-trips contents up
// to 64 MiB (8 MiB under testing.Short), cancels Puts and Gets mid-stream,
// runs concurrent Puts and concurrent compare-and-swaps, checks Lock's
// exclusion and, when Capabilities.LocalFiles is set, the sdk.LocalFiler
// methods, and when Capabilities.Stage is set, sdk.Stager and
// PutOptions.Staged. A backend without Capabilities.Write gets only the
// read-side checks.
func TestBackend(t *testing.T, factory func(t *testing.T) sdk.Backend) {
	t.Helper()
	tests := []struct {
		name  string
		write bool // needs Capabilities.Write
		run   func(t *testing.T, b sdk.Backend, caps sdk.Capabilities)
	}{
		{"Capabilities", false, testCapabilities},
		{"Missing", false, testMissing},
		{"InvalidKeys", false, testInvalidKeys},
		{"ReadOnly", false, testReadOnly},
		{"RoundTrip", true, testRoundTrip},
		{"Overwrite", true, testOverwrite},
		{"Integrity", true, testIntegrity},
		{"Conditional", true, testConditional},
		{"List", true, testList},
		{"Delete", true, testDelete},
		{"Lock", false, testLock},
		{"CancelPut", true, testCancelPut},
		{"CancelGet", true, testCancelGet},
		{"ConcurrentPuts", true, testConcurrentPuts},
		{"ConcurrentIfMatch", true, testConcurrentIfMatch},
		{"LocalFiler", true, testLocalFiler},
		{"Stage", true, testStage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := factory(t)
			if b == nil {
				t.Fatal("factory returned a nil backend")
			}
			caps, err := b.Capabilities(testContext(t))
			if err != nil {
				t.Fatalf("Capabilities: %v", err)
			}
			if tt.write && !caps.Write {
				t.Skip("Capabilities.Write is off")
			}
			tt.run(t, b, caps)
		})
	}
}

// testContext bounds every subtest, so that a hanging backend fails the
// test instead of the whole binary timing out without a useful message.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testCapabilities(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	again, err := b.Capabilities(testContext(t))
	if err != nil {
		t.Fatalf("second Capabilities: %v", err)
	}
	if again != caps {
		t.Errorf("Capabilities changed between calls: %+v, then %+v", caps, again)
	}
	if caps.ConditionalPut && !caps.Write {
		t.Errorf("Capabilities %+v: ConditionalPut without Write", caps)
	}
	if _, ok := b.(sdk.LocalFiler); caps.LocalFiles && !ok {
		t.Errorf("Capabilities.LocalFiles is set but %T does not implement sdk.LocalFiler", b)
	}
	if _, ok := b.(sdk.Stager); caps.Stage && !ok {
		t.Errorf("Capabilities.Stage is set but %T does not implement sdk.Stager", b)
	}
}

func testMissing(t *testing.T, b sdk.Backend, _ sdk.Capabilities) {
	ctx := testContext(t)
	for _, key := range []string{"missing", "missing/key.json", "a/b/c/missing.tar.gz"} {
		if info, err := b.Stat(ctx, key); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Stat(%q) = %+v, %v; want an error wrapping sdk.ErrNotFound", key, info, err)
		}
		rc, _, err := b.Get(ctx, key)
		if rc != nil {
			rc.Close()
		}
		if !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want one wrapping sdk.ErrNotFound", key, err)
		}
	}
}

// invalidKeys break io/fs.ValidPath in each of its ways.
var invalidKeys = []string{"", "../x", "/abs", "a//b", "a/../b", "./a", "a/", "a/."}

func testInvalidKeys(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	lf, _ := b.(sdk.LocalFiler)
	src := writeTemp(t, []byte("x"))
	ops := []struct {
		name string
		skip bool
		// alt is an error other than fs.ErrInvalid that is also right: a
		// backend that cannot write at all may say so first.
		alt  error
		call func(key string) error
	}{
		{name: "Stat", call: func(key string) error {
			_, err := b.Stat(ctx, key)
			return err
		}},
		{name: "Get", call: func(key string) error {
			rc, _, err := b.Get(ctx, key)
			if rc != nil {
				rc.Close()
			}
			return err
		}},
		{name: "Put", alt: unsupportedUnless(caps.Write), call: func(key string) error {
			_, err := b.Put(ctx, key, strings.NewReader("x"), sdk.PutOptions{})
			return err
		}},
		{name: "Delete", alt: unsupportedUnless(caps.Delete), call: func(key string) error {
			return b.Delete(ctx, key)
		}},
		{name: "LocalPath", skip: !caps.LocalFiles, call: func(key string) error {
			_, err := lf.LocalPath(ctx, key)
			return err
		}},
		{name: "PutFile", skip: !caps.LocalFiles || !caps.Write, call: func(key string) error {
			_, err := lf.PutFile(ctx, key, src, sdk.PutOptions{})
			return err
		}},
	}
	for _, op := range ops {
		if op.skip {
			continue
		}
		for _, key := range invalidKeys {
			err := op.call(key)
			if errors.Is(err, fs.ErrInvalid) || op.alt != nil && errors.Is(err, op.alt) {
				continue
			}
			t.Errorf("%s(%q) error = %v, want one wrapping fs.ErrInvalid", op.name, key, err)
		}
	}
}

// unsupportedUnless is sdk.ErrUnsupported when a capability is off, the error
// an operation may then return before looking at its key.
func unsupportedUnless(on bool) error {
	if on {
		return nil
	}
	return sdk.ErrUnsupported
}

// testReadOnly checks that a backend refuses, with sdk.ErrUnsupported, the
// writes its capabilities disclaim.
func testReadOnly(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	if caps.Write {
		t.Skip("Capabilities.Write is on")
	}
	ctx := testContext(t)
	if info, err := b.Put(ctx, "read-only", strings.NewReader("x"), sdk.PutOptions{}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put on a backend without Write = %+v, %v; want an error wrapping sdk.ErrUnsupported", info, err)
	}
	if lf, ok := b.(sdk.LocalFiler); ok {
		src := writeTemp(t, []byte("x"))
		if info, err := lf.PutFile(ctx, "read-only", src, sdk.PutOptions{}); !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("PutFile on a backend without Write = %+v, %v; want an error wrapping sdk.ErrUnsupported", info, err)
		}
	}
}

// content is a deterministic pseudo-random stream of n bytes; the same seed
// gives the same bytes, so large objects are compared by digest without
// ever being held in memory.
func content(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// digest returns the hex SHA-256 and length of r's bytes.
func digest(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func testRoundTrip(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	tests := []struct {
		name  string
		key   string
		size  int64
		large bool // skipped under testing.Short
	}{
		{"empty", "empty", 0, false},
		{"small", "small.json", 13, false},
		{"nested", "a/b/c/nested.txt", 100, false},
		{"one byte past 1 MiB", "chunks/1m1", 1<<20 + 1, false},
		{"8 MiB", "tarballs/8m.tar.gz", 8 << 20, false},
		{"64 MiB", "tarballs/64m.tar.gz", 64 << 20, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.large && testing.Short() {
				t.Skip("large content under -short")
			}
			ctx := testContext(t)
			seed := uint64(i + 1)
			want, _, _ := digest(content(seed, tt.size))
			opts := sdk.PutOptions{Size: tt.size, SizeKnown: true, SHA256: want}
			put, err := b.Put(ctx, tt.key, content(seed, tt.size), opts)
			if err != nil {
				t.Fatalf("Put(%q, %d bytes): %v", tt.key, tt.size, err)
			}
			if put.Key != tt.key || put.Size != tt.size {
				t.Errorf("Put(%q) info = %+v, want key %q and size %d", tt.key, put, tt.key, tt.size)
			}
			if caps.ConditionalPut && put.ETag == "" {
				t.Errorf("Put(%q) returned no ETag, but Capabilities.ConditionalPut needs one", tt.key)
			}
			st, err := b.Stat(ctx, tt.key)
			if err != nil {
				t.Fatalf("Stat(%q) after Put: %v", tt.key, err)
			}
			if st.Key != tt.key || st.Size != tt.size || st.ETag != put.ETag {
				t.Errorf("Stat(%q) = %+v, want key %q, size %d and Put's ETag %q", tt.key, st, tt.key, tt.size, put.ETag)
			}
			rc, info, err := b.Get(ctx, tt.key)
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.key, err)
			}
			defer rc.Close()
			if info.Key != tt.key || info.Size != tt.size || info.ETag != put.ETag {
				t.Errorf("Get(%q) info = %+v, want key %q, size %d and Put's ETag %q", tt.key, info, tt.key, tt.size, put.ETag)
			}
			got, n, err := digest(rc)
			if err != nil {
				t.Fatalf("read Get(%q): %v", tt.key, err)
			}
			if n != tt.size || got != want {
				t.Errorf("Get(%q) read %d bytes with sha256 %s, want %d bytes with %s", tt.key, n, got, tt.size, want)
			}
		})
	}
}

// mustPut stores data under key with no options and returns its info.
func mustPut(t *testing.T, b sdk.Backend, key string, data []byte) sdk.ObjectInfo {
	t.Helper()
	info, err := b.Put(testContext(t), key, bytes.NewReader(data), sdk.PutOptions{})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

// wantContent checks that key holds exactly data, under etag when that is
// not empty.
func wantContent(t *testing.T, b sdk.Backend, key string, data []byte, etag string) {
	t.Helper()
	ctx := testContext(t)
	rc, info, err := b.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Get(%q) = %q, want %q", key, abbrev(got), abbrev(data))
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Get(%q) info size %d, want %d", key, info.Size, len(data))
	}
	if etag != "" && info.ETag != etag {
		t.Errorf("Get(%q) ETag %q, want %q", key, info.ETag, etag)
	}
}

// wantMissing checks that nothing is stored under key.
func wantMissing(t *testing.T, b sdk.Backend, key string) {
	t.Helper()
	if info, err := b.Stat(testContext(t), key); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat(%q) = %+v, %v; want sdk.ErrNotFound: the failed write stored something", key, info, err)
	}
}

// abbrev shortens data for a message.
func abbrev(data []byte) string {
	if len(data) <= 64 {
		return string(data)
	}
	return fmt.Sprintf("%s... (%d bytes)", data[:64], len(data))
}

func testOverwrite(t *testing.T, b sdk.Backend, _ sdk.Capabilities) {
	first := mustPut(t, b, "index.json", []byte("first"))
	second := mustPut(t, b, "index.json", []byte("second, longer"))
	wantContent(t, b, "index.json", []byte("second, longer"), second.ETag)
	if first.ETag != "" && first.ETag == second.ETag {
		t.Errorf("ETag %q did not change when the content did", first.ETag)
	}
	// Same length and a write right after the last one: a tag built from
	// coarse times and sizes would repeat here.
	third := mustPut(t, b, "index.json", []byte("second, LONGER"))
	wantContent(t, b, "index.json", []byte("second, LONGER"), third.ETag)
	if second.ETag != "" && second.ETag == third.ETag {
		t.Errorf("ETag %q did not change when same-sized content replaced the object", second.ETag)
	}
}

func testIntegrity(t *testing.T, b sdk.Backend, _ sdk.Capabilities) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
	tests := []struct {
		name string
		data []byte
		opts sdk.PutOptions
	}{
		{"short of the size", []byte("hello"), sdk.PutOptions{Size: 6, SizeKnown: true}},
		{"past the size", []byte("hello"), sdk.PutOptions{Size: 4, SizeKnown: true}},
		{"pinned empty", []byte("hello"), sdk.PutOptions{Size: 0, SizeKnown: true}},
		{"far past the size", big, sdk.PutOptions{Size: 1 << 20, SizeKnown: true}},
		{"wrong sha256", []byte("hello"), sdk.PutOptions{SHA256: sha([]byte("hellO"))}},
		{"right size, wrong sha256", big, sdk.PutOptions{Size: int64(len(big)), SizeKnown: true, SHA256: sha(big[1:])}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			fresh := fmt.Sprintf("integrity/fresh-%d", i)
			if info, err := b.Put(ctx, fresh, bytes.NewReader(tt.data), tt.opts); !errors.Is(err, sdk.ErrIntegrity) {
				t.Errorf("Put(%q) = %+v, %v; want an error wrapping sdk.ErrIntegrity", fresh, info, err)
			}
			wantMissing(t, b, fresh)

			existing := fmt.Sprintf("integrity/existing-%d", i)
			old := mustPut(t, b, existing, []byte("previous content"))
			if info, err := b.Put(ctx, existing, bytes.NewReader(tt.data), tt.opts); !errors.Is(err, sdk.ErrIntegrity) {
				t.Errorf("Put(%q) over an object = %+v, %v; want an error wrapping sdk.ErrIntegrity", existing, info, err)
			}
			wantContent(t, b, existing, []byte("previous content"), old.ETag)
		})
	}
	t.Run("right options", func(t *testing.T) {
		ctx := testContext(t)
		for _, data := range [][]byte{nil, []byte("hello"), big} {
			key := fmt.Sprintf("integrity/right-%d", len(data))
			opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true, SHA256: sha(data)}
			info, err := b.Put(ctx, key, bytes.NewReader(data), opts)
			if err != nil {
				t.Fatalf("Put(%q) with matching size and sha256: %v", key, err)
			}
			wantContent(t, b, key, data, info.ETag)
		}
	})
}

func testConditional(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	if !caps.ConditionalPut {
		mustPut(t, b, "cas", []byte("v1"))
		for _, opts := range []sdk.PutOptions{{IfNoneMatch: true}, {IfMatch: "any-etag"}} {
			if info, err := b.Put(ctx, "cas", strings.NewReader("v2"), opts); !errors.Is(err, sdk.ErrUnsupported) {
				t.Errorf("Put(%+v) without Capabilities.ConditionalPut = %+v, %v; want an error wrapping sdk.ErrUnsupported", opts, info, err)
			}
		}
		wantContent(t, b, "cas", []byte("v1"), "")
		return
	}

	created, err := b.Put(ctx, "create-only", strings.NewReader("v1"), sdk.PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatalf("Put(IfNoneMatch) of a new key: %v", err)
	}
	wantContent(t, b, "create-only", []byte("v1"), created.ETag)
	if info, err := b.Put(ctx, "create-only", strings.NewReader("v2"), sdk.PutOptions{IfNoneMatch: true}); !errors.Is(err, sdk.ErrExist) {
		t.Errorf("Put(IfNoneMatch) of an existing key = %+v, %v; want an error wrapping sdk.ErrExist", info, err)
	}
	wantContent(t, b, "create-only", []byte("v1"), created.ETag)

	v1 := mustPut(t, b, "cas", []byte("v1"))
	v2, err := b.Put(ctx, "cas", strings.NewReader("v2"), sdk.PutOptions{IfMatch: v1.ETag})
	if err != nil {
		t.Fatalf("Put(IfMatch current ETag): %v", err)
	}
	if v2.ETag == "" || v2.ETag == v1.ETag {
		t.Errorf("Put(IfMatch) returned ETag %q, want a new one (was %q)", v2.ETag, v1.ETag)
	}
	wantContent(t, b, "cas", []byte("v2"), v2.ETag)
	if info, err := b.Put(ctx, "cas", strings.NewReader("v3"), sdk.PutOptions{IfMatch: v1.ETag}); !errors.Is(err, sdk.ErrConflict) {
		t.Errorf("Put(IfMatch stale ETag) = %+v, %v; want an error wrapping sdk.ErrConflict", info, err)
	}
	wantContent(t, b, "cas", []byte("v2"), v2.ETag)

	// A missing key has no ETag to match; either word is fair, storing is not.
	if info, err := b.Put(ctx, "cas-missing", strings.NewReader("v1"), sdk.PutOptions{IfMatch: v1.ETag}); !errors.Is(err, sdk.ErrConflict) && !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Put(IfMatch) of a missing key = %+v, %v; want an error wrapping sdk.ErrConflict or sdk.ErrNotFound", info, err)
	}
	wantMissing(t, b, "cas-missing")
}

// listKeys returns the keys List reports under prefix, sorted, and fails
// the test on a duplicate or a key outside the prefix.
func listKeys(t *testing.T, b sdk.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	err := b.List(testContext(t), prefix, func(info sdk.ObjectInfo) error {
		if !strings.HasPrefix(info.Key, prefix) {
			t.Errorf("List(%q) reported %q, outside the prefix", prefix, info.Key)
		}
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			t.Errorf("List(%q) reported %q twice", prefix, keys[i])
		}
	}
	return keys
}

func testList(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	if !caps.List {
		called := false
		err := b.List(ctx, "", func(sdk.ObjectInfo) error { called = true; return nil })
		if !errors.Is(err, sdk.ErrUnsupported) || called {
			t.Errorf("List without Capabilities.List = %v (fn called: %v), want an error wrapping sdk.ErrUnsupported", err, called)
		}
		return
	}
	if keys := listKeys(t, b, ""); len(keys) != 0 {
		t.Errorf("List of a new backend = %q, want nothing", keys)
	}
	sizes := map[string]int{
		"list/a":                 1,
		"list/b/c":               2,
		"list/b/d.json":          3,
		"list/bb":                4,
		"listx":                  5,
		"other/list/not-matched": 6,
	}
	for key, n := range sizes {
		mustPut(t, b, key, bytes.Repeat([]byte{'x'}, n))
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"list/a", "list/b/c", "list/b/d.json", "list/bb", "listx", "other/list/not-matched"}},
		{"list", []string{"list/a", "list/b/c", "list/b/d.json", "list/bb", "listx"}},
		{"list/", []string{"list/a", "list/b/c", "list/b/d.json", "list/bb"}},
		{"list/b", []string{"list/b/c", "list/b/d.json", "list/bb"}},
		{"list/b/", []string{"list/b/c", "list/b/d.json"}},
		{"list/b/d", []string{"list/b/d.json"}},
		{"list/b/d.json", []string{"list/b/d.json"}},
		{"nothing/", nil},
		{"lis/", nil},
	}
	for _, tt := range tests {
		if got := listKeys(t, b, tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
	err := b.List(ctx, "list/", func(info sdk.ObjectInfo) error {
		if want := int64(sizes[info.Key]); info.Size != want {
			t.Errorf("List entry %q has size %d, want %d", info.Key, info.Size, want)
		}
		st, err := b.Stat(ctx, info.Key)
		if err != nil {
			return err
		}
		if st.ETag != info.ETag {
			t.Errorf("List entry %q has ETag %q, Stat says %q", info.Key, info.ETag, st.ETag)
		}
		return nil
	})
	if err != nil {
		t.Errorf("List with Stat inside: %v", err)
	}

	stop := errors.New("stop here")
	calls := 0
	err = b.List(ctx, "", func(sdk.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List whose fn fails = %v after %d calls, want fn's error after 1 call", err, calls)
	}
}

func testDelete(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	mustPut(t, b, "del/a", []byte("a"))
	mustPut(t, b, "del/b", []byte("b"))
	if !caps.Delete {
		if err := b.Delete(ctx, "del/a"); !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("Delete without Capabilities.Delete = %v, want an error wrapping sdk.ErrUnsupported", err)
		}
		wantContent(t, b, "del/a", []byte("a"), "")
		return
	}
	if err := b.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("Delete(del/a): %v", err)
	}
	wantMissing(t, b, "del/a")
	wantContent(t, b, "del/b", []byte("b"), "")
	if err := b.Delete(ctx, "del/a"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("second Delete(del/a) = %v, want an error wrapping sdk.ErrNotFound", err)
	}
	if err := b.Delete(ctx, "del/never"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Delete of a key never stored = %v, want an error wrapping sdk.ErrNotFound", err)
	}
	if err := b.Delete(ctx, "del"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Delete of a key prefix that holds objects = %v, want an error wrapping sdk.ErrNotFound", err)
	}
	wantContent(t, b, "del/b", []byte("b"), "")
	if caps.List {
		if keys := listKeys(t, b, "del/"); !slices.Equal(keys, []string{"del/b"}) {
			t.Errorf("List(del/) after Delete = %q, want [del/b]", keys)
		}
	}
	// The key is free again.
	mustPut(t, b, "del/a", []byte("again"))
	wantContent(t, b, "del/a", []byte("again"), "")
}

type lockResult struct {
	unlock func() error
	err    error
}

func lockAsync(ctx context.Context, b sdk.Backend, name string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		u, err := b.Lock(ctx, name)
		ch <- lockResult{u, err}
	}()
	return ch
}

func testLock(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	if !caps.Lock {
		unlock, err := b.Lock(ctx, "writer")
		if !errors.Is(err, sdk.ErrUnsupported) {
			if unlock != nil {
				unlock()
			}
			t.Errorf("Lock without Capabilities.Lock = %v, want an error wrapping sdk.ErrUnsupported", err)
		}
		return
	}
	unlock, err := b.Lock(ctx, "writer")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	second := lockAsync(ctx, b, "writer")
	select {
	case r := <-second:
		if r.unlock != nil {
			r.unlock()
		}
		t.Fatalf("second Lock returned (%v) while the first was held", r.err)
	case <-time.After(stillBlocked):
	}

	// Waiters give up when their context does, with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := lockAsync(cctx, b, "writer")
	time.Sleep(stillBlocked / 4)
	cancel()
	wantLockErr(t, cancelled, context.Canceled)
	dctx, cancel := context.WithTimeout(ctx, stillBlocked/4)
	defer cancel()
	wantLockErr(t, lockAsync(dctx, b, "writer"), context.DeadlineExceeded)

	if err := unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	select {
	case r := <-second:
		if r.err != nil {
			t.Fatalf("second Lock after unlock: %v", r.err)
		}
		if err := r.unlock(); err != nil {
			t.Fatalf("second unlock: %v", err)
		}
	case <-time.After(slowReturn):
		t.Fatal("second Lock still waiting after the first was released")
	}
	// Neither the given-up waiters nor the releases left the lock taken.
	third, err := b.Lock(ctx, "writer")
	if err != nil {
		t.Fatalf("Lock after every holder released: %v", err)
	}
	if err := third(); err != nil {
		t.Fatalf("third unlock: %v", err)
	}
}

func wantLockErr(t *testing.T, ch <-chan lockResult, want error) {
	t.Helper()
	select {
	case r := <-ch:
		if r.unlock != nil {
			r.unlock()
		}
		if !errors.Is(r.err, want) {
			t.Errorf("Lock whose context ended while the lock was held = %v, want an error wrapping %v", r.err, want)
		}
	case <-time.After(slowReturn):
		t.Fatalf("Lock still waiting %v after its context ended", slowReturn)
	}
}

// stallingReader returns head, then blocks until ctx is done and then ends
// as tail says: with an error (a source tied to the context, such as an
// HTTP body) or with a clean io.EOF (a source that knows nothing of it).
type stallingReader struct {
	ctx     context.Context
	head    []byte
	stalled chan struct{}
	once    sync.Once
	tail    error
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	r.once.Do(func() { close(r.stalled) })
	<-r.ctx.Done()
	return 0, r.tail
}

func testCancelPut(t *testing.T, b sdk.Backend, _ sdk.Capabilities) {
	tests := []struct {
		name string
		tail error
	}{
		{"source fails", context.Canceled},
		{"source ends", io.EOF},
	}
	for i, tt := range tests {
		for _, existing := range []bool{false, true} {
			name := tt.name + " on a new key"
			if existing {
				name = tt.name + " over an object"
			}
			t.Run(name, func(t *testing.T) {
				key := fmt.Sprintf("cancel/put-%d-%v", i, existing)
				var old sdk.ObjectInfo
				if existing {
					old = mustPut(t, b, key, []byte("previous content"))
				}
				ctx, cancel := context.WithCancel(testContext(t))
				defer cancel()
				r := &stallingReader{ctx: ctx, head: bytes.Repeat([]byte{'p'}, 256<<10), stalled: make(chan struct{}), tail: tt.tail}
				done := make(chan error, 1)
				go func() {
					_, err := b.Put(ctx, key, r, sdk.PutOptions{})
					done <- err
				}()
				select {
				case <-r.stalled:
				case err := <-done:
					t.Fatalf("Put returned (%v) before its source ended", err)
				case <-time.After(slowReturn):
					t.Fatal("Put never read its source past the first bytes")
				}
				cancel()
				select {
				case err := <-done:
					if err == nil {
						t.Errorf("Put whose context was cancelled mid-stream succeeded")
					}
				case <-time.After(slowReturn):
					t.Fatalf("Put still running %v after its context was cancelled", slowReturn)
				}
				if existing {
					wantContent(t, b, key, []byte("previous content"), old.ETag)
				} else {
					wantMissing(t, b, key)
				}
			})
		}
	}
}

func testCancelGet(t *testing.T, b sdk.Backend, _ sdk.Capabilities) {
	const size = 4 << 20
	want, _, _ := digest(content(7, size))
	if _, err := b.Put(testContext(t), "cancel/get", content(7, size), sdk.PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}

	t.Run("cancelled before the call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testContext(t))
		cancel()
		rc, _, err := b.Get(ctx, "cancel/get")
		if rc != nil {
			rc.Close()
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Get with a cancelled context = %v, want an error wrapping context.Canceled", err)
		}
	})

	t.Run("cancelled mid-stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		rc, _, err := b.Get(ctx, "cancel/get")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, rc, 1<<20); err != nil {
			t.Fatalf("read the first MiB: %v", err)
		}
		cancel()
		// The reader may stop with an error or, if it is not bound to the
		// context, deliver the rest; it may neither hang nor corrupt.
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(h, rc)
			done <- err
		}()
		select {
		case err := <-done:
			if got := hex.EncodeToString(h.Sum(nil)); err == nil && got != want {
				t.Errorf("Get reader after cancel ended cleanly with sha256 %s, want %s or an error", got, want)
			}
		case <-time.After(slowReturn):
			t.Fatalf("Get reader still blocked %v after its context was cancelled", slowReturn)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close after cancel: %v", err)
		}
	})
}

func testConcurrentPuts(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	const writers = 8
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("concurrent/%d.tar.gz", i)
			_, errs[i] = b.Put(ctx, key, content(uint64(100+i), 64<<10+int64(i)), sdk.PutOptions{})
		})
	}
	wg.Wait()
	var want []string
	for i, err := range errs {
		key := fmt.Sprintf("concurrent/%d.tar.gz", i)
		want = append(want, key)
		if err != nil {
			t.Errorf("concurrent Put(%q): %v", key, err)
			continue
		}
		data, _ := io.ReadAll(content(uint64(100+i), 64<<10+int64(i)))
		wantContent(t, b, key, data, "")
	}
	if caps.List {
		if got := listKeys(t, b, "concurrent/"); !slices.Equal(got, want) {
			t.Errorf("List after concurrent Puts = %q, want %q", got, want)
		}
	}
}

func testConcurrentIfMatch(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	if !caps.ConditionalPut {
		t.Skip("Capabilities.ConditionalPut is off")
	}
	const writers, rounds = 8, 4
	ctx := testContext(t)
	cur := mustPut(t, b, "cas/contended", []byte("round 0"))
	for round := 1; round <= rounds; round++ {
		var wg sync.WaitGroup
		infos := make([]sdk.ObjectInfo, writers)
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				data := fmt.Sprintf("round %d writer %d", round, i)
				infos[i], errs[i] = b.Put(ctx, "cas/contended", strings.NewReader(data), sdk.PutOptions{IfMatch: cur.ETag})
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won a compare-and-swap on ETag %q", round, winner, i, cur.ETag)
			case err == nil:
				winner = i
			case !errors.Is(err, sdk.ErrConflict):
				t.Errorf("round %d: losing writer %d got %v, want an error wrapping sdk.ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won the compare-and-swap on ETag %q", round, cur.ETag)
		}
		wantContent(t, b, "cas/contended", fmt.Appendf(nil, "round %d writer %d", round, winner), infos[winner].ETag)
		cur = infos[winner]
	}
}

// writeTemp writes data to a new file in a test directory.
func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func testLocalFiler(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	lf, ok := b.(sdk.LocalFiler)
	if !caps.LocalFiles {
		if !ok {
			t.Skip("Capabilities.LocalFiles is off")
		}
		// A client that always has the methods (as a plugin client does)
		// must refuse them when the backend disclaims them.
		mustPut(t, b, "local", []byte("x"))
		if p, err := lf.LocalPath(ctx, "local"); !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("LocalPath without Capabilities.LocalFiles = %q, %v; want an error wrapping sdk.ErrUnsupported", p, err)
		}
		return
	}
	if !ok {
		t.Fatalf("Capabilities.LocalFiles is set but %T does not implement sdk.LocalFiler", b)
	}
	data := []byte("stored through Put")
	mustPut(t, b, "local/put.json", data)
	p, err := lf.LocalPath(ctx, "local/put.json")
	if err != nil {
		t.Fatalf("LocalPath of a stored key: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Errorf("reading LocalPath %s = %q, %v; want %q", p, got, err, data)
	}
	if p, err := lf.LocalPath(ctx, "local/missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("LocalPath of a missing key = %q, %v; want an error wrapping sdk.ErrNotFound", p, err)
	}

	src := writeTemp(t, []byte("stored through PutFile"))
	info, err := lf.PutFile(ctx, "local/file.json", src, sdk.PutOptions{Size: 22, SizeKnown: true, SHA256: sha([]byte("stored through PutFile"))})
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	if info.Key != "local/file.json" || info.Size != 22 {
		t.Errorf("PutFile info = %+v, want key local/file.json and size 22", info)
	}
	wantContent(t, b, "local/file.json", []byte("stored through PutFile"), info.ETag)

	tests := []struct {
		name string
		opts sdk.PutOptions
	}{
		{"wrong sha256", sdk.PutOptions{SHA256: sha([]byte("something else"))}},
		{"wrong size", sdk.PutOptions{Size: 21, SizeKnown: true}},
	}
	for _, tt := range tests {
		if info, err := lf.PutFile(ctx, "local/fresh", src, tt.opts); !errors.Is(err, sdk.ErrIntegrity) {
			t.Errorf("PutFile with %s = %+v, %v; want an error wrapping sdk.ErrIntegrity", tt.name, info, err)
		}
		wantMissing(t, b, "local/fresh")
		if info, err := lf.PutFile(ctx, "local/put.json", src, tt.opts); !errors.Is(err, sdk.ErrIntegrity) {
			t.Errorf("PutFile over an object with %s = %+v, %v; want an error wrapping sdk.ErrIntegrity", tt.name, info, err)
		}
		wantContent(t, b, "local/put.json", data, "")
	}
}

// testStage checks sdk.Stager and PutOptions.Staged: staged content is
// invisible until a Staged Put stores it under a key, a Staged Put of
// content never staged stores nothing and says sdk.ErrNotFound (the
// caller's cue to Put the bytes), and Stage checks its options as Put does.
func testStage(t *testing.T, b sdk.Backend, caps sdk.Capabilities) {
	ctx := testContext(t)
	st, ok := b.(sdk.Stager)
	if !caps.Stage {
		if !ok {
			t.Skip("Capabilities.Stage is off")
		}
		// A client that always has the method (as a plugin client does)
		// must refuse it when the backend disclaims it.
		if sum, err := st.Stage(ctx, strings.NewReader("x"), sdk.PutOptions{}); !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("Stage without Capabilities.Stage = %q, %v; want an error wrapping sdk.ErrUnsupported", sum, err)
		}
		return
	}
	if !ok {
		t.Fatalf("Capabilities.Stage is set but %T does not implement sdk.Stager", b)
	}
	// Past two protocol chunks, so the stream is really streamed.
	const size = 2<<20 + 5
	want, _, _ := digest(content(7, size))
	sum, err := st.Stage(ctx, content(7, size), sdk.PutOptions{Size: size, SizeKnown: true, SHA256: want})
	if err != nil {
		t.Fatalf("Stage(%d bytes) with their size and sha256: %v", size, err)
	}
	if sum != want {
		t.Fatalf("Stage returned sha256 %q, want %s", sum, want)
	}
	small := []byte("staged without options")
	if sum, err := st.Stage(ctx, bytes.NewReader(small), sdk.PutOptions{}); err != nil || sum != sha(small) {
		t.Fatalf("Stage(%q) without options = %q, %v; want %s", small, sum, err, sha(small))
	}

	// Nothing staged is visible under any key.
	wantMissing(t, b, "staged/big.tar.gz")
	if caps.List {
		if keys := listKeys(t, b, ""); len(keys) != 0 {
			t.Errorf("List after Stage = %q, want nothing: staged content must stay invisible", keys)
		}
	}
	if rc, _, err := b.Get(ctx, "staged/big.tar.gz"); !errors.Is(err, sdk.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Get of a key only staged: %v; want an error wrapping sdk.ErrNotFound", err)
	}

	staged := sdk.PutOptions{Staged: true, Size: size, SizeKnown: true, SHA256: want, IfNoneMatch: true}
	// The reader must not be read: it fails if it is.
	info, err := b.Put(ctx, "staged/big.tar.gz", unreadableSource{}, staged)
	if err != nil {
		t.Fatalf("Put with Staged of staged content: %v", err)
	}
	if info.Key != "staged/big.tar.gz" || info.Size != size {
		t.Errorf("Put with Staged info = %+v, want key staged/big.tar.gz and size %d", info, size)
	}
	rc, got, err := b.Get(ctx, "staged/big.tar.gz")
	if err != nil {
		t.Fatalf("Get after a Staged Put: %v", err)
	}
	sumGot, n, err := digest(rc)
	rc.Close()
	if err != nil || n != size || sumGot != want || got.Size != size {
		t.Errorf("Get after a Staged Put read %d bytes with sha256 %s (info %+v, %v), want %d with %s", n, sumGot, got, err, size, want)
	}
	// The other options keep their meaning.
	if _, err := b.Put(ctx, "staged/big.tar.gz", unreadableSource{}, staged); !errors.Is(err, sdk.ErrExist) {
		t.Errorf("create-only Put with Staged over an existing key: %v; want an error wrapping sdk.ErrExist", err)
	}
	// Staged content may be stored under more than one key.
	smallOpts := sdk.PutOptions{Staged: true, Size: int64(len(small)), SizeKnown: true, SHA256: sha(small)}
	if info, err := b.Put(ctx, "staged/small.json", unreadableSource{}, smallOpts); err != nil {
		t.Errorf("Put with Staged of content staged without options: %v", err)
	} else {
		wantContent(t, b, "staged/small.json", small, info.ETag)
	}

	t.Run("not staged", func(t *testing.T) {
		ctx := testContext(t)
		never := []byte("never staged")
		opts := sdk.PutOptions{Staged: true, Size: int64(len(never)), SizeKnown: true, SHA256: sha(never)}
		if info, err := b.Put(ctx, "staged/never", bytes.NewReader(never), opts); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Put with Staged of content never staged = %+v, %v; want an error wrapping sdk.ErrNotFound", info, err)
		}
		wantMissing(t, b, "staged/never")
		opts = sdk.PutOptions{Staged: true, Size: size + 1, SizeKnown: true, SHA256: want}
		if info, err := b.Put(ctx, "staged/wrong-size", unreadableSource{}, opts); !errors.Is(err, sdk.ErrIntegrity) {
			t.Errorf("Put with Staged and a size other than the staged content's = %+v, %v; want an error wrapping sdk.ErrIntegrity", info, err)
		}
		wantMissing(t, b, "staged/wrong-size")
		opts = sdk.PutOptions{Staged: true}
		if info, err := b.Put(ctx, "staged/no-sha", unreadableSource{}, opts); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Put with Staged and no SHA256 = %+v, %v; want an error wrapping fs.ErrInvalid", info, err)
		}
		wantMissing(t, b, "staged/no-sha")
	})

	t.Run("integrity", func(t *testing.T) {
		hello := []byte("hello, staged")
		tests := []struct {
			name string
			opts sdk.PutOptions
		}{
			{"short of the size", sdk.PutOptions{Size: int64(len(hello)) + 1, SizeKnown: true}},
			{"past the size", sdk.PutOptions{Size: int64(len(hello)) - 1, SizeKnown: true}},
			{"wrong sha256", sdk.PutOptions{SHA256: sha([]byte("hello, STAGED"))}},
		}
		for _, tt := range tests {
			ctx := testContext(t)
			if sum, err := st.Stage(ctx, bytes.NewReader(hello), tt.opts); !errors.Is(err, sdk.ErrIntegrity) {
				t.Errorf("Stage with %s = %q, %v; want an error wrapping sdk.ErrIntegrity", tt.name, sum, err)
			}
			// Nothing was kept: a Staged Put of those bytes finds none.
			opts := sdk.PutOptions{Staged: true, Size: int64(len(hello)), SizeKnown: true, SHA256: sha(hello)}
			if info, err := b.Put(ctx, "staged/refused", unreadableSource{}, opts); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("Put with Staged after a Stage with %s failed = %+v, %v; want an error wrapping sdk.ErrNotFound: the refused content was kept", tt.name, info, err)
			}
			wantMissing(t, b, "staged/refused")
		}
		for _, opts := range []sdk.PutOptions{{IfMatch: "x"}, {IfNoneMatch: true}, {Staged: true}} {
			if sum, err := st.Stage(ctx, bytes.NewReader(hello), opts); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Stage with %+v = %q, %v; want an error wrapping fs.ErrInvalid", opts, sum, err)
			}
		}
	})
}

// unreadableSource fails every read: the source of a Put that must not
// read it.
type unreadableSource struct{}

func (unreadableSource) Read([]byte) (int, error) {
	return 0, errors.New("a Put with Staged read its source")
}
