package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

func TestRoundTrip(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	if got, want := b.Caps(), (sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: true, LocalFiles: true}); got != want {
		t.Fatalf("Caps() = %+v, want %+v", got, want)
	}
	big := make([]byte, 5*wire.ChunkSize+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"five MiB in chunks", big},
		{"empty", nil},
		{"small", []byte("hello")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "objs/" + strings.ReplaceAll(tt.name, " ", "-")
			info, err := b.Put(ctx, key, bytes.NewReader(tt.data), sdk.PutOptions{Size: int64(len(tt.data)), SizeKnown: true, SHA256: etag(tt.data)})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Key != key || info.Size != int64(len(tt.data)) || info.ETag != etag(tt.data) {
				t.Errorf("Put info = %+v", info)
			}
			rc, info, err := b.Get(ctx, key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("Get returned %d bytes, want %d equal bytes", len(got), len(tt.data))
			}
			if want := time.Unix(1700000000, 5); info.Size != int64(len(tt.data)) || !info.ModTime.Equal(want) {
				t.Errorf("Get info = %+v, want size %d and mod time %v", info, len(tt.data), want)
			}
		})
	}
}

func TestSentinelErrors(t *testing.T) {
	b := startBackend(t)
	for name, sentinel := range sentinels {
		t.Run(name, func(t *testing.T) {
			_, err := b.Stat(context.Background(), "errors/"+name)
			if !errors.Is(err, sentinel) {
				t.Fatalf("Stat error %v (%T) does not wrap %v", err, err, sentinel)
			}
			if want := "stat errors/" + name + ": backend says " + sentinel.Error(); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, err := b.Stat(context.Background(), "errors/none")
		if err == nil || strings.Contains(err.Error(), "rpc error") {
			t.Fatalf("Stat error = %v, want the plugin's plain message", err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("unknown error %v matches sentinel %v", err, s)
			}
		}
	})
}

func TestPutOptions(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	first, err := b.Put(ctx, "cas", strings.NewReader("v1"), sdk.PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	tests := []struct {
		name string
		data string
		opts sdk.PutOptions
		want error
	}{
		{"size mismatch", "abc", sdk.PutOptions{Size: 4, SizeKnown: true}, sdk.ErrIntegrity},
		{"empty pinned to zero", "x", sdk.PutOptions{Size: 0, SizeKnown: true}, sdk.ErrIntegrity},
		{"sha256 mismatch", "abc", sdk.PutOptions{SHA256: etag([]byte("abd"))}, sdk.ErrIntegrity},
		{"create-only on existing", "v2", sdk.PutOptions{IfNoneMatch: true}, sdk.ErrExist},
		{"stale etag", "v2", sdk.PutOptions{IfMatch: etag([]byte("v0"))}, sdk.ErrConflict},
		{"invalid key", "v2", sdk.PutOptions{}, fs.ErrInvalid},
		{"matching etag", "v2", sdk.PutOptions{IfMatch: first.ETag}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "cas"
			if tt.want == fs.ErrInvalid {
				key = "../escape"
			}
			_, err := b.Put(ctx, key, strings.NewReader(tt.data), tt.opts)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Put error = %v, want %v", err, tt.want)
			}
		})
	}
	rc, _, err := b.Get(ctx, "cas")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); string(got) != "v2" {
		t.Errorf("after the failed Puts the object is %q, want v2", got)
	}
}

// failingReader fails after some data, as a broken source would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("source broke")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestPutSourceErrorStoresNothing(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	_, err := b.Put(ctx, "broken", &failingReader{n: wire.ChunkSize + 10}, sdk.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("Put error = %v, want the source's error", err)
	}
	if _, err := b.Stat(ctx, "broken"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Stat after a failed Put = %v, want ErrNotFound", err)
	}
}

func TestListAndDelete(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		if _, err := b.Put(ctx, k, strings.NewReader(k), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(sortedKeys(t, b, "a/"), ","); got != "a/1,a/2" {
		t.Errorf("List(a/) = %s", got)
	}
	stop := errors.New("stop")
	calls := 0
	err := b.List(ctx, "", func(sdk.ObjectInfo) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("List with a failing fn = %v after %d calls, want stop after 1", err, calls)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := b.Delete(ctx, "a/1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if got := strings.Join(sortedKeys(t, b, ""), ","); got != "a/2,b/1" {
		t.Errorf("List after Delete = %s", got)
	}
}

func TestLocalFiler(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	p, err := b.LocalPath(ctx, "x/y")
	if err != nil || p != "/mem/x/y" {
		t.Fatalf("LocalPath = %q, %v", p, err)
	}
	info, err := b.PutFile(ctx, "f", "/tmp/src", sdk.PutOptions{Size: int64(len("file:/tmp/src")), SizeKnown: true})
	if err != nil || info.Size != int64(len("file:/tmp/src")) {
		t.Fatalf("PutFile = %+v, %v", info, err)
	}
}

// lockAsync takes the lock in the background and reports the unlock func.
func lockAsync(ctx context.Context, b *Backend) <-chan func() error {
	ch := make(chan func() error, 1)
	go func() {
		unlock, err := b.Lock(ctx, "writer")
		if err != nil {
			close(ch)
			return
		}
		ch <- unlock
	}()
	return ch
}

func TestLock(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()

	unlock, err := b.Lock(ctx, "writer")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	second := lockAsync(ctx, b)
	select {
	case <-second:
		t.Fatal("second Lock acquired while the first was held")
	case <-time.After(300 * time.Millisecond):
	}
	if err := unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatalf("second unlock: %v", err)
	}
	var unlock2 func() error
	select {
	case unlock2 = <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("second Lock did not acquire after unlock")
	}
	if unlock2 == nil {
		t.Fatal("second Lock failed")
	}

	t.Run("wait ends with ctx", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := b.Lock(cctx, "writer"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock while held = %v, want DeadlineExceeded", err)
		}
	})
	if err := unlock2(); err != nil {
		t.Fatal(err)
	}

	t.Run("unsupported", func(t *testing.T) {
		if _, err := b.Lock(ctx, "other"); !errors.Is(err, sdk.ErrUnsupported) {
			t.Fatalf("Lock(other) = %v, want ErrUnsupported", err)
		}
	})

	t.Run("dropped stream releases", func(t *testing.T) {
		// Hold the lock on a raw stream and drop it without closing the send
		// side, as a host that dies would.
		sctx, drop := context.WithCancel(ctx)
		defer drop()
		stream, err := b.rpc.Lock(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&wire.LockRequest{Name: "writer"}); err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || !m.GetAcquired() {
			t.Fatalf("raw lock: %v, %v", m, err)
		}
		waiter := lockAsync(ctx, b)
		select {
		case <-waiter:
			t.Fatal("Lock acquired while a raw stream held it")
		case <-time.After(300 * time.Millisecond):
		}
		drop()
		select {
		case u := <-waiter:
			if u == nil {
				t.Fatal("Lock failed after the stream was dropped")
			}
			if err := u(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("lock not released after the stream was dropped")
		}
	})
}

func TestGetCancel(t *testing.T) {
	b := startBackend(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, _, err := b.Get(ctx, "slow/1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, wire.ChunkSize)); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	cancel()
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
	// The plugin's read must have been cancelled too.
	deadline := time.After(10 * time.Second)
	for {
		info, err := b.Stat(context.Background(), "probe/canceled")
		if err != nil {
			t.Fatal(err)
		}
		if info.Size == 1 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the plugin's Get was never cancelled")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestKilledPlugin(t *testing.T) {
	b := startBackend(t)
	ctx := context.Background()
	rc, _, err := b.Get(ctx, "slow/1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, wire.ChunkSize)); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rc.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrExited) || !strings.HasPrefix(err.Error(), "backend plugin exited: ") {
			t.Fatalf("Read after kill = %v, want \"backend plugin exited: ...\"", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Read after kill hangs")
	}
	if _, err := b.Stat(ctx, "x"); !errors.Is(err, ErrExited) {
		t.Errorf("Stat after kill = %v, want ErrExited", err)
	}
	if _, err := b.Put(ctx, "x", strings.NewReader("x"), sdk.PutOptions{}); err == nil {
		t.Error("Put after kill succeeded")
	}
	if _, err := b.Lock(ctx, "writer"); err == nil {
		t.Error("Lock after kill succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "x"); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Stat after Close = %v, want fs.ErrClosed", err)
	}
}

func TestProtocolMismatch(t *testing.T) {
	_, err := StartBackend(context.Background(), pluginCmd(t, "backend-v99"), sdk.Config{Address: "mem"}, nil)
	if err == nil {
		t.Fatal("StartBackend accepted a version 99 plugin")
	}
	for _, want := range []string{"99", "host speaks 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenError(t *testing.T) {
	_, err := StartBackend(context.Background(), pluginCmd(t, "backend"), sdk.Config{Address: "elsewhere"}, nil)
	if err == nil || !strings.Contains(err.Error(), "unexpected config") {
		t.Fatalf("StartBackend with a bad config = %v", err)
	}
}

func TestSigner(t *testing.T) {
	ctx := context.Background()
	s, err := StartSigner(ctx, pluginCmd(t, "signer"), sdk.Config{Address: "key.json"}, nil)
	if err != nil {
		t.Fatalf("StartSigner: %v", err)
	}
	defer s.Close()
	k, err := s.PublicKey(ctx)
	if err != nil || k.KeyType != "rsa" || k.Scheme != "rsassa-pss-sha256" || k.PEM == "" {
		t.Fatalf("PublicKey = %+v, %v", k, err)
	}
	sig, err := s.Sign(ctx, []byte("payload"))
	if want := etag([]byte("payload")); err != nil || len(sig) != 32 || !strings.HasPrefix(want, hexOf(sig)[:8]) {
		t.Fatalf("Sign = %x, %v", sig, err)
	}
	if _, err := s.Sign(ctx, nil); err == nil || err.Error() != "sign: empty payload" {
		t.Errorf("Sign(nil) = %v, want the plugin's message", err)
	}
	if _, err := StartSigner(ctx, pluginCmd(t, "signer"), sdk.Config{Address: "missing"}, nil); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("StartSigner(missing) = %v, want ErrNotFound", err)
	}
}

// TestCallerVerifiesCrossesTheProtocol: sdk.WithCallerVerifies on the
// host's Get reaches the plugin's Get, and only when given.
func TestCallerVerifiesCrossesTheProtocol(t *testing.T) {
	b := startBackend(t)
	for _, tc := range []struct {
		ctx  context.Context
		want string
	}{
		{context.Background(), "false"},
		{sdk.WithCallerVerifies(context.Background()), "true"},
	} {
		rc, _, err := b.Get(tc.ctx, "probe/caller-verifies")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("plugin saw CallerVerifies = %s, want %s", got, tc.want)
		}
	}
}
