package host

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// stuckBackend never answers Stat or the body of Get, whatever the
// context says: a plugin stuck in a system call.
type stuckBackend struct {
	sdk.Backend
	release chan struct{}
}

func (s *stuckBackend) Stat(context.Context, string) (sdk.ObjectInfo, error) {
	<-s.release
	return sdk.ObjectInfo{}, errors.New("released")
}

func (s *stuckBackend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	return io.NopCloser(&stuckReader{s.release}), sdk.ObjectInfo{Key: key, Size: 10}, nil
}

type stuckReader struct{ release chan struct{} }

func (r *stuckReader) Read([]byte) (int, error) {
	<-r.release
	return 0, io.EOF
}

// TestStuckPluginTimesOut: a plugin that stops answering gets the
// timeout's error, naming the call and the setting, instead of hanging
// the host; a stream that stops moving is cut the same way.
func TestStuckPluginTimesOut(t *testing.T) {
	t.Setenv(EnvTimeout, "200ms")
	release := make(chan struct{})
	defer close(release)
	open := func(context.Context, sdk.Config) (sdk.Backend, error) {
		return &stuckBackend{Backend: sdktest.NewMemBackend(), release: release}, nil
	}
	ctx := context.Background()
	b, err := InProcessBackend(ctx, open, sdk.Config{Address: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill()
	start := time.Now()
	_, err = b.Stat(ctx, "k")
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stat k") || !strings.Contains(err.Error(), EnvTimeout) {
		t.Fatalf("Stat of a stuck plugin: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stat gave up after %v", took)
	}
	rc, _, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "get k") {
		t.Fatalf("reading a stream that stopped: %v", err)
	}
}

// TestSlowCallerIsNotCut: the watchdog runs only while the host waits on
// the plugin, so a caller that takes its time between reads keeps its
// stream.
func TestSlowCallerIsNotCut(t *testing.T) {
	t.Setenv(EnvTimeout, "100ms")
	ctx := context.Background()
	b, err := InProcessBackend(ctx, func(context.Context, sdk.Config) (sdk.Backend, error) { return sdktest.NewMemBackend(), nil }, sdk.Config{Address: "mem"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data := strings.Repeat("x", 3<<20)
	if _, err := b.Put(ctx, "k", strings.NewReader(data), sdk.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 1<<20)
	n := 0
	for {
		m, err := rc.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("a slow reader lost its stream: %v", err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if n != len(data) {
		t.Fatalf("read %d bytes, want %d", n, len(data))
	}
}

// hugeSigner answers Sign with more than any signature.
type hugeSigner struct{ sdk.Signer }

func (hugeSigner) PublicKey(context.Context) (sdk.PublicKey, error) {
	return sdk.PublicKey{KeyType: "rsa", Scheme: "rsassa-pss-sha256", PEM: "x"}, nil
}

func (hugeSigner) Sign(context.Context, []byte) ([]byte, error) {
	return make([]byte, 10<<20), nil
}

// TestHugeAnswerRefused: an answer far larger than the call can need is
// refused by the host's cap before it is read whole.
func TestHugeAnswerRefused(t *testing.T) {
	ctx := context.Background()
	s, err := InProcessSigner(ctx, func(context.Context, sdk.Config) (sdk.Signer, error) { return hugeSigner{}, nil }, sdk.Config{Address: "huge"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Sign(ctx, []byte("payload")); err == nil || !strings.Contains(err.Error(), "size limit") {
		t.Fatalf("Sign answering 10 MB: %v", err)
	}
}

// A backend whose object breaks off with io.ErrUnexpectedEOF (a body cut
// short) must not reach the host as a clean, shorter object.
func TestGetPassesOnUnexpectedEOF(t *testing.T) {
	b, err := InProcessBackend(t.Context(), func(context.Context, sdk.Config) (sdk.Backend, error) {
		return cutShort{}, nil
	}, sdk.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rc, _, err := b.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err == nil {
		t.Fatalf("read %d bytes and a clean end; want the backend's error", len(data))
	}
}

// cutShort serves one object that breaks off after 10 bytes.
type cutShort struct{ sdk.Backend }

func (cutShort) Get(context.Context, string) (io.ReadCloser, sdk.ObjectInfo, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader("0123456789"), iotest.ErrReader(io.ErrUnexpectedEOF))),
		sdk.ObjectInfo{Key: "x", Size: 100}, nil
}

func (cutShort) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{}, nil
}
