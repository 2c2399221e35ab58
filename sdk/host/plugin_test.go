package host

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
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// pluginEnv makes the test binary act as a plugin instead of running tests.
const pluginEnv = "MIRROR_HOST_TEST_PLUGIN"

func TestMain(m *testing.M) {
	switch os.Getenv(pluginEnv) {
	case "":
		os.Exit(m.Run())
	case "backend":
		serve.Backend(openMemBackend)
	case "signer":
		serve.Signer(openMemSigner)
	case "backend-v99":
		// A plugin from a future protocol: the same service under version 99.
		cfg := serve.BackendConfig(openMemBackend)
		cfg.HandshakeConfig = wire.Handshake(99)
		cfg.VersionedPlugins = map[int]plugin.PluginSet{99: cfg.VersionedPlugins[sdk.ProtocolVersion]}
		plugin.Serve(cfg)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", pluginEnv, os.Getenv(pluginEnv))
		os.Exit(2)
	}
	os.Exit(0)
}

// pluginCmd returns the command that re-executes this test binary as the
// plugin variant named kind.
func pluginCmd(t *testing.T, kind string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{pluginEnv + "=" + kind}
	return cmd
}

func startBackend(t *testing.T) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := StartBackend(ctx, pluginCmd(t, "backend"), sdk.Config{Address: "mem", Options: map[string]string{"etag": "sha"}}, nil)
	if err != nil {
		t.Fatalf("StartBackend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// sentinels are the errors that must survive the boundary, by the name a
// test key selects them with.
var sentinels = map[string]error{
	"notfound":    sdk.ErrNotFound,
	"exist":       sdk.ErrExist,
	"conflict":    sdk.ErrConflict,
	"integrity":   sdk.ErrIntegrity,
	"unsupported": sdk.ErrUnsupported,
	"invalid":     fs.ErrInvalid,
	"canceled":    context.Canceled,
	"deadline":    context.DeadlineExceeded,
}

// memBackend is the plugin-side backend of these tests. Besides plain
// objects it knows magic keys: "errors/NAME" fails Stat with a sentinel,
// "slow/..." is a Get that sends 1 MiB then blocks until cancelled, and
// "probe/canceled" reports (as Size) how many slow Gets saw cancellation,
// and a Get of "probe/caller-verifies" answers whether its context carried
// sdk.WithCallerVerifies.
type memBackend struct {
	cfg      sdk.Config
	mu       sync.Mutex
	objs     map[string][]byte
	canceled int64
	lock     chan struct{}
}

func openMemBackend(_ context.Context, cfg sdk.Config) (sdk.Backend, error) {
	if cfg.Address != "mem" || cfg.Options["etag"] != "sha" {
		return nil, fmt.Errorf("open mem backend: unexpected config %+v", cfg)
	}
	return &memBackend{cfg: cfg, objs: map[string][]byte{}, lock: make(chan struct{}, 1)}, nil
}

func etag(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (m *memBackend) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: true, LocalFiles: true}, nil
}

func (m *memBackend) Stat(_ context.Context, key string) (sdk.ObjectInfo, error) {
	if name, ok := strings.CutPrefix(key, "errors/"); ok {
		return sdk.ObjectInfo{}, fmt.Errorf("stat %s: backend says %w", key, sentinels[name])
	}
	if key == "probe/canceled" {
		m.mu.Lock()
		defer m.mu.Unlock()
		return sdk.ObjectInfo{Key: key, Size: m.canceled}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.objs[key]
	if !ok {
		return sdk.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, sdk.ErrNotFound)
	}
	return sdk.ObjectInfo{Key: key, Size: int64(len(data)), ETag: etag(data), ModTime: time.Unix(1700000000, 5).UTC()}, nil
}

// slowReader sends one chunk and then waits for ctx, counting the
// cancellation so the host can see that it reached the plugin.
type slowReader struct {
	ctx  context.Context
	m    *memBackend
	sent bool
}

func (r *slowReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, bytes.Repeat([]byte{'s'}, min(len(p), wire.ChunkSize))), nil
	}
	<-r.ctx.Done()
	r.m.mu.Lock()
	r.m.canceled++
	r.m.mu.Unlock()
	return 0, r.ctx.Err()
}

func (m *memBackend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if strings.HasPrefix(key, "slow/") {
		return io.NopCloser(&slowReader{ctx: ctx, m: m}), sdk.ObjectInfo{Key: key, Size: 2 * wire.ChunkSize}, nil
	}
	if key == "probe/caller-verifies" {
		answer := fmt.Sprint(sdk.CallerVerifies(ctx))
		return io.NopCloser(strings.NewReader(answer)), sdk.ObjectInfo{Key: key, Size: int64(len(answer))}, nil
	}
	info, err := m.Stat(ctx, key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	m.mu.Lock()
	data := m.objs[key]
	m.mu.Unlock()
	return io.NopCloser(bytes.NewReader(data)), info, nil
}

func (m *memBackend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if !fs.ValidPath(key) {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, fs.ErrInvalid)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if opts.SizeKnown && int64(len(data)) != opts.Size {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: size %d, want %d: %w", key, len(data), opts.Size, sdk.ErrIntegrity)
	}
	if opts.SHA256 != "" && etag(data) != opts.SHA256 {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: sha256 mismatch: %w", key, sdk.ErrIntegrity)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, exists := m.objs[key]
	if opts.IfNoneMatch && exists {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, sdk.ErrExist)
	}
	if opts.IfMatch != "" && (!exists || etag(old) != opts.IfMatch) {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, sdk.ErrConflict)
	}
	m.objs[key] = data
	return sdk.ObjectInfo{Key: key, Size: int64(len(data)), ETag: etag(data)}, nil
}

func (m *memBackend) List(_ context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	m.mu.Lock()
	var infos []sdk.ObjectInfo
	for k, v := range m.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, sdk.ObjectInfo{Key: k, Size: int64(len(v)), ETag: etag(v)})
		}
	}
	m.mu.Unlock()
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

func (m *memBackend) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, sdk.ErrNotFound)
	}
	delete(m.objs, key)
	return nil
}

func (m *memBackend) Lock(ctx context.Context, name string) (func() error, error) {
	if name != "writer" {
		return nil, fmt.Errorf("lock %s: %w", name, sdk.ErrUnsupported)
	}
	select {
	case m.lock <- struct{}{}:
		return func() error { <-m.lock; return nil }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
	}
}

func (m *memBackend) LocalPath(_ context.Context, key string) (string, error) {
	return "/mem/" + key, nil
}

func (m *memBackend) PutFile(ctx context.Context, key, path string, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	return m.Put(ctx, key, strings.NewReader("file:"+path), opts)
}

// memSigner "signs" with a SHA-256 digest: the protocol, not the
// cryptography, is under test.
type memSigner struct{}

func openMemSigner(_ context.Context, cfg sdk.Config) (sdk.Signer, error) {
	if cfg.Address == "missing" {
		return nil, fmt.Errorf("open key %s: %w", cfg.Address, sdk.ErrNotFound)
	}
	return memSigner{}, nil
}

func (memSigner) PublicKey(context.Context) (sdk.PublicKey, error) {
	return sdk.PublicKey{KeyType: "rsa", Scheme: "rsassa-pss-sha256", PEM: "-----BEGIN PUBLIC KEY-----\n"}, nil
}

func (memSigner) Sign(_ context.Context, payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, errors.New("sign: empty payload")
	}
	sum := sha256.Sum256(payload)
	return sum[:], nil
}

func sortedKeys(t *testing.T, b *Backend, prefix string) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), prefix, func(i sdk.ObjectInfo) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	sort.Strings(keys)
	return keys
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
