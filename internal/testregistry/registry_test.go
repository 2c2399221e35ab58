package testregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func ref(t *testing.T, r *Registry, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// layerBytes reads an image's only layer, compressed, as the registry
// stores it.
func layerBytes(t *testing.T, img v1.Image) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPushPull: an image pushed with go-containerregistry comes back
// byte-identical; the catalog and the tag list show what was pushed.
func TestPushPull(t *testing.T) {
	r := Start(t)
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := ref(t, r, "ns/a:v1")
	if err := remote.Write(a, img); err != nil {
		t.Fatalf("push: %v\n%s", err, r.Log())
	}
	got, err := remote.Image(a)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := img.Digest()
	if d, _ := got.Digest(); d != wantDigest {
		t.Fatalf("pulled digest %s, want %s", d, wantDigest)
	}
	if !bytes.Equal(layerBytes(t, got), layerBytes(t, img)) {
		t.Fatal("the pulled layer differs from the pushed one")
	}

	b := ref(t, r, "ns/b:v1")
	if err := remote.Write(b, img); err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), a.Context().Registry)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(repos, []string{"ns/a", "ns/b"}) {
		t.Errorf("catalog %v, want [ns/a ns/b]", repos)
	}
	tags, err := remote.List(a.Context())
	if err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags of ns/a: %v %v", tags, err)
	}
}

// TestArtifact: distribution 2.8 accepts an OCI 1.1 artifact manifest (the
// empty config, artifactType, a title annotation on a layer of any media
// type), which is how a mirror's files can be stored, serves it back by tag
// unchanged, and deletes it, since storage delete is enabled.
func TestArtifact(t *testing.T) {
	r := Start(t)
	repo := ref(t, r, "ns/m/meta:timestamp.json")
	payload := static.NewLayer([]byte(`{"signed":{"_type":"timestamp"}}`), "application/vnd.mirrorkit.manifest.v1+json")
	emptyConfig := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{payload, emptyConfig} {
		if err := remote.WriteLayer(repo.Context(), l); err != nil {
			t.Fatalf("upload blob: %v\n%s", err, r.Log())
		}
	}
	desc := func(l v1.Layer, ann map[string]string) v1.Descriptor {
		d, err := partial.Descriptor(l)
		if err != nil {
			t.Fatal(err)
		}
		d.Annotations = ann
		return *d
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  "application/vnd.mirrorkit.file.v1",
		Config:        desc(emptyConfig, nil),
		Layers:        []v1.Descriptor{desc(payload, map[string]string{"org.opencontainers.image.title": "timestamp.json"})},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo, rawManifest{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatalf("put artifact manifest: %v\n%s", err, r.Log())
	}
	got, err := remote.Get(repo)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Manifest, raw) || got.MediaType != types.OCIManifestSchema1 {
		t.Errorf("the registry changed the manifest: %s %s", got.MediaType, got.Manifest)
	}
	img, err := got.Image()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(layerBytes(t, img), []byte(`{"signed":{"_type":"timestamp"}}`)) {
		t.Error("the artifact's file came back changed")
	}

	if err := remote.Delete(repo.Context().Digest(got.Digest.String())); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := remote.Get(repo); !isStatus(err, http.StatusNotFound) {
		t.Errorf("get after delete: %v, want 404", err)
	}
}

// rawManifest is a manifest pushed byte for byte as written.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// TestRestart: a restarted registry keeps its port and its storage; while
// it is stopped, requests fail.
func TestRestart(t *testing.T) {
	r := Start(t)
	host := r.Host()
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag := ref(t, r, "ns/keep:v1")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if _, err := http.Get("http://" + host + "/v2/"); err == nil {
		t.Fatal("a stopped registry answers")
	}
	r.Stop() // a second Stop does nothing
	r.Start()
	r.Restart()
	if r.Host() != host {
		t.Fatalf("host changed across restarts: %s, then %s", host, r.Host())
	}
	got, err := remote.Image(tag)
	if err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Fatalf("digest after restart %s, want %s", d, want)
	}
}

// TestAuth: with htpasswd auth an anonymous push is refused with 401 and
// writes nothing; basic credentials, given directly or through a Docker
// config.json found by the default keychain, push and pull.
func TestAuth(t *testing.T) {
	r := Start(t, WithAuth("alice", "s3cret pass"))
	img, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag := ref(t, r, "ns/private:v1")
	if err := remote.Write(tag, img); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous push: %v, want 401", err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("push with a wrong password: %v, want 401", err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret pass"})); err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, r.Log())
	}

	dir := t.TempDir()
	if err := r.WriteDockerConfig(dir); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if _, err := remote.Image(tag, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		t.Fatalf("pull with the docker config: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := remote.Image(tag, remote.WithAuthFromKeychain(authn.DefaultKeychain)); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("pull with an empty docker config: %v, want 401", err)
	}
	if err := Start(t).WriteDockerConfig(dir); err == nil {
		t.Error("WriteDockerConfig of a registry without auth did not fail")
	}
}

// TestMissingBinary: without docker-registry, Start skips the test and
// names `make deps`; under MIRROR_REQUIRE_REGISTRY=1 it fails instead.
func TestMissingBinary(t *testing.T) {
	saved := binaryPath
	t.Cleanup(func() { binaryPath = saved })
	binaryPath = "/nonexistent/docker-registry"
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		require string
		want    string
	}{
		{"", "skip"},
		{"1", "fatal"},
	} {
		t.Setenv(RequireEnv, tc.require)
		ft := &fakeTB{TB: t}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			Start(ft)
			ft.ended = "returned"
		}()
		wg.Wait()
		if ft.ended != tc.want || !strings.Contains(ft.msg, "make deps") {
			t.Errorf("%s=%q: Start ended with %s %q, want %s naming make deps", RequireEnv, tc.require, ft.ended, ft.msg, tc.want)
		}
	}
}

// fakeTB records how Start ends a test instead of ending the real one.
type fakeTB struct {
	testing.TB
	ended, msg string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.ended, f.msg = "skip", fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.ended, f.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func isStatus(err error, code int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == code
}
