package archive

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const benchPayload = 64 << 20

// makeBenchTree writes 64 MiB across 16 files. Each 4 KiB chunk is random
// bytes or repeated text in turn, so gzip has some but not much to gain.
func makeBenchTree(b *testing.B, dir string) {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{1})
	text := bytes.Repeat([]byte("component payload "), 4096/18+1)[:4096]
	const files = 16
	buf := make([]byte, benchPayload/files)
	for i := range files {
		for off := 0; off < len(buf); off += 4096 {
			chunk := buf[off : off+4096]
			if (off/4096)%4 == 3 {
				copy(chunk, text)
			} else {
				_, _ = rng.Read(chunk)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "file"+string(rune('a'+i))), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	src := b.TempDir()
	makeBenchTree(b, src)
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Create(context.Background(), io.Discard, src, []string{"."}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtract(b *testing.B) {
	tmp := b.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	makeBenchTree(b, src)
	archive := filepath.Join(tmp, "bench.tar.gz")
	f, err := os.Create(archive)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Create(context.Background(), f, src, []string{"."}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		b.Fatal(err)
	}
	dest := filepath.Join(tmp, "out")
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(archive)
		if err != nil {
			b.Fatal(err)
		}
		_, err = Extract(context.Background(), f, dest, ExtractOptions{})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dest); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
