package main_test

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/internal/testregistry"
)

// TestBackendOptionRefused: --backend-option and MIRROR_BACKEND_OPTIONS
// reach the backend plugin, which refuses a key it does not know with one
// line naming it; that, and a setting that is not KEY=VALUE, is a usage
// error (64). The fs backend has no options at all.
func TestBackendOptionRefused(t *testing.T) {
	s := newMirror(t)
	s.fail(64, "unknown option chunk-size; the fs backend takes none", "--backend-option", "chunk-size=1048576", "list")
	r := s.runEnv([]string{"MIRROR_BACKEND_OPTIONS=lease-ttl=1m,colour=blue"}, "list")
	if r.code != 64 || !strings.Contains(r.stderr, "unknown option colour, lease-ttl; the fs backend takes none") {
		t.Errorf("MIRROR_BACKEND_OPTIONS with options the fs backend lacks: exit %d, want 64 naming them: %q", r.code, r.stderr)
	}
	s.fail(64, `--backend-option "chunk-size": want KEY=VALUE`, "--backend-option", "chunk-size", "list")
	s.fail(64, "chunk-size is given twice", "--backend-option", "chunk-size=1", "--backend-option", "chunk-size=2", "list")
	r = s.runEnv([]string{"MIRROR_BACKEND_OPTIONS=mount-from=a,b"}, "list")
	if r.code != 64 || !strings.Contains(r.stderr, `MIRROR_BACKEND_OPTIONS "b": want KEY=VALUE`) || !strings.Contains(r.stderr, "--backend-option") {
		t.Errorf("MIRROR_BACKEND_OPTIONS with a comma in a value: exit %d, want 64 pointing to --backend-option: %q", r.code, r.stderr)
	}
	// An option scoped to another backend (NAME:KEY) never reaches this one.
	s.must("--backend-option", "oci:chunk-size=1048576", "list")
	// Without options the same commands work: the refusals above were the
	// options'.
	s.must("list")
	s.must("verify")
}

// TestOCIBackendOption: the OCI backend gets its settings from the command
// line. An unknown key is refused naming the known ones; a value it checks
// (chunk-size under 1024, lease-settle above a third of lease-ttl) is
// refused by the plugin itself; chunk-size changes how a tarball is
// uploaded, seen in the registry's access log as one PATCH per chunk.
func TestOCIBackendOption(t *testing.T) {
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	m.fail(64, "unknown option colour; the oci backend knows chunk-size, insecure, lease-settle, lease-ttl, mount-from", "--backend-option", "colour=blue", "list")
	m.fail(64, `option chunk-size="100": want a number of bytes, at least 1024`, "--backend-option", "chunk-size=100", "list")
	r := m.runEnv([]string{"MIRROR_BACKEND_OPTIONS=lease-ttl=30s,lease-settle=20s"}, "list")
	if r.code != 64 || !strings.Contains(r.stderr, "lease-settle 20s must be at most a third of lease-ttl 30s") {
		t.Errorf("MIRROR_BACKEND_OPTIONS lease-settle=20s: exit %d, want 64 from the plugin's check: %q", r.code, r.stderr)
	}

	// A flag wins over the environment for the same key.
	if r := m.runEnv([]string{"MIRROR_BACKEND_OPTIONS=chunk-size=100"}, "--backend-option", "chunk-size=1048576", "list"); r.code != 0 {
		t.Errorf("--backend-option chunk-size=1048576 over MIRROR_BACKEND_OPTIONS=chunk-size=100: exit %d: %s", r.code, r.stderr)
	}

	// Each version its own incompressible 3 MiB, so no blob is reused.
	patches := func(version string, extra ...string) int {
		t.Helper()
		payload := make([]byte, 3<<20)
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		m.write("big/payload", string(payload), 0o644)
		m.write("big/run", "#!/bin/sh\necho big\n", 0o755)
		m.must("package", "run", "payload", "-C", "big", "--name", "big", "--release", version)
		before := strings.Count(reg.Log(), `"PATCH /v2/ns/m/blobs/uploads/`)
		m.must(append(extra, "publish", "big", version, "package/big-"+version+"-"+platform+".tar.gz", "run")...)
		return strings.Count(reg.Log(), `"PATCH /v2/ns/m/blobs/uploads/`) - before
	}
	streamed := patches("v1.0.0")
	chunked := patches("v1.0.1", "--backend-option", "chunk-size=1048576")
	t.Logf("PATCH requests of a 3 MiB tarball: %d streamed, %d with chunk-size=1048576", streamed, chunked)
	if chunked < 3 || streamed >= chunked {
		t.Errorf("PATCH requests: %d without chunk-size, %d with 1 MiB chunks; want at least 3 with, and fewer without", streamed, chunked)
	}
	m.must("verify")
	m.must("install", "big:v1.0.1")
}
