package localsigner_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/plugins/signer-local/localsigner"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// The test binary doubles as the plugin (see sdk/plugintest), so the
// plugin side is this package's code built like the test, -race included.
func TestMain(m *testing.M) {
	plugintest.Serve(nil, localsigner.Open)
	dir, err := os.MkdirTemp("", "localsigner-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keyDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// keyDir holds the key files TestMain's run generates.
var keyDir string

// keyFile returns the path of a private key file generated once for the
// whole test binary: RSA generation is slow under -race, and the suite needs
// a working key, not a fresh one each time.
func keyFile(t *testing.T) string {
	t.Helper()
	path, err := sharedKey()
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return path
}

var sharedKey = sync.OnceValues(func() (string, error) {
	k, err := keys.Generate()
	if err != nil {
		return "", err
	}
	path := filepath.Join(keyDir, k.ID()+".json")
	return path, k.WriteFile(path)
})

// verify checks a signature the way the host checks a manifest's.
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
			s, err := localsigner.Open(t.Context(), sdk.Config{Address: keyFile(t)})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}, verify)
	})
	t.Run("protocol in memory", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			s, err := host.InProcessSigner(openContext(t), localsigner.Open, sdk.Config{Address: keyFile(t)})
			if err != nil {
				t.Fatalf("InProcessSigner: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, verify)
	})
	t.Run("plugin process", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			return plugintest.Signer(t, sdk.Config{Address: keyFile(t)})
		}, verify)
	})
}

// openContext bounds a plugin's start.
func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
