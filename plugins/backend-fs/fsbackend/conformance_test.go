package fsbackend_test

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/sdktest"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// pluginEnv makes the test binary serve fsbackend as a plugin instead of
// running tests. The plugin side is then this package's code, built with
// the same flags as the test (-race included), which a separately built
// ./plugins/backend-fs binary would not be; its main is one line.
const pluginEnv = "MIRROR_FSBACKEND_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(pluginEnv) == "backend" {
		serve.Backend(fsbackend.Open)
		os.Exit(0)
	}
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
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		// Closing a plugin takes go-plugin about a second; the plugins
		// close in the background while later subtests run, and all are
		// gone before this test ends.
		var closing sync.WaitGroup
		defer closing.Wait()
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), pluginEnv+"=backend")
			b, err := host.StartBackend(openContext(t), cmd, sdk.Config{Address: "file://" + t.TempDir()}, nil)
			if err != nil {
				t.Fatalf("StartBackend: %v", err)
			}
			t.Cleanup(func() { closing.Go(func() { b.Close() }) })
			return b
		})
	})
}

// openContext bounds a plugin's start.
func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
