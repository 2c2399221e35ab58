package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"testing"
)

// fuzzLimits keep each fuzz execution small.
var fuzzLimits = ExtractOptions{MaxBytes: 1 << 20, MaxEntries: 256}

// FuzzExtract feeds arbitrary bytes to Extract and checks that nothing is
// written outside the destination, no surviving symlink leads out of it,
// and the byte cap holds. Seeds live in testdata/fuzz/FuzzExtract.
func FuzzExtract(f *testing.F) {
	f.Add(buildTarGz(f, []ent{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/tool", typ: tar.TypeSymlink, link: "../lib/tool"},
		{name: "lib/tool", typ: tar.TypeReg, body: "tool", mode: 0o755},
		{name: "lib/hard", typ: tar.TypeLink, link: "lib/tool"},
	}))
	f.Add(buildTarGz(f, []ent{{name: "d", typ: tar.TypeSymlink, link: "."}, {name: "e", typ: tar.TypeSymlink, link: "d/x/../.."}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		st, err := Extract(context.Background(), bytes.NewReader(data), s.dest, fuzzLimits)
		s.assertContained(t)
		if st.Bytes > fuzzLimits.MaxBytes {
			t.Errorf("wrote %d bytes, cap %d", st.Bytes, fuzzLimits.MaxBytes)
		}
		if err != nil {
			if _, statErr := os.Lstat(s.dest); statErr == nil {
				t.Errorf("destination left behind after %v", err)
			}
			return
		}
		assertLinksInside(t, s.dest)
	})
}
