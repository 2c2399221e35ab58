package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// examplesDir is the separate module of example third-party plugins, which
// builds against this checkout through its replace directive.
const examplesDir = "../../examples"

// examplePlugins builds the example plugins once per test binary, under the
// names the host looks for, into a directory beside the mirror binary that
// TestMain removes.
var examplePlugins = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(filepath.Dir(mirrorBin), "plugins")
	for _, p := range []struct{ exe, pkg string }{
		{"mirror-backend-memdir", "./backend-memdir"},
		{"mirror-signer-envkey", "./signer-envkey"},
	} {
		out, err := exec.Command("go", "build", "-C", examplesDir, "-o", filepath.Join(dir, p.exe), p.pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", p.exe, err, out)
		}
	}
	return dir, nil
})

// pluginSandbox is a sandbox whose PATH holds the example plugins.
func pluginSandbox(t *testing.T) (*sandbox, string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(examplesDir, "go.mod")); err != nil {
		t.Fatalf("the examples module is missing: %v", err)
	}
	dir, err := examplePlugins()
	if err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t)
	s.env = append(s.env, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return s, dir
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestThirdPartyPlugins runs the main job against a mirror kept by an
// external backend, built out of tree, and signs through an external
// signer: the host knows neither beyond its executable's name.
func TestThirdPartyPlugins(t *testing.T) {
	s, _ := pluginSandbox(t)
	store := s.path("store")
	addr := "memdir://" + store
	s.must("init", addr, "-k", s.path("keys"))
	s.must("set", addr)
	s.must("genkey")
	s.must("grant", "alice", "--name", "Alice")
	s.write("src/hello", "#!/bin/sh\necho hello from memdir\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.1")
	s.must("publish", "hello", "v0.0.1", "package/hello-v0.0.1-"+platform+".tar.gz", "hello")

	// The objects are the memdir layout's flat files, not a directory tree
	// the built-in fs backend would have written.
	for _, name := range []string{"o.root.json", "o.1.hello.json", "o.timestamp.json", "o.hello-v0.0.1-" + platform + ".tar.gz"} {
		if _, err := os.Stat(filepath.Join(store, name)); err != nil {
			t.Errorf("memdir store lacks %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(store, "root.json")); err == nil {
		t.Error("root.json stored under its plain name: the built-in backend served memdir://")
	}

	s.must("verify")
	if out := s.must("list").stdout; !strings.Contains(out, "hello") {
		t.Errorf("list lacks hello:\n%s", out)
	}
	entry := strings.TrimSpace(s.must("install", "hello").stdout)
	out, err := exec.Command(entry).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from memdir" {
		t.Fatalf("run installed hello %s: %v: %s", entry, err, out)
	}

	// Publishing through the external signer: the key named in the
	// reference, then in the signer's environment variable.
	key := filepath.Join(s.home, "keys", "private.json")
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	s.must("publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello", "-k", "envkey://"+key)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.3")
	if r := s.runEnv([]string{"MIRROR_ENVKEY_FILE=" + key}, "publish", "hello", "v0.0.3", "package/hello-v0.0.3-"+platform+".tar.gz", "hello", "-k", "envkey://"); r.code != 0 {
		t.Fatalf("publish -k envkey:// with MIRROR_ENVKEY_FILE: exit %d\n%s", r.code, r.stderr)
	}
	s.fail(1, "MIRROR_ENVKEY_FILE", "publish", "hello", "v0.0.4", "package/hello-v0.0.3-"+platform+".tar.gz", "hello", "-k", "envkey://")
	s.must("verify")
	if got := strings.TrimSpace(s.must("install", "hello").stdout); !strings.Contains(got, "v0.0.3") {
		t.Errorf("latest install went to %s", got)
	}

	// --backend picks the external plugin by name for a plain path, which
	// it receives unchanged.
	if out := s.must("--backend", "memdir", "--mirror", "store", "list", "hello").stdout; !strings.Contains(out, "v0.0.3") {
		t.Errorf("--backend memdir list hello:\n%s", out)
	}
	s.fail(5, "mirror-backend-nosuch", "--mirror", "nosuch://x", "list")
	s.fail(5, "mirror-signer-nosuch", "publish", "hello", "v0.0.4", "package/hello-v0.0.3-"+platform+".tar.gz", "hello", "-k", "nosuch://key")
}

// TestPluginDirectory: MIRROR_PLUGIN_DIR is searched without the plugin on
// PATH.
func TestPluginDirectory(t *testing.T) {
	dir, err := examplePlugins()
	if err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t)
	env := []string{"MIRROR_PLUGIN_DIR=" + dir}
	if r := s.runEnv(env, "init", "memdir://store", "-k", s.path("keys")); r.code != 0 {
		t.Fatalf("init memdir:// from MIRROR_PLUGIN_DIR: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(s.path("store", "o.root.json")); err != nil {
		t.Fatalf("memdir store lacks root.json: %v", err)
	}
	s.fail(5, "mirror-backend-memdir", "--mirror", "memdir://store", "list")
}

// TestPluginPins: a pin in mirrorkit.toml lets the pinned build run and
// refuses any other with exit code 3 and a message saying what to change;
// built-in plugins are not pinned, and mirror's own rewrites of the file
// keep the pins.
func TestPluginPins(t *testing.T) {
	s, dir := pluginSandbox(t)
	addr := "memdir://" + s.path("store")
	s.must("init", addr, "-k", s.path("keys"))
	s.must("set", addr)
	s.must("genkey")
	s.must("grant", "alice")
	config := filepath.Join(s.home, "mirrorkit.toml")
	base, err := os.ReadFile(config)
	if err != nil {
		t.Fatalf("init -k recorded no key directory: %v", err)
	}
	backendPin := fileDigest(t, filepath.Join(dir, "mirror-backend-memdir"))
	signerPin := fileDigest(t, filepath.Join(dir, "mirror-signer-envkey"))
	const wrongPin = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	pin := func(backend, signer string) {
		t.Helper()
		table := fmt.Sprintf("\n[plugins]\n\"mirror-backend-memdir\" = %q\n\"mirror-signer-envkey\" = %q\n", backend, signer)
		if err := os.WriteFile(config, append(append([]byte{}, base...), table...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	key := "envkey://" + filepath.Join(s.home, "keys", "private.json")
	s.write("src/hello", "#!/bin/sh\necho hi\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.1")
	tarball := "package/hello-v0.0.1-" + platform + ".tar.gz"

	pin(backendPin, signerPin)
	s.must("list")
	s.must("publish", "hello", "v0.0.1", tarball, "hello", "-k", key)

	pin(wrongPin, signerPin)
	r := s.fail(3, "mirror-backend-memdir", "list")
	for _, want := range []string{wrongPin, backendPin, config, "[plugins]"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("pin refusal %q does not mention %q", r.stderr, want)
		}
	}
	// Built-in plugins are part of the binary, so a pin never applies.
	s.must("init", "fsmirror")
	s.must("verify", "fsmirror")

	pin(backendPin, wrongPin)
	s.must("list")
	s.fail(3, "mirror-signer-envkey", "publish", "hello", "v0.0.1", tarball, "hello", "-k", key)

	pin("sha256:nothex", signerPin)
	s.fail(1, "mirror-backend-memdir", "list")

	// init -k rewrites mirrorkit.toml to record the key directory; the
	// pins must survive it.
	pin(backendPin, signerPin)
	s.must("init", "memdir://"+s.path("store2"), "-k", s.path("keys2"))
	after, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after), backendPin) || !strings.Contains(string(after), signerPin) {
		t.Fatalf("init -k dropped the pins:\n%s", after)
	}
	s.must("list")
}

// TestPluginProtocolMismatch: a plugin built for another protocol version
// is refused with both versions named. The stand-in plugin is a script that
// answers go-plugin's handshake line with version 99, which is all the host
// reads before it refuses.
func TestPluginProtocolMismatch(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in plugin is a shell script")
	}
	s := newSandbox(t)
	s.write("plugins/mirror-backend-future", "#!/bin/sh\necho '1|99|unix|/nonexistent.sock|grpc'\nexec sleep 10\n", 0o755)
	s.env = append(s.env, "MIRROR_PLUGIN_DIR="+s.path("plugins"))
	r := s.fail(1, "mirror-backend-future", "--mirror", "future://x", "list")
	for _, want := range []string{"protocol version", "99", "host speaks 1"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error %q does not mention %q", r.stderr, want)
		}
	}
}
