package ocibackend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk"
)

// tagPattern is the distribution spec's tag grammar.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func TestTagForKey(t *testing.T) {
	long := strings.Repeat("a/", 60) + "x.json" // 126 bytes, 60 slashes
	sum := sha256.Sum256([]byte(long))
	tests := []struct {
		key, tag string
	}{
		{"timestamp.json", "timestamp.json"},
		{"root.json", "root.json"},
		{"1.root.json", "1.root.json"},
		{"12.index.json", "12.index.json"},
		{"snapshot.json", "snapshot.json"},
		{"3.tidb-lightning.json", "3.tidb-lightning.json"},
		{"hello-v1.0.0-linux-amd64.tar.gz", "hello-v1.0.0-linux-amd64.tar.gz"},
		{"hello-v1.0.0+build.1-linux-amd64.tar.gz", "hello-v1.0.0_2bbuild.1-linux-amd64.tar.gz"},
		{"Hello_World.json", "Hello_5fWorld.json"},
		{"a/b/c.json", "a_2fb_2fc.json"},
		{".hidden", "_2ehidden"},
		{"-dash", "_2ddash"},
		{"a.", "a."},
		{"_2f", "_5f2f"},
		{"ü.json", "_c3_bc.json"},
		{"with space", "with_20space"},
		{strings.Repeat("x", 128), strings.Repeat("x", 128)},
		{strings.Repeat("x", 129), "_k" + hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte(strings.Repeat("x", 129))); return s[:] }())},
		{long, "_k" + hex.EncodeToString(sum[:])},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := ocibackend.TagForKey(tt.key)
		if got != tt.tag {
			t.Errorf("TagForKey(%q) = %q, want %q", tt.key, got, tt.tag)
		}
		if !tagPattern.MatchString(got) {
			t.Errorf("TagForKey(%q) = %q, not a valid tag", tt.key, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("keys %q and %q share tag %q", other, tt.key, got)
		}
		seen[got] = tt.key
		key, ok := ocibackend.KeyForTag(got)
		hashed := strings.HasPrefix(got, "_k")
		if hashed == ok || !hashed && key != tt.key {
			t.Errorf("KeyForTag(%q) = %q, %v; want %q, %v", got, key, ok, tt.key, !hashed)
		}
	}
}

func TestKeyForTagRefusesForeignTags(t *testing.T) {
	for _, tag := range []string{
		"latest", // a valid key: decodes, and List then finds no mirror file behind it
	} {
		if _, ok := ocibackend.KeyForTag(tag); !ok {
			t.Errorf("KeyForTag(%q) refused a tag that spells a valid key", tag)
		}
	}
	for _, tag := range []string{
		"_lease-write",  // the lease
		"a_2Fb",         // uppercase escape: not the canonical spelling
		"a_2",           // truncated escape
		"a_zz",          // not hex
		"a_2eb",         // escapes a byte that needs none
		"keys_2fx.json", // a key under keys/
		"_k1234",        // a hashed tag of the wrong length
		"_2e_2e",        // "..", not a valid key
	} {
		if key, ok := ocibackend.KeyForTag(tag); ok {
			t.Errorf("KeyForTag(%q) = %q, want it refused", tag, key)
		}
	}
}

// FuzzTagForKey checks on any key: the tag is valid, escaped tags decode
// back to the key, and the tag of a different key differs.
func FuzzTagForKey(f *testing.F) {
	for _, k := range []string{"timestamp.json", "a/b", "_x", ".x", "ü", strings.Repeat("z/", 70)} {
		f.Add(k, k+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !fs.ValidPath(a) || a == "." || !utf8.ValidString(a) {
			return
		}
		tag := ocibackend.TagForKey(a)
		if !tagPattern.MatchString(tag) {
			t.Fatalf("TagForKey(%q) = %q, not a valid tag", a, tag)
		}
		if key, ok := ocibackend.KeyForTag(tag); ok && key != a {
			t.Fatalf("KeyForTag(TagForKey(%q)) = %q", a, key)
		} else if !ok && !strings.HasPrefix(tag, "_k") && !strings.HasPrefix(a, "keys/") {
			t.Fatalf("KeyForTag(TagForKey(%q) = %q) refused", a, tag)
		}
		if a != b && ocibackend.TagForKey(b) == tag {
			t.Fatalf("keys %q and %q share tag %q", a, b, tag)
		}
	})
}

// TestLayout stores files through the backend and reads them back with
// plain go-containerregistry calls, as crane or oras users would: the tag is
// the documented one, the manifest an OCI 1.1 artifact with the empty
// config, and the layer's blob the exact file, titled with its name.
func TestLayout(t *testing.T) {
	t.Run("in-memory registry", func(t *testing.T) { testLayout(t, memRegistry(t, nil)) })
	t.Run("docker-registry", func(t *testing.T) { testLayout(t, realRegistry(t).Host()) })
}

func testLayout(t *testing.T, host string) {
	ctx := context.Background()
	repo := freshRepo("layout")
	b := openBackend(t, address(host, repo), nil)
	files := map[string][]byte{
		"timestamp.json":                  []byte(`{"signed":{"_type":"timestamp"}}`),
		"hello-v1.0.0-linux-amd64.tar.gz": bytes.Repeat([]byte("tarball bytes "), 100000),
		"a/nested/file.txt":               []byte("nested\n"),
	}
	infos := map[string]sdk.ObjectInfo{}
	for key, data := range files {
		info, err := b.Put(ctx, key, bytes.NewReader(data), sdk.PutOptions{})
		if err != nil {
			t.Fatalf("Put(%s): %v", key, err)
		}
		infos[key] = info
	}
	for key, data := range files {
		ref, err := name.ParseReference(host+"/"+repo+":"+ocibackend.TagForKey(key), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := crane.Manifest(ref.String(), crane.Insecure)
		if err != nil {
			t.Fatalf("crane manifest %s: %v", ref, err)
		}
		if digest := "sha256:" + hexSum(raw); digest != infos[key].ETag {
			t.Errorf("%s: manifest digest %s, ETag %s", key, digest, infos[key].ETag)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("remote.Get %s: %v", ref, err)
		}
		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %s", key, desc.MediaType)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != ocibackend.FileArtifactType {
			t.Errorf("%s: artifactType %q, want %q", key, m.ArtifactType, ocibackend.FileArtifactType)
		}
		if m.Config.MediaType != types.OCIEmptyJSON || m.Config.Size != 2 {
			t.Errorf("%s: config %+v, want the empty descriptor", key, m.Config)
		}
		cfg, err := img.RawConfigFile()
		if err != nil || string(cfg) != "{}" {
			t.Errorf("%s: config blob %q, %v; want {}", key, cfg, err)
		}
		if m.Annotations[ocibackend.AnnotationKey] != key {
			t.Errorf("%s: key annotation %q", key, m.Annotations[ocibackend.AnnotationKey])
		}
		if len(m.Layers) != 1 {
			t.Fatalf("%s: %d layers, want 1", key, len(m.Layers))
		}
		l := m.Layers[0]
		if title := l.Annotations["org.opencontainers.image.title"]; title != key[strings.LastIndex(key, "/")+1:] {
			t.Errorf("%s: title %q", key, title)
		}
		if l.Size != int64(len(data)) || l.Digest.Hex != hexSum(data) {
			t.Errorf("%s: layer %+v, want size %d and sha256 %s", key, l, len(data), hexSum(data))
		}
		// crane blob REPO@DIGEST, as a user fetching the file would.
		layer, err := crane.PullLayer(host+"/"+repo+"@"+l.Digest.String(), crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: blob %d bytes, %v; want the file's %d bytes", key, len(got), err, len(data))
		}
	}
	// The tag list is the index List reads: one tag per key, and nothing
	// else but the backend's own.
	tags, err := crane.ListTags(host+"/"+repo, crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for key := range files {
		want = append(want, ocibackend.TagForKey(key))
	}
	slices.Sort(want)
	slices.Sort(tags)
	if !slices.Equal(tags, want) {
		t.Errorf("tags %q, want %q", tags, want)
	}
}

// TestForeignTags: an image pushed into the mirror's repository by someone
// else is neither listed nor read as a mirror file.
func TestForeignTags(t *testing.T) {
	ctx := context.Background()
	host := memRegistry(t, nil)
	repo := freshRepo("foreign")
	b := openBackend(t, address(host, repo), nil)
	if _, err := b.Put(ctx, "timestamp.json", strings.NewReader("{}"), sdk.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"latest", "snapshot.json", "_kzz"} {
		if err := crane.Push(img, host+"/"+repo+":"+tag, crane.Insecure); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := b.List(ctx, "", func(o sdk.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"timestamp.json"}) {
		t.Errorf("List = %q, want only timestamp.json", keys)
	}
	for _, key := range []string{"latest", "snapshot.json"} {
		if _, err := b.Stat(ctx, key); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Stat(%s) over a foreign image = %v, want ErrNotFound", key, err)
		}
	}
}

// TestHashedKeys: keys too long for a tag go through the hashed tag and come
// back in List by their manifest's annotation.
func TestHashedKeys(t *testing.T) {
	ctx := context.Background()
	b := openBackend(t, address(memRegistry(t, nil), freshRepo("hashed")), nil)
	long := strings.Repeat("deep/", 30) + "file.json"
	other := strings.Repeat("deep/", 30) + "other.json"
	for _, k := range []string{long, other, "short.json"} {
		if _, err := b.Put(ctx, k, strings.NewReader(k), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := b.List(ctx, "deep/", func(o sdk.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{long, other}; !slices.Equal(keys, want) {
		t.Errorf("List(deep/) = %q, want %q", keys, want)
	}
	rc, info, err := b.Get(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != long || info.Key != long {
		t.Errorf("Get = %q (%+v)", got, info)
	}
	if err := b.Delete(ctx, long); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, long); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat after Delete = %v", err)
	}
}

// TestPrivateKeysRefused: nothing under keys/ is read or written.
func TestPrivateKeysRefused(t *testing.T) {
	ctx := context.Background()
	b := openBackend(t, address(memRegistry(t, nil), freshRepo("keys")), nil)
	key := "keys/0123456789abcdef-root.json"
	if _, err := b.Put(ctx, key, strings.NewReader("secret"), sdk.PutOptions{}); !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "private keys") {
		t.Errorf("Put(%s) = %v, want fs.ErrInvalid naming private keys", key, err)
	}
	if _, err := b.Stat(ctx, key); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Stat(%s) = %v, want fs.ErrInvalid", key, err)
	}
	if _, _, err := b.Get(ctx, key); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Get(%s) = %v, want fs.ErrInvalid", key, err)
	}
	if err := b.Delete(ctx, key); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Delete(%s) = %v, want fs.ErrInvalid", key, err)
	}
	// A file merely named "keys" is an ordinary key.
	if _, err := b.Put(ctx, "keys", strings.NewReader("x"), sdk.PutOptions{}); err != nil {
		t.Errorf("Put(keys): %v", err)
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
