package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/server"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
)

// The in-memory copies of small files must never outlive the file: a
// replacement by rename (how the fs backend writes) and a rewrite in place
// are both served at once, and a plain GET from the cache carries the same
// headers as a conditional one through http.ServeContent.
func TestSmallFileCache(t *testing.T) {
	dir := newMirrorDir(t)
	fsb := fsbackend.New(dir)
	t.Cleanup(func() { fsb.Close() })
	s, err := server.New(context.Background(), fsb, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	get := func(hdr map[string]string) response { return rawGet(t, addr, "GET", "/root.json", hdr) }

	first := get(nil)
	cached := get(nil) // now from memory
	if first.code != 200 || cached.body != files["root.json"] || cached.body != first.body {
		t.Fatalf("GET root.json: %d %q, then %q", first.code, first.body, cached.body)
	}
	viaServeContent := get(map[string]string{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"})
	for _, h := range []string{"Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges", "Cache-Control", "X-Content-Type-Options"} {
		if a, b := cached.hdr.Get(h), viaServeContent.hdr.Get(h); a != b || a == "" {
			t.Errorf("%s: %q from the cache, %q through ServeContent", h, a, b)
		}
	}
	if r := get(map[string]string{"If-None-Match": cached.hdr.Get("ETag")}); r.code != 304 {
		t.Errorf("If-None-Match with the cached ETag: %d, want 304", r.code)
	}
	if r := get(map[string]string{"Range": "bytes=0-3"}); r.code != 206 || r.body != files["root.json"][:4] {
		t.Errorf("Range from the cache: %d %q", r.code, r.body)
	}
	if r := rawGet(t, addr, "HEAD", "/root.json", nil); r.code != 200 || r.body != "" || r.hdr.Get("Content-Length") != cached.hdr.Get("Content-Length") {
		t.Errorf("HEAD: %d %q %v", r.code, r.body, r.hdr)
	}

	path := filepath.Join(dir, "root.json")
	renamed := `{"replaced":"by rename, same length as nothing else"}`
	tmp := filepath.Join(dir, ".tmp-ts")
	if err := os.WriteFile(tmp, []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "after a rename over the file", get, renamed)
	get(nil) // cache the renamed file

	// The same length written in place: only the modification time tells.
	inPlace := []byte(renamed)
	copy(inPlace, `{"REPLACED"`)
	if err := os.WriteFile(path, inPlace, 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	eventually(t, "after a rewrite in place", get, string(inPlace))

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for get(nil).code != 404 {
		if time.Now().After(deadline) {
			t.Fatal("still served 2s after removal")
		}
		time.Sleep(time.Millisecond)
	}
}

// eventually waits for the server to serve want: with the directory watch
// a change reaches the cache when its event is read, an instant after the
// write (a reader then sees the mirror as it was a moment earlier).
func eventually(t *testing.T, what string, get func(map[string]string) response, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := get(nil)
		if r.body == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %q after 2s, want %q", what, r.body, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// The order a publish writes in must survive the cache: once a client has
// seen the new timestamp.json, the snapshot.json written before it is
// served new as well, never an old copy from memory.
func TestSmallFileCacheKeepsWriteOrder(t *testing.T) {
	dir := newMirrorDir(t)
	fsb := fsbackend.New(dir)
	t.Cleanup(func() { fsb.Close() })
	s, err := server.New(context.Background(), fsb, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	replace := func(name, data string) {
		tmp := filepath.Join(dir, ".tmp-"+name)
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	replace("snapshot.json", "snapshot 0")
	replace("timestamp.json", "timestamp 0")
	for i := 1; i <= 200; i++ {
		// Both cached (watched) before the next publish.
		for _, name := range []string{"snapshot.json", "timestamp.json"} {
			rawGet(t, addr, "GET", "/"+name, nil)
			rawGet(t, addr, "GET", "/"+name, nil)
		}
		replace("snapshot.json", fmt.Sprintf("snapshot %d", i))
		replace("timestamp.json", fmt.Sprintf("timestamp %d", i))
		for {
			if ts := rawGet(t, addr, "GET", "/timestamp.json", nil).body; ts == fmt.Sprintf("timestamp %d", i) {
				break
			}
		}
		if sn := rawGet(t, addr, "GET", "/snapshot.json", nil).body; sn != fmt.Sprintf("snapshot %d", i) {
			t.Fatalf("publish %d: timestamp %d served with %q", i, i, sn)
		}
	}
}
