package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

var keyDir string

// The test binary doubles as the plugin (sdk/plugintest).
func TestMain(m *testing.M) {
	plugintest.Serve(nil, open)
	dir, err := os.MkdirTemp("", "envkey-test-")
	if err != nil {
		panic(err)
	}
	keyDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sharedKey is generated once: RSA generation is slow under -race.
var sharedKey = sync.OnceValues(func() (string, error) {
	k, err := keys.Generate()
	if err != nil {
		return "", err
	}
	path := filepath.Join(keyDir, "private.json")
	return path, k.WriteFile(path)
})

func keyFile(t *testing.T) string {
	t.Helper()
	p, err := sharedKey()
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return p
}

func verify(pub sdk.PublicKey, payload, sig []byte) error {
	p, err := keys.FromSDK(pub)
	if err != nil {
		return err
	}
	return p.Verify(payload, sig)
}

func TestConformance(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			s, err := open(t.Context(), sdk.Config{Address: "envkey://" + keyFile(t)})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return s
		}, verify)
	})
	t.Run("plugin process, key from the environment", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			return plugintest.Signer(t, sdk.Config{Address: "envkey://"}, EnvVar+"="+keyFile(t))
		}, verify)
	})
}

func TestKeyPath(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		env  string
		want string // empty when keyPath must fail
	}{
		{"path in the reference", "envkey:///secrets/k.json", "", "/secrets/k.json"},
		{"reference wins over the environment", "envkey://k.json", "/other.json", "k.json"},
		{"path from the environment", "envkey://", "/secrets/k.json", "/secrets/k.json"},
		{"no path anywhere", "envkey://", "", ""},
		{"other scheme", "kms://key", "/secrets/k.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keyPath(tt.ref, func(string) string { return tt.env })
			if tt.want == "" {
				if !errors.Is(err, fs.ErrInvalid) {
					t.Fatalf("keyPath(%q) = %q, %v; want an error wrapping fs.ErrInvalid", tt.ref, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("keyPath(%q) = %q, %v; want %q", tt.ref, got, err, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	priv := keyFile(t)
	k, err := keys.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubOnly := filepath.Join(t.TempDir(), "public.json")
	if err := keys.WritePublicKeyFile(k.Public(), pubOnly); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ref  string
		want error
	}{
		{"missing file", "envkey://" + filepath.Join(t.TempDir(), "nope.json"), fs.ErrNotExist},
		{"public key only", "envkey://" + pubOnly, fs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := open(t.Context(), sdk.Config{Address: tt.ref}); !errors.Is(err, tt.want) {
				t.Fatalf("open(%q) = %v, want an error wrapping %v", tt.ref, err, tt.want)
			}
		})
	}
}
