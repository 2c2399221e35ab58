package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ent describes one tar entry for buildTarGz.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

var testMtime = time.Date(2026, 11, 22, 23, 27, 0, 0, time.UTC)

// buildTar writes ents as an uncompressed tar stream, ended properly.
func buildTar(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Linkname: e.link,
			Mode:     e.mode,
			ModTime:  testMtime,
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if e.typ == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: e.name, PAXRecords: map[string]string{"comment": "seed"}}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("write body %q: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("close tar: %v", err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return buf.Bytes()
}

func buildTarGz(t testing.TB, ents []ent) []byte {
	t.Helper()
	return gzipBytes(t, buildTar(t, ents))
}

// ustarBlock builds one raw ustar header block, bypassing the checks of
// archive/tar's writer so that tests can express headers it refuses.
func ustarBlock(name string, typ byte, size int) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", testMtime.Unix()))
	copy(b[148:156], "        ")
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxNULArchive is a tar.gz whose pax path record contains a NUL byte.
func paxNULArchive(t testing.TB) []byte {
	t.Helper()
	record := "path=evil\x00/../../x"
	// A pax record's length prefix counts itself.
	n := len(record) + 3
	for len(fmt.Sprintf("%d %s\n", n, record)) != n {
		n++
	}
	rec := fmt.Sprintf("%d %s\n", n, record)
	var raw []byte
	raw = append(raw, ustarBlock("PaxHeaders/evil", tar.TypeXHeader, len(rec))...)
	raw = append(raw, padBlock([]byte(rec))...)
	raw = append(raw, ustarBlock("evil", tar.TypeReg, 0)...)
	raw = append(raw, make([]byte, 1024)...)
	return gzipBytes(t, raw)
}

// sandbox lays out base/a/b/dest (the extraction target, not created)
// next to things an escape would hit: a canary dir, a victim file at
// base/a/b/x and a stand-in for /etc at base/a/etc.
type sandbox struct {
	base, dest, absEtc string
}

const victimContent = "original"

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	base := t.TempDir()
	s := sandbox{
		base:   base,
		dest:   filepath.Join(base, "a", "b", "dest"),
		absEtc: filepath.Join(base, "a", "etc"),
	}
	for _, d := range []string{filepath.Join(base, "a", "b", "canary"), s.absEtc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(s.absEtc, "passwd"), filepath.Join(base, "a", "b", "x")} {
		if err := os.WriteFile(f, []byte(victimContent), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// assertContained fails if anything exists outside dest beyond the
// sandbox's own furniture, or if a victim file changed.
func (s sandbox) assertContained(t testing.TB) {
	t.Helper()
	allowed := map[string]bool{
		".": true, "a": true, "a/b": true, "a/b/canary": true,
		"a/etc": true, "a/etc/passwd": true, "a/b/x": true,
	}
	err := filepath.WalkDir(s.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.base, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "a/b/dest" {
			return fs.SkipDir
		}
		if !allowed[rel] {
			t.Errorf("found %s outside the destination", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk sandbox: %v", err)
	}
	for _, f := range []string{filepath.Join(s.absEtc, "passwd"), filepath.Join(s.base, "a", "b", "x")} {
		b, err := os.ReadFile(f)
		if err != nil || string(b) != victimContent {
			t.Errorf("victim %s changed: %q, %v", f, b, err)
		}
		fi, err := os.Stat(f)
		if err == nil && fi.Sys() != nil {
			if n := nlink(fi); n != 1 {
				t.Errorf("victim %s gained hard links: nlink %d", f, n)
			}
		}
	}
}

// assertLinksInside resolves every symlink under dest against the disk,
// independently of the extractor's own bookkeeping, and fails if one
// leads outside dest.
func assertLinksInside(t testing.TB, dest string) {
	t.Helper()
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, err := filepath.Rel(dest, p)
		if err != nil {
			return err
		}
		if err := diskLinkInside(dest, filepath.ToSlash(rel)); err != nil {
			t.Errorf("symlink %s: %v", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dest, err)
	}
}

func diskLinkInside(dest, rel string) error {
	target, err := os.Readlink(filepath.Join(dest, rel))
	if err != nil {
		return err
	}
	var stack []string
	if d := path.Dir(rel); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(target, "/")
	if path.IsAbs(target) {
		return fmt.Errorf("absolute target %q", target)
	}
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return fmt.Errorf("target %q leaves destination", target)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		p := filepath.Join(dest, filepath.FromSlash(strings.Join(stack, "/")))
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > 255 {
			return fmt.Errorf("target %q loops", target)
		}
		next, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if path.IsAbs(next) {
			return fmt.Errorf("target %q reaches absolute %q", target, next)
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}
