package fsbackend_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// The test binary doubles as the plugin (see sdk/plugintest): the plugin
// side is then this package's code built like the test, -race included.
func TestMain(m *testing.M) {
	plugintest.Serve(fsbackend.Open, nil)
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			b := fsbackend.New(t.TempDir())
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
	t.Run("protocol in memory", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			b, err := host.InProcessBackend(openContext(t), fsbackend.Open, sdk.Config{Address: t.TempDir()})
			if err != nil {
				t.Fatalf("InProcessBackend: %v", err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
	t.Run("plugin process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return plugintest.Backend(t, sdk.Config{Address: "file://" + t.TempDir()})
		})
	})
}

// openContext bounds a plugin's start.
func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
