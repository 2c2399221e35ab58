package sdk_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing/fstest"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// fsBackend is a read-only Backend over an fs.FS: the smallest honest
// backend. It reports List as its only capability and refuses writes with
// sdk.ErrUnsupported, as the contract asks.
type fsBackend struct{ fsys fs.FS }

func (b fsBackend) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{List: true}, nil
}

func (b fsBackend) Stat(_ context.Context, key string) (sdk.ObjectInfo, error) {
	if !fs.ValidPath(key) || key == "." {
		return sdk.ObjectInfo{}, fmt.Errorf("stat %q: %w", key, fs.ErrInvalid)
	}
	fi, err := fs.Stat(b.fsys, key)
	if err != nil {
		// fs.Stat's error wraps fs.ErrNotExist, which is sdk.ErrNotFound.
		return sdk.ObjectInfo{}, err
	}
	return sdk.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (b fsBackend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	f, err := b.fsys.Open(key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	return f, info, nil
}

func (b fsBackend) Put(_ context.Context, key string, _ io.Reader, _ sdk.PutOptions) (sdk.ObjectInfo, error) {
	return sdk.ObjectInfo{}, fmt.Errorf("put %s: read-only backend: %w", key, sdk.ErrUnsupported)
}

func (b fsBackend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	return fs.WalkDir(b.fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(p, prefix) {
			return err
		}
		info, err := b.Stat(ctx, p)
		if err != nil {
			return err
		}
		return fn(info)
	})
}

func (b fsBackend) Delete(_ context.Context, key string) error {
	return fmt.Errorf("delete %s: read-only backend: %w", key, sdk.ErrUnsupported)
}

func (b fsBackend) Lock(_ context.Context, name string) (func() error, error) {
	return nil, fmt.Errorf("lock %s: read-only backend: %w", name, sdk.ErrUnsupported)
}

// A backend reports failures with the sdk sentinels, which survive the
// plugin boundary; callers test them with errors.Is.
func Example_readOnlyBackend() {
	var b sdk.Backend = fsBackend{fstest.MapFS{
		"root.json":                        {Data: []byte(`{"signed":{}}`)},
		"hello-v1.0.0-linux-amd64.tar.gz":  {Data: make([]byte, 1024)},
		"hello-v1.0.0-darwin-arm64.tar.gz": {Data: make([]byte, 2048)},
	}}
	ctx := context.Background()

	rc, info, err := b.Get(ctx, "root.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	fmt.Printf("%s: %d bytes: %s\n", info.Key, info.Size, data)

	b.List(ctx, "hello-", func(info sdk.ObjectInfo) error {
		fmt.Println(info.Key, info.Size)
		return nil
	})

	_, err = b.Stat(ctx, "snapshot.json")
	fmt.Println("missing:", errors.Is(err, sdk.ErrNotFound))
	_, err = b.Stat(ctx, "../etc/passwd")
	fmt.Println("invalid key:", errors.Is(err, fs.ErrInvalid))
	_, err = b.Put(ctx, "root.json", strings.NewReader("{}"), sdk.PutOptions{})
	fmt.Println("write refused:", errors.Is(err, sdk.ErrUnsupported))
	// Output:
	// root.json: 13 bytes: {"signed":{}}
	// hello-v1.0.0-darwin-arm64.tar.gz 2048
	// hello-v1.0.0-linux-amd64.tar.gz 1024
	// missing: true
	// invalid key: true
	// write refused: true
}

// checkedCopy is how a backend's Put honours PutOptions while streaming:
// it copies at most one byte past the expected size, hashes as it goes,
// and reports a mismatch with sdk.ErrIntegrity, so the caller discards
// what it wrote instead of committing it.
func checkedCopy(w io.Writer, r io.Reader, opts sdk.PutOptions) error {
	if opts.SizeKnown {
		r = io.LimitReader(r, opts.Size+1)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		return err
	}
	if opts.SizeKnown && n != opts.Size {
		return fmt.Errorf("put: %d bytes or more, want %d: %w", n, opts.Size, sdk.ErrIntegrity)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); opts.SHA256 != "" && sum != opts.SHA256 {
		return fmt.Errorf("put: sha256 %s, want %s: %w", sum[:8], opts.SHA256[:8], sdk.ErrIntegrity)
	}
	return nil
}

func ExamplePutOptions() {
	sum := sha256.Sum256([]byte("hello"))
	opts := sdk.PutOptions{Size: 5, SizeKnown: true, SHA256: hex.EncodeToString(sum[:])}
	for _, body := range []string{"hello", "hello, world", "hellO"} {
		err := checkedCopy(io.Discard, strings.NewReader(body), opts)
		fmt.Printf("%q: %v (integrity failure: %v)\n", body, err, errors.Is(err, sdk.ErrIntegrity))
	}
	// The zero PutOptions checks nothing.
	fmt.Println(checkedCopy(io.Discard, strings.NewReader("anything"), sdk.PutOptions{}))
	// Output:
	// "hello": <nil> (integrity failure: false)
	// "hello, world": put: 6 bytes or more, want 5: integrity check failed (integrity failure: true)
	// "hellO": put: sha256 04a6f55f, want 2cf24dba: integrity check failed (integrity failure: true)
	// <nil>
}

// rsaSigner signs the way TiUP keys do, RSASSA-PSS with SHA-256. A real
// signer plugin would keep the key in a KMS or HSM and call out to it.
type rsaSigner struct{ key *rsa.PrivateKey }

func (s rsaSigner) PublicKey(context.Context) (sdk.PublicKey, error) {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		return sdk.PublicKey{}, err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return sdk.PublicKey{KeyType: "rsa", Scheme: "rsassa-pss-sha256", PEM: string(p)}, nil
}

func (s rsaSigner) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	digest := sha256.Sum256(payload)
	return rsa.SignPSS(rand.Reader, s.key, crypto.SHA256, digest[:], nil)
}

// The host checks every signature against the signer's public key before
// it uses it; this is that check.
func ExampleSigner() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		fmt.Println(err)
		return
	}
	var s sdk.Signer = rsaSigner{key}
	ctx := context.Background()
	payload := []byte(`{"signed":{"_type":"timestamp"}}`)
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	pub, _ := s.PublicKey(ctx)
	block, _ := pem.Decode([]byte(pub.PEM))
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		fmt.Println(err)
		return
	}
	digest := sha256.Sum256(payload)
	fmt.Println(pub.KeyType, pub.Scheme)
	fmt.Println("verified:", rsa.VerifyPSS(parsed.(*rsa.PublicKey), crypto.SHA256, digest[:], sig, nil) == nil)
	// Output:
	// rsa rsassa-pss-sha256
	// verified: true
}

// A plugin's main is one call: serve.Backend speaks the plugin protocol on
// the process's stdio until the host lets go. Build it as
// mirror-backend-SCHEME and put it in the plugin directory or on PATH; it is
// then started for every address SCHEME://... (here, ro://DIR).
//
// This example is compiled, not run: it would wait for a host.
func Example_backendPlugin() {
	serve.Backend(func(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
		dir, ok := strings.CutPrefix(cfg.Address, "ro://")
		if !ok || dir == "" {
			return nil, fmt.Errorf("open %s: not an ro://DIR address: %w", cfg.Address, fs.ErrInvalid)
		}
		return fsBackend{os.DirFS(dir)}, nil
	})
}
