package main_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/internal/testregistry"
)

// The OCI tests keep mirrors in a real registry (Debian's docker-registry,
// see internal/testregistry), addressed as oci+http://HOST/ns/NAME, with
// their role keys in the sandbox: keys never go to the registry.

// ociMirror is a sandbox whose current mirror lives in a registry.
type ociMirror struct {
	*sandbox
	reg  *testregistry.Registry
	addr string // oci+http://HOST/ns/m
	keys string // the mirror's role keys, outside the registry
}

// newOCISandbox is a sandbox with its own, empty Docker config directory,
// so that the developer's ~/.docker never lends the tests credentials.
func newOCISandbox(t *testing.T) *sandbox {
	s := newSandbox(t)
	s.env = append(s.env, "DOCKER_CONFIG="+s.path("docker"))
	return s
}

// newOCIMirror makes the mirror oci+http://HOST/ns/m with owner alice and
// hello v0.0.1, as newMirror does on disk.
func newOCIMirror(t *testing.T, reg *testregistry.Registry) *ociMirror {
	t.Helper()
	m := &ociMirror{sandbox: newOCISandbox(t), reg: reg, addr: "oci+http://" + reg.Host() + "/ns/m"}
	m.keys = m.path("mkeys")
	if u, _ := reg.User(); u != "" {
		if err := reg.WriteDockerConfig(m.path("docker")); err != nil {
			t.Fatal(err)
		}
	}
	if out := m.must("init", m.addr, "-k", m.keys).stdout; !strings.Contains(out, m.keys) {
		t.Errorf("init printed %q, want the key directory", out)
	}
	m.must("set", m.addr)
	m.must("genkey")
	m.must("grant", "alice", "--name", "Alice")
	publishComponent(m.sandbox, "hello", "v0.0.1", "says hello")
	return m
}

// publishComponent packages a one-script component NAME that prints
// "NAME VERSION" and publishes it to the sandbox's current mirror; extra
// goes to publish.
func publishComponent(s *sandbox, name, version, desc string, extra ...string) {
	s.t.Helper()
	s.write("src-"+name+"/"+name, fmt.Sprintf("#!/bin/sh\necho %s %s\n", name, version), 0o755)
	s.must("package", name, "-C", "src-"+name, "--name", name, "--release", version)
	args := []string{"publish", name, version, "package/" + name + "-" + version + "-" + platform + ".tar.gz", name, "--desc", desc}
	s.must(append(args, extra...)...)
}

// runInstalled installs spec with the given extra environment and runs
// the entry it printed, returning the entry's output.
func runInstalled(t *testing.T, s *sandbox, extra []string, spec string) string {
	t.Helper()
	entry := strings.TrimSpace(s.mustEnv(extra, "install", spec).stdout)
	out, err := exec.Command(entry).CombinedOutput()
	if err != nil {
		t.Fatalf("run %s: %v: %s", entry, err, out)
	}
	return strings.TrimSpace(string(out))
}

// fileReader serves a registry-kept mirror read-only with `mirror serve`,
// so the tests can look at its files whatever the OCI layout is.
type fileReader struct {
	t    *testing.T
	base string
}

func (s *sandbox) serveReadOnly(t *testing.T, addr string) *fileReader {
	t.Helper()
	srv := s.start(nil, "serve", addr, "--addr", "127.0.0.1:0", "--read-only")
	return &fileReader{t: t, base: srv.waitFor(t, servingLine)[2]}
}

// get returns the status and body of GET base/name.
func (f *fileReader) get(name string) (int, []byte) {
	f.t.Helper()
	return httpGet(f.t, f.base+"/"+name)
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

// must returns the body of a file that has to be there.
func (f *fileReader) must(name string) []byte {
	f.t.Helper()
	code, b := f.get(name)
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", name, code, b)
	}
	return b
}

// version reads the version of manifest name.
func (f *fileReader) version(name string) uint64 {
	f.t.Helper()
	_, h, _ := parseManifest(f.t, f.must(name))
	return h.Version
}

// TestOCIMainJob: a mirror kept in a real registry takes three components,
// lists, installs and verifies them; it clones to a directory and a
// directory clones into the registry, both verifying; and `mirror serve`
// over it lets a client install over plain HTTP.
func TestOCIMainJob(t *testing.T) {
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	publishComponent(m.sandbox, "greet", "v1.0.0", "greets")
	publishComponent(m.sandbox, "tool", "v2.0.0", "a tool", "--standalone")
	out := m.must("list").stdout
	for _, want := range []string{"hello", "says hello", "greet", "greets", "tool", "a tool"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if got := runInstalled(t, m.sandbox, nil, "hello"); got != "hello v0.0.1" {
		t.Errorf("installed hello prints %q", got)
	}
	if out := m.must("verify").stdout; !strings.Contains(out, "verified") || !strings.Contains(out, "3 components") {
		t.Errorf("verify: %s", out)
	}
	// A re-run publish is a no-op here too.
	if out := m.must("publish", "greet", "v1.0.0", "package/greet-v1.0.0-"+platform+".tar.gz", "greet").stdout; !strings.Contains(out, "nothing to do") {
		t.Errorf("re-publish: %s", out)
	}

	// oci → fs: the clone holds the very tarballs published.
	out = m.must("clone", "c", "--from", m.addr, "--full").stdout
	if !strings.Contains(out, "cloned 3 components, 3 tarballs") {
		t.Errorf("clone summary: %q", out)
	}
	for _, c := range []string{"hello-v0.0.1", "greet-v1.0.0", "tool-v2.0.0"} {
		tb := c + "-" + platform + ".tar.gz"
		if fileDigest(t, m.path("c", tb)) != fileDigest(t, m.path("package", tb)) {
			t.Errorf("%s in the clone differs from what was published", tb)
		}
	}
	m.must("verify", "c")

	// fs → oci: the directory clone, cloned into another repository.
	c2 := "oci+http://" + reg.Host() + "/ns/c2"
	out = m.must("clone", c2, "--from", "c", "--full", "-k", m.path("c2keys")).stdout
	if !strings.Contains(out, "cloned 3 components, 3 tarballs") {
		t.Errorf("clone into the registry: %q", out)
	}
	if out := m.must("verify", c2).stdout; !strings.Contains(out, "3 components") {
		t.Errorf("verify %s: %s", c2, out)
	}
	client := []string{"TIUP_HOME=" + m.path("c2client")}
	m.mustEnv(client, "set", c2)
	if got := runInstalled(t, m.sandbox, client, "tool"); got != "tool v2.0.0" {
		t.Errorf("tool installed from %s prints %q", c2, got)
	}

	// serve oci → a client over http://.
	srv := m.start(nil, "serve", m.addr, "--addr", "127.0.0.1:0", "--read-only")
	base := srv.waitFor(t, servingLine)[2]
	c := newSandbox(t)
	c.must("set", base)
	if got := runInstalled(t, c, nil, "greet"); got != "greet v1.0.0" {
		t.Errorf("greet installed through serve prints %q", got)
	}
	c.must("verify", base)
	tb := "hello-v0.0.1-" + platform + ".tar.gz"
	if code, body := httpGet(t, base+"/"+tb); code != 200 || !bytes.Equal(body, mustRead(t, m.path("package", tb))) {
		t.Errorf("GET %s through serve: %d, %d bytes", tb, code, len(body))
	}
	assertNoPrivateKeys(t, reg, m.keys, m.path("c", "keys"), m.path("c2keys"))
}

// TestOCIAdmin: every admin verb works against a registry-kept mirror:
// modify (yank, describe), renew (component and role), grant, rotate (a
// client set up before it follows the new root) and merge; each change
// is one new manifest version.
func TestOCIAdmin(t *testing.T) {
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	client := []string{"TIUP_HOME=" + m.path("client")}
	m.mustEnv(client, "set", m.addr)
	m.mustEnv(client, "install", "hello")
	publishComponent(m.sandbox, "hello", "v0.0.2", "says hello")
	files := m.serveReadOnly(t, m.addr)
	ts := files.version("timestamp.json")

	// modify: yank, un-yank, describe.
	m.must("modify", "hello:v0.0.2", "--yank")
	if out := m.must("list", "hello").stdout; strings.Contains(out, "v0.0.2") {
		t.Errorf("list shows yanked v0.0.2:\n%s", out)
	}
	m.fail(5, "yanked", "install", "hello:v0.0.2")
	m.must("modify", "hello:v0.0.2", "--yank=false")
	m.must("modify", "hello", "--desc", "says hello from a registry")
	if out := m.must("list").stdout; !strings.Contains(out, "says hello from a registry") {
		t.Errorf("list lacks the new description:\n%s", out)
	}
	// renew: a component, and the timestamp role for 400 days.
	m.must("renew", "hello")
	m.must("renew", "--role", "timestamp", "--days", "400")
	_, _, exp := parseManifest(t, files.must("timestamp.json"))
	if !near(exp, time.Now().Add(400*24*time.Hour)) {
		t.Errorf("renewed timestamp expires %s, want 400 days on", exp)
	}
	if got := files.version("timestamp.json"); got != ts+5 {
		t.Errorf("timestamp version %d after 5 changes, want %d", got, ts+5)
	}
	for v := uint64(1); v <= 6; v++ {
		if code, _ := files.get(manifest.VersionedName(v, "hello")); code != 200 {
			t.Errorf("hello manifest version %d: %d", v, code)
		}
	}
	if code, _ := files.get(manifest.VersionedName(7, "hello")); code != 404 {
		t.Errorf("hello manifest version 7 exists: %d; want one version per change", code)
	}

	// grant: bob owns a new component.
	m.must("genkey", "-n", "bob")
	bob := filepath.Join(m.home, "keys", "bob.json")
	m.must("grant", "bob", "-k", bob)
	m.fail(1, "already exists", "grant", "bob", "-k", bob)
	publishComponent(m.sandbox, "bobs", "v1.0.0", "bob's", "-k", bob)

	// rotate: the three root keys add a fourth; the old client follows.
	rootKeys, err := filepath.Glob(filepath.Join(m.keys, "*-root.json"))
	if err != nil || len(rootKeys) != 3 {
		t.Fatalf("root keys: %v %v", rootKeys, err)
	}
	m.must("genkey", "-n", "newroot")
	m.mustEnv(noEditor, "rotate", "--sign-with", strings.Join(rootKeys, ","), "--add-key", filepath.Join(m.home, "keys", "newroot.json"))
	if out := m.must("verify").stdout; !strings.Contains(out, "root version 2") {
		t.Errorf("verify after rotate: %s", out)
	}
	if code, _ := files.get("2.root.json"); code != 200 {
		t.Errorf("2.root.json: %d", code)
	}
	publishComponent(m.sandbox, "hello", "v0.0.3", "says hello")
	if got := runInstalled(t, m.sandbox, client, "hello"); got != "hello v0.0.3" {
		t.Errorf("the client set up before the rotation installed %q", got)
	}

	// merge: a directory mirror's component arrives in one commit.
	m.must("init", "m2")
	m.must("--mirror", "m2", "grant", "alice")
	m.write("src-extra/extra", "#!/bin/sh\necho extra\n", 0o755)
	m.must("package", "extra", "-C", "src-extra", "--name", "extra", "--release", "v3.0.0")
	m.must("--mirror", "m2", "publish", "extra", "v3.0.0", "package/extra-v3.0.0-"+platform+".tar.gz", "extra")
	before := files.version("timestamp.json")
	if out := m.must("merge", "m2").stdout; !strings.Contains(out, "merged 1 versions of 1 components") {
		t.Errorf("merge printed %q", out)
	}
	if got := files.version("timestamp.json"); got != before+1 {
		t.Errorf("timestamp version %d after a merge, want %d", got, before+1)
	}
	if got := runInstalled(t, m.sandbox, client, "extra"); got != "extra" {
		t.Errorf("merged extra prints %q", got)
	}
	m.must("verify")
	assertNoPrivateKeys(t, reg, m.keys, filepath.Join(m.home, "keys"))
}

// parseManifest decodes a manifest's envelope, header and expiry.
func parseManifest(t *testing.T, b []byte) (*manifest.Envelope, signedHeader, time.Time) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return readManifest(t, p)
}

// TestOCIRegistryRestart: the registry is killed and restarted while a
// large tarball is being uploaded, and is down when another publish
// starts. Each publish either succeeds or fails with one line and leaves
// the mirror verifiable; a re-run completes, and the tarball installs
// intact.
func TestOCIRegistryRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a 48 MiB upload, and half a minute of retries against a stopped registry")
	}
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	payload := make([]byte, 48<<20) // incompressible, so the upload takes a while
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	m.write("big/payload", string(payload), 0o644)
	m.write("big/run", "#!/bin/sh\necho big\n", 0o755)
	sum := sha256.Sum256(payload)
	publish := func(version string) []string {
		m.must("package", "run", "payload", "-C", "big", "--name", "big", "--release", version)
		return []string{"publish", "big", version, "package/big-" + version + "-" + platform + ".tar.gz", "run"}
	}

	// 1. Killed and restarted mid-upload.
	args := publish("v1.0.0")
	bg := m.start(nil, args...)
	if !waitForUpload(t, reg, 4<<20, bg.done) {
		t.Fatalf("the publish ended before its upload could be interrupted: %v\n%s", bg.err, bg.errb.String())
	}
	reg.Restart()
	first := endOf(t, bg)
	t.Logf("publish across a restart: %s", first)
	m.must("verify")
	m.must(args...)
	checkBig(t, m, "v1.0.0", sum)

	// 2. Down when the publish starts, back a little later.
	args = publish("v1.0.1")
	reg.Stop()
	start := time.Now()
	if r := m.run(args...); r.code == 0 {
		t.Error("a publish with the registry down succeeded")
	} else {
		checkOneLine(t, r, reg.Host())
		t.Logf("publish with the registry down: exit %d after %v: %s", r.code, time.Since(start).Round(time.Second), strings.TrimSpace(r.stderr))
	}
	reg.Start()
	m.must("verify")
	m.must(args...)
	checkBig(t, m, "v1.0.1", sum)
	m.must("verify")
}

// waitForUpload waits until an upload of at least min bytes is under way
// in the registry's storage; false if done closed first.
func waitForUpload(t *testing.T, reg *testregistry.Registry, min int64, done <-chan struct{}) bool {
	t.Helper()
	root := filepath.Join(reg.Storage(), "docker", "registry", "v2", "repositories")
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		found := false
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || found {
				return nil
			}
			if d.Name() == "data" && strings.Contains(p, "/_uploads/") {
				if fi, err := d.Info(); err == nil && fi.Size() >= min {
					found = true
				}
			}
			return nil
		})
		if found {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no upload started within 2 minutes")
	return false
}

// endOf waits for a background command and describes how it ended; a
// failure must be one line.
func endOf(t *testing.T, b *background) string {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the publish did not end within 3 minutes of the restart")
	}
	if b.err == nil {
		return "succeeded"
	}
	r := result{code: b.cmd.ProcessState.ExitCode(), stderr: b.errb.String()}
	checkOneLine(t, r, "")
	return fmt.Sprintf("failed cleanly (exit %d): %s", r.code, strings.TrimSpace(r.stderr))
}

// checkOneLine checks that a failed command said why in one 'mirror: '
// line mentioning want, and did not panic.
func checkOneLine(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 {
		return
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("panicked:\n%s", r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "mirror: ") || !strings.Contains(last, want) {
		t.Errorf("error is not one 'mirror: ' line naming %q: %q", want, r.stderr)
	}
}

// checkBig installs big:version and checks its payload.
func checkBig(t *testing.T, m *ociMirror, version string, sum [32]byte) {
	t.Helper()
	entry := strings.TrimSpace(m.must("install", "big:"+version).stdout)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(entry), "payload"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(b) != sum {
		t.Fatalf("big %s installed a different payload", version)
	}
}

// TestOCIAuth: against a registry with htpasswd auth, a Docker config
// with the credentials (as `docker login` leaves it) is all a user needs;
// without it, or with a wrong password, commands fail with exit 77 and one
// error[permission] line that names the registry and says how to log in,
// and write nothing.
func TestOCIAuth(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithAuth("alice", "open sesame"))
	m := newOCIMirror(t, reg) // writes its Docker config first
	publishComponent(m.sandbox, "greet", "v1.0.0", "greets")
	if got := runInstalled(t, m.sandbox, nil, "greet"); got != "greet v1.0.0" {
		t.Errorf("greet prints %q", got)
	}
	m.must("verify")

	m.write("src-hello/hello", "#!/bin/sh\necho hello v0.0.2\n", 0o755)
	m.must("package", "hello", "-C", "src-hello", "--name", "hello", "--release", "v0.0.2")
	publish := []string{"publish", "hello", "v0.0.2", "package/hello-v0.0.2-" + platform + ".tar.gz", "hello"}
	wrong := m.path("wrong")
	if err := os.MkdirAll(wrong, 0o700); err != nil {
		t.Fatal(err)
	}
	badAuth := `{"auths":{"` + reg.Host() + `":{"auth":"YWxpY2U6bm9wZQ=="}}}` // alice:nope
	if err := os.WriteFile(filepath.Join(wrong, "config.json"), []byte(badAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, reg.Storage())
	for _, cfg := range []struct{ name, dir string }{{"no credentials", m.path("nodocker")}, {"wrong password", wrong}} {
		for _, args := range [][]string{{"list"}, {"verify"}, {"install", "hello:v0.0.1"}, publish} {
			r := m.runEnv([]string{"DOCKER_CONFIG=" + cfg.dir}, args...)
			if r.code != 77 {
				t.Errorf("%s: mirror %v: exit %d, want 77 (access denied): %s", cfg.name, args, r.code, r.stderr)
				continue
			}
			checkOneLine(t, r, reg.Host())
			if !strings.Contains(r.stderr, "mirror: error[permission]: ") {
				t.Errorf("%s: mirror %v: the error line lacks the token error[permission]: %q", cfg.name, args, r.stderr)
			}
			if !strings.Contains(strings.ToLower(r.stderr), "login") {
				t.Errorf("%s: mirror %v does not say how to log in: %q", cfg.name, args, r.stderr)
			}
			t.Logf("%s: mirror %s: exit %d: %s", cfg.name, args[0], r.code, strings.TrimSpace(r.stderr))
		}
	}
	if treeDigest(t, reg.Storage()) != before {
		t.Error("a refused command wrote to the registry")
	}
	m.must(publish...)
	assertNoPrivateKeys(t, reg, m.keys)
}

// TestOCIConcurrentPublish: two publish processes racing on one
// registry-kept mirror both land; the versions stay dense (one timestamp
// and one component manifest version per publish) and the mirror verifies.
func TestOCIConcurrentPublish(t *testing.T) {
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	versions := []string{"v1.0.0", "v1.0.1"}
	for _, v := range versions {
		m.write("src-hello/hello", "#!/bin/sh\necho hello "+v+"\n", 0o755)
		m.must("package", "hello", "-C", "src-hello", "--name", "hello", "--release", v)
	}
	files := m.serveReadOnly(t, m.addr)
	ts := files.version("timestamp.json")
	results := make(chan result, len(versions))
	for _, v := range versions {
		go func() {
			results <- m.run("publish", "hello", v, "package/hello-"+v+"-"+platform+".tar.gz", "hello")
		}()
	}
	for range versions {
		if r := <-results; r.code != 0 {
			t.Errorf("a concurrent publish failed: exit %d: %s", r.code, r.stderr)
		}
	}
	if got := files.version("timestamp.json"); got != ts+uint64(len(versions)) {
		t.Errorf("timestamp version %d, want %d", got, ts+uint64(len(versions)))
	}
	for v := uint64(1); v <= 3; v++ {
		if code, _ := files.get(manifest.VersionedName(v, "hello")); code != 200 {
			t.Errorf("hello manifest version %d: %d", v, code)
		}
	}
	if code, _ := files.get(manifest.VersionedName(4, "hello")); code != 404 {
		t.Errorf("a fourth hello manifest version: %d", code)
	}
	out := m.must("list", "hello").stdout
	for _, v := range versions {
		if !strings.Contains(out, v) {
			t.Errorf("version %s lost:\n%s", v, out)
		}
		if got := runInstalled(t, m.sandbox, nil, "hello:"+v); got != "hello "+v {
			t.Errorf("hello:%s prints %q", v, got)
		}
	}
	m.must("verify")
}

// TestOCIScaleOut: two `mirror serve` processes over one registry-kept
// mirror. Owners publish through both at once, over the write API; clients
// reading through each keep refreshing meanwhile, and every refresh
// verifies: neither server ever shows a timestamp naming a snapshot, or a
// snapshot naming a manifest, that is not there.
func TestOCIScaleOut(t *testing.T) {
	reg := testregistry.Start(t)
	m := newOCIMirror(t, reg)
	var bases []string
	for range 2 {
		srv := m.start(nil, "serve", m.addr, "--addr", "127.0.0.1:0", "-k", m.keys)
		bases = append(bases, srv.waitFor(t, servingLine)[2])
		srv.waitFor(t, writeAPILine)
	}
	owner := newSandbox(t)
	key := mustRead(t, filepath.Join(m.home, "keys", "private.json"))
	owner.write("home/keys/private.json", string(key), 0o600)
	var versions [2][]string
	for i := range 2 {
		for j := range 3 {
			v := fmt.Sprintf("v0.%d.%d", i+1, j)
			versions[i] = append(versions[i], v)
			owner.write("src/hello", "#!/bin/sh\necho hello "+v+"\n", 0o755)
			owner.must("package", "hello", "-C", "src", "--name", "hello", "--release", v)
		}
	}

	var writers sync.WaitGroup
	var writing atomic.Int32
	errs := make(chan string, 100)
	for i, base := range bases {
		writing.Add(1)
		writers.Add(1)
		go func() {
			defer writers.Done()
			defer writing.Add(-1)
			for _, v := range versions[i] {
				r := owner.run("--mirror", base, "publish", "hello", v, "package/hello-"+v+"-"+platform+".tar.gz", "hello")
				if r.code != 0 {
					errs <- fmt.Sprintf("publish %s through %s: exit %d: %s", v, base, r.code, r.stderr)
				}
			}
		}()
	}
	var readers sync.WaitGroup
	var refreshes, checks atomic.Int32
	for i, base := range bases {
		client := newSandbox(t)
		client.must("set", base)
		readers.Add(2)
		// A client home that keeps refreshing: list verifies the whole
		// chain against what it trusted before.
		go func() {
			defer readers.Done()
			for n := 0; n < 200 && writing.Load() > 0; n++ {
				r := client.run("list", "hello")
				refreshes.Add(1)
				if r.code != 0 {
					errs <- fmt.Sprintf("client of server %d: list: exit %d: %s", i, r.code, r.stderr)
					return
				}
			}
		}()
		// Raw reads as the stock client makes them.
		go func() {
			defer readers.Done()
			for n := 0; n < 2000 && writing.Load() > 0; n++ {
				if msg := consistentView(base); msg != "" {
					errs <- fmt.Sprintf("server %d: %s", i, msg)
					return
				}
				checks.Add(1)
			}
		}()
	}
	writers.Wait()
	readers.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	t.Logf("%d client refreshes and %d raw view checks during the publishes", refreshes.Load(), checks.Load())
	if refreshes.Load() == 0 || checks.Load() == 0 {
		t.Error("nothing was read while the publishes ran")
	}
	for i, base := range bases {
		if msg := consistentView(base); msg != "" {
			t.Errorf("server %d after the publishes: %s", i, msg)
		}
		c := newSandbox(t)
		c.must("set", base)
		out := c.must("list", "hello").stdout
		for _, vs := range versions {
			for _, v := range vs {
				if !strings.Contains(out, v) {
					t.Errorf("server %d: list lacks %s:\n%s", i, v, out)
				}
			}
		}
		if got := runInstalled(t, c, nil, "hello:"+versions[1-i][2]); got != "hello "+versions[1-i][2] {
			t.Errorf("server %d installed %q", i, got)
		}
	}
	m.must("verify")
	// The servers held the role keys, and signed with them.
	assertNoPrivateKeys(t, reg, m.keys)
}

// consistentView reads timestamp.json, then the snapshot.json it names,
// then the index and component manifests the snapshot names, as a client
// does, and says what was inconsistent, or "". A timestamp that changed
// meanwhile (a commit landed between two reads) starts the reads over.
func consistentView(base string) string {
	var last string
	for range 5 {
		ts, tsBody, err := fetchTimestamp(base)
		if err != nil {
			return err.Error()
		}
		code, snapBody, err := get(base + "/snapshot.json")
		if err != nil {
			return err.Error()
		}
		want := ts.Meta["/snapshot.json"]
		sum := sha256.Sum256(snapBody)
		if code == 200 && hex.EncodeToString(sum[:]) == want.Hashes["sha256"] && uint64(len(snapBody)) == want.Length {
			var snap manifest.Snapshot
			env, err := manifest.ParseEnvelope(snapBody)
			if err == nil {
				err = env.Decode(&snap)
			}
			if err != nil {
				return "snapshot.json: " + err.Error()
			}
			for file, fv := range snap.Meta {
				id := strings.TrimSuffix(strings.TrimPrefix(file, "/"), ".json")
				name := manifest.VersionedName(fv.Version, id)
				if id == "root" && fv.Version == 1 {
					name = "root.json" // the first root has no versioned name
				}
				if code, _, err := get(base + "/" + name); err != nil || code != 200 {
					return fmt.Sprintf("timestamp version %d names a snapshot naming %s, which answers %d %v", ts.Version, name, code, err)
				}
			}
			return ""
		}
		last = fmt.Sprintf("timestamp version %d names snapshot.json sha256 %.12s (%d bytes), but snapshot.json answers %d with %.12x (%d bytes)",
			ts.Version, want.Hashes["sha256"], want.Length, code, sum, len(snapBody))
		// Only a timestamp that moved on excuses the mismatch.
		_, again, err := fetchTimestamp(base)
		if err != nil {
			return err.Error()
		}
		if bytes.Equal(again, tsBody) {
			return last
		}
	}
	return last + " (five times in a row)"
}

func fetchTimestamp(base string) (*manifest.Timestamp, []byte, error) {
	code, b, err := get(base + "/timestamp.json")
	if err != nil || code != 200 {
		return nil, nil, fmt.Errorf("GET timestamp.json: %d %v", code, err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp.json: %v", err)
	}
	var ts manifest.Timestamp
	if err := env.Decode(&ts); err != nil {
		return nil, nil, fmt.Errorf("timestamp.json: %v", err)
	}
	return &ts, b, nil
}

// get is a GET for goroutines that may not call t.Fatal.
func get(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// privateKeyMarks are what a TiUP private key file, or a PEM private key,
// contains and a mirror's public files never do.
var privateKeyMarks = [][]byte{[]byte("PRIVATE KEY"), []byte(`"private"`)}

// hasPrivateKey reports whether b, or b gunzipped, holds a private key.
func hasPrivateKey(b []byte) bool {
	for _, mark := range privateKeyMarks {
		if bytes.Contains(b, mark) {
			return true
		}
	}
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				return hasPrivateKey(plain)
			}
		}
	}
	return false
}

// assertNoPrivateKeys checks that nothing in the registry holds a private
// key: every manifest and blob reachable from every tag of every
// repository in the catalog, and every file of the registry's storage
// (which also holds what no tag reaches, unfinished uploads included).
// keyDirs are the test's private key directories: the check must flag
// their files, or it proves nothing.
func assertNoPrivateKeys(t *testing.T, reg *testregistry.Registry, keyDirs ...string) {
	t.Helper()
	for _, dir := range keyDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(files) == 0 {
			t.Fatalf("no key files in %s to check the check with", dir)
		}
		for _, f := range files {
			if !hasPrivateKey(mustRead(t, f)) {
				t.Fatalf("the private key check does not flag %s", f)
			}
		}
	}
	opts := []remote.Option{remote.WithContext(context.Background())}
	if u, p := reg.User(); u != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u, Password: p}))
	}
	registry, err := name.NewRegistry(reg.Host(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), registry, opts...)
	if err != nil || len(repos) == 0 {
		t.Fatalf("catalog: %v %v", repos, err)
	}
	seen := map[string]bool{}
	var visit func(repo name.Repository, ref name.Reference)
	check := func(what string, b []byte) {
		if hasPrivateKey(b) {
			t.Errorf("the registry holds a private key: %s", what)
		}
	}
	visit = func(repo name.Repository, ref name.Reference) {
		desc, err := remote.Get(ref, opts...)
		if err != nil {
			t.Errorf("get %s: %v", ref, err)
			return
		}
		if seen[repo.String()+"@"+desc.Digest.String()] {
			return
		}
		seen[repo.String()+"@"+desc.Digest.String()] = true
		check(ref.String(), desc.Manifest)
		if desc.MediaType.IsIndex() {
			idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
			if err != nil {
				t.Errorf("%s: %v", ref, err)
				return
			}
			for _, d := range idx.Manifests {
				visit(repo, repo.Digest(d.Digest.String()))
			}
			return
		}
		mf, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			return
		}
		for _, d := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
			l, err := remote.Layer(repo.Digest(d.Digest.String()), opts...)
			if err != nil {
				t.Errorf("blob %s of %s: %v", d.Digest, ref, err)
				continue
			}
			rc, err := l.Compressed()
			if err != nil {
				t.Errorf("blob %s of %s: %v", d.Digest, ref, err)
				continue
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Errorf("blob %s of %s: %v", d.Digest, ref, err)
				continue
			}
			check(fmt.Sprintf("blob %s of %s", d.Digest, ref), b)
		}
	}
	tags := 0
	for _, r := range repos {
		repo := registry.Repo(r)
		list, err := remote.List(repo, opts...)
		if err != nil {
			t.Errorf("tags of %s: %v", r, err)
			continue
		}
		for _, tag := range list {
			tags++
			visit(repo, repo.Tag(tag))
		}
	}
	files := 0
	err = filepath.WalkDir(reg.Storage(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		check(strings.TrimPrefix(p, reg.Storage()), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tags == 0 || len(seen) == 0 || files == 0 {
		t.Fatalf("nothing was checked: %d tags, %d manifests, %d files", tags, len(seen), files)
	}
	t.Logf("no private key in %d repositories, %d tags, %d manifests, %d stored files", len(repos), tags, len(seen), files)
}
