package repo_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
)

// randomContent returns n bytes that differ from seed to seed.
func randomContent(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// hasherGoroutines counts the Verifier's hashing goroutines still alive.
func hasherGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "core/repo.(*hashPipe).start")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitNoHashers fails the test if hashing goroutines outlive their
// Verifier. They are asked to stop before Close or the last Read returns,
// so only the scheduler's delay is allowed for.
func waitNoHashers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := hasherGoroutines()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hashing goroutines still running", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readAll reads v with reads of at most size bytes, as a consumer with a
// small buffer does, and checks that io.EOF only ever comes last.
func readAll(t *testing.T, v io.Reader, size int) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	p := make([]byte, size)
	for {
		n, err := v.Read(p)
		out.Write(p[:n])
		if err != nil {
			if n2, err2 := v.Read(p); n2 != 0 || err2 != err {
				t.Fatalf("after %v, Read returned %d, %v", err, n2, err2)
			}
			return out.Bytes(), err
		}
	}
}

func wantHashError(t *testing.T, err error, what string) {
	t.Helper()
	var he *trust.HashError
	if !errors.As(err, &he) || he.What != what {
		t.Fatalf("got %v, want a %s HashError", err, what)
	}
	if !errors.Is(err, trust.ErrUntrusted) {
		t.Fatalf("%v is not untrusted", err)
	}
}

// TestVerifierParallel runs content several times the Verifier's buffers
// through it, with reads from 1 byte to larger than a chunk, so chunks are
// reused while hashers still work on others.
func TestVerifierParallel(t *testing.T) {
	content := randomContent(3<<20+12345, 1)
	good := hashes(content)
	wrong := hashes([]byte("other"))
	tests := []struct {
		name   string
		body   []byte
		length uint64
		hashes map[string]string
		what   string // the HashError's What, "" for success
	}{
		{"exact", content, uint64(len(content)), good, ""},
		{"sha256 only signed", content, uint64(len(content)), map[string]string{"sha256": good["sha256"]}, ""},
		{"sha512 only signed", content, uint64(len(content)), map[string]string{"sha512": good["sha512"]}, ""},
		{"wrong sha256 only", content, uint64(len(content)), map[string]string{"sha256": wrong["sha256"], "sha512": good["sha512"]}, "sha256"},
		{"wrong sha512 only", content, uint64(len(content)), map[string]string{"sha256": good["sha256"], "sha512": wrong["sha512"]}, "sha512"},
		{"one byte too long", append(bytes.Clone(content), 0), uint64(len(content)), good, "length"},
		{"one byte too short", content[:len(content)-1], uint64(len(content)), good, "length"},
		{"empty", nil, 0, hashes(nil), ""},
		{"no hash signed", content, uint64(len(content)), map[string]string{"md5": "x"}, "sha256"},
	}
	for _, tc := range tests {
		for _, size := range []int{1 << 20, 100 << 10, 4093} {
			t.Run(tc.name, func(t *testing.T) {
				v := repo.NewVerifier(io.NopCloser(bytes.NewReader(tc.body)), "x.tar.gz", tc.length, tc.hashes)
				defer v.Close()
				got, err := readAll(t, v, size)
				if tc.what != "" {
					wantHashError(t, err, tc.what)
					waitNoHashers(t)
					return
				}
				if err != io.EOF {
					t.Fatalf("got %v, want io.EOF", err)
				}
				if !bytes.Equal(got, tc.body) {
					t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(tc.body))
				}
				waitNoHashers(t)
			})
		}
	}
}

// TestVerifierTinyReads reads one byte at a time across several chunks,
// and from a source that also answers one byte at a time.
func TestVerifierTinyReads(t *testing.T) {
	content := randomContent(2<<20+500, 2)
	for _, tc := range []struct {
		name    string
		content []byte
		oneByte bool // the source returns one byte per Read
		hashes  map[string]string
		what    string
	}{
		{"good", content, false, hashes(content), ""},
		{"good, one-byte source", content[:64<<10], true, hashes(content[:64<<10]), ""},
		{"wrong sha512", content, false, map[string]string{"sha256": hashes(content)["sha256"], "sha512": hashes(nil)["sha512"]}, "sha512"},
		{"wrong sha256, one-byte source", content[:64<<10], true, map[string]string{"sha256": hashes(nil)["sha256"], "sha512": hashes(content[:64<<10])["sha512"]}, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src io.Reader = bytes.NewReader(tc.content)
			if tc.oneByte {
				src = iotest.OneByteReader(src)
			}
			v := repo.NewVerifier(io.NopCloser(src), "x.tar.gz", uint64(len(tc.content)), tc.hashes)
			defer v.Close()
			got, err := readAll(t, v, 1)
			if tc.what != "" {
				wantHashError(t, err, tc.what)
				return
			}
			if err != io.EOF || !bytes.Equal(got, tc.content) {
				t.Fatalf("got %d bytes and %v", len(got), err)
			}
		})
	}
	waitNoHashers(t)
}

// counting counts the bytes asked of and returned by a source.
type counting struct {
	r     io.Reader
	asked int
	n     int
}

func (c *counting) Read(p []byte) (int, error) {
	c.asked = max(c.asked, len(p))
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestVerifierReadsAtMostOnePastLength: whatever the reads, the source is
// never asked for more than the signed length plus one byte.
func TestVerifierReadsAtMostOnePastLength(t *testing.T) {
	const length = 300<<10 + 7
	for _, drain := range []bool{false, true} {
		src := &counting{r: &endless{}}
		v := repo.NewVerifier(io.NopCloser(src), "x.tar.gz", length, hashes(nil))
		var err error
		if drain {
			err = v.Drain()
		} else {
			_, err = readAll(t, v, 1<<20)
		}
		wantHashError(t, err, "length")
		if src.n > length+1 {
			t.Fatalf("drain=%v: read %d bytes of an endless stream signed at %d", drain, src.n, length)
		}
		v.Close()
	}
	// A small item gets a small buffer: one byte past its length.
	src := &counting{r: bytes.NewReader([]byte("tiny"))}
	v := repo.NewVerifier(io.NopCloser(src), "x.tar.gz", 4, hashes([]byte("tiny")))
	if err := v.Drain(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if src.asked > 5 {
		t.Fatalf("asked for %d bytes of a 4-byte item", src.asked)
	}
	waitNoHashers(t)
}

// failing returns its content, then err.
type failing struct {
	r   io.Reader
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestVerifierSourceErrorMidStream: a source that breaks off is a transport
// failure (a FetchError that keeps its cause), not a verification one, and
// the data before the break is still handed out.
func TestVerifierSourceErrorMidStream(t *testing.T) {
	content := randomContent(2<<20, 3)
	cause := errors.New("connection reset")
	for _, drain := range []bool{false, true} {
		src := &failing{r: bytes.NewReader(content[:1<<20+5]), err: cause}
		v := repo.NewVerifier(io.NopCloser(src), "x.tar.gz", uint64(len(content)), hashes(content))
		var got []byte
		var err error
		if drain {
			var buf bytes.Buffer
			_, err = v.WriteTo(&buf)
			got = buf.Bytes()
		} else {
			got, err = readAll(t, v, 64<<10)
		}
		var fe *repo.FetchError
		if !errors.As(err, &fe) || !errors.Is(err, cause) {
			t.Fatalf("drain=%v: got %v, want a FetchError wrapping %v", drain, err, cause)
		}
		if errors.Is(err, trust.ErrUntrusted) || fe.Class() != trust.ClassTransport {
			t.Fatalf("drain=%v: %v is classed as a verification failure", drain, err)
		}
		if !bytes.Equal(got, content[:1<<20+5]) {
			t.Fatalf("drain=%v: got %d bytes before the error, want %d", drain, len(got), 1<<20+5)
		}
		// The error alone ends the hashers, before any Close.
		waitNoHashers(t)
		v.Close()
	}
}

// TestVerifierCloseBeforeEOF: closing part way stops the hashers, closes
// the source, and makes later reads fail as a transport error.
func TestVerifierCloseBeforeEOF(t *testing.T) {
	content := randomContent(4<<20, 4)
	src := &closeRecorder{r: bytes.NewReader(content)}
	v := repo.NewVerifier(src, "x.tar.gz", uint64(len(content)), hashes(content))
	if _, err := io.ReadFull(v, make([]byte, 1<<20+3)); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if !src.closed {
		t.Fatal("the source was not closed")
	}
	waitNoHashers(t)
	// What was already read may still come out; then the reads fail.
	_, err := io.Copy(io.Discard, v)
	var fe *repo.FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("read after Close: got %v, want a FetchError", err)
	}
	if err := v.Drain(); err == nil {
		t.Fatal("Drain after Close reported a verified stream")
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type closeRecorder struct {
	r      io.Reader
	closed bool
}

func (c *closeRecorder) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *closeRecorder) Close() error               { c.closed = true; return nil }

// blocking is a source whose Read waits until it is closed, like a stalled
// network stream.
type blocking struct {
	once   sync.Once
	closed chan struct{}
}

func (b *blocking) Read(p []byte) (int, error) {
	<-b.closed
	return 0, errors.New("stream closed")
}

func (b *blocking) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// TestVerifierCloseWhileReading: Close from another goroutine unblocks a
// Read stuck in the source, as it did when the Verifier was a plain
// wrapper; the race detector checks the two goroutines share nothing
// unsafely.
func TestVerifierCloseWhileReading(t *testing.T) {
	src := &blocking{closed: make(chan struct{})}
	v := repo.NewVerifier(src, "x.tar.gz", 1<<20, hashes(nil))
	done := make(chan error)
	go func() {
		_, err := v.Read(make([]byte, 4096))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	v.Close()
	select {
	case err := <-done:
		var fe *repo.FetchError
		if !errors.As(err, &fe) {
			t.Fatalf("got %v, want a FetchError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	waitNoHashers(t)
}

// TestVerifierDrainAfterPartialRead: Drain picks up where the reads
// stopped, including the rest of a chunk already read.
func TestVerifierDrainAfterPartialRead(t *testing.T) {
	content := randomContent(1<<20+77, 5)
	for _, tc := range []struct {
		name   string
		hashes map[string]string
		ok     bool
	}{
		{"good", hashes(content), true},
		{"wrong sha256", map[string]string{"sha256": hashes(nil)["sha256"], "sha512": hashes(content)["sha512"]}, false},
	} {
		v := repo.NewVerifier(io.NopCloser(bytes.NewReader(content)), "x.tar.gz", uint64(len(content)), tc.hashes)
		if _, err := io.ReadFull(v, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		err := v.Drain()
		if tc.ok && err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.ok {
			wantHashError(t, err, "sha256")
			// The failure sticks.
			if _, err := v.Read(make([]byte, 10)); !errors.As(err, new(*trust.HashError)) {
				t.Fatalf("%s: Read after a failed Drain: %v", tc.name, err)
			}
		}
		v.Close()
	}
	waitNoHashers(t)
}

// shortWriter accepts half of each write.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

// TestVerifierWriteTo: io.Copy goes through WriteTo; a writer's failure is
// passed on as it is, and only a verified stream copies without error.
func TestVerifierWriteTo(t *testing.T) {
	content := randomContent(1<<20+1, 6)
	v := repo.NewVerifier(io.NopCloser(bytes.NewReader(content)), "x.tar.gz", uint64(len(content)), hashes(content))
	var buf bytes.Buffer
	n, err := io.Copy(&buf, v)
	if err != nil || n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("copied %d bytes, %v", n, err)
	}
	v.Close()

	v = repo.NewVerifier(io.NopCloser(bytes.NewReader(content)), "x.tar.gz", uint64(len(content)), hashes(content))
	if _, err := v.WriteTo(shortWriter{}); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short writer: got %v", err)
	}
	v.Close()

	v = repo.NewVerifier(io.NopCloser(bytes.NewReader(content)), "x.tar.gz", uint64(len(content)), map[string]string{"sha512": hashes(nil)["sha512"]})
	buf.Reset()
	if _, err := io.Copy(&buf, v); !errors.As(err, new(*trust.HashError)) {
		t.Fatalf("wrong sha512 copied with %v", err)
	}
	v.Close()
	waitNoHashers(t)
}

// TestVerifierAbandoned: a Verifier dropped part way without Close (a
// caller's bug) does not keep its goroutines once it is collected.
func TestVerifierAbandoned(t *testing.T) {
	content := randomContent(2<<20, 7)
	func() {
		v := repo.NewVerifier(io.NopCloser(bytes.NewReader(content)), "x.tar.gz", uint64(len(content)), hashes(content))
		if _, err := io.ReadFull(v, make([]byte, 300<<10)); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for hasherGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d hashing goroutines outlived an abandoned Verifier", hasherGoroutines())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
