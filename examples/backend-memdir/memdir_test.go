package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// The test binary doubles as the plugin (sdk/plugintest), so the "plugin
// process" conformance run crosses a real process boundary with this
// package's code built like the test (-race included).
func TestMain(m *testing.M) {
	plugintest.Serve(open, nil)
	os.Exit(m.Run())
}

func openDir(t *testing.T, dir string) sdk.Backend {
	t.Helper()
	b, err := open(t.Context(), sdk.Config{Address: "memdir://" + dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend { return openDir(t, t.TempDir()) })
	})
	t.Run("protocol in memory", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			b, err := host.InProcessBackend(openContext(t), open, sdk.Config{Address: "memdir://" + t.TempDir()})
			if err != nil {
				t.Fatalf("InProcessBackend: %v", err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
	t.Run("plugin process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return plugintest.Backend(t, sdk.Config{Address: "memdir://" + t.TempDir()})
		})
	})
}

func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenAddress(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		address string
		want    string // the directory; empty when open must fail
	}{
		{"absolute url", "memdir:///srv/m", "/srv/m"},
		{"relative url", "memdir://m", filepath.Join(wd, "m")},
		{"plain path from --backend", "./m", filepath.Join(wd, "m")},
		{"empty url", "memdir://", ""},
		{"empty", "", ""},
		{"other scheme", "s3://bucket", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := open(t.Context(), sdk.Config{Address: tt.address})
			if tt.want == "" {
				if !errors.Is(err, fs.ErrInvalid) {
					t.Fatalf("open(%q) = %v, want an error wrapping fs.ErrInvalid", tt.address, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open(%q): %v", tt.address, err)
			}
			if got := b.(*backend).dir; got != tt.want {
				t.Errorf("open(%q) dir = %q, want %q", tt.address, got, tt.want)
			}
		})
	}
	t.Run("unknown option", func(t *testing.T) {
		_, err := open(t.Context(), sdk.Config{Address: "memdir:///srv/m", Options: map[string]string{"colour": "blue"}})
		if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "colour") {
			t.Fatalf("open with option colour = %v, want an error wrapping fs.ErrInvalid naming it", err)
		}
	})
}

// TestFlatLayout pins the on-disk layout: one escaped file per object and
// nothing else once the writes are done, whatever the key's depth.
func TestFlatLayout(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	keys := []string{"root.json", "hello-v0.0.1-linux-amd64.tar.gz", "a/b/c.json", "100%/x y"}
	for _, k := range keys {
		if _, err := b.Put(t.Context(), k, strings.NewReader(k), sdk.PutOptions{}); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			t.Errorf("subdirectory %s in a flat layout", e.Name())
		}
		if !strings.HasPrefix(e.Name(), commitLock) {
			names = append(names, e.Name())
		}
	}
	want := []string{"o.100%25%2Fx%20y", "o.a%2Fb%2Fc.json", "o.hello-v0.0.1-linux-amd64.tar.gz", "o.root.json"}
	if !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	for _, k := range keys {
		if got, ok := keyOf(fileName(k)); !ok || got != k {
			t.Errorf("keyOf(fileName(%q)) = %q, %v", k, got, ok)
		}
	}
}

// TestForeignFiles: files that are not objects, such as a keys directory a
// user keeps beside the objects, are neither listed nor served.
func TestForeignFiles(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	for _, name := range []string{"notes.txt", "t.123", "o.%zz"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "o.keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := b.List(t.Context(), "", func(i sdk.ObjectInfo) error { listed = append(listed, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Errorf("List reported %q, want nothing", listed)
	}
	if _, err := b.Stat(t.Context(), "notes.txt"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat(notes.txt) = %v, want sdk.ErrNotFound", err)
	}
}
