package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

var writeAPILine = regexp.MustCompile(`^Write API on /api/v1/ with the role keys in (.+)$`)

// TestServeWriteAPI: an owner with no access to the mirror's directory
// publishes, modifies and renews through `mirror serve`, and what it wrote
// installs over HTTP and verifies on disk.
func TestServeWriteAPI(t *testing.T) {
	s := newMirror(t)
	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0")
	base := srv.waitFor(t, servingLine)[2]
	srv.waitFor(t, writeAPILine)

	c := newSandbox(t)
	key, err := os.ReadFile(filepath.Join(s.home, "keys", "private.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.write("home/keys/private.json", string(key), 0o600)
	c.write("src/hello", "#!/bin/sh\necho hello v0.0.2 over the api\n", 0o755)
	c.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")

	out := c.must("--mirror", base, "publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello").stdout
	if !strings.Contains(out, "hello") {
		t.Errorf("publish printed %q", out)
	}
	if _, err := os.Stat(s.path("m", "hello-v0.0.2-"+platform+".tar.gz")); err != nil {
		t.Fatalf("the tarball did not land in the mirror: %v", err)
	}
	c.must("--mirror", base, "modify", "hello", "--desc", "says hello over the api", "--standalone")
	c.must("--mirror", base, "renew", "hello")
	if _, err := os.Stat(s.path("m", "4.hello.json")); err != nil {
		t.Errorf("publish, modify and renew did not make 4.hello.json: %v", err)
	}
	before := treeDigest(t, s.path("m"))
	c.must("genkey", "-n", "bob")
	c.fail(1, "index key", "--mirror", base, "grant", "bob", "-k", filepath.Join(c.home, "keys", "bob.json"))
	c.fail(1, "role keys", "--mirror", base, "renew", "--role", "timestamp")
	if treeDigest(t, s.path("m")) != before {
		t.Error("a refused write changed the mirror")
	}

	entry := strings.TrimSpace(c.must("--mirror", base, "install", "hello:v0.0.2").stdout)
	run, err := exec.Command(entry).CombinedOutput()
	if err != nil || !strings.Contains(string(run), "hello v0.0.2 over the api") {
		t.Fatalf("run %s: %v: %s", entry, err, run)
	}
	if out := c.must("--mirror", base, "list").stdout; !strings.Contains(out, "says hello over the api") {
		t.Errorf("list lacks the new description:\n%s", out)
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	srv.wait(t)
	s.must("verify", "m")
	if log := srv.errb.String(); !strings.Contains(log, "path=/api/v1/component/") || !strings.Contains(log, "status=204") {
		t.Errorf("access log lacks the API calls:\n%s", log)
	}
}

// TestServeReadOnly: --read-only keeps the API off even with the keys.
func TestServeReadOnly(t *testing.T) {
	s := newMirror(t)
	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0", "--read-only")
	base := srv.waitFor(t, servingLine)[2]
	c := newSandbox(t)
	key, err := os.ReadFile(filepath.Join(s.home, "keys", "private.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.write("home/keys/private.json", string(key), 0o600)
	before := treeDigest(t, s.path("m"))
	c.fail(1, "no write API", "--mirror", base, "renew", "hello")
	if treeDigest(t, s.path("m")) != before {
		t.Error("a refused write changed the mirror")
	}
}

// TestServeWriteAPIConcurrent: publishes racing through the server all
// land; the loser of each race gets 409 and runs again on a fresh read.
func TestServeWriteAPIConcurrent(t *testing.T) {
	s := newMirror(t)
	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0")
	base := srv.waitFor(t, servingLine)[2]
	versions := []string{"v0.1.0", "v0.1.1", "v0.1.2"}
	for _, v := range versions {
		s.must("package", "hello", "-C", "src", "--name", "hello", "--release", v)
	}
	results := make(chan result, len(versions))
	for _, v := range versions {
		go func() {
			results <- s.run("--mirror", base, "publish", "hello", v, "package/hello-"+v+"-"+platform+".tar.gz", "hello")
		}()
	}
	for range versions {
		if r := <-results; r.code != 0 {
			t.Errorf("publish: exit %d: %s", r.code, r.stderr)
		}
	}
	out := s.must("--mirror", base, "list", "hello").stdout
	for _, v := range versions {
		if !strings.Contains(out, v) {
			t.Errorf("list lacks %s:\n%s", v, out)
		}
	}
	s.must("verify", "m")
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	srv.wait(t)
	t.Logf("conflicts retried: %d", strings.Count(srv.errb.String(), "status=409"))
}
