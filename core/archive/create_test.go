package archive

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// makeTree writes a small component tree under dir.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	files := []struct {
		name, body string
		mode       fs.FileMode
	}{
		{"bin/tool", "#!/bin/sh\necho tool\n", 0o755},
		{"lib/tool", "library", 0o644},
		{"lib/empty", "", 0o600},
		{"README", "read me", 0o640},
		{"deep/x/y/z", "zzz", 0o644},
		{strings.Repeat("long-name-", 12) + "/file", "long", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../lib/tool", filepath.Join(dir, "bin", "link")); err != nil {
		t.Fatal(err)
	}
}

func createFile(t *testing.T, baseDir string, paths []string) (string, Stats) {
	t.Helper()
	out := filepath.Join(t.TempDir(), PackageName("comp", "v1.0.0", "linux", "amd64"))
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Create(context.Background(), f, baseDir, paths)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return out, st
}

func TestCreateRoundTrip(t *testing.T) {
	t.Parallel()
	tarPath, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	src := t.TempDir()
	makeTree(t, src)
	long := strings.Repeat("long-name-", 12)

	cases := []struct {
		name  string
		paths []string
		want  []string
		stats Stats
	}{
		{
			name: "explicit paths in given order",
			// lib/tool repeats a path already inside lib and is stored once.
			paths: []string{"bin", "lib", "README", "lib/tool", "deep"},
			want: []string{"bin/", "bin/link", "bin/tool", "lib/", "lib/empty", "lib/tool", "README",
				"deep/", "deep/x/", "deep/x/y/", "deep/x/y/z"},
			stats: Stats{Files: 5, Dirs: 5, Links: 1, Bytes: int64(len("#!/bin/sh\necho tool\n") + len("library") + len("read me") + len("zzz"))},
		},
		{
			name:  "whole base dir",
			paths: []string{"."},
			want: []string{"README", "bin/", "bin/link", "bin/tool", "deep/", "deep/x/", "deep/x/y/", "deep/x/y/z",
				"lib/", "lib/empty", "lib/tool", long + "/", long + "/file"},
			stats: Stats{Files: 6, Dirs: 6, Links: 1, Bytes: int64(len("#!/bin/sh\necho tool\n") + len("library") + len("read me") + len("zzz") + len("long"))},
		},
		{
			name:  "single file with dot prefix",
			paths: []string{"./README"},
			want:  []string{"README"},
			stats: Stats{Files: 1, Bytes: int64(len("read me"))},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, st := createFile(t, src, tc.paths)
			if st != tc.stats {
				t.Errorf("Stats = %+v, want %+v", st, tc.stats)
			}
			listing, err := exec.Command(tarPath, "-tzf", out).Output()
			if err != nil {
				t.Fatalf("tar -tzf: %v", err)
			}
			if got := strings.Split(strings.TrimSuffix(string(listing), "\n"), "\n"); !slices.Equal(got, tc.want) {
				t.Errorf("tar -tzf lists\n%q\nwant\n%q", got, tc.want)
			}
			verbose, err := exec.Command(tarPath, "-tzvf", out).Output()
			if err != nil {
				t.Fatalf("tar -tzvf: %v", err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(verbose)), "\n") {
				if !strings.Contains(line, " root/root ") {
					t.Errorf("owner not root/root: %s", line)
				}
				if strings.HasSuffix(line, " bin/tool") && !strings.HasPrefix(line, "-rwxr-xr-x ") {
					t.Errorf("bin/tool mode lost: %s", line)
				}
				if strings.Contains(line, " bin/link ") && !strings.HasSuffix(line, "bin/link -> ../lib/tool") {
					t.Errorf("bin/link not a symlink: %s", line)
				}
			}

			// Extract with our own code and compare with the source tree.
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dest := filepath.Join(t.TempDir(), "out")
			xst, err := Extract(context.Background(), f, dest, ExtractOptions{})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if xst != tc.stats {
				t.Errorf("Extract Stats = %+v, Create Stats = %+v", xst, tc.stats)
			}
			for _, name := range tc.want {
				compareEntry(t, filepath.Join(src, name), filepath.Join(dest, name))
			}
		})
	}
}

func compareEntry(t *testing.T, a, b string) {
	t.Helper()
	fa, errA := os.Lstat(a)
	fb, errB := os.Lstat(b)
	if errA != nil || errB != nil {
		t.Errorf("lstat %s / %s: %v / %v", a, b, errA, errB)
		return
	}
	if fa.Mode().Type() != fb.Mode().Type() {
		t.Errorf("%s type %v, extracted %v", a, fa.Mode().Type(), fb.Mode().Type())
		return
	}
	switch {
	case fa.Mode().IsRegular():
		if fa.Mode() != fb.Mode() {
			t.Errorf("%s mode %v, extracted %v", a, fa.Mode(), fb.Mode())
		}
		if !fa.ModTime().Equal(fb.ModTime()) {
			t.Errorf("%s mtime %v, extracted %v", a, fa.ModTime(), fb.ModTime())
		}
		ca, _ := os.ReadFile(a)
		cb, _ := os.ReadFile(b)
		if !bytes.Equal(ca, cb) {
			t.Errorf("%s content differs", a)
		}
	case fa.Mode()&fs.ModeSymlink != 0:
		la, _ := os.Readlink(a)
		lb, _ := os.Readlink(b)
		if la != lb {
			t.Errorf("%s link %q, extracted %q", a, la, lb)
		}
	}
}

func TestCreateReproducible(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	makeTree(t, src)
	var a, b bytes.Buffer
	if _, err := Create(context.Background(), &a, src, []string{"."}); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(context.Background(), &b, src, []string{"."}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two archives of one tree differ")
	}
}

func TestCreateRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		paths []string
		want  error
	}{
		{name: "dotdot", paths: []string{"../x"}, want: ErrUnsafePath},
		{name: "inner dotdot", paths: []string{"a/../../x"}, want: ErrUnsafePath},
		{name: "absolute", paths: []string{"/etc"}, want: ErrUnsafePath},
		{name: "empty", paths: []string{""}, want: ErrUnsafePath},
		{name: "nul", paths: []string{"a\x00"}, want: ErrUnsafePath},
		{name: "absolute symlink", setup: func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
		}, paths: []string{"."}, want: ErrUnsafePath},
		{name: "escaping symlink", setup: func(t *testing.T, dir string) {
			if err := os.Symlink("../../x", filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
		}, paths: []string{"l"}, want: ErrUnsafePath},
		{name: "path through escaping symlink", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
		}, paths: []string{"l/x"}},
		{name: "fifo", setup: func(t *testing.T, dir string) {
			if err := mkfifo(filepath.Join(dir, "p")); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, paths: []string{"."}},
		{name: "missing", paths: []string{"nope"}, want: fs.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			var buf bytes.Buffer
			_, err := Create(context.Background(), &buf, dir, tc.paths)
			if err == nil {
				t.Fatalf("Create succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Create error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCreateCanceled(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	makeTree(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := Create(ctx, &buf, src, []string{"."}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create error = %v, want context.Canceled", err)
	}
}

func TestPackageName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, release, goos, goarch, want string
	}{
		{"greet", "v1.0.0", "linux", "amd64", "greet-v1.0.0-linux-amd64.tar.gz"},
		{"shout", "v0.1.0", "any", "any", "shout-v0.1.0-any-any.tar.gz"},
		{"greet", "v2.1.0-nightly-20261122", "darwin", "arm64", "greet-v2.1.0-nightly-20261122-darwin-arm64.tar.gz"},
	}
	for _, tc := range cases {
		if got := PackageName(tc.name, tc.release, tc.goos, tc.goarch); got != tc.want {
			t.Errorf("PackageName(%q, %q, %q, %q) = %q, want %q", tc.name, tc.release, tc.goos, tc.goarch, got, tc.want)
		}
	}
}
