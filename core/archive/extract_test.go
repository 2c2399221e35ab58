package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestExtractRefusesUnsafe(t *testing.T) {
	t.Parallel()
	file := func(name string) ent { return ent{name: name, typ: tar.TypeReg, body: "pwned"} }
	link := func(name, target string) ent { return ent{name: name, typ: tar.TypeSymlink, link: target} }
	hard := func(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

	cases := []struct {
		name string
		// ents builds the archive; it gets the sandbox for absolute paths.
		ents func(s sandbox) []ent
		raw  func(t testing.TB) []byte
		want error
		// entry must appear in the error message.
		entry string
	}{
		{name: "dotdot", ents: func(sandbox) []ent { return []ent{file("../evil")} }, want: ErrUnsafePath, entry: "../evil"},
		{name: "dotdot victim", ents: func(sandbox) []ent { return []ent{file("../x")} }, want: ErrUnsafePath, entry: "../x"},
		{name: "absolute", ents: func(sandbox) []ent { return []ent{file("/abs")} }, want: ErrUnsafePath, entry: "/abs"},
		{name: "absolute into sandbox", ents: func(s sandbox) []ent {
			return []ent{file(filepath.Join(s.absEtc, "passwd"))}
		}, want: ErrUnsafePath, entry: "passwd"},
		{name: "inner dotdot escapes", ents: func(sandbox) []ent { return []ent{file("a/../../evil")} }, want: ErrUnsafePath, entry: "a/../../evil"},
		{name: "deep dotdot escapes", ents: func(sandbox) []ent {
			return []ent{{name: "d/", typ: tar.TypeDir}, file("d/e/../../../evil")}
		}, want: ErrUnsafePath, entry: "d/e/../../../evil"},
		{name: "relative symlink out then write", ents: func(sandbox) []ent {
			return []ent{link("l", "../../outside"), file("l/x")}
		}, want: ErrUnsafePath, entry: "l"},
		{name: "absolute symlink then write", ents: func(s sandbox) []ent {
			return []ent{link("l", s.absEtc), file("l/passwd")}
		}, want: ErrUnsafePath, entry: "l"},
		{name: "symlink to /etc", ents: func(sandbox) []ent { return []ent{link("l", "/etc")} }, want: ErrUnsafePath, entry: "l"},
		{name: "symlink to parent victim", ents: func(sandbox) []ent { return []ent{link("sub/l", "../../x")} }, want: ErrUnsafePath, entry: "sub/l"},
		{name: "hardlink to /etc/passwd", ents: func(sandbox) []ent { return []ent{hard("h", "/etc/passwd")} }, want: ErrUnsafePath, entry: "h"},
		{name: "hardlink to sandbox file", ents: func(s sandbox) []ent {
			return []ent{hard("h", filepath.Join(s.absEtc, "passwd"))}
		}, want: ErrUnsafePath, entry: "h"},
		{name: "hardlink to dotdot", ents: func(sandbox) []ent { return []ent{hard("h", "../x")} }, want: ErrUnsafePath, entry: "h"},
		{name: "hardlink to missing", ents: func(sandbox) []ent { return []ent{hard("h", "later"), file("later")} }, want: ErrUnsafePath, entry: "h"},
		{name: "hardlink to symlink", ents: func(sandbox) []ent {
			return []ent{file("sub/f"), link("sub/l", "../x"), hard("l2", "sub/l")}
		}, want: ErrUnsafePath, entry: "l2"},
		{name: "hardlink to dir", ents: func(sandbox) []ent {
			return []ent{{name: "d/", typ: tar.TypeDir}, hard("h", "d")}
		}, want: ErrUnsafePath, entry: "h"},
		{name: "symlink chain a->b b->..", ents: func(sandbox) []ent {
			return []ent{link("a", "b"), link("b", "..")}
		}, want: ErrUnsafePath, entry: "b"},
		{name: "symlink chain through dot", ents: func(sandbox) []ent {
			// Lexically d/x/../.. is ".", but d -> . makes it "..".
			return []ent{link("d", "."), link("e", "d/x/../..")}
		}, want: ErrUnsafePath, entry: "e"},
		{name: "later link changes earlier", ents: func(sandbox) []ent {
			return []ent{link("e", "d/x/../.."), link("d", ".")}
		}, want: ErrUnsafePath, entry: "e"},
		{name: "symlink loop", ents: func(sandbox) []ent {
			return []ent{link("a", "b"), link("b", "a")}
		}, want: ErrUnsafePath, entry: "a"},
		{name: "write through dot symlink", ents: func(sandbox) []ent {
			return []ent{link("a", "."), file("a/a/x")}
		}, want: ErrUnsafePath, entry: "a/a/x"},
		{name: "write through inner symlink", ents: func(sandbox) []ent {
			return []ent{{name: "sub/", typ: tar.TypeDir}, link("lib", "sub"), file("lib/x")}
		}, want: ErrUnsafePath, entry: "lib/x"},
		{name: "dir through symlink", ents: func(sandbox) []ent {
			return []ent{link("lib", "."), {name: "lib/d/", typ: tar.TypeDir}}
		}, want: ErrUnsafePath, entry: "lib/d/"},
		{name: "fifo", ents: func(sandbox) []ent { return []ent{{name: "p", typ: tar.TypeFifo}} }, want: ErrUnsafePath, entry: "p"},
		{name: "char device", ents: func(sandbox) []ent { return []ent{{name: "null", typ: tar.TypeChar}} }, want: ErrUnsafePath, entry: "null"},
		{name: "block device", ents: func(sandbox) []ent { return []ent{{name: "sda", typ: tar.TypeBlock}} }, want: ErrUnsafePath, entry: "sda"},
		{name: "file named dot", ents: func(sandbox) []ent { return []ent{file(".")} }, want: ErrUnsafePath, entry: `"."`},
		// archive/tar itself rejects a NUL in a pax path, before any name
		// reaches the extractor; TestCleanName covers the extractor's check.
		{name: "pax name with NUL", raw: paxNULArchive, want: ErrFormat},
		{name: "duplicate file", ents: func(sandbox) []ent { return []ent{file("f"), file("f")} }, want: ErrFormat, entry: "f"},
		{name: "file over implicit dir", ents: func(sandbox) []ent { return []ent{file("d/f"), file("d")} }, want: ErrFormat, entry: "d"},
		{name: "symlink over file", ents: func(sandbox) []ent { return []ent{file("f"), link("f", "g")} }, want: ErrFormat, entry: "f"},
		{name: "case collision", ents: func(sandbox) []ent { return []ent{file("README"), file("readme")} }, want: ErrFormat, entry: "readme"},
		{name: "case collision of parent", ents: func(sandbox) []ent { return []ent{file("Bin/x"), file("bin/y")} }, want: ErrFormat, entry: "bin/y"},
		{name: "file below file", ents: func(sandbox) []ent { return []ent{file("f"), file("f/g")} }, want: ErrFormat, entry: "f/g"},
		{name: "unsupported type", ents: func(sandbox) []ent { return []ent{{name: "c", typ: tar.TypeCont}} }, want: ErrFormat, entry: "c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t)
			var data []byte
			if tc.raw != nil {
				data = tc.raw(t)
			} else {
				data = buildTarGz(t, tc.ents(s))
			}
			_, err := Extract(context.Background(), bytes.NewReader(data), s.dest, ExtractOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Extract error = %v, want %v", err, tc.want)
			}
			if tc.entry != "" && !strings.Contains(err.Error(), tc.entry) {
				t.Errorf("error %q does not name entry %q", err, tc.entry)
			}
			s.assertContained(t)
			if _, err := os.Lstat(s.dest); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("destination left behind after failure: %v", err)
			}
		})
	}
}

func TestExtractKeepsExistingDirOnFailure(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	if err := os.MkdirAll(s.dest, 0o755); err != nil {
		t.Fatal(err)
	}
	data := buildTarGz(t, []ent{{name: "ok", typ: tar.TypeReg, body: "x"}, {name: "../evil", typ: tar.TypeReg}})
	if _, err := Extract(context.Background(), bytes.NewReader(data), s.dest, ExtractOptions{}); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Extract error = %v, want ErrUnsafePath", err)
	}
	if _, err := os.Stat(s.dest); err != nil {
		t.Errorf("caller's directory removed: %v", err)
	}
	s.assertContained(t)
}

func TestCleanName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw, want string
		unsafe    bool
	}{
		{raw: "a/b", want: "a/b"},
		{raw: "./a/b/", want: "a/b"},
		{raw: "a/../b", want: "b"},
		{raw: "./", want: "."},
		{raw: "", unsafe: true},
		{raw: "a\x00b", unsafe: true},
		{raw: "/etc/passwd", unsafe: true},
		{raw: "..", unsafe: true},
		{raw: "../x", unsafe: true},
		{raw: "a/../../x", unsafe: true},
		{raw: strings.Repeat("a/", maxNameLen), unsafe: true},
	}
	for _, tc := range cases {
		got, err := cleanName(tc.raw)
		if tc.unsafe {
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("cleanName(%q) error = %v, want ErrUnsafePath", tc.raw, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

func TestExtractBenign(t *testing.T) {
	t.Parallel()
	longName := strings.Repeat("long-directory-name/", 8) + "file"
	ents := []ent{
		{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
		{name: "./", typ: tar.TypeDir},
		{name: "bin/", typ: tar.TypeDir},
		// The symlink comes before its target: dangling links are fine.
		{name: "bin/tool", typ: tar.TypeSymlink, link: "../lib/tool"},
		{name: "lib/tool", typ: tar.TypeReg, body: "#!/bin/sh\necho hi\n", mode: 0o755},
		{name: "lib/hard", typ: tar.TypeLink, link: "lib/tool"},
		{name: "lib/cur", typ: tar.TypeSymlink, link: "."},
		{name: "lib/up", typ: tar.TypeSymlink, link: "cur/../bin"},
		{name: "share/doc/empty", typ: tar.TypeReg, mode: 0o644},
		{name: "deep/a/b/c/file", typ: tar.TypeReg, body: "deep", mode: 0o640},
		{name: "setuid", typ: tar.TypeReg, body: "s", mode: 0o4755},
		{name: "./dot/x", typ: tar.TypeReg, body: "dot", mode: 0o600},
		{name: "priv/", typ: tar.TypeDir, mode: 0o700},
		{name: "wide/", typ: tar.TypeDir, mode: 0o777},
		{name: "deep/", typ: tar.TypeDir, mode: 0o750},
		{name: "bin/", typ: tar.TypeDir},
		{name: "a/../inner", typ: tar.TypeReg, body: "in"},
		{name: longName, typ: tar.TypeReg, body: "long"},
	}
	s := newSandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(buildTarGz(t, ents)), s.dest, ExtractOptions{MaxBytes: 1 << 20, MaxEntries: len(ents)})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := Stats{Files: 7, Dirs: 4, Links: 4, Bytes: int64(len("#!/bin/sh\necho hi\n") + len("deep") + 1 + len("dot") + len("in") + len("long"))}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	s.assertContained(t)
	assertLinksInside(t, s.dest)

	files := []struct {
		name, body string
		mode       fs.FileMode
	}{
		{"lib/tool", "#!/bin/sh\necho hi\n", 0o755},
		{"share/doc/empty", "", 0o644},
		{"deep/a/b/c/file", "deep", 0o640},
		{"setuid", "s", 0o755},
		{"dot/x", "dot", 0o600},
		{"inner", "in", 0o644},
		{longName, "long", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(s.dest, f.name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
			continue
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s mode = %v, want %v", f.name, fi.Mode(), f.mode)
		}
		if b, _ := os.ReadFile(p); string(b) != f.body {
			t.Errorf("%s content = %q, want %q", f.name, b, f.body)
		}
		if !fi.ModTime().Equal(testMtime) {
			t.Errorf("%s mtime = %v, want %v", f.name, fi.ModTime(), testMtime)
		}
	}
	dirs := map[string]fs.FileMode{"bin": 0o755, "priv": 0o755, "wide": 0o777, "deep": 0o755, "lib": 0o755, "deep/a/b/c": 0o755}
	for name, mode := range dirs {
		fi, err := os.Lstat(filepath.Join(s.dest, name))
		if err != nil || fi.Mode() != fs.ModeDir|mode {
			t.Errorf("dir %s = %v, %v; want %v", name, fi.Mode(), err, fs.ModeDir|mode)
		}
	}
	if got, err := os.Readlink(filepath.Join(s.dest, "bin/tool")); err != nil || got != "../lib/tool" {
		t.Errorf("bin/tool link = %q, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.dest, "bin/tool")); err != nil || !strings.HasPrefix(string(b), "#!") {
		t.Errorf("bin/tool does not resolve: %q, %v", b, err)
	}
	a, errA := os.Stat(filepath.Join(s.dest, "lib/tool"))
	b, errB := os.Stat(filepath.Join(s.dest, "lib/hard"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("lib/hard is not a hard link of lib/tool: %v %v", errA, errB)
	}
}

func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "tiup-v1-mirror", "mirror")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("fixtures not present at %s", dir)
	}
	return dir
}

func TestExtractFixtures(t *testing.T) {
	t.Parallel()
	tarballs, err := filepath.Glob(filepath.Join(fixtureDir(t), "*.tar.gz"))
	if err != nil || len(tarballs) == 0 {
		t.Fatalf("no fixture tarballs: %v", err)
	}
	tarPath, tarErr := exec.LookPath("tar")
	for _, tb := range tarballs {
		t.Run(filepath.Base(tb), func(t *testing.T) {
			f, err := os.Open(tb)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dest := filepath.Join(t.TempDir(), "out")
			st, err := Extract(context.Background(), f, dest, ExtractOptions{MaxBytes: 64 << 20, MaxEntries: 1000})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if st.Files == 0 {
				t.Errorf("no files extracted: %+v", st)
			}
			if tarErr != nil {
				return
			}
			out, err := exec.Command(tarPath, "-tzf", tb).Output()
			if err != nil {
				t.Fatalf("tar -tzf: %v", err)
			}
			for _, name := range strings.Fields(string(out)) {
				if _, err := os.Lstat(filepath.Join(dest, name)); err != nil {
					t.Errorf("tar lists %s, extracted tree lacks it: %v", name, err)
				}
			}
			if got := treeNames(t, dest); !slices.Equal(got, sortedTrimmed(strings.Fields(string(out)))) {
				t.Errorf("extracted %v, tar lists %v", got, strings.Fields(string(out)))
			}
		})
	}
}

func sortedTrimmed(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(n, "./"), "/"))
	}
	slices.Sort(out)
	return out
}

// treeNames lists every path under dir, relative and sorted.
func treeNames(t testing.TB, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	slices.Sort(names)
	return names
}

// zeroSource produces an endless gzip stream: a tar header (if any)
// followed by zeros, compressed on the fly. produced counts the
// uncompressed bytes generated, to show how early reading stopped.
func zeroSource(t *testing.T, header []byte) (io.ReadCloser, *atomic.Int64) {
	t.Helper()
	pr, pw := io.Pipe()
	var produced atomic.Int64
	go func() {
		zw := gzip.NewWriter(pw)
		if _, err := zw.Write(header); err != nil {
			pw.CloseWithError(err)
			return
		}
		zeros := make([]byte, 64<<10)
		for produced.Load() < 16<<30 {
			if _, err := zw.Write(zeros); err != nil {
				pw.CloseWithError(err)
				return
			}
			produced.Add(int64(len(zeros)))
		}
		pw.CloseWithError(zw.Close())
	}()
	t.Cleanup(func() { pr.Close() })
	return pr, &produced
}

func TestExtractLimits(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("z", 300<<10)
	fiveFiles := []ent{}
	for _, n := range []string{"f1", "f2", "f3", "f4", "f5"} {
		fiveFiles = append(fiveFiles, ent{name: n, typ: tar.TypeReg, body: body})
	}
	cases := []struct {
		name string
		data []byte
		opts ExtractOptions
		want error
	}{
		{name: "aggregate bytes over cap", data: buildTarGz(t, fiveFiles), opts: ExtractOptions{MaxBytes: 1 << 20}, want: ErrTooLarge},
		{name: "aggregate bytes at cap", data: buildTarGz(t, fiveFiles[:3]), opts: ExtractOptions{MaxBytes: 3 * 300 << 10}},
		{name: "entries over cap", data: buildTarGz(t, fiveFiles), opts: ExtractOptions{MaxEntries: 4}, want: ErrTooLarge},
		{name: "entries at cap", data: buildTarGz(t, fiveFiles), opts: ExtractOptions{MaxEntries: 5}},
		{name: "unlimited", data: buildTarGz(t, fiveFiles)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), dest, tc.opts)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Extract error = %v, want %v", err, tc.want)
			}
		})
	}

	bombs := []struct {
		name   string
		header []byte
	}{
		{name: "huge entry of zeros", header: ustarBlock("bomb", tar.TypeReg, 0o77777777777)},
		{name: "bare stream of zeros", header: nil},
	}
	for _, tc := range bombs {
		t.Run(tc.name, func(t *testing.T) {
			src, produced := zeroSource(t, tc.header)
			dest := filepath.Join(t.TempDir(), "out")
			_, err := Extract(context.Background(), src, dest, ExtractOptions{MaxBytes: 1 << 20})
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Extract error = %v, want ErrTooLarge", err)
			}
			src.Close()
			// Read-ahead may decompress a few MiB past the point of refusal.
			if n := produced.Load(); n > 64<<20 {
				t.Errorf("read %d uncompressed bytes before stopping", n)
			}
		})
	}

	if _, err := Extract(context.Background(), bytes.NewReader(nil), filepath.Join(t.TempDir(), "x"), ExtractOptions{MaxBytes: -1}); err == nil {
		t.Errorf("negative MaxBytes accepted")
	}
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestExtractMalformed(t *testing.T) {
	t.Parallel()
	good := buildTar(t, []ent{{name: "bin/x", typ: tar.TypeReg, body: strings.Repeat("payload ", 4096)}})
	goodGz := gzipBytes(t, good)

	corrupt := bytes.Clone(goodGz)
	corrupt[len(corrupt)-6] ^= 0xff // inside the CRC32 trailer

	var unterminated bytes.Buffer
	tw := tar.NewWriter(&unterminated)
	_ = tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
	_, _ = tw.Write([]byte("abc"))
	_ = tw.Flush()

	nonZeroPad := append(bytes.Clone(good), []byte("junk")...)

	cases := []struct {
		name string
		data []byte
	}{
		{name: "empty input", data: nil},
		{name: "not gzip", data: good},
		{name: "corrupt crc", data: corrupt},
		{name: "truncated gzip", data: goodGz[:len(goodGz)/2]},
		{name: "garbage after gzip", data: append(bytes.Clone(goodGz), "garbage"...)},
		{name: "second gzip member", data: append(bytes.Clone(goodGz), gzipBytes(t, good)...)},
		{name: "missing end marker", data: gzipBytes(t, unterminated.Bytes())},
		{name: "data after end marker", data: gzipBytes(t, nonZeroPad)},
		{name: "garbage tar", data: gzipBytes(t, bytes.Repeat([]byte("not a tar header "), 100))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), dest, ExtractOptions{})
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Extract error = %v, want ErrFormat", err)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("destination left behind: %v", err)
			}
		})
	}

	t.Run("source error passes through", func(t *testing.T) {
		boom := errors.New("connection reset")
		src := &failingReader{r: bytes.NewReader(goodGz), n: len(goodGz) / 2, err: boom}
		_, err := Extract(context.Background(), src, filepath.Join(t.TempDir(), "out"), ExtractOptions{})
		if !errors.Is(err, boom) || errors.Is(err, ErrFormat) {
			t.Fatalf("Extract error = %v, want the source error only", err)
		}
	})

	t.Run("padding after end marker accepted", func(t *testing.T) {
		padded := append(bytes.Clone(good), make([]byte, 20*512)...)
		if _, err := Extract(context.Background(), bytes.NewReader(gzipBytes(t, padded)), filepath.Join(t.TempDir(), "out"), ExtractOptions{}); err != nil {
			t.Fatalf("Extract: %v", err)
		}
	})
}

func TestExtractCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := buildTarGz(t, []ent{{name: "x", typ: tar.TypeReg, body: "x"}})
	dest := filepath.Join(t.TempDir(), "out")
	if _, err := Extract(ctx, bytes.NewReader(data), dest, ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract error = %v, want context.Canceled", err)
	}
}
