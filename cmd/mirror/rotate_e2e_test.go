package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// noEditor keeps a developer's $EDITOR out of the rotations that should
// take their new root from flags.
var noEditor = []string{"EDITOR="}

// rootKeyFiles returns the mirror's private root key files, sorted.
func rootKeyFiles(t *testing.T, s *sandbox) []string {
	t.Helper()
	files, err := filepath.Glob(s.path("m", "keys", "*-root.json"))
	if err != nil || len(files) != 3 {
		t.Fatalf("root keys: %v %v", files, err)
	}
	sort.Strings(files)
	return files
}

// keyID returns the ID of a private key file.
func keyID(t *testing.T, path string) string {
	t.Helper()
	k, err := keys.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

// mustEnv runs a command with extra environment that has to succeed.
func (s *sandbox) mustEnv(extra []string, args ...string) result {
	s.t.Helper()
	r := s.runEnv(extra, args...)
	if r.code != 0 {
		s.t.Fatalf("mirror %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// readRoot reads N.root.json of the mirror: its root and the key IDs that
// signed it.
func readRoot(t *testing.T, s *sandbox, name string) (*manifest.Root, []string) {
	t.Helper()
	b, err := os.ReadFile(s.path("m", name))
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	var r manifest.Root
	if err := env.Decode(&r); err != nil {
		t.Fatal(err)
	}
	var signers []string
	for _, sig := range env.Signatures {
		signers = append(signers, sig.KeyID)
	}
	return &r, signers
}

// snapshotRootVersion is the root version the mirror's snapshot names.
func snapshotRootVersion(t *testing.T, s *sandbox) uint64 {
	t.Helper()
	env, _, _ := readManifest(t, s.path("m", "snapshot.json"))
	var snap manifest.Snapshot
	if err := env.Decode(&snap); err != nil {
		t.Fatal(err)
	}
	return snap.Meta["/root.json"].Version
}

// clientInstalls publishes another version and checks that a client home
// set up earlier installs it, following the root chain on its own.
func clientInstalls(t *testing.T, s *sandbox, client []string, version string) {
	t.Helper()
	publishVersion(s, version)
	out := strings.TrimSpace(s.mustEnv(client, "install", "hello").stdout)
	if !strings.Contains(out, version) {
		t.Fatalf("the earlier client installed %s, want %s", out, version)
	}
}

// newClient sets up a second home that trusts the mirror as it is now and
// has read it once.
func newClient(t *testing.T, s *sandbox) []string {
	t.Helper()
	client := []string{"TIUP_HOME=" + s.path("client")}
	s.mustEnv(client, "set", "m")
	s.mustEnv(client, "install", "hello")
	return client
}

// TestRotateSignWith: a rotation signed in one run by the three root keys
// adds a key; the mirror verifies at root version 2, root.json stays at
// version 1, and a client set up before the rotation follows the chain.
func TestRotateSignWith(t *testing.T) {
	s := newMirror(t)
	client := newClient(t, s)
	s.must("genkey", "-n", "newroot")
	newKey := filepath.Join(s.home, "keys", "newroot.json")
	old := rootKeyFiles(t, s)

	r := s.mustEnv(noEditor, "rotate", "--sign-with", strings.Join(old, ","), "--add-key", newKey, "--threshold", "3")
	if !strings.Contains(r.stdout, "version 2") || strings.Contains(r.stdout, "Signing session") {
		t.Errorf("rotate output:\n%s", r.stdout)
	}
	root, signers := readRoot(t, s, "2.root.json")
	if root.Version != 2 || len(root.Roles["root"].Keys) != 4 || root.Roles["root"].Threshold != 3 {
		t.Errorf("2.root.json: version %d, %d keys, threshold %d", root.Version, len(root.Roles["root"].Keys), root.Roles["root"].Threshold)
	}
	if _, ok := root.Roles["root"].Keys[keyID(t, newKey)]; !ok {
		t.Error("2.root.json lacks the added key")
	}
	if len(signers) != 3 {
		t.Errorf("2.root.json has %d signatures, want 3", len(signers))
	}
	if v := snapshotRootVersion(t, s); v != 2 {
		t.Errorf("snapshot names root version %d, want 2", v)
	}
	if anchor, _ := readRoot(t, s, "root.json"); anchor.Version != 1 {
		t.Errorf("root.json is version %d; a rotation must leave it at 1", anchor.Version)
	}
	if out := s.must("verify").stdout; !strings.Contains(out, "root version 2") {
		t.Errorf("verify: %s", out)
	}
	clientInstalls(t, s, client, "v0.0.2")
}

// TestRotateTwice: the root keys are replaced over two rotations (add the
// new keys, then remove the old ones); the client keeps installing.
func TestRotateTwice(t *testing.T) {
	s := newMirror(t)
	client := newClient(t, s)
	old := rootKeyFiles(t, s)
	var fresh []string
	for _, n := range []string{"r1", "r2", "r3"} {
		s.must("genkey", "-n", n)
		fresh = append(fresh, filepath.Join(s.home, "keys", n+".json"))
	}
	s.mustEnv(noEditor, "rotate", "--sign-with", strings.Join(old, ","), "--add-key", strings.Join(fresh, ","))
	clientInstalls(t, s, client, "v0.0.2")

	var ids []string
	for _, f := range old {
		ids = append(ids, keyID(t, f)[:16])
	}
	s.mustEnv(noEditor, "rotate", "--remove-key", strings.Join(ids, ","), "--sign-with", strings.Join(fresh, ","))
	root, _ := readRoot(t, s, "3.root.json")
	got := root.Roles["root"].Keys
	if len(got) != 3 {
		t.Fatalf("3.root.json has %d root keys, want 3", len(got))
	}
	for _, f := range fresh {
		if _, ok := got[keyID(t, f)]; !ok {
			t.Errorf("3.root.json lacks key %s", f)
		}
	}
	if out := s.must("verify").stdout; !strings.Contains(out, "root version 3") {
		t.Errorf("verify: %s", out)
	}
	clientInstalls(t, s, client, "v0.0.3")

	// $EDITOR that saves the root as offered: only version and expiry move.
	s.mustEnv([]string{"EDITOR=true"}, "rotate", "--sign-with", strings.Join(fresh, ","))
	if root, _ := readRoot(t, s, "4.root.json"); len(root.Roles["root"].Keys) != 3 {
		t.Errorf("4.root.json has %d root keys", len(root.Roles["root"].Keys))
	}
	clientInstalls(t, s, client, "v0.0.4")
}

// background is a mirror command left running, its stdout read line by
// line as it comes.
type background struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	lines chan string
	done  chan struct{}
	err   error
	errb  bytes.Buffer
}

func (s *sandbox) start(extra []string, args ...string) *background {
	s.t.Helper()
	b := &background{lines: make(chan string, 100), done: make(chan struct{})}
	b.cmd = exec.Command(mirrorBin, args...)
	b.cmd.Dir = s.dir
	b.cmd.Env = append(append([]string{}, s.env...), extra...)
	b.cmd.Stderr = &b.errb
	pipe, err := b.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			b.mu.Lock()
			b.out.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
			select {
			case b.lines <- sc.Text():
			default:
			}
		}
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	s.t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// waitFor returns the first line matching re, failing after a minute.
func (b *background) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line := <-b.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-b.done:
			t.Fatalf("the command ended before printing %s: %v\n%s", re, b.err, b.errb.String())
		case <-timeout:
			t.Fatalf("no line matching %s within a minute", re)
		}
	}
}

// wait waits for the command to end and returns its stdout.
func (b *background) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(time.Minute):
		t.Fatal("the command did not end within a minute")
	}
	if b.err != nil {
		t.Fatalf("the command failed: %v\n%s", b.err, b.errb.String())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// TestRotateSession: a rotation collects signatures from `mirror sign URL`
// run as separate processes, shows each as it arrives, refuses a stranger's
// key, and completes once both thresholds are met, before every key signed.
func TestRotateSession(t *testing.T) {
	s := newMirror(t)
	client := newClient(t, s)
	old := rootKeyFiles(t, s)
	s.must("genkey", "-n", "extra")
	s.must("genkey", "-n", "next")
	extra := filepath.Join(s.home, "keys", "extra.json")
	next := filepath.Join(s.home, "keys", "next.json")
	// Root 2: the three keys and extra, threshold 2, so that root 3 can
	// drop one of the original keys.
	s.mustEnv(noEditor, "rotate", "--sign-with", strings.Join(old, ","), "--add-key", extra, "--threshold", "2")

	removed := keyID(t, old[2])
	bg := s.start(noEditor, "rotate", "--addr", "127.0.0.1:0", "--remove-key", removed[:16], "--add-key", next, "--threshold", "2")
	url := bg.waitFor(t, regexp.MustCompile(`^Signing session at (http://127\.0\.0\.1:\d+/rotate/[0-9A-Za-z]+)$`))[1]

	before := treeDigest(t, s.path("m"))
	alice := filepath.Join(s.home, "keys", "private.json")
	s.fail(1, "the key is not valid", "sign", url, "-k", alice)
	s.must("sign", url, "-k", old[0])
	bg.waitFor(t, regexp.MustCompile(`^signed by `+keyID(t, old[0])[:16]+` \(old\+new root key\): old 1/2, new 1/2$`))
	s.fail(1, "already signed by key", "sign", url, "-k", old[0])
	s.must("sign", url, "-k", next)
	bg.waitFor(t, regexp.MustCompile(`^signed by `+keyID(t, next)[:16]+` \(new root key\): old 1/2, new 2/2$`))
	if treeDigest(t, s.path("m")) != before {
		t.Fatal("the mirror changed before the signatures were complete")
	}
	s.must("sign", url, "-k", old[1])
	out := bg.wait(t)
	if !strings.Contains(out, "old 2/2, new 3/2") || !strings.Contains(out, "Rotated the root to version 3") {
		t.Errorf("rotate output:\n%s", out)
	}
	root, signers := readRoot(t, s, "3.root.json")
	if _, ok := root.Roles["root"].Keys[removed]; ok {
		t.Error("3.root.json still has the removed key")
	}
	want := []string{keyID(t, old[0]), keyID(t, next), keyID(t, old[1])}
	if strings.Join(signers, ",") != strings.Join(want, ",") {
		t.Errorf("3.root.json signed by %v, want %v", signers, want)
	}
	if out := s.must("verify").stdout; !strings.Contains(out, "root version 3") {
		t.Errorf("verify: %s", out)
	}
	clientInstalls(t, s, client, "v0.0.2")
}

// TestRotateRefused: rotations that clients would refuse, or that lack
// signatures, fail and leave the mirror unchanged.
func TestRotateRefused(t *testing.T) {
	s := newMirror(t)
	old := rootKeyFiles(t, s)
	s.must("genkey", "-n", "newroot")
	newKey := filepath.Join(s.home, "keys", "newroot.json")
	var ids []string
	for _, f := range old {
		ids = append(ids, keyID(t, f))
	}
	s.write("bump.sh", "#!/bin/sh\nsed -i 's/\"version\": 2,/\"version\": 5,/' \"$1\"\n", 0o755)
	s.write("garble.sh", "#!/bin/sh\necho '{' > \"$1\"\n", 0o755)
	cases := []struct {
		name  string
		extra []string
		code  int
		want  string
		args  []string
	}{
		{"too few old keys", noEditor, 1, "not complete (old 2/3, new 2/3)",
			[]string{"rotate", "--sign-with", old[0] + "," + old[1], "--add-key", newKey, "--no-session"}},
		{"new keys only", noEditor, 64, "keeps 0 of the current root keys",
			[]string{"rotate", "--remove-key", strings.Join(ids, ","), "--add-key", newKey, "--threshold", "1", "--sign-with", newKey, "--no-session"}},
		{"version jump", []string{"EDITOR=" + s.path("bump.sh")}, 64, "version 5; it must be 2",
			[]string{"rotate", "--sign-with", strings.Join(old, ",")}},
		{"edited into garbage", []string{"EDITOR=" + s.path("garble.sh")}, 64, "not JSON",
			[]string{"rotate", "--sign-with", strings.Join(old, ",")}},
		{"shortened expiry", noEditor, 64, "before the current root's",
			[]string{"rotate", "--expires", "30d", "--sign-with", strings.Join(old, ",")}},
		{"expiry not a time", noEditor, 64, "--expires",
			[]string{"rotate", "--expires", "soon", "--sign-with", strings.Join(old, ",")}},
		{"unknown key to remove", noEditor, 5, "no root key has that ID",
			[]string{"rotate", "--remove-key", "0123456789abcdef", "--threshold", "2"}},
		{"threshold out of reach", noEditor, 64, "threshold",
			[]string{"rotate", "--threshold", "4", "--sign-with", strings.Join(old, ",")}},
		{"stranger signs in the run", noEditor, 64, "not one of the keys that sign it",
			[]string{"rotate", "--add-key", newKey, "--sign-with", filepath.Join(s.home, "keys", "private.json")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := treeDigest(t, s.path("m"))
			r := s.runEnv(c.extra, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, want %d; stderr %q does not mention %q", r.code, c.code, r.stderr, c.want)
			}
			if treeDigest(t, s.path("m")) != before {
				t.Fatal("a refused rotation changed the mirror")
			}
		})
	}
}

// TestTransferOwner: hello goes from alice to bob; from then on bob's key
// publishes it and alice's is refused.
func TestTransferOwner(t *testing.T) {
	s := newMirror(t)
	client := newClient(t, s)
	s.must("genkey", "-n", "bob")
	bob := filepath.Join(s.home, "keys", "bob.json")
	alice := filepath.Join(s.home, "keys", "private.json")
	s.must("grant", "bob", "-k", bob)

	before := treeDigest(t, s.path("m"))
	s.fail(64, "not one of the keys that sign it", "transfer-owner", "hello", "bob", "--sign-with", alice)
	s.fail(1, "not complete (owner bob 0/1)", "transfer-owner", "hello", "bob", "--no-session")
	s.fail(5, "carol", "transfer-owner", "hello", "carol", "--sign-with", bob)
	s.fail(5, "nosuch", "transfer-owner", "nosuch", "bob", "--sign-with", bob)
	if treeDigest(t, s.path("m")) != before {
		t.Fatal("a refused transfer changed the mirror")
	}

	_, h0, _ := readManifest(t, currentManifest(t, s, "hello"))
	out := s.must("transfer-owner", "hello", "bob", "--sign-with", bob).stdout
	if !strings.Contains(out, "from alice to bob") {
		t.Errorf("transfer output: %s", out)
	}
	ixEnv, _, _ := readManifest(t, currentManifest(t, s, "index"))
	var ix manifest.Index
	if err := json.Unmarshal(ixEnv.Signed, &ix); err != nil {
		t.Fatal(err)
	}
	if got := ix.Components["hello"].Owner; got != "bob" {
		t.Errorf("index owner of hello is %q, want bob", got)
	}
	env, h1, _ := readManifest(t, currentManifest(t, s, "hello"))
	if h1.Version != h0.Version+1 {
		t.Errorf("hello manifest version %d after transfer, want %d", h1.Version, h0.Version+1)
	}
	checkSignatures(t, env, bob)
	s.fail(64, "already belongs to bob", "transfer-owner", "hello", "bob", "--sign-with", bob)

	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	tarball := "package/hello-v0.0.2-" + platform + ".tar.gz"
	s.fail(1, "not a key of owner bob", "publish", "hello", "v0.0.2", tarball, "hello")
	s.must("publish", "hello", "v0.0.2", tarball, "hello", "-k", bob)
	if got := strings.TrimSpace(s.mustEnv(client, "install", "hello").stdout); !strings.Contains(got, "v0.0.2") {
		t.Errorf("install after the transfer went to %s", got)
	}
	s.must("verify")
}

// TestRotateSessionProtocol: the session speaks stock tiup's protocol
// (GET the envelope, 406 with a bare JSON string for a bad signature), and
// an interrupted rotation exits non-zero having written nothing.
func TestRotateSessionProtocol(t *testing.T) {
	s := newMirror(t)
	old := rootKeyFiles(t, s)
	s.must("genkey", "-n", "newroot")
	before := treeDigest(t, s.path("m"))
	bg := s.start(noEditor, "rotate", "--addr", "127.0.0.1:0", "--add-key", filepath.Join(s.home, "keys", "newroot.json"))
	url := bg.waitFor(t, regexp.MustCompile(`^Signing session at (\S+)$`))[1]

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	env, err := manifest.ParseEnvelope(body)
	if resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(string(body), `{"signatures":null,"signed":{`) {
		t.Fatalf("GET %s: %s %v %.80s", url, resp.Status, err, body)
	}
	var root manifest.Root
	if err := env.Decode(&root); err != nil || root.Version != 2 {
		t.Fatalf("the session serves root version %d: %v", root.Version, err)
	}
	forged := `{"signatures":[{"keyid":"` + keyID(t, old[0]) + `","sig":"AAAA"}],"signed":{}}`
	cases := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"forged signature", url, forged, http.StatusNotAcceptable, `"the signature is not valid"`},
		{"stranger's key", url, `{"signatures":[{"keyid":"` + strings.Repeat("ab", 32) + `","sig":"AAAA"}]}`, http.StatusNotAcceptable, `"the key is not valid"`},
		{"not json", url, `{`, http.StatusBadRequest, `"make sure your request is valid"`},
		{"other path", url + "x", `{}`, http.StatusNotFound, ""},
	}
	for _, c := range cases {
		resp, err := http.Post(c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.want != "" && string(got) != c.want) {
			t.Errorf("%s: %s %q, want %d %q", c.name, resp.Status, got, c.code, c.want)
		}
	}

	bg.cmd.Process.Signal(os.Interrupt)
	<-bg.done
	if bg.err == nil || !strings.Contains(bg.errb.String(), "stopped before the signatures were complete") {
		t.Errorf("interrupted rotate: %v %q", bg.err, bg.errb.String())
	}
	if treeDigest(t, s.path("m")) != before {
		t.Fatal("an interrupted rotation changed the mirror")
	}
}

// TestRotateSigner: --signer keys sign the new root when they are root
// keys, as --sign-with ones do; one that is not a root key (here the
// owner's) is left out rather than refused, since --signer serves every
// role of a run.
func TestRotateSigner(t *testing.T) {
	s := newMirror(t)
	s.must("genkey", "-n", "newroot")
	newKey := filepath.Join(s.home, "keys", "newroot.json")
	args := []string{"rotate", "--add-key", newKey, "--no-session", "--signer", filepath.Join(s.home, "keys", "private.json")}
	for _, k := range rootKeyFiles(t, s) {
		args = append(args, "--signer", k)
	}
	s.mustEnv(noEditor, args...)
	root, signers := readRoot(t, s, "2.root.json")
	if root.Version != 2 || len(signers) != 3 {
		t.Fatalf("2.root.json: version %d with %d signatures, want 2 with 3", root.Version, len(signers))
	}
	s.must("verify")
}
