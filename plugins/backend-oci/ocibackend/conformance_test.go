package ocibackend_test

import (
	"testing"

	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// confOptions keep the suite's Lock subtests quick (the protocol is the
// same as with the defaults) and upload in 1 MiB chunks, so that the 8 and
// 64 MiB round trips cross many chunk boundaries.
var confOptions = map[string]string{"lease-settle": "100ms", "lease-ttl": "3s", "chunk-size": "1048576"}

// TestConformance runs the sdk suite against go-containerregistry's
// in-memory registry: in-process, through the protocol in memory, and with
// the backend in a plugin process. Each subtest gets a repository of its own.
func TestConformance(t *testing.T) {
	host := memRegistry(t, nil)
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return openBackend(t, address(host, freshRepo("conf")), confOptions)
		})
	})
	t.Run("protocol in memory", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			b, err := hostInProcess(t, address(host, freshRepo("conf")), confOptions)
			if err != nil {
				t.Fatalf("InProcessBackend: %v", err)
			}
			return b
		})
	})
	t.Run("plugin process", func(t *testing.T) {
		// Closing a plugin takes go-plugin about a second; they close in
		// the background while later subtests run.
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return pluginBackend(t, address(host, freshRepo("conf")), confOptions)
		})
	})
}

// TestConformanceRealRegistry runs the suite against Debian's
// docker-registry (distribution 2.8), in-process and across the plugin
// boundary, with the default chunk size.
func TestConformanceRealRegistry(t *testing.T) {
	reg := realRegistry(t)
	opts := map[string]string{"lease-settle": "100ms", "lease-ttl": "3s"}
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return openBackend(t, address(reg.Host(), freshRepo("conf")), opts)
		})
	})
	t.Run("plugin process", func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return pluginBackend(t, address(reg.Host(), freshRepo("conf")), opts)
		})
	})
}

func hostInProcess(t *testing.T, addr string, opts map[string]string) (*host.Backend, error) {
	b, err := host.InProcessBackend(openContext(t), ocibackend.Open, sdk.Config{Address: addr, Options: opts})
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}
