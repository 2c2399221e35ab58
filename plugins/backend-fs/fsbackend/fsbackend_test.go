package fsbackend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func put(t testing.TB, b *Backend, key, content string) sdk.ObjectInfo {
	t.Helper()
	info, err := b.Put(context.Background(), key, strings.NewReader(content), sdk.PutOptions{})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

func read(t testing.TB, b *Backend, key string) (string, sdk.ObjectInfo, error) {
	t.Helper()
	rc, info, err := b.Get(context.Background(), key)
	if err != nil {
		return "", info, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(data), info, nil
}

// tempFiles lists every leftover .tmp- file under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestOpenAddress(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		addr    string
		wantDir string
		wantErr bool
	}{
		{name: "absolute path", addr: dir, wantDir: dir},
		{name: "unclean path", addr: dir + "/./x/..", wantDir: dir},
		{name: "file URL", addr: "file://" + dir, wantDir: dir},
		{name: "file URL with localhost", addr: "file://localhost" + dir, wantDir: dir},
		{name: "relative path", addr: "mirror", wantErr: true},
		{name: "empty", addr: "", wantErr: true},
		{name: "file URL with a host", addr: "file://example.com/srv/mirror", wantErr: true},
		{name: "relative file URL", addr: "file://", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(context.Background(), sdk.Config{Address: tt.addr})
			if tt.wantErr {
				if !errors.Is(err, fs.ErrInvalid) {
					t.Fatalf("Open(%q) = %v, want an error wrapping fs.ErrInvalid", tt.addr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.addr, err)
			}
			if got := b.(*Backend).Dir(); got != tt.wantDir {
				t.Errorf("Dir() = %q, want %q", got, tt.wantDir)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	got, err := New(t.TempDir()).Capabilities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: true, LocalFiles: true}
	if got != want {
		t.Errorf("Capabilities() = %+v, want %+v", got, want)
	}
}

// putMethods runs every write case through both write paths.
var putMethods = []struct {
	name string
	put  func(t *testing.T, b *Backend, key string, data []byte, opts sdk.PutOptions) (sdk.ObjectInfo, error)
}{
	{"Put", func(t *testing.T, b *Backend, key string, data []byte, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
		return b.Put(context.Background(), key, bytes.NewReader(data), opts)
	}},
	{"PutFile", func(t *testing.T, b *Backend, key string, data []byte, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
		src := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return b.PutFile(context.Background(), key, src, opts)
	}},
}

func TestPut(t *testing.T) {
	const old = "old content"
	content := []byte("new content\n")
	tests := []struct {
		name     string
		key      string
		existing bool     // the key holds old before the write
		others   []string // keys stored before the write
		data     []byte
		opts     sdk.PutOptions
		// matchCurrent sets IfMatch to the existing object's ETag.
		matchCurrent bool
		wantErr      error
	}{
		{name: "new key", key: "a.json", data: content},
		{name: "nested new key", key: "a/b/c.json", data: content},
		{name: "replace", key: "a.json", existing: true, data: content},
		{name: "empty file", key: "empty", data: []byte{}},
		{name: "empty file pinned to size 0", key: "empty", data: []byte{}, opts: sdk.PutOptions{SizeKnown: true}},
		{name: "size and digest match", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{Size: int64(len(content)), SizeKnown: true, SHA256: sum(content)}},
		{name: "stream shorter than size", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{Size: int64(len(content)) + 1, SizeKnown: true}, wantErr: sdk.ErrIntegrity},
		{name: "stream longer than size", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{Size: int64(len(content)) - 1, SizeKnown: true}, wantErr: sdk.ErrIntegrity},
		{name: "non-empty stream pinned to size 0", key: "a.json", data: content,
			opts: sdk.PutOptions{SizeKnown: true}, wantErr: sdk.ErrIntegrity},
		{name: "wrong digest", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{SHA256: sum([]byte("other"))}, wantErr: sdk.ErrIntegrity},
		{name: "wrong digest on new key", key: "d/a.json", data: content,
			opts: sdk.PutOptions{SHA256: sum([]byte("other"))}, wantErr: sdk.ErrIntegrity},
		{name: "create-only on new key", key: "a.json", data: content, opts: sdk.PutOptions{IfNoneMatch: true}},
		{name: "create-only on existing key", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{IfNoneMatch: true}, wantErr: sdk.ErrExist},
		{name: "if-match current", key: "a.json", existing: true, data: content, matchCurrent: true},
		{name: "if-match stale", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{IfMatch: "1.2-3-4"}, wantErr: sdk.ErrConflict},
		{name: "if-match on missing key", key: "a.json", data: content,
			opts: sdk.PutOptions{IfMatch: "1.2-3-4"}, wantErr: sdk.ErrConflict},
		{name: "if-match with if-none-match", key: "a.json", existing: true, data: content,
			opts: sdk.PutOptions{IfMatch: "1.2-3-4", IfNoneMatch: true}, wantErr: fs.ErrInvalid},
		{name: "malformed digest", key: "a.json", data: content,
			opts: sdk.PutOptions{SHA256: strings.ToUpper(sum(content))}, wantErr: fs.ErrInvalid},
		{name: "negative size", key: "a.json", data: content,
			opts: sdk.PutOptions{Size: -1, SizeKnown: true}, wantErr: fs.ErrInvalid},
		{name: "key under an object", key: "a.json/b", others: []string{"a.json"}, data: content, wantErr: sdk.ErrExist},
		{name: "key naming a directory", key: "d", others: []string{"d/x"}, data: content, wantErr: sdk.ErrExist},
		{name: "dot-dot key", key: "../a.json", data: content, wantErr: fs.ErrInvalid},
		{name: "inner dot-dot key", key: "a/../b.json", data: content, wantErr: fs.ErrInvalid},
		{name: "absolute key", key: "/a.json", data: content, wantErr: fs.ErrInvalid},
		{name: "empty key", key: "", data: content, wantErr: fs.ErrInvalid},
		{name: "dot key", key: ".", data: content, wantErr: fs.ErrInvalid},
		{name: "trailing slash", key: "a/", data: content, wantErr: fs.ErrInvalid},
		{name: "double slash", key: "a//b", data: content, wantErr: fs.ErrInvalid},
		{name: "temporary name", key: ".tmp-x", data: content, wantErr: fs.ErrInvalid},
		{name: "lock name in a directory", key: "a/.lock-x/b", data: content, wantErr: fs.ErrInvalid},
	}
	for _, m := range putMethods {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				b := New(filepath.Join(t.TempDir(), "mirror"))
				opts := tt.opts
				for _, k := range tt.others {
					put(t, b, k, old)
				}
				if tt.existing {
					info := put(t, b, tt.key, old)
					if tt.matchCurrent {
						opts.IfMatch = info.ETag
					}
				}
				info, err := m.put(t, b, tt.key, tt.data, opts)
				if leftovers := tempFiles(t, b.Dir()); len(leftovers) > 0 {
					t.Errorf("temporary files left behind: %q", leftovers)
				}
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("put = %v, want an error wrapping %v", err, tt.wantErr)
					}
					if fs.ValidPath(tt.key) && tt.key != "." {
						got, _, gerr := read(t, b, tt.key)
						switch {
						case tt.existing && (gerr != nil || got != old):
							t.Errorf("after the failed put, Get = %q, %v; want the old content", got, gerr)
						case !tt.existing && !errors.Is(gerr, sdk.ErrNotFound):
							t.Errorf("after the failed put, Get = %q, %v; want ErrNotFound", got, gerr)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("put: %v", err)
				}
				if info.Key != tt.key || info.Size != int64(len(tt.data)) || info.ETag == "" {
					t.Errorf("put info = %+v, want key %q and size %d with an ETag", info, tt.key, len(tt.data))
				}
				got, ginfo, err := read(t, b, tt.key)
				if err != nil || got != string(tt.data) {
					t.Fatalf("Get = %q, %v; want %q", got, err, tt.data)
				}
				sinfo, err := b.Stat(context.Background(), tt.key)
				if err != nil {
					t.Fatal(err)
				}
				if ginfo != info || sinfo != info {
					t.Errorf("infos differ: put %+v, get %+v, stat %+v", info, ginfo, sinfo)
				}
				fi, err := os.Stat(filepath.Join(b.Dir(), tt.key))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("file mode %v, want 0644", fi.Mode().Perm())
				}
				di, err := os.Stat(filepath.Dir(filepath.Join(b.Dir(), tt.key)))
				if err != nil {
					t.Fatal(err)
				}
				if di.Mode().Perm() != 0o755 {
					t.Errorf("directory mode %v, want 0755", di.Mode().Perm())
				}
			})
		}
	}
}

func TestPutFileSource(t *testing.T) {
	dir := t.TempDir()
	b := New(filepath.Join(dir, "mirror"))
	tests := []struct {
		name    string
		src     string
		wantErr error
	}{
		{name: "missing source", src: filepath.Join(dir, "nope"), wantErr: fs.ErrNotExist},
		{name: "directory source", src: dir, wantErr: fs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.PutFile(context.Background(), "a", tt.src, sdk.PutOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PutFile = %v, want an error wrapping %v", err, tt.wantErr)
			}
			if _, err := b.Stat(context.Background(), "a"); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("Stat after failed PutFile = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestLargeFile(t *testing.T) {
	data := make([]byte, 5<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true, SHA256: sum(data)}
	for _, m := range putMethods {
		t.Run(m.name, func(t *testing.T) {
			b := New(t.TempDir())
			if _, err := m.put(t, b, "big/file.tar.gz", data, opts); err != nil {
				t.Fatal(err)
			}
			got, _, err := read(t, b, "big/file.tar.gz")
			if err != nil {
				t.Fatal(err)
			}
			if sum([]byte(got)) != opts.SHA256 {
				t.Error("read back different bytes")
			}
			bad := opts
			bad.SHA256 = sum(data[1:])
			if _, err := m.put(t, b, "big/file.tar.gz", data, bad); !errors.Is(err, sdk.ErrIntegrity) {
				t.Errorf("put with a wrong digest = %v, want ErrIntegrity", err)
			}
		})
	}
}

func TestPutCancelled(t *testing.T) {
	b := New(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("part"))
		cancel()
		pw.Write([]byte("rest"))
		pw.Close()
	}()
	if _, err := b.Put(ctx, "a", pr, sdk.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if _, err := b.Stat(context.Background(), "a"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat after a cancelled Put = %v, want ErrNotFound", err)
	}
	if leftovers := tempFiles(t, b.Dir()); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %q", leftovers)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	b := New(dir)
	put(t, b, "dir/file", "x")
	// A stale temporary file and a lock file, as a crash would leave them.
	for _, name := range []string{".tmp-stale", "dir/.tmp-stale", ".lock-mirror"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missingRoot := New(filepath.Join(dir, "absent"))
	tests := []struct {
		name    string
		b       *Backend
		key     string
		wantErr error
	}{
		{name: "missing key", b: b, key: "nope", wantErr: sdk.ErrNotFound},
		{name: "missing nested key", b: b, key: "dir/nope/x", wantErr: sdk.ErrNotFound},
		{name: "directory", b: b, key: "dir", wantErr: sdk.ErrNotFound},
		{name: "through a file", b: b, key: "dir/file/x", wantErr: sdk.ErrNotFound},
		{name: "stale temporary file", b: b, key: ".tmp-stale", wantErr: sdk.ErrNotFound},
		{name: "nested stale temporary file", b: b, key: "dir/.tmp-stale", wantErr: sdk.ErrNotFound},
		{name: "lock file", b: b, key: ".lock-mirror", wantErr: sdk.ErrNotFound},
		{name: "missing mirror directory", b: missingRoot, key: "a", wantErr: sdk.ErrNotFound},
		{name: "dot-dot", b: b, key: "../x", wantErr: fs.ErrInvalid},
		{name: "leading slash", b: b, key: "/dir/file", wantErr: fs.ErrInvalid},
		{name: "empty", b: b, key: "", wantErr: fs.ErrInvalid},
	}
	ctx := context.Background()
	ops := []struct {
		name string
		do   func(b *Backend, key string) error
	}{
		{"Stat", func(b *Backend, key string) error { _, err := b.Stat(ctx, key); return err }},
		{"Get", func(b *Backend, key string) error {
			rc, _, err := b.Get(ctx, key)
			if rc != nil {
				rc.Close()
			}
			return err
		}},
		{"LocalPath", func(b *Backend, key string) error { _, err := b.LocalPath(ctx, key); return err }},
		{"Delete", func(b *Backend, key string) error { return b.Delete(ctx, key) }},
	}
	for _, op := range ops {
		for _, tt := range tests {
			t.Run(op.name+"/"+tt.name, func(t *testing.T) {
				if err := op.do(tt.b, tt.key); !errors.Is(err, tt.wantErr) {
					t.Fatalf("%s(%q) = %v, want an error wrapping %v", op.name, tt.key, err, tt.wantErr)
				}
			})
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dir", ".tmp-stale")); err != nil {
		t.Errorf("Delete removed a temporary file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read created the mirror directory: %v", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	b := New(t.TempDir())
	put(t, b, "a/b", "x")
	if err := b.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "a/b"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "a/b"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
}

func TestLocalPath(t *testing.T) {
	b := New(t.TempDir())
	put(t, b, "a/b.json", "content")
	p, err := b.LocalPath(context.Background(), "a/b.json")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(p) {
		t.Errorf("LocalPath = %q, want an absolute path", p)
	}
	if data, err := os.ReadFile(p); err != nil || string(data) != "content" {
		t.Errorf("reading LocalPath = %q, %v", data, err)
	}
}

func TestGetSeesOneVersion(t *testing.T) {
	ctx := context.Background()
	b := New(t.TempDir())
	first := put(t, b, "ts.json", "version one")
	rc, info, err := b.Get(ctx, "ts.json")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	second := put(t, b, "ts.json", "version two")
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "version one" || info != first {
		t.Errorf("reader opened before a replace gave %q with %+v, want the first version %+v", data, info, first)
	}
	if second.ETag == first.ETag {
		t.Error("replacing the content kept the ETag")
	}
}

func TestSymlinks(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := New(dir)
	put(t, b, "inside/real", "inside")
	links := map[string]string{
		"file-out":     secret,                         // absolute, leaves the mirror
		"rel-out":      "../" + filepath.Base(outside), // relative, leaves the mirror
		"dir-out":      outside,
		"inside/alias": "real", // stays inside
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		key  string
	}{
		{name: "link to an outside file", key: "file-out"},
		{name: "relative link out", key: "rel-out/secret"},
		{name: "through a link to an outside directory", key: "dir-out/secret"},
		{name: "new file through a link to an outside directory", key: "dir-out/new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := b.Stat(ctx, tt.key); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Stat = %v, want fs.ErrInvalid", err)
			}
			if _, _, err := b.Get(ctx, tt.key); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Get = %v, want fs.ErrInvalid", err)
			}
			if _, err := b.LocalPath(ctx, tt.key); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("LocalPath = %v, want fs.ErrInvalid", err)
			}
			if _, err := b.Put(ctx, tt.key, strings.NewReader("overwritten"), sdk.PutOptions{}); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Put = %v, want fs.ErrInvalid", err)
			}
		})
	}
	if data, err := os.ReadFile(secret); err != nil || string(data) != "outside" {
		t.Errorf("the outside file changed: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was created outside the mirror: %v", err)
	}
	if got, _, err := read(t, b, "inside/alias"); err != nil || got != "inside" {
		t.Errorf("Get through an inside link = %q, %v", got, err)
	}
	var keys []string
	if err := b.List(ctx, "", func(o sdk.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"inside/alias", "inside/real"}; !slices.Equal(keys, want) {
		t.Errorf("List = %q, want %q", keys, want)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := New(dir)
	want := []string{"a.txt", "a/b", "a/b.json", "a/c/d", "a0", "b/x", "index.json", "z/.hidden"}
	for _, k := range want {
		put(t, b, k, "data of "+k)
	}
	for _, junk := range []string{".tmp-1", "a/.tmp-2", ".lock-mirror", ".lock-.commit"} {
		if err := os.WriteFile(filepath.Join(dir, junk), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		prefix string
	}{
		{name: "everything", prefix: ""},
		{name: "file and directory prefix", prefix: "a"},
		{name: "directory", prefix: "a/"},
		{name: "inside a directory", prefix: "a/b"},
		{name: "exact key", prefix: "index.json"},
		{name: "dot file in a directory", prefix: "z/."},
		{name: "no match", prefix: "zz"},
		{name: "missing directory", prefix: "nope/x"},
		{name: "invalid directory", prefix: "../"},
		{name: "temporary prefix", prefix: ".tmp-"},
		{name: "lock prefix", prefix: ".lock-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := b.List(ctx, tt.prefix, func(o sdk.ObjectInfo) error {
				got = append(got, o.Key)
				info, err := b.Stat(ctx, o.Key)
				if err != nil || info != o {
					t.Errorf("listed %+v, Stat says %+v, %v", o, info, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var exp []string
			for _, k := range want {
				if strings.HasPrefix(k, tt.prefix) {
					exp = append(exp, k)
				}
			}
			slices.Sort(exp)
			if !slices.Equal(got, exp) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, got, exp)
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	err := b.List(ctx, "", func(sdk.ObjectInfo) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("List with a failing callback = %v after %d calls, want the callback's error after 1", err, n)
	}
	if err := New(filepath.Join(dir, "absent")).List(ctx, "", func(o sdk.ObjectInfo) error {
		t.Errorf("listed %q in a missing mirror", o.Key)
		return nil
	}); err != nil {
		t.Errorf("List of a missing mirror = %v", err)
	}
}

func TestListOrder(t *testing.T) {
	b := New(t.TempDir())
	// '.' (0x2e) sorts before '/' (0x2f) and '0' (0x30), so a plain
	// directory walk would put "a/x" before "a.txt".
	keys := []string{"a0", "a/x", "a.txt", "a/y/z", "a-b", "B", "a/y.json"}
	for _, k := range keys {
		put(t, b, k, k)
	}
	var got []string
	if err := b.List(context.Background(), "", func(o sdk.ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List order %q, want %q", got, want)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "mirror")
	b1, b2 := New(root), New(root)
	ctx := context.Background()

	unlock, err := b1.Lock(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".lock-writer")); err != nil {
		t.Errorf("lock file: %v", err)
	}

	// A second holder waits until the deadline.
	short, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancel()
	if _, err := b2.Lock(short, "writer"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock while held = %v, want context.DeadlineExceeded", err)
	}

	// Another name is independent.
	other, err := b2.Lock(ctx, "other")
	if err != nil {
		t.Fatalf("Lock of another name: %v", err)
	}
	if err := other(); err != nil {
		t.Fatal(err)
	}

	acquired := make(chan func() error)
	go func() {
		u, err := b2.Lock(ctx, "writer")
		if err != nil {
			t.Error(err)
			close(acquired)
			return
		}
		acquired <- u
	}()
	select {
	case <-acquired:
		t.Fatal("second Lock returned while the first was held")
	case <-time.After(100 * time.Millisecond):
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Errorf("second unlock = %v, want nil", err)
	}
	select {
	case u := <-acquired:
		if u == nil {
			t.FailNow()
		}
		if err := u(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock did not get the lock after unlock")
	}

	// The same value excludes itself too: flock binds to the open file.
	u1, err := b1.Lock(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel2()
	if _, err := b1.Lock(short2, "writer"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("relock by the same value = %v, want context.DeadlineExceeded", err)
	}
	u1()

	if _, _, err := b1.Get(ctx, ".lock-writer"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get of the lock file = %v, want ErrNotFound", err)
	}
}

func TestLockNames(t *testing.T) {
	b := New(t.TempDir())
	tests := []struct {
		name    string
		lock    string
		wantErr bool
	}{
		{name: "plain", lock: "mirror"},
		{name: "with dash and dot", lock: "mirror-1.x"},
		{name: "empty", lock: "", wantErr: true},
		{name: "leading dot", lock: ".commit", wantErr: true},
		{name: "slash", lock: "a/b", wantErr: true},
		{name: "dot-dot", lock: "..", wantErr: true},
		{name: "backslash", lock: `a\b`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unlock, err := b.Lock(context.Background(), tt.lock)
			if tt.wantErr {
				if !errors.Is(err, fs.ErrInvalid) {
					t.Fatalf("Lock(%q) = %v, want fs.ErrInvalid", tt.lock, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConcurrentIfMatch races writers, on two Backend values sharing one
// directory, for each round's ETag: exactly one may win.
func TestConcurrentIfMatch(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bs := []*Backend{New(root), New(root)}
	put(t, bs[0], "timestamp.json", "round -1")
	const writers, rounds = 6, 25
	for round := range rounds {
		info, err := bs[0].Stat(ctx, "timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		var winner string
		start := make(chan struct{})
		for w := range writers {
			wg.Go(func() {
				<-start
				body := fmt.Sprintf("round %02d writer %d", round, w) // equal sizes on purpose
				_, err := bs[w%2].Put(ctx, "timestamp.json", strings.NewReader(body), sdk.PutOptions{IfMatch: info.ETag})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					winner = body
				case errors.Is(err, sdk.ErrConflict):
					conflicts++
				default:
					t.Errorf("round %d writer %d: %v", round, w, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != writers-1 {
			t.Fatalf("round %d: %d wins and %d conflicts, want 1 and %d", round, wins, conflicts, writers-1)
		}
		if got, _, err := read(t, bs[1], "timestamp.json"); err != nil || got != winner {
			t.Fatalf("round %d: content %q, %v; want the winner's %q", round, got, err, winner)
		}
	}
}

// TestETagsNeverRepeat replaces a key quickly with same-size content, the
// pattern in which a reused inode and a coarse clock could bring an old ETag
// back.
func TestETagsNeverRepeat(t *testing.T) {
	b := New(t.TempDir())
	seen := map[string]int{}
	for i := range 200 {
		info := put(t, b, "timestamp.json", fmt.Sprintf("%04d", i))
		if j, ok := seen[info.ETag]; ok {
			t.Fatalf("put %d got ETag %s of put %d", i, info.ETag, j)
		}
		seen[info.ETag] = i
	}
}

// TestModTimeGrows pins the rule that keeps ETags from repeating: a
// replacement whose clock reading is not past the replaced file's is moved one
// nanosecond beyond it.
func TestModTimeGrows(t *testing.T) {
	dir := t.TempDir()
	b := New(dir)
	put(t, b, "timestamp.json", "aaaa")
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(dir, "timestamp.json"), future, future); err != nil {
		t.Fatal(err)
	}
	old, err := b.Stat(context.Background(), "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	info := put(t, b, "timestamp.json", "bbbb")
	if want := future.Add(time.Nanosecond); !info.ModTime.Equal(want) {
		t.Errorf("replacement ModTime %v, want %v", info.ModTime, want)
	}
	if info.ETag == old.ETag {
		t.Error("replacement kept the ETag")
	}
	if got, err := b.Stat(context.Background(), "timestamp.json"); err != nil || got != info {
		t.Errorf("Stat = %+v, %v; want %+v", got, err, info)
	}
}

func TestConcurrentCreateOnly(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bs := []*Backend{New(root), New(root)}
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			_, errs[w] = bs[w%2].Put(ctx, "3.index.json", strings.NewReader(fmt.Sprint(w)), sdk.PutOptions{IfNoneMatch: true})
		})
	}
	wg.Wait()
	wins := 0
	for w, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, sdk.ErrExist):
			t.Errorf("writer %d: %v", w, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d create-only puts won, want 1", wins)
	}
	if leftovers := tempFiles(t, root); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %q", leftovers)
	}
}

func TestClose(t *testing.T) {
	b := New(t.TempDir())
	put(t, b, "a", "x")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(context.Background(), "a"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Stat after Close = %v, want os.ErrClosed", err)
	}
}

func benchmarkData(b *testing.B) []byte {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i ^ i>>9)
	}
	return data
}

func BenchmarkPut(b *testing.B) {
	data := benchmarkData(b)
	digest := sum(data)
	for _, check := range []bool{false, true} {
		b.Run(fmt.Sprintf("sha256=%v", check), func(b *testing.B) {
			be := New(b.TempDir())
			opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true}
			if check {
				opts.SHA256 = digest
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := be.Put(context.Background(), "big.tar.gz", bytes.NewReader(data), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPutFile(b *testing.B) {
	data := benchmarkData(b)
	digest := sum(data)
	src := filepath.Join(b.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, check := range []bool{false, true} {
		b.Run(fmt.Sprintf("sha256=%v", check), func(b *testing.B) {
			be := New(b.TempDir())
			opts := sdk.PutOptions{Size: int64(len(data)), SizeKnown: true}
			if check {
				opts.SHA256 = digest
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := be.PutFile(context.Background(), "big.tar.gz", src, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
