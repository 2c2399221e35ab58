package main_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// The tests drive the built binary, as a user would: real files, the
// plugins as real subprocesses of it.
var mirrorBin string

const fixtureMirror = "../../../shared/fixtures/tiup-v1-mirror"

// fixtureNow lies inside the fixture's validity window; the binary is built
// with -tags testclock, the only build that honours MIRROR_TEST_NOW.
const fixtureNow = "2026-11-23T12:00:00Z"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mirror-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mirrorBin = filepath.Join(dir, "mirror")
	build := exec.Command("go", "build", "-tags", "testclock", "-o", mirrorBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mirror:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sandbox is one user's world: a home, a working directory, an environment.
type sandbox struct {
	t    *testing.T
	dir  string
	home string
	env  []string
}

func newSandbox(t *testing.T) *sandbox {
	dir := t.TempDir()
	s := &sandbox{t: t, dir: dir, home: filepath.Join(dir, "home")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIUP_") && !strings.HasPrefix(kv, "MIRROR") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "TIUP_HOME="+s.home)
	return s
}

type result struct {
	code           int
	stdout, stderr string
}

func (s *sandbox) run(args ...string) result {
	s.t.Helper()
	return s.runEnv(nil, args...)
}

func (s *sandbox) runEnv(extra []string, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(mirrorBin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(append([]string{}, s.env...), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("run mirror %v: %v", args, err)
	}
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		s.t.Fatalf("mirror %v panicked:\n%s", args, r.stderr)
	}
	return r
}

// must runs a command that has to succeed.
func (s *sandbox) must(args ...string) result {
	s.t.Helper()
	r := s.run(args...)
	if r.code != 0 {
		s.t.Fatalf("mirror %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fail runs a command that has to fail with code, and checks the error is
// one line naming what was wrong.
func (s *sandbox) fail(code int, wantInErr string, args ...string) result {
	s.t.Helper()
	r := s.run(args...)
	if r.code != code {
		s.t.Fatalf("mirror %s: exit %d, want %d\nstderr: %s", strings.Join(args, " "), r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "mirror: ") {
		s.t.Fatalf("mirror %s: error is not one 'mirror: ...' line: %q", strings.Join(args, " "), r.stderr)
	}
	if !strings.Contains(last, wantInErr) {
		s.t.Fatalf("mirror %s: error %q does not mention %q", strings.Join(args, " "), last, wantInErr)
	}
	return r
}

func (s *sandbox) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

func (s *sandbox) write(rel string, data string, mode os.FileMode) {
	s.t.Helper()
	p := s.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		s.t.Fatal(err)
	}
}

// treeDigest summarises every file under dir (names, modes, contents) so a
// test can assert that a failed command changed nothing.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, rel+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

var platform = runtime.GOOS + "-" + runtime.GOARCH

// newMirror makes a mirror with owner alice and the hello component.
func newMirror(t *testing.T) *sandbox {
	s := newSandbox(t)
	s.must("init", "m")
	s.must("set", "m")
	s.must("genkey")
	s.must("grant", "alice", "--name", "Alice")
	s.write("src/hello", "#!/bin/sh\necho hello from the mirror\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.1")
	s.must("publish", "hello", "v0.0.1", "package/hello-v0.0.1-"+platform+".tar.gz", "hello", "--desc", "says hello")
	return s
}

// TestMainJob is the README's first command, step by step: a mirror
// created, a component published, installed and run.
func TestMainJob(t *testing.T) {
	s := newMirror(t)
	for _, name := range []string{"root.json", "1.index.json", "2.index.json", "1.hello.json", "snapshot.json", "timestamp.json", "hello-v0.0.1-" + platform + ".tar.gz"} {
		if _, err := os.Stat(s.path("m", name)); err != nil {
			t.Errorf("mirror lacks %s: %v", name, err)
		}
	}
	if got := strings.TrimSpace(s.must("show").stdout); got != s.path("m") {
		t.Errorf("show = %q, want %q", got, s.path("m"))
	}
	if out := s.must("list").stdout; !strings.Contains(out, "hello") || !strings.Contains(out, "says hello") || !strings.Contains(out, "v0.0.1") {
		t.Errorf("list output lacks hello:\n%s", out)
	}
	if out := s.must("list", "hello").stdout; !strings.Contains(out, "v0.0.1") {
		t.Errorf("list hello lacks v0.0.1:\n%s", out)
	}
	if out := s.must("verify").stdout; !strings.Contains(out, "verified") {
		t.Errorf("verify: %s", out)
	}
	entry := strings.TrimSpace(s.must("install", "hello").stdout)
	if want := filepath.Join(s.home, "components", "hello", "v0.0.1", "hello"); entry != want {
		t.Fatalf("install printed %q, want %q", entry, want)
	}
	out, err := exec.Command(entry).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from the mirror" {
		t.Fatalf("run installed hello: %v: %s", err, out)
	}
	// A second version; re-running a finished publish is a no-op.
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	s.must("publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello")
	before := treeDigest(t, s.path("m"))
	if out := s.must("publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello").stdout; !strings.Contains(out, "nothing to do") {
		t.Errorf("re-publish: %s", out)
	}
	if treeDigest(t, s.path("m")) != before {
		t.Error("a re-run publish changed the mirror")
	}
	if got := strings.TrimSpace(s.must("install", "hello").stdout); !strings.Contains(got, "v0.0.2") {
		t.Errorf("latest install went to %s", got)
	}
	// --backend picks a plugin by name: the built-in fs, or an external
	// mirror-backend-NAME that must exist.
	if out := s.must("--backend", "fs", "list").stdout; !strings.Contains(out, "hello") {
		t.Errorf("--backend fs list: %s", out)
	}
	s.fail(5, "mirror-backend-nosuch", "--backend", "nosuch", "list")
	if s.run("--help").code != 0 || s.run("publish", "--help").code != 0 {
		t.Error("help fails")
	}
}

// TestSetOnEmptyHome: stock tiup's `mirror set` fails without
// $TIUP_HOME/bin; ours works, and TIUP_MIRRORS is honoured without being
// saved.
func TestSetOnEmptyHome(t *testing.T) {
	s := newSandbox(t)
	s.must("init", "m")
	s.must("set", "m")
	if _, err := os.Stat(filepath.Join(s.home, "bin", "root.json")); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(s.home, "tiup.toml"))
	if err != nil || !strings.Contains(string(conf), s.path("m")) {
		t.Fatalf("tiup.toml: %v %q", err, conf)
	}
	s.must("init", "other")
	r := s.runEnv([]string{"TIUP_MIRRORS=" + s.path("other")}, "show")
	if strings.TrimSpace(r.stdout) != s.path("other") {
		t.Fatalf("TIUP_MIRRORS not honoured: %q", r.stdout)
	}
	if got := strings.TrimSpace(s.must("show").stdout); got != s.path("m") {
		t.Fatalf("TIUP_MIRRORS was persisted: show = %q", got)
	}
}

// TestKeysOutsideMirror: init -k keeps the role keys out of the mirror
// directory, and later writes find them there.
func TestKeysOutsideMirror(t *testing.T) {
	s := newSandbox(t)
	s.must("init", "m", "-k", "secret-keys")
	if _, err := os.Stat(s.path("m", "keys")); !os.IsNotExist(err) {
		t.Fatalf("keys inside the mirror: %v", err)
	}
	ents, _ := os.ReadDir(s.path("secret-keys"))
	if len(ents) != 6 {
		t.Fatalf("%d key files, want 6", len(ents))
	}
	for _, e := range ents {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", e.Name(), info.Mode().Perm())
		}
	}
	s.must("set", "m")
	s.must("genkey")
	s.must("grant", "alice")
	s.must("verify")
}

// TestBadInput: for each command, wrong arguments, missing keys, unknown
// names and tampering get a one-line error, the documented exit code, and
// leave the mirror unchanged.
func TestBadInput(t *testing.T) {
	s := newMirror(t)
	tarball := "package/hello-v0.0.1-" + platform + ".tar.gz"
	s.must("genkey", "-n", "mallory")
	s.write("evil/x", "x", 0o644)
	s.must("package", "x", "-C", "evil", "--name", "evil", "--release", "v1.0.0")
	evil := "package/evil-v1.0.0-" + platform + ".tar.gz"
	cases := []struct {
		name string
		code int
		msg  string
		args []string
	}{
		{"init without address", 64, "init", []string{"init"}},
		{"init into a non-empty dir", 1, "not empty", []string{"init", "m"}},
		{"unknown flag", 64, "unknown flag", []string{"list", "--bogus"}},
		{"unknown command", 64, "unknown command", []string{"lsit"}},
		{"publish too few args", 64, "publish", []string{"publish", "hello", "v0.0.3"}},
		{"publish bad version", 64, "version", []string{"publish", "hello", "1.0", tarball, "hello"}},
		{"publish bad platform", 64, "platform", []string{"publish", "hello", "v0.0.3", tarball, "hello", "--os", "plan9"}},
		{"publish bad component name", 64, "component", []string{"publish", "../x", "v0.0.3", tarball, "hello"}},
		{"publish a role name", 64, "component", []string{"publish", "timestamp", "v0.0.3", tarball, "hello"}},
		{"publish missing tarball", 5, "tarball", []string{"publish", "hello", "v0.0.3", "nope.tar.gz", "hello"}},
		{"publish missing key", 5, "key", []string{"publish", "hello", "v0.0.3", tarball, "hello", "-k", "no-such-key.json"}},
		{"publish by a non-owner", 1, "not a key of owner alice", []string{"publish", "hello", "v0.0.3", tarball, "hello", "-k", filepath.Join(s.home, "keys", "mallory.json")}},
		{"new component by a non-owner", 1, "not an owner", []string{"publish", "evil", "v1.0.0", evil, "x", "-k", filepath.Join(s.home, "keys", "mallory.json")}},
		{"republish with other content", 1, "already published", []string{"publish", "hello", "v0.0.1", evil, "hello"}},
		{"grant an existing owner", 1, "already exists", []string{"grant", "alice"}},
		{"grant a role name", 64, "owner", []string{"grant", "root"}},
		{"grant with missing key", 5, "key", []string{"grant", "bob", "-k", "nope.json"}},
		{"install unknown component", 5, "nothere", []string{"install", "nothere"}},
		{"install unknown version", 5, "v9.9.9", []string{"install", "hello:v9.9.9"}},
		{"install bad spec", 64, "version", []string{"install", "hello:latest!"}},
		{"list unknown component", 5, "nothere", []string{"list", "nothere"}},
		{"package without name", 64, "name", []string{"package", "x"}},
		{"genkey bad name", 64, "key name", []string{"genkey", "-n", "../x"}},
		{"verify missing mirror", 5, "", []string{"verify", "no-such-mirror"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			before := treeDigest(t, s.path("m"))
			s.fail(tc.code, tc.msg, tc.args...)
			if treeDigest(t, s.path("m")) != before {
				t.Fatal("the mirror changed")
			}
		})
	}
}

// TestTampering: a corrupted manifest or tarball in the mirror is refused by
// install and reported by verify (exit 3), and nothing is installed.
func TestTampering(t *testing.T) {
	tarName := "hello-v0.0.1-" + platform + ".tar.gz"
	cases := []struct {
		name   string
		tamper func(m string) error
	}{
		{"tarball byte flipped", func(m string) error { return flipByte(filepath.Join(m, tarName), 40) }},
		{"tarball longer than signed", func(m string) error { return appendBytes(filepath.Join(m, tarName), 4096) }},
		{"component manifest byte flipped", func(m string) error { return flipSignedByte(filepath.Join(m, "1.hello.json")) }},
		{"index manifest byte flipped", func(m string) error { return flipSignedByte(filepath.Join(m, "3.index.json")) }},
		{"snapshot replaced by garbage", func(m string) error {
			return os.WriteFile(filepath.Join(m, "snapshot.json"), []byte("{not json"), 0o644)
		}},
		{"timestamp signature broken", func(m string) error { return flipSignedByte(filepath.Join(m, "timestamp.json")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMirror(t)
			if err := tc.tamper(s.path("m")); err != nil {
				t.Fatal(err)
			}
			r := s.fail(3, "", "install", "hello")
			if _, err := os.Stat(filepath.Join(s.home, "components", "hello", "v0.0.1")); !os.IsNotExist(err) {
				t.Fatalf("something was installed after %s: %v", r.stderr, err)
			}
			if r := s.run("verify"); r.code != 3 || !strings.Contains(r.stdout, "problem:") {
				t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func flipByte(path string, at int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[at%len(b)] ^= 0x01
	return os.WriteFile(path, b, 0o644)
}

func appendBytes(path string, n int) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(make([]byte, n))
	return err
}

// flipSignedByte changes one byte inside the signed section, keeping the
// JSON valid, so only the signature check can catch it.
func flipSignedByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(`"expires":"`))
	if i < 0 {
		return fmt.Errorf("%s has no expires", path)
	}
	i += len(`"expires":"`) + 3 // a digit of the year
	if b[i] == '9' {
		b[i] = '8'
	} else {
		b[i]++
	}
	return os.WriteFile(path, b, 0o644)
}

// TestArchiveEscapes: install refuses archive entries that would land
// outside the component directory, even when the tarball is properly signed
// by its owner, and leaves nothing behind.
func TestArchiveEscapes(t *testing.T) {
	cases := []struct {
		name    string
		entries []tarEntry
	}{
		{"dot-dot", []tarEntry{{name: "hello", body: "x", mode: 0o755}, {name: "../../escaped", body: "x", mode: 0o644}}},
		{"absolute", []tarEntry{{name: "hello", body: "x", mode: 0o755}, {name: "/tmp/escaped-abs", body: "x", mode: 0o644}}},
		{"symlink out then through", []tarEntry{{name: "hello", body: "x", mode: 0o755}, {name: "l", link: "../../..", typ: tar.TypeSymlink}, {name: "l/escaped", body: "x", mode: 0o644}}},
		{"hard link out", []tarEntry{{name: "hello", link: "/etc/passwd", typ: tar.TypeLink}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMirror(t)
			version := fmt.Sprintf("v1.0.%d", i)
			tb := s.path("evil.tar.gz")
			if err := writeTarGz(tb, tc.entries); err != nil {
				t.Fatal(err)
			}
			s.must("publish", "hello", version, tb, "hello")
			s.fail(3, "", "install", "hello:"+version)
			if _, err := os.Stat(filepath.Join(s.home, "components", "hello", version)); !os.IsNotExist(err) {
				t.Fatal("a refused component was installed")
			}
			for _, p := range []string{filepath.Join(s.home, "escaped"), filepath.Join(s.home, "components", "escaped"), "/tmp/escaped-abs"} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s was written", p)
				}
			}
		})
	}
}

type tarEntry struct {
	name, body, link string
	mode             int64
	typ              byte
}

func writeTarGz(path string, entries []tarEntry) error {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Linkname: e.link}
		if e.typ != 0 {
			h.Typeflag, h.Size = e.typ, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// fixtureSandbox is a sandbox holding a copy of the mirror stock tiup made,
// at fx/, and the environment that fixes the clock inside its validity.
func fixtureSandbox(t *testing.T) (*sandbox, []string) {
	t.Helper()
	src := filepath.Join(fixtureMirror, "mirror")
	if _, err := os.Stat(src); err != nil {
		t.Skip("fixtures not available")
	}
	s := newSandbox(t)
	if err := os.CopyFS(s.path("fx"), os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return s, []string{"MIRROR_TEST_NOW=" + fixtureNow}
}

// TestFixtureMirror: a mirror made by stock tiup 1.16.5 verifies, lists and
// installs with mirror, its rotated root included.
func TestFixtureMirror(t *testing.T) {
	s, clock := fixtureSandbox(t)
	run := func(args ...string) result {
		r := s.runEnv(clock, args...)
		if r.code != 0 {
			t.Fatalf("mirror %v: exit %d: %s%s", args, r.code, r.stdout, r.stderr)
		}
		return r
	}
	if out := run("verify", "fx").stdout; !strings.Contains(out, "root version 2") {
		t.Fatalf("verify: %s", out)
	}
	run("set", "fx")
	out := run("list").stdout
	for _, want := range []string{"hello", "greet", "shout", "extra"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "gohello") || strings.Contains(out, "legacy") {
		t.Errorf("list shows a hidden or yanked component:\n%s", out)
	}
	if !strings.Contains(run("list", "--all").stdout, "gohello") {
		t.Error("list --all lacks hidden gohello")
	}
	entry := strings.TrimSpace(run("install", "greet", "--os", "linux", "--arch", "amd64").stdout)
	if !strings.HasSuffix(entry, filepath.Join("greet", "v2.0.1", "bin", "greet")) {
		t.Errorf("greet installed as %s, want latest stable v2.0.1", entry)
	}
	run("install", "shout", "--os", "linux", "--arch", "amd64") // any/any fallback
	if r := s.runEnv(clock, "install", "legacy", "--os", "linux", "--arch", "amd64"); r.code != 5 {
		t.Errorf("install of a yanked component: exit %d", r.code)
	}
	// Past the snapshot's expiry the same mirror is refused.
	if r := s.runEnv([]string{"MIRROR_TEST_NOW=2026-12-23T00:00:00Z"}, "verify", "fx"); r.code != 3 || !strings.Contains(r.stdout, "expired") {
		t.Errorf("expired mirror: exit %d: %s", r.code, r.stdout)
	}
}
