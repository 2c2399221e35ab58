package attacktest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/internal/attackreport"
)

// goldenMirror is the mirror the stock tiup 1.16.5 client wrote (see its
// README): real manifests, a rotated root, hidden, yanked and nightly
// versions, valid at goldenNow.
const goldenMirror = "../../../shared/fixtures/tiup-v1-mirror/mirror"

var goldenNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// TestGoldenMirror is X-1: every strictness rule of the client still
// accepts a real TiUP mirror, over each backend. The trusted copies are
// the bytes tiup wrote, and the installed component is its tarball.
func TestGoldenMirror(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{}
	err := filepath.WalkDir(goldenMirror, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "keys" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		files[d.Name()] = b
		return err
	})
	if err != nil {
		t.Skipf("fixtures not available: %v", err)
	}
	for _, backend := range []string{FS, HTTP, OCI} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			c := NewClient(t, goldenNow)
			var addr string
			switch backend {
			case FS:
				addr = filepath.Join(c.Root, "mirror")
				os.MkdirAll(addr, 0o755)
				for name, b := range files {
					if err := os.WriteFile(filepath.Join(addr, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			case HTTP:
				srv := NewServer(func(name string) ([]byte, bool) { b, ok := files[name]; return b, ok })
				t.Cleanup(srv.Close)
				addr = srv.URL
			case OCI:
				store, err := newOCIStore()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(store.close)
				names := map[string]bool{}
				for name := range files {
					names[name] = true
				}
				if err := store.sync(names, func(name string) ([]byte, bool) { b, ok := files[name]; return b, ok }); err != nil {
					t.Fatal(err)
				}
				addr = store.addr
			}
			anchor := filepath.Join(c.Work, "root.json")
			os.WriteFile(anchor, files["root.json"], 0o644)
			c.Must("set", addr, "--root", anchor)
			var problems []string
			for _, args := range [][]string{{"list"}, {"list", "greet"}, {"install", "greet", "--os", "linux", "--arch", "amd64"}, {"install", "shout"}} {
				if r := c.Run(args...); r.Code != 0 || r.Panicked {
					problems = append(problems, r.String())
				}
			}
			for local, served := range map[string]string{"timestamp.json": "timestamp.json", "snapshot.json": "snapshot.json", "root.json": "2.root.json"} {
				b, _ := os.ReadFile(filepath.Join(c.Home, "manifests", local))
				if !bytes.Equal(b, files[served]) {
					problems = append(problems, "trusted "+local+" is not tiup's "+served+" byte for byte")
				}
			}
			entry := filepath.Join(c.Home, "components", "greet", "v2.0.1")
			if _, err := os.Stat(entry); err != nil {
				problems = append(problems, "greet v2.0.1 (the latest stable) not installed")
			}
			if len(problems) > 0 {
				t.Errorf("X-1 on %s: %s", backend, strings.Join(problems, "; "))
			}
			attackreport.Record(t, attackreport.Result{Family: "cross-cutting", ID: "X-1", Backend: backend, Expected: "ACCEPT",
				Met: len(problems) == 0, Detail: fmt.Sprintf("stock tiup 1.16.5 mirror at %s: list, install greet and shout", goldenNow.Format(time.DateOnly))})
		})
	}
}

// TestRegistryLies is X-5's registry half: a registry serving blobs that do
// not match their digests (a tag moved to an older manifest is RB-1 and the
// other cases on the oci backend).
func TestRegistryLies(t *testing.T) {
	RunAttacks(t, "cross-cutting", []Attack{
		{ID: "X-5", Expect: "hash", Backends: []string{OCI}, Attack: func(c *Case) {
			c.oci.corruptBlobs(true)
		}, Detail: "every blob the registry serves differs from its digest"},
	})
}
