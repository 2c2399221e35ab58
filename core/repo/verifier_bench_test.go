package repo_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/archive"
	"github.com/mirrorkit/mirror/core/repo"
)

// benchSize is the payload of the benchmark tarball: the 200 MiB
// incompressible component of scripts/bench-oci.sh.
const benchSize = 200 << 20

// chunkStream serves data the way the plugin host's Get reader does: one
// 1 MiB message at a time, copied into the caller's buffer.
type chunkStream struct {
	data []byte
	off  int
	msg  []byte
}

func (s *chunkStream) Read(p []byte) (int, error) {
	if len(s.msg) == 0 {
		if s.off == len(s.data) {
			return 0, io.EOF
		}
		end := min(s.off+1<<20, len(s.data))
		s.msg, s.off = s.data[s.off:end], end
	}
	n := copy(p, s.msg)
	s.msg = s.msg[n:]
	return n, nil
}

func (s *chunkStream) Close() error { return nil }

// benchTarball builds, once per benchmark, a tarball like `mirror package`
// makes of the benchmark's component: benchSize bytes of payload and a
// script. The payload is random, or, with binary, copies of the test's
// own executable, which compress as real components do (about 3:1).
func benchTarball(b *testing.B, binary bool) []byte {
	b.Helper()
	src := b.TempDir()
	payload := make([]byte, benchSize)
	if binary {
		exe, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		code, err := os.ReadFile(exe)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(payload); {
			off += copy(payload[off:], code)
		}
	} else {
		_, _ = rand.NewChaCha8([32]byte{7}).Read(payload)
	}
	if err := os.WriteFile(filepath.Join(src, "payload"), payload, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "run"), []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := archive.Create(context.Background(), &buf, src, []string{"payload", "run"}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkVerifierDrain is verify's and clone's path: the whole stream
// checked against length, sha256 and sha512, nothing else done with it.
func BenchmarkVerifierDrain(b *testing.B) {
	data := make([]byte, benchSize)
	_, _ = rand.NewChaCha8([32]byte{8}).Read(data)
	want := hashes(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var cpu cpuMeter
	for b.Loop() {
		cpu.start()
		v := repo.NewVerifier(&chunkStream{data: data}, "bench.tar.gz", uint64(len(data)), want)
		if err := v.Drain(); err != nil {
			b.Fatal(err)
		}
		v.Close()
		cpu.stop()
	}
	cpu.report(b)
}

// BenchmarkVerifierExtract is install's path: the verified stream unpacked
// into a fresh directory, then drained to its verified end.
func BenchmarkVerifierExtract(b *testing.B) {
	b.Run("random", func(b *testing.B) { benchExtract(b, benchTarball(b, false)) })
	b.Run("binary", func(b *testing.B) { benchExtract(b, benchTarball(b, true)) })
}

func benchExtract(b *testing.B, tarball []byte) {
	want := hashes(tarball)
	dest := filepath.Join(b.TempDir(), "out")
	b.SetBytes(int64(len(tarball)))
	b.ReportAllocs()
	var cpu cpuMeter
	for b.Loop() {
		cpu.start()
		v := repo.NewVerifier(&chunkStream{data: tarball}, "bench.tar.gz", uint64(len(tarball)), want)
		if _, err := archive.Extract(context.Background(), v, dest, archive.ExtractOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := v.Drain(); err != nil {
			b.Fatal(err)
		}
		v.Close()
		cpu.stop()
		b.StopTimer()
		if err := os.RemoveAll(dest); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	cpu.report(b)
}

// cpuMeter adds up the process's user and system CPU time over the timed
// parts of a benchmark: on a machine shared with other work the wall time
// varies a lot, the CPU a pipeline burns much less.
type cpuMeter struct {
	total time.Duration
	at    time.Duration
	n     int
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *cpuMeter) start() { m.at = processCPU() }

func (m *cpuMeter) stop() {
	m.total += processCPU() - m.at
	m.n++
}

func (m *cpuMeter) report(b *testing.B) {
	if m.n > 0 {
		b.ReportMetric(float64(m.total.Nanoseconds())/float64(m.n), "cpu-ns/op")
	}
}
