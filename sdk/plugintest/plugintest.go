// Package plugintest runs a plugin's own test binary as the plugin, so that
// its tests (the sdktest conformance suites first) cross the real process
// boundary against the code under test, built with the test's flags, -race
// included; a separately built plugin binary would be neither.
//
// Call Serve first thing in TestMain, then start plugins with Backend or
// Signer:
//
//	func TestMain(m *testing.M) {
//		plugintest.Serve(mybackend.Open, nil)
//		os.Exit(m.Run())
//	}
//
//	func TestConformance(t *testing.T) {
//		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
//			return plugintest.Backend(t, sdk.Config{Address: t.TempDir()})
//		})
//	}
package plugintest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// envServe tells the test binary which kind of plugin to be.
const envServe = "MIRROR_PLUGINTEST_SERVE"

// StartTimeout bounds a plugin's start.
const StartTimeout = 30 * time.Second

// Serve makes this process the plugin when Backend or Signer started it,
// and then never returns; otherwise it returns at once. A nil factory
// serves nothing of that kind.
func Serve(backend sdk.BackendFactory, signer sdk.SignerFactory) {
	switch os.Getenv(envServe) {
	case "backend":
		if backend != nil {
			serve.Backend(backend)
			os.Exit(0)
		}
	case "signer":
		if signer != nil {
			serve.Signer(signer)
			os.Exit(0)
		}
	default:
		return
	}
	os.Stderr.WriteString("plugintest: TestMain's Serve has no factory for " + os.Getenv(envServe) + "\n")
	os.Exit(2)
}

// Backend starts this test binary as a backend plugin opened with cfg,
// with env added to its environment, and closes it when t ends.
func Backend(t testing.TB, cfg sdk.Config, env ...string) *host.Backend {
	t.Helper()
	b, err := host.StartBackend(startContext(t), command(t, "backend", env), cfg, nil)
	if err != nil {
		t.Fatalf("start backend plugin: %v", err)
	}
	closeLater(t, b.Close)
	return b
}

// Signer starts this test binary as a signer plugin opened with cfg, with
// env added to its environment, and closes it when t ends.
func Signer(t testing.TB, cfg sdk.Config, env ...string) *host.Signer {
	t.Helper()
	s, err := host.StartSigner(startContext(t), command(t, "signer", env), cfg, nil)
	if err != nil {
		t.Fatalf("start signer plugin: %v", err)
	}
	closeLater(t, s.Close)
	return s
}

func command(t testing.TB, kind string, env []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), envServe+"="+kind), env...)
	return cmd
}

func startContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	t.Cleanup(cancel)
	return ctx
}

// closeLater closes a plugin when t ends without waiting for it: go-plugin
// takes about a second to let a plugin go, which would add up over a
// suite's dozens of subtests. A plugin whose close is cut short by the
// test binary's exit ends itself once its host is gone.
func closeLater(t testing.TB, close func() error) {
	t.Cleanup(func() { go close() })
}
