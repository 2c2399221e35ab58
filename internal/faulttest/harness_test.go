package faulttest_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
)

// The cases drive the built binary as a user would, with the faulty plugins
// as real subprocesses found by name in a plugin directory.
var (
	mirrorBin string
	pluginDir string
	tmpRoot   string
)

// testNow is the fixed time of every run: with the clock fixed, a verb run
// twice signs the same bytes (only RSA-PSS salts differ), so the result of a
// crashed-and-re-run verb can be compared with a run that never crashed.
const testNow = "2026-06-01T12:00:00Z"

var platform = runtime.GOOS + "-" + runtime.GOARCH

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mirror-faulttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tmpRoot = dir
	mirrorBin = filepath.Join(dir, "mirror")
	pluginDir = filepath.Join(dir, "plugins")
	builds := []*exec.Cmd{
		// testclock: the only build that honours MIRROR_TEST_NOW.
		exec.Command("go", "build", "-tags", "testclock", "-o", mirrorBin, "../../cmd/mirror"),
		exec.Command("go", "build", "-o", filepath.Join(pluginDir, "mirror-backend-faulty"), "./cmd/mirror-backend-faulty"),
		exec.Command("go", "build", "-o", filepath.Join(pluginDir, "mirror-signer-faulty"), "./cmd/mirror-signer-faulty"),
		// Named so that `--backend oci` finds it when the binary has no
		// built-in oci backend; a built-in one wins when there is.
		exec.Command("go", "build", "-o", filepath.Join(pluginDir, "mirror-backend-oci"), "../../plugins/backend-oci"),
	}
	errs := make(chan error, len(builds))
	for _, b := range builds {
		go func() {
			out, err := b.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%s: %v\n%s", strings.Join(b.Args, " "), err, out)
			}
			errs <- err
		}()
	}
	for range builds {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// world is one sandbox: a mirror m with its role keys in keys/, an admin
// home (alice's and bob's owner keys), a client home that trusted m before
// the case began, and a second mirror src for merges. Every admin command
// names its mirror and key directory explicitly, so a copied world works
// wherever it lands.
type world struct {
	t   *testing.T
	dir string
	env []string
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// panicked reports a Go runtime panic, which exits with code 2 and prints a
// goroutine dump.
func (r result) panicked() bool {
	return r.code == 2 || strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ")
}

// oneLineError reports whether stderr ends in one "mirror: ..." line.
func (r result) oneLineError() bool {
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	return strings.HasPrefix(lines[len(lines)-1], "mirror: ")
}

func newEmptyWorld(t *testing.T, dir string) *world {
	w := &world{t: t, dir: dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIUP_") && !strings.HasPrefix(kv, "MIRROR") && !strings.HasPrefix(kv, "EDITOR=") && !strings.HasPrefix(kv, "VISUAL=") {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env, "TIUP_HOME="+w.path("home"), "MIRROR_PLUGIN_DIR="+pluginDir, "MIRROR_TEST_NOW="+testNow, "EDITOR=")
	return w
}

func (w *world) path(p ...string) string { return filepath.Join(append([]string{w.dir}, p...)...) }

// run runs the mirror binary in the world with extra environment; a panic
// fails the test at once.
func (w *world) run(extra []string, args ...string) result {
	w.t.Helper()
	cmd := exec.Command(mirrorBin, args...)
	cmd.Dir = w.dir
	cmd.Env = append(append([]string{}, w.env...), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("run mirror %v: %v", args, err)
	}
	if r.panicked() {
		w.t.Fatalf("mirror %s panicked:\n%s", strings.Join(args, " "), r)
	}
	return r
}

func (w *world) must(args ...string) result {
	w.t.Helper()
	r := w.run(nil, args...)
	if r.code != 0 {
		w.t.Fatalf("mirror %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// admin runs an admin command on the mirror at addr with m's role keys.
func (w *world) admin(extra []string, addr string, args ...string) result {
	w.t.Helper()
	return w.run(extra, append([]string{"--mirror", addr, "--key-dir", w.path("keys")}, args...)...)
}

// client runs a command as the client home, which trusts m through the
// state it saved (bin/root.json, manifests/).
func (w *world) client(args ...string) result {
	w.t.Helper()
	return w.run([]string{"TIUP_HOME=" + w.path("client")}, args...)
}

func (w *world) mirrorDir() string { return w.path("m") }

// faultyAddr is m's address through the faulty backend.
func (w *world) faultyAddr() string { return faulttest.Scheme + "://" + w.mirrorDir() }

func (w *world) tarball(comp, version string) string {
	return w.path("package", comp+"-"+version+"-"+platform+".tar.gz")
}

// baseWorld is built once per test binary and copied by newWorld: keys are
// RSA-2048, and making them is most of the set-up's cost.
var baseWorld = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(tmpRoot, "base")
	w := newEmptyWorld(nil, dir)
	steps := [][]string{
		{"init", w.path("m"), "-k", w.path("keys")},
		{"genkey"},
		{"genkey", "-n", "bob"},
		{"genkey", "-n", "carol"},
		{"genkey", "-n", "newroot"},
		{"--mirror", w.path("m"), "--key-dir", w.path("keys"), "grant", "alice", "--name", "Alice"},
		{"package", "hello", "-C", "files", "--name", "hello", "--release", "v0.0.1"},
		{"package", "hello", "-C", "files", "--name", "hello", "--release", "v0.0.2"},
		// Other bytes, published under another version's name by RP-13.
		{"package", "hello", "-C", "files2", "--name", "hello", "--release", "v9.9.9"},
		{"package", "hello", "-C", "files", "--name", "other", "--release", "v1.0.0"},
		{"--mirror", w.path("m"), "--key-dir", w.path("keys"), "publish", "hello", "v0.0.1", "package/hello-v0.0.1-" + platform + ".tar.gz", "hello", "--desc", "says hello"},
		{"init", w.path("src"), "-k", w.path("srckeys")},
		{"--mirror", w.path("src"), "--key-dir", w.path("srckeys"), "grant", "alice"},
		{"--mirror", w.path("src"), "--key-dir", w.path("srckeys"), "publish", "other", "v1.0.0", "package/other-v1.0.0-" + platform + ".tar.gz", "hello", "--desc", "from another mirror"},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{
		"files/hello":  "#!/bin/sh\necho hello from the mirror\n",
		"files2/hello": "#!/bin/sh\necho other bytes, same name\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			return "", err
		}
	}
	for _, args := range steps {
		if err := runPlain(w, nil, args...); err != nil {
			return "", err
		}
	}
	// The client trusts m as it is now: bin/root.json and the manifests it
	// saved while installing hello.
	client := []string{"TIUP_HOME=" + w.path("client")}
	for _, args := range [][]string{{"set", w.path("m")}, {"install", "hello"}} {
		if err := runPlain(w, client, args...); err != nil {
			return "", err
		}
	}
	return dir, nil
})

// runPlain runs a set-up command outside any test.
func runPlain(w *world, extra []string, args ...string) error {
	cmd := exec.Command(mirrorBin, args...)
	cmd.Dir = w.dir
	cmd.Env = append(append([]string{}, w.env...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("set-up: mirror %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newWorld returns a private copy of the base world.
func newWorld(t *testing.T) *world {
	t.Helper()
	base, err := baseWorld()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := copyTree(base, dir); err != nil {
		t.Fatal(err)
	}
	w := newEmptyWorld(t, dir)
	// The client's saved mirror is the copy's m, so it keeps using its
	// trusted state (the address is what keys the store).
	if err := os.WriteFile(w.path("client", "tiup.toml"), []byte(fmt.Sprintf("mirror = %q\n", w.mirrorDir())), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// copyTree copies the regular files and directories under src to dst,
// keeping modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, info.Mode().Perm()); err != nil {
			return err
		}
		return os.Chmod(target, info.Mode().Perm())
	})
}

// planEnv writes a plan for one run and returns the environment that hands
// it to the plugins, with the log and state directory it uses.
func (w *world) planEnv(name string, p faulttest.Plan) ([]string, string, string) {
	w.t.Helper()
	dir := w.path("faults", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	p.Log = filepath.Join(dir, "calls.jsonl")
	p.State = filepath.Join(dir, "state")
	return []string{faulttest.EnvPlan + "=" + p.Encode()}, p.Log, p.State
}

func readLog(t *testing.T, path string) []faulttest.Call {
	t.Helper()
	calls, err := faulttest.ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// record reports a case to the attack report and fails t when the case
// missed its expectation.
func record(t *testing.T, r attackreport.Result) {
	t.Helper()
	attackreport.Record(t, r)
	if !r.Met || r.Recovery == "failed" || r.Panic || r.Torn || r.LostUpdates > 0 {
		t.Errorf("%s %s on %s: expected %s; met=%v recovery=%q torn=%v lost=%d: %s", r.Family, r.ID, r.Backend, r.Expected, r.Met, r.Recovery, r.Torn, r.LostUpdates, r.Detail)
	}
}
