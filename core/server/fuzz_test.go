package server_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/server"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// newFuzzServer is one mirror in dir served with the write API for the
// whole fuzz run: every role and the owner alice share the committed test
// key of core/trust, so seeds signed with it stay valid across runs.
func newFuzzServer(dir string) (*server.Server, error) {
	ki, err := keys.ReadKeyFile("../trust/testdata/fuzz-key.json")
	if err != nil {
		return nil, err
	}
	k, err := keys.ParsePrivateKeyInfo(ki)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	roles := map[string][]sdk.Signer{manifest.RoleRoot: {k.Signer()}, manifest.RoleIndex: {k.Signer()},
		manifest.RoleSnapshot: {k.Signer()}, manifest.RoleTimestamp: {k.Signer()}}
	b := fsbackend.New(dir + "/m")
	if err := publish.Init(ctx, b, roles, apiNow); err != nil {
		return nil, err
	}
	w := &publish.Writer{Backend: b, Keys: ring{k.ID(): k}, Clock: apiClock}
	err = w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		tx.Index.Owners["alice"] = manifest.Owner{Name: "Alice", Threshold: 1, Keys: map[string]*manifest.KeyInfo{k.ID(): k.Public().KeyInfo()}}
		tx.IndexChanged()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return server.New(ctx, b, server.Options{Clock: apiClock, API: &server.APIOptions{
		Writer: w, UploadDir: dir, MaxUpload: 4096, MaxSessions: 8, RequestTimeout: 10 * time.Second}})
}

// FuzzServeRequest drives `mirror serve`'s handler, write API included,
// with arbitrary requests: method, path and query, content type and body.
// It must never panic and never answer 5xx: bad input is the client's
// fault and gets a 4xx naming it. Seeds are the requests stock tiup sends
// (a tarball upload, a signed component manifest, a rotation) and their
// broken variants (testdata/fuzz/FuzzServeRequest).
func FuzzServeRequest(f *testing.F) {
	upload, ctype := fuzzMultipart("file", "hello-v1.0.0-linux-amd64.tar.gz", []byte("tarball"))
	f.Add("POST", "/api/v1/tarball/s1", ctype, upload)
	f.Add("POST", "/api/v1/tarball/s1", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../x.tar.gz\"\r\n\r\nx\r\n--x--\r\n"))
	f.Add("POST", "/api/v1/component/s1/hello?yanked=true&hidden=maybe", "application/json", []byte(`{"signatures":[{"keyid":"00","sig":"AA=="}],"signed":{"_type":"component","id":"hello","version":1}}`))
	f.Add("POST", "/api/v1/component/s1/hello", "application/json", fuzzComponent(f))
	f.Add("POST", "/api/v1/rotate", "application/json", []byte(`{"signed":{"_type":"root","version":2,"roles":{}},"signatures":null}`))
	f.Add("POST", "/api/v1/component/../../etc/passwd", "", []byte(nil))
	f.Add("GET", "/timestamp.json", "", []byte(nil))
	f.Add("GET", "/keys/x", "", []byte(nil))
	f.Add("PUT", "/api/v1/rotate", "text/plain", []byte("{"))
	f.Add("POST", "/api/v1/tarball/"+strings.Repeat("a", 80), ctype, upload)
	srv, err := newFuzzServer(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, method, target, ctype string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://mirror.test"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s (%s, %d bytes): %d %s", method, target, ctype, len(body), rec.Code, rec.Body.String())
		}
	})
}

func fuzzMultipart(field, name string, data []byte) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile(field, name)
	w.Write(data)
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// fuzzComponent is a component manifest validly signed by the fuzz key.
func fuzzComponent(f *testing.F) []byte {
	ki, err := keys.ReadKeyFile("../trust/testdata/fuzz-key.json")
	if err != nil {
		f.Fatal(err)
	}
	k, err := keys.ParsePrivateKeyInfo(ki)
	if err != nil {
		f.Fatal(err)
	}
	c := manifest.NewComponent("hello", "fuzz", apiNow)
	c.Platforms["linux/amd64"] = map[string]manifest.VersionItem{"v1.0.0": item("hello-v1.0.0-linux-amd64.tar.gz", []byte("tarball"))}
	env, err := manifest.NewEnvelope(c)
	if err != nil {
		f.Fatal(err)
	}
	if err := publish.SignWith(context.Background(), env, k.Signer()); err != nil {
		f.Fatal(err)
	}
	b, err := env.Bytes()
	if err != nil {
		f.Fatal(fmt.Errorf("fuzz seed: %w", err))
	}
	return b
}
