package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/server"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

var apiNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func apiClock() time.Time { return apiNow }

// ring is an in-process KeySource for tests.
type ring map[string]*keys.PrivateKey

func (k ring) Signer(_ context.Context, id string) (sdk.Signer, error) {
	if key, ok := k[id]; ok {
		return key.Signer(), nil
	}
	return nil, fmt.Errorf("key %s: %w", id[:16], publish.ErrMissingKey)
}

var (
	keyOnce sync.Once
	keyPool []*keys.PrivateKey
)

// apiKeys: 0-3 role keys (root, index, snapshot, timestamp), 4 alice, 5
// and 6 bob (threshold 2), 7 a stranger.
func apiKeys(t testing.TB) []*keys.PrivateKey {
	keyOnce.Do(func() {
		keyPool = make([]*keys.PrivateKey, 8)
		for i := range keyPool {
			k, err := keys.Generate()
			if err != nil {
				panic(err)
			}
			keyPool[i] = k
		}
	})
	return keyPool
}

type apiFixture struct {
	dir     string
	uploads string
	url     string
	keys    []*keys.PrivateKey
	writer  *publish.Writer
}

const maxUpload = 4096

// newAPIFixture is a mirror on the fs backend with owners alice and bob,
// served with the write API, with hello v1.0.0 published through it.
func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	dir := t.TempDir()
	f := newAPIFixtureOn(t, fsbackend.New(dir))
	f.dir = dir
	return f
}

// newAPIFixtureOn is newAPIFixture over the backend b.
func newAPIFixtureOn(t *testing.T, b sdk.Backend) *apiFixture {
	t.Helper()
	k := apiKeys(t)
	f := &apiFixture{uploads: t.TempDir(), keys: k}
	rk := ring{}
	for _, key := range k[:4] {
		rk[key.ID()] = key
	}
	ctx := context.Background()
	roles := map[string][]sdk.Signer{
		manifest.RoleRoot: {k[0].Signer()}, manifest.RoleIndex: {k[1].Signer()},
		manifest.RoleSnapshot: {k[2].Signer()}, manifest.RoleTimestamp: {k[3].Signer()},
	}
	if err := publish.Init(ctx, b, roles, apiNow); err != nil {
		t.Fatal(err)
	}
	f.writer = &publish.Writer{Backend: b, Keys: rk, Clock: apiClock}
	err := f.writer.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		tx.Index.Owners["alice"] = manifest.Owner{Name: "Alice", Threshold: 1,
			Keys: map[string]*manifest.KeyInfo{k[4].ID(): k[4].Public().KeyInfo()}}
		tx.Index.Owners["bob"] = manifest.Owner{Name: "Bob", Threshold: 2,
			Keys: map[string]*manifest.KeyInfo{k[5].ID(): k[5].Public().KeyInfo(), k[6].ID(): k[6].Public().KeyInfo()}}
		tx.IndexChanged()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, b, server.Options{Clock: apiClock, API: &server.APIOptions{
		Writer: f.writer, UploadDir: f.uploads, MaxUpload: maxUpload, RequestTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	f.url = hs.URL

	data := tarballBytes("hello v1.0.0")
	name := "hello-v1.0.0-linux-amd64.tar.gz"
	if code, body := f.upload(t, "s1", name, data); code != http.StatusNoContent {
		t.Fatalf("upload: %d %s", code, body)
	}
	c := newComponent("hello", 1, item(name, data))
	if code, body := f.postComponent(t, "s1", "hello", "", sign(t, c, k[4])); code != http.StatusNoContent {
		t.Fatalf("publish hello: %d %s", code, body)
	}
	return f
}

// tarballBytes stands in for a tarball: the server checks names, lengths
// and hashes, never contents.
func tarballBytes(s string) []byte { return []byte(strings.Repeat(s+"\n", 20)) }

func item(name string, data []byte) manifest.VersionItem {
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	return manifest.VersionItem{URL: "/" + name, Entry: "bin/x", Released: manifest.FormatTime(apiNow), Length: uint64(len(data)),
		Hashes: map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])}}
}

// newComponent is component id at version n with items for linux/amd64
// under versions v1.0.0, v1.0.1, ... in the order given.
func newComponent(id string, n uint64, items ...manifest.VersionItem) *manifest.Component {
	c := manifest.NewComponent(id, "test", apiNow)
	c.Version = n
	c.Platforms["linux/amd64"] = map[string]manifest.VersionItem{}
	for i, it := range items {
		c.Platforms["linux/amd64"][fmt.Sprintf("v1.0.%d", i)] = it
	}
	return c
}

func sign(t *testing.T, c *manifest.Component, signers ...*keys.PrivateKey) []byte {
	t.Helper()
	env, err := manifest.NewEnvelope(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range signers {
		if err := publish.SignWith(context.Background(), env, k.Signer()); err != nil {
			t.Fatal(err)
		}
	}
	b, err := env.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func multipartBody(t *testing.T, field, name string, data []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreateFormFile(field, name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

func (f *apiFixture) post(t *testing.T, path, ctype string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(f.url+path, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *apiFixture) upload(t *testing.T, sid, name string, data []byte) (int, string) {
	t.Helper()
	body, ctype := multipartBody(t, "file", name, data)
	return f.post(t, "/api/v1/tarball/"+sid, ctype, body)
}

func (f *apiFixture) postComponent(t *testing.T, sid, name, query string, env []byte) (int, string) {
	t.Helper()
	return f.post(t, "/api/v1/component/"+sid+"/"+name+query, "text/json", env)
}

// digest sums every file of the mirror, so a refused request can be shown
// to have changed nothing.
func digest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(b)
		lines = append(lines, rel+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// uploadFiles lists the regular files under dir.
func uploadFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// index reads the mirror's current index.
func (f *apiFixture) index(t *testing.T) *manifest.Index {
	t.Helper()
	var ix manifest.Index
	stop := errors.New("read only")
	err := f.writer.Update(context.Background(), func(ctx context.Context, tx *publish.Txn) error {
		ix = *tx.Index
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	return &ix
}

// truncatedUpload sends a multipart upload whose body is shorter than its
// Content-Length, then ends the connection's sending side.
func (f *apiFixture) truncatedUpload(t *testing.T, sid, name string, data []byte) int {
	t.Helper()
	body, ctype := multipartBody(t, "file", name, data)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/tarball/%s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", sid, ctype, len(body)+500)
	conn.Write(body[:len(body)/2])
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAPIRefusals(t *testing.T) {
	f := newAPIFixture(t)
	k := f.keys
	hello1 := "hello-v1.0.0-linux-amd64.tar.gz"
	data1 := tarballBytes("hello v1.0.0")
	hello2 := "hello-v1.0.1-linux-amd64.tar.gz"
	data2 := tarballBytes("hello v1.0.1")
	v2 := newComponent("hello", 2, item(hello1, data1), item(hello2, data2))

	badSig := func(t *testing.T) []byte {
		// alice's key ID over a stranger's signature.
		env, _ := manifest.NewEnvelope(v2)
		sig, err := k[7].Signer().Sign(context.Background(), env.Signed)
		if err != nil {
			t.Fatal(err)
		}
		env.AddSignature(k[4].ID(), sig)
		b, _ := env.Bytes()
		return b
	}
	wrongSum := item(hello2, data2)
	wrongSum.Hashes["sha256"] = strings.Repeat("0", 64)

	tests := []struct {
		name     string
		do       func(t *testing.T) (int, string)
		wantCode int
		wantBody string // the whole body when it starts with '{', else the status code
	}{
		{name: "malformed json", wantCode: 400,
			wantBody: `{"status":"UNKNOWN_ERROR","message":"make sure your request is valid"}` + "\n",
			do: func(t *testing.T) (int, string) {
				return f.postComponent(t, "x1", "hello", "", []byte(`{"signatures":[],"signed":{`))
			}},
		{name: "wrong signature", wantCode: 403, wantBody: "FORBIDDEN",
			do: func(t *testing.T) (int, string) { return f.postComponent(t, "x2", "hello", "", badSig(t)) }},
		{name: "stranger's key only", wantCode: 403, wantBody: "FORBIDDEN",
			do: func(t *testing.T) (int, string) { return f.postComponent(t, "x3", "hello", "", sign(t, v2, k[7])) }},
		{name: "too few owner signatures", wantCode: 403, wantBody: "FORBIDDEN",
			do: func(t *testing.T) (int, string) {
				return f.postComponent(t, "x4", "dual", "", sign(t, newComponent("dual", 1, item(hello1, data1)), k[5]))
			}},
		{name: "version conflict", wantCode: 409, wantBody: "MANIFEST CONFLICT",
			do: func(t *testing.T) (int, string) {
				return f.postComponent(t, "x5", "hello", "", sign(t, newComponent("hello", 1, item(hello1, data1)), k[4]))
			}},
		{name: "version skipped", wantCode: 409, wantBody: "MANIFEST CONFLICT",
			do: func(t *testing.T) (int, string) {
				return f.postComponent(t, "x6", "hello", "", sign(t, newComponent("hello", 3, item(hello1, data1)), k[4]))
			}},
		{name: "oversized upload", wantCode: 413, wantBody: "TOO LARGE",
			do: func(t *testing.T) (int, string) {
				return f.upload(t, "x7", hello2, bytes.Repeat([]byte("x"), maxUpload+1))
			}},
		{name: "oversized upload leaves no session", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) {
				f.upload(t, "x8", hello2, bytes.Repeat([]byte("x"), maxUpload+1))
				return f.postComponent(t, "x8", "hello", "", sign(t, v2, k[4]))
			}},
		{name: "truncated upload", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) {
				if code := f.truncatedUpload(t, "x9", hello2, data2); code != 400 {
					t.Errorf("truncated upload: %d, want 400", code)
				}
				// Nothing was kept: the manifest names a tarball the mirror lacks.
				return f.postComponent(t, "x9", "hello", "", sign(t, v2, k[4]))
			}},
		{name: "sha256 differs", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) {
				if code, body := f.upload(t, "x10", hello2, data2); code != 204 {
					t.Fatalf("upload: %d %s", code, body)
				}
				c := newComponent("hello", 2, item(hello1, data1), wrongSum)
				return f.postComponent(t, "x10", "hello", "", sign(t, c, k[4]))
			}},
		{name: "upload not in manifest", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) {
				if code, body := f.upload(t, "x11", "hello-v9.0.0-linux-amd64.tar.gz", data2); code != 204 {
					t.Fatalf("upload: %d %s", code, body)
				}
				return f.postComponent(t, "x11", "hello", "", sign(t, newComponent("hello", 2, item(hello1, data1)), k[4]))
			}},
		{name: "missing file field", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) {
				body, ctype := multipartBody(t, "other", hello2, data2)
				return f.post(t, "/api/v1/tarball/x12", ctype, body)
			}},
		{name: "upload name escapes", wantCode: 400, wantBody: "INVALID TARBALL",
			do: func(t *testing.T) (int, string) { return f.upload(t, "x13", "../"+hello2, data2) }},
		{name: "dotdot in component path", wantCode: 400, wantBody: "BAD REQUEST",
			do: func(t *testing.T) (int, string) { return f.postComponent(t, "x14", "..", "", sign(t, v2, k[4])) }},
		{name: "dotdot in tarball path", wantCode: 400, wantBody: "BAD REQUEST",
			do: func(t *testing.T) (int, string) {
				body, ctype := multipartBody(t, "file", hello2, data2)
				return f.post(t, "/api/v1/tarball/../../x", ctype, body)
			}},
		{name: "component named like a role", wantCode: 403, wantBody: "FORBIDDEN",
			do: func(t *testing.T) (int, string) { return f.postComponent(t, "x15", "timestamp", "", sign(t, v2, k[4])) }},
		{name: "name differs from manifest", wantCode: 400, wantBody: "BAD REQUEST",
			do: func(t *testing.T) (int, string) { return f.postComponent(t, "x16", "other", "", sign(t, v2, k[4])) }},
		{name: "bad flag", wantCode: 400, wantBody: "BAD REQUEST",
			do: func(t *testing.T) (int, string) {
				return f.postComponent(t, "x17", "hello", "?hidden=maybe", sign(t, v2, k[4]))
			}},
		{name: "sid reused", wantCode: 409, wantBody: "SESSION CONFLICT",
			do: func(t *testing.T) (int, string) {
				f.upload(t, "x18", hello2, data2)
				return f.upload(t, "x18", hello2, data2)
			}},
		{name: "get on api", wantCode: 405, wantBody: "BAD REQUEST",
			do: func(t *testing.T) (int, string) {
				resp, err := http.Get(f.url + "/api/v1/rotate")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := digest(t, f.dir)
			code, body := tt.do(t)
			if code != tt.wantCode {
				t.Errorf("status %d, want %d; body %s", code, tt.wantCode, body)
			}
			if strings.HasPrefix(tt.wantBody, "{") {
				if body != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
			} else if !strings.HasPrefix(body, `{"status":"`+tt.wantBody+`","message":"`) || !strings.HasSuffix(body, "\"}\n") {
				t.Errorf("body %q, want status %s", body, tt.wantBody)
			}
			if after := digest(t, f.dir); after != before {
				t.Errorf("the mirror changed:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

func TestAPIPublish(t *testing.T) {
	f := newAPIFixture(t)
	k := f.keys
	hello1 := "hello-v1.0.0-linux-amd64.tar.gz"
	data1 := tarballBytes("hello v1.0.0")
	hello2 := "hello-v1.0.1-linux-amd64.tar.gz"
	data2 := tarballBytes("hello v1.0.1")

	if got, err := os.ReadFile(filepath.Join(f.dir, hello1)); err != nil || !bytes.Equal(got, data1) {
		t.Fatalf("first publish did not store %s: %v", hello1, err)
	}
	if code, body := f.upload(t, "p1", hello2, data2); code != 204 || body != "" {
		t.Fatalf("upload: %d %q", code, body)
	}
	// A manifest in non-canonical form is stored canonically.
	env := sign(t, newComponent("hello", 2, item(hello1, data1), item(hello2, data2)), k[4])
	loose := bytes.Replace(env, []byte(`"signed":{`), []byte("\"signed\" :\n {"), 1)
	if code, body := f.postComponent(t, "p1", "hello", "?hidden=true", loose); code != 204 {
		t.Fatalf("publish v2: %d %s", code, body)
	}
	if got, err := os.ReadFile(filepath.Join(f.dir, hello2)); err != nil || !bytes.Equal(got, data2) {
		t.Fatalf("publish v2 did not store %s: %v", hello2, err)
	}
	stored, err := os.ReadFile(filepath.Join(f.dir, "2.hello.json"))
	if err != nil || !bytes.Equal(stored, env) {
		t.Fatalf("2.hello.json is not the canonical envelope: %v", err)
	}
	if it := f.index(t).Components["hello"]; !it.Hidden || it.Owner != "alice" {
		t.Errorf("hello's index item %+v, want hidden and owned by alice", it)
	}
	// A new component of a threshold-2 owner, signed by both keys,
	// manifest only (its tarball is already in the mirror).
	dual := newComponent("dual", 1, item(hello1, data1))
	if code, body := f.postComponent(t, "p2", "dual", "?standalone=true", sign(t, dual, k[5], k[6])); code != 204 {
		t.Fatalf("publish dual: %d %s", code, body)
	}
	if it := f.index(t).Components["dual"]; it.Owner != "bob" || !it.Standalone {
		t.Errorf("dual's index item %+v, want standalone and owned by bob", it)
	}
	if left := uploadFiles(t, f.uploads); len(left) != 0 {
		t.Errorf("uploads left behind: %v", left)
	}
}

func TestAPIRotate(t *testing.T) {
	f := newAPIFixture(t)
	k := f.keys
	raw, err := os.ReadFile(filepath.Join(f.dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	var root manifest.Root
	if err := env.Decode(&root); err != nil {
		t.Fatal(err)
	}
	root.Version = 2
	signed := func(signers ...*keys.PrivateKey) []byte {
		e, err := manifest.NewEnvelope(&root)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range signers {
			if err := publish.SignWith(context.Background(), e, s.Signer()); err != nil {
				t.Fatal(err)
			}
		}
		b, _ := e.Bytes()
		return b
	}
	tests := []struct {
		name     string
		body     []byte
		wantCode int
	}{
		{name: "stranger's signature", body: signed(k[7]), wantCode: 400},
		{name: "malformed", body: []byte("{"), wantCode: 400},
		{name: "good", body: signed(k[0]), wantCode: 204},
		{name: "again", body: signed(k[0]), wantCode: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := digest(t, f.dir)
			code, body := f.post(t, "/api/v1/rotate", "application/json", tt.body)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			changed := digest(t, f.dir) != before
			if changed != (code == 204) {
				t.Errorf("mirror changed: %v, status %d", changed, code)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(f.dir, "2.root.json")); err != nil {
		t.Errorf("2.root.json not written: %v", err)
	}
}

// stagingCounter is a backend that stages content (as an OCI registry
// does) and counts how it was used.
type stagingCounter struct {
	*sdktest.MemBackend
	stages, stagedPuts atomic.Int32
}

func (c *stagingCounter) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	c.stages.Add(1)
	return c.MemBackend.Stage(ctx, r, opts)
}

func (c *stagingCounter) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if opts.Staged {
		c.stagedPuts.Add(1)
	}
	return c.MemBackend.Put(ctx, key, r, opts)
}

// TestAPIPublishStagesTarball: on a backend that stages content, a publish
// through the write API uploads the session's tarball ahead of the writer
// lock and the commit stores it without sending it again, as mirror
// publish does.
func TestAPIPublishStagesTarball(t *testing.T) {
	b := &stagingCounter{MemBackend: sdktest.NewMemBackend()}
	f := newAPIFixtureOn(t, b) // publishes hello v1.0.0 through the API
	if got := b.stages.Load(); got != 1 {
		t.Errorf("Stage calls = %d, want 1 (the session's tarball)", got)
	}
	if got := b.stagedPuts.Load(); got != 1 {
		t.Errorf("Staged Puts = %d, want 1", got)
	}
	rc, _, err := b.Get(context.Background(), "hello-v1.0.0-linux-amd64.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, tarballBytes("hello v1.0.0")) {
		t.Errorf("the staged tarball stored %d bytes (%v), want the uploaded ones", len(got), err)
	}
	if left := uploadFiles(t, f.uploads); len(left) != 0 {
		t.Errorf("uploads left behind: %v", left)
	}
}
