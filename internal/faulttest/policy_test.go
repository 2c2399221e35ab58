package faulttest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// testClock is testNow as a clock, for set-up done in-process.
func testClock() time.Time {
	t, err := time.Parse(time.RFC3339, testNow)
	if err != nil {
		panic(err)
	}
	return t
}

// dirRing finds the mirror's role keys in a key directory, for set-up done
// in-process with publish.Writer.
type dirRing string

func (d dirRing) Signer(_ context.Context, id string) (sdk.Signer, error) {
	files, _ := filepath.Glob(filepath.Join(string(d), id[:16]+"-*.json"))
	for _, f := range files {
		if k, err := keys.LoadPrivateKey(f); err == nil && k.ID() == id {
			return k.Signer(), nil
		}
	}
	return nil, fmt.Errorf("key %s: %w", id[:16], publish.ErrMissingKey)
}

func loadKey(t *testing.T, path string) *keys.PrivateKey {
	t.Helper()
	k, err := keys.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// addOwner gives the world's mirror an owner with these keys and
// threshold. The CLI grants one key at threshold 1, so the set-up writes
// the index in-process, with the mirror's own role keys.
func addOwner(t *testing.T, w *world, id string, threshold uint64, keyFiles ...string) {
	t.Helper()
	ks := map[string]*manifest.KeyInfo{}
	for _, f := range keyFiles {
		k := loadKey(t, f)
		ks[k.ID()] = k.Public().KeyInfo()
	}
	wr := &publish.Writer{Backend: fsbackend.New(w.mirrorDir()), Keys: dirRing(w.path("keys")), Clock: testClock}
	err := wr.Update(context.Background(), func(ctx context.Context, tx *publish.Txn) error {
		tx.Index.Owners[id] = manifest.Owner{Name: id, Keys: ks, Threshold: threshold}
		tx.IndexChanged()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writesIn counts the backend writes a call log shows.
func writesIn(calls []faulttest.Call) int {
	n := 0
	for _, c := range calls {
		if c.Plugin == "backend" && (isWrite(c) || c.Op == "Delete") {
			n++
		}
	}
	return n
}

// versionItem describes tarball data as a component manifest lists it.
func versionItem(name string, data []byte) manifest.VersionItem {
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	return manifest.VersionItem{URL: "/" + name, Entry: "hello", Released: manifest.FormatTime(testClock()), Length: uint64(len(data)),
		Hashes: map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])}}
}

// componentFile is component id at manifest version n offering one version
// on this platform, signed by signers.
func componentFile(t *testing.T, id string, n uint64, version string, item manifest.VersionItem, signers ...*keys.PrivateKey) []byte {
	t.Helper()
	c := manifest.NewComponent(id, "posted", testClock())
	c.Version = n
	c.Platforms[strings.Replace(platform, "-", "/", 1)] = map[string]manifest.VersionItem{version: item}
	env, err := manifest.NewEnvelope(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range signers {
		if err := publish.SignWith(context.Background(), env, k.Signer()); err != nil {
			t.Fatal(err)
		}
	}
	b, err := env.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apiUpload posts a tarball to the write API as stock tiup does.
func apiUpload(t *testing.T, base, sid, name string, data []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return apiPost(t, base+"/api/v1/tarball/"+sid, mw.FormDataContentType(), buf.Bytes())
}

func apiPost(t *testing.T, url, ctype string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// serveFaulty starts `mirror serve` on the world's mirror through the
// faulty backend with a logging plan, so a case can see what the server
// wrote.
func serveFaulty(t *testing.T, w *world) (*server, string) {
	t.Helper()
	env, log, _ := w.planEnv("serve", faulttest.Plan{})
	srvWorld := *w
	srvWorld.env = append(append([]string{}, w.env...), env...)
	s := serveAt(t, &srvWorld, w.faultyAddr())
	return s, log
}

// TestOwnerThreshold is RP-10: an owner whose threshold is 2 cannot publish
// with one signature, neither through the CLI on the mirror's directory nor
// by posting a manifest to `mirror serve`'s write API directly (stock
// tiup-server accepts any one owner signature, and clients then refuse
// what it published). Two signatures publish (the positive control).
func TestOwnerThreshold(t *testing.T) {
	t.Parallel()
	t.Run("cli", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		bob, carol := w.path("home", "keys", "bob.json"), w.path("home", "keys", "carol.json")
		addOwner(t, w, "team", 2, bob, carol)
		tb := w.tarball("hello", "v0.0.1")
		env, log, _ := w.planEnv("threshold", faulttest.Plan{})
		// One signature, for a new component and then for one that exists.
		var refusals []string
		met := true
		for i, version := range []string{"v1.0.0", "v1.0.1"} {
			if i == 1 {
				ok := w.run(nil, adminArgs(w, w.mirrorDir(), "publish", "teamc", "v1.0.0", tb, "hello", "-k", bob, "-k", carol)...)
				refusals = append(refusals, fmt.Sprintf("with 2 of 2: exit %d", ok.code))
				met = met && ok.code == 0
				env, log, _ = w.planEnv("threshold2", faulttest.Plan{})
			}
			before, _ := wholeView(w.mirrorDir())
			r := w.run(env, adminArgs(w, w.faultyAddr(), "publish", "teamc", version, tb, "hello", "-k", bob)...)
			after, _ := wholeView(w.mirrorDir())
			writes := writesIn(readLog(t, log))
			met = met && r.code == 1 && r.oneLineError() && strings.Contains(r.stderr, "threshold is 2") && writes == 0 && sameFiles(before, after)
			refusals = append(refusals, fmt.Sprintf("%s with 1 of 2: exit %d: %s; writes %d", version, r.code, lastLine(r.stderr), writes))
		}
		met = met && w.run(nil, "verify", w.mirrorDir()).code == 0
		record(t, attackreport.Result{Family: "owner threshold", ID: "RP-10", Backend: "fs", Expected: "REJECT(one signature for threshold 2)", Met: met,
			Detail: strings.Join(refusals, "; ")})
	})
	t.Run("api", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		bobFile, carolFile := w.path("home", "keys", "bob.json"), w.path("home", "keys", "carol.json")
		addOwner(t, w, "team", 2, bobFile, carolFile)
		bob, carol := loadKey(t, bobFile), loadKey(t, carolFile)
		srv, log := serveFaulty(t, w)
		before, _ := wholeView(w.mirrorDir())
		data, _ := os.ReadFile(w.tarball("hello", "v0.0.1"))
		name := "teamc-v1.0.0-" + platform + ".tar.gz"
		item := versionItem(name, data)
		up, _ := apiUpload(t, srv.base, "s1", name, data)
		code, body := apiPost(t, srv.base+"/api/v1/component/s1/teamc", "application/json", componentFile(t, "teamc", 1, "v1.0.0", item, bob))
		after, _ := wholeView(w.mirrorDir())
		writes := writesIn(readLog(t, log))
		apiUpload(t, srv.base, "s2", name, data)
		okCode, okBody := apiPost(t, srv.base+"/api/v1/component/s2/teamc", "application/json", componentFile(t, "teamc", 1, "v1.0.0", item, bob, carol))
		met := up == http.StatusNoContent && code == http.StatusForbidden && writes == 0 && sameFiles(before, after) &&
			okCode == http.StatusNoContent && w.run(nil, "verify", w.mirrorDir()).code == 0
		record(t, attackreport.Result{Family: "owner threshold", ID: "RP-10", Backend: "http", Expected: "REJECT(one signature for threshold 2)", Met: met,
			Detail: fmt.Sprintf("post signed by 1 of 2: %d %s; writes %d; by 2 of 2: %d %s", code, body, writes, okCode, okBody)})
	})
}

// TestImmutability is RP-13: a published version keeps its tarball
// forever. Publishing it again with other bytes is refused and changes
// nothing (stock tiup overwrites the tarball clients may have cached); with
// the same bytes it is an idempotent success that also changes nothing.
func TestImmutability(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"fs", "http"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			addr := w.mirrorDir()
			flags := []string{"--key-dir", w.path("keys")}
			if backend == "http" {
				addr, flags = serveAt(t, w, w.mirrorDir()).base, nil
			}
			run := func(tarball string) result {
				return w.run(nil, append(append([]string{"--mirror", addr}, flags...), "publish", "hello", "v0.0.1", tarball, "hello")...)
			}
			before, _ := wholeView(w.mirrorDir())
			other := run(w.tarball("hello", "v9.9.9"))
			mid, _ := wholeView(w.mirrorDir())
			same := run(w.tarball("hello", "v0.0.1"))
			after, _ := wholeView(w.mirrorDir())
			met := other.code != 0 && other.oneLineError() && strings.Contains(other.stderr, "already") && sameFiles(before, mid) &&
				same.code == 0 && sameFiles(before, after)
			record(t, attackreport.Result{Family: "immutability", ID: "RP-13", Backend: backend,
				Expected: "REJECT(other bytes for a published version); ACCEPT(same bytes, no change)", Met: met,
				Detail: fmt.Sprintf("other bytes: exit %d: %s; mirror unchanged %v; same bytes: exit %d, mirror unchanged %v",
					other.code, lastLine(other.stderr), sameFiles(before, mid), same.code, sameFiles(before, after))})
		})
	}
}

// serveAt starts `mirror serve ADDR` with the world's role keys.
func serveAt(t *testing.T, w *world, addr string) *server {
	t.Helper()
	return startServer(t, w, "serve", addr, "--addr", "127.0.0.1:0", "-k", w.path("keys"))
}

// TestPublishValidation is RP-14: what a publish asks for is checked
// before anything is written. Names that are roles or leave the mirror are
// refused by the CLI; through the write API, a manifest whose id is not the
// component it is posted as, a tarball URL that escapes, a tarball whose
// hash or length differs from the manifest, a version that is not the next
// one, and a role name as component are refused with a 4xx. The backend's
// log shows no write and the mirror is unchanged.
func TestPublishValidation(t *testing.T) {
	t.Parallel()
	t.Run("cli", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ name, comp, version string }{
			{"role name", "timestamp", "v1.0.0"},
			{"traversal", "../x", "v1.0.0"},
			{"slash", "a/b", "v1.0.0"},
			{"upper case", "Hello", "v1.0.0"},
			{"bad version", "hello", "1.0"},
			{"version traversal", "hello", "v1.0.0/../../x"},
		} {
			w := newWorld(t)
			before, _ := wholeView(w.mirrorDir())
			env, log, _ := w.planEnv("validate", faulttest.Plan{})
			r := w.run(env, adminArgs(w, w.faultyAddr(), "publish", tc.comp, tc.version, w.tarball("hello", "v0.0.1"), "hello")...)
			after, _ := wholeView(w.mirrorDir())
			writes := writesIn(readLog(t, log))
			record(t, attackreport.Result{Family: "publish validation", ID: "RP-14", Backend: "fs", Expected: "REJECT(usage, before any write)",
				Met:    r.code == 64 && r.oneLineError() && writes == 0 && sameFiles(before, after),
				Detail: fmt.Sprintf("%s (%s %s): exit %d: %s; writes %d", tc.name, tc.comp, tc.version, r.code, lastLine(r.stderr), writes)})
		}
	})
	t.Run("api", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		alice := loadKey(t, w.path("home", "keys", "private.json"))
		srv, log := serveFaulty(t, w)
		data, _ := os.ReadFile(w.tarball("hello", "v0.0.2"))
		name := "hello-v0.0.2-" + platform + ".tar.gz"
		good := versionItem(name, data)
		// The mirror holds hello at manifest version 1; the next is 2.
		cases := []struct {
			name   string
			post   string // component path element
			body   func() []byte
			upload bool
			want   int
		}{
			{"id is not the posted name", "hello", func() []byte { return componentFile(t, "other", 2, "v0.0.2", good, alice) }, true, http.StatusBadRequest},
			{"tarball url escapes", "hello", func() []byte {
				it := good
				it.URL = "/../../etc/" + name
				return componentFile(t, "hello", 2, "v0.0.2", it, alice)
			}, true, http.StatusBadRequest},
			{"tarball hash differs", "hello", func() []byte {
				it := good
				it.Hashes = map[string]string{"sha256": strings.Repeat("0", 64), "sha512": good.Hashes["sha512"]}
				return componentFile(t, "hello", 2, "v0.0.2", it, alice)
			}, true, http.StatusBadRequest},
			{"tarball length differs", "hello", func() []byte {
				it := good
				it.Length++
				return componentFile(t, "hello", 2, "v0.0.2", it, alice)
			}, true, http.StatusBadRequest},
			{"version skips one", "hello", func() []byte { return componentFile(t, "hello", 3, "v0.0.2", good, alice) }, true, http.StatusConflict},
			{"version goes back", "hello", func() []byte { return componentFile(t, "hello", 1, "v0.0.2", good, alice) }, true, http.StatusConflict},
			{"role name as component", "timestamp", func() []byte { return componentFile(t, "timestamp", 1, "v0.0.2", good, alice) }, false, http.StatusForbidden},
			{"tarball missing", "hello", func() []byte { return componentFile(t, "hello", 2, "v0.0.2", good, alice) }, false, http.StatusBadRequest},
		}
		for i, tc := range cases {
			before, _ := wholeView(w.mirrorDir())
			start := len(readLog(t, log))
			sid := fmt.Sprintf("v%d", i)
			if tc.upload {
				if code, body := apiUpload(t, srv.base, sid, name, data); code != http.StatusNoContent {
					t.Fatalf("upload: %d %s", code, body)
				}
			}
			code, body := apiPost(t, srv.base+"/api/v1/component/"+sid+"/"+tc.post, "application/json", tc.body())
			after, _ := wholeView(w.mirrorDir())
			writes := writesIn(readLog(t, log)[start:])
			record(t, attackreport.Result{Family: "publish validation", ID: "RP-14", Backend: "http", Expected: fmt.Sprintf("REJECT(%d, before any write)", tc.want),
				Met:    code == tc.want && writes == 0 && sameFiles(before, after),
				Detail: fmt.Sprintf("%s: %d %s; writes %d", tc.name, code, body, writes)})
		}
		// The positive control: the same upload with a good manifest.
		apiUpload(t, srv.base, "good", name, data)
		if code, body := apiPost(t, srv.base+"/api/v1/component/good/hello", "application/json", componentFile(t, "hello", 2, "v0.0.2", good, alice)); code != http.StatusNoContent {
			t.Errorf("a valid post after the refusals: %d %s", code, body)
		}
		if vr := w.run(nil, "verify", w.mirrorDir()); vr.code != 0 {
			t.Errorf("verify: %s", vr)
		}
	})
}

// flipSigned changes one byte inside a manifest's signed part, keeping the
// JSON valid, so only the signature can tell.
func flipSigned(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"description":"`))
	if i < 0 {
		t.Fatalf("%s has no description", path)
	}
	b[i+len(`"description":"`)] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMergeCloneTrust is RP-15: merge and clone read another mirror, and
// refuse it, changing nothing, when it is signed by keys the target was not
// told to trust, when a manifest or a tarball was tampered with, or when it
// has expired (stock tiup's merge assumes its source is trusted).
func TestMergeCloneTrust(t *testing.T) {
	t.Parallel()
	otherTarball := "other-v1.0.0-" + platform + ".tar.gz"
	merges := []struct {
		name   string
		tamper func(t *testing.T, w *world) []string // returns extra merge flags
	}{
		{"root the source is not signed by", func(t *testing.T, w *world) []string {
			return []string{"--root", w.path("m", "root.json")}
		}},
		{"tampered component manifest", func(t *testing.T, w *world) []string {
			flipSigned(t, w.path("src", "1.other.json"))
			return nil
		}},
		{"tampered tarball", func(t *testing.T, w *world) []string {
			flipByte(t, w.path("src", otherTarball))
			return nil
		}},
	}
	for _, tc := range merges {
		t.Run("merge/"+tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			extra := tc.tamper(t, w)
			before, _ := wholeView(w.mirrorDir())
			env, log, _ := w.planEnv("merge", faulttest.Plan{})
			r := w.run(env, append(adminArgs(w, w.faultyAddr(), "merge", w.path("src")), extra...)...)
			after, _ := wholeView(w.mirrorDir())
			committed := committedView(w.mirrorDir())
			_, hasOther := committed.files["1.other.json"]
			record(t, attackreport.Result{Family: "merge and clone trust", ID: "RP-15", Backend: "fs", Expected: "REJECT(untrusted source, target unchanged)",
				Met:    r.code == 3 && r.oneLineError() && sameFiles(before, after) && !hasOther,
				Detail: fmt.Sprintf("merge from a source with a %s: exit %d: %s; target unchanged %v; writes %d", tc.name, r.code, lastLine(r.stderr), sameFiles(before, after), writesIn(readLog(t, log)))})
		})
	}
	t.Run("clone/tampering server", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		var tamper atomic.Bool
		files := http.FileServer(http.Dir(w.path("src")))
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			if tamper.Load() && strings.HasSuffix(req.URL.Path, ".tar.gz") {
				b, err := os.ReadFile(w.path("src", filepath.Base(req.URL.Path)))
				if err != nil {
					http.NotFound(rw, req)
					return
				}
				b[len(b)/2] ^= 0x01
				rw.Write(b)
				return
			}
			files.ServeHTTP(rw, req)
		}))
		defer srv.Close()
		target := w.path("cl")
		tamper.Store(true)
		r := w.run(nil, "clone", target, "--from", srv.URL, "--full", "-k", w.path("cl-keys"))
		committed := committedView(target)
		var leaked []string
		for name := range committed.files {
			if strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".other.json") {
				leaked = append(leaked, name)
			}
		}
		_, tornTarball := os.Stat(filepath.Join(target, otherTarball))
		tamper.Store(false)
		rr := w.run(nil, "clone", target, "--from", srv.URL, "--full", "-k", w.path("cl-keys"))
		recovery := "ok"
		if rr.code != 0 || w.run(nil, "verify", target).code != 0 {
			recovery = "failed"
		}
		record(t, attackreport.Result{Family: "merge and clone trust", ID: "RP-15", Backend: "http", Expected: "REJECT(tampered tarball, nothing committed)",
			Met: r.code == 3 && r.oneLineError() && len(leaked) == 0 && os.IsNotExist(tornTarball), Recovery: recovery,
			Detail: fmt.Sprintf("clone through a server flipping tarball bytes: exit %d: %s; committed from the source %v; healed re-run exit %d", r.code, lastLine(r.stderr), leaked, rr.code)})
	})
	t.Run("clone/expired source", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		target := w.path("cl")
		// The source's timestamp lives 30 days; a year later it is stale.
		r := w.run([]string{"MIRROR_TEST_NOW=2027-06-01T12:00:00Z"}, "clone", target, "--from", w.path("src"), "--full", "-k", w.path("cl-keys"))
		_, err := os.Stat(target)
		empty := os.IsNotExist(err)
		if !empty {
			ents, _ := os.ReadDir(target)
			empty = len(ents) == 0
		}
		record(t, attackreport.Result{Family: "merge and clone trust", ID: "RP-15", Backend: "fs", Expected: "REJECT(expired source, no target)",
			Met:    r.code == 3 && r.oneLineError() && strings.Contains(r.stderr, "expire") && empty,
			Detail: fmt.Sprintf("clone from a source expired a year ago: exit %d: %s; target empty %v", r.code, lastLine(r.stderr), empty)})
	})
}

// TestKeyFiles is RP-18: private keys are written 0600 in a 0700
// directory whatever the umask, never appear on stdout or stderr (not even
// with -v), and are never overwritten: genkey leaves an existing key alone,
// init refuses a key directory that is not empty.
func TestKeyFiles(t *testing.T) {
	t.Parallel()
	w := newEmptyWorld(t, t.TempDir())
	// umask 0: the modes must come from the code, not from the shell.
	umask0 := func(args ...string) result {
		cmd := []string{"-c", `umask 0; exec "$0" "$@"`, mirrorBin}
		r := runCmd(t, w, "sh", append(cmd, args...)...)
		return r
	}
	var problems []string
	check := func(path string, want os.FileMode) {
		fi, err := os.Stat(path)
		if err != nil {
			problems = append(problems, err.Error())
			return
		}
		if got := fi.Mode().Perm(); got != want {
			problems = append(problems, fmt.Sprintf("%s has mode %v, want %v", path, got, want))
		}
	}
	var outputs []string
	r := umask0("genkey")
	outputs = append(outputs, r.stdout, r.stderr)
	if r.code != 0 {
		problems = append(problems, "genkey: "+r.String())
	}
	key := w.path("home", "keys", "private.json")
	check(filepath.Dir(key), 0o700)
	check(key, 0o600)
	first, _ := os.ReadFile(key)
	r = umask0("genkey")
	outputs = append(outputs, r.stdout, r.stderr)
	if again, _ := os.ReadFile(key); r.code != 0 || !bytes.Equal(first, again) {
		problems = append(problems, "a second genkey changed the key: "+r.String())
	}
	r = umask0("init", w.path("m"), "-k", w.path("mkeys"))
	outputs = append(outputs, r.stdout, r.stderr)
	if r.code != 0 {
		problems = append(problems, "init: "+r.String())
	}
	check(w.path("mkeys"), 0o700)
	ents, _ := os.ReadDir(w.path("mkeys"))
	var before []string
	for _, e := range ents {
		check(w.path("mkeys", e.Name()), 0o600)
		b, _ := os.ReadFile(w.path("mkeys", e.Name()))
		before = append(before, e.Name()+sum(b))
	}
	if len(ents) != 6 {
		problems = append(problems, fmt.Sprintf("init wrote %d key files, want 6", len(ents)))
	}
	r = umask0("init", w.path("m2"), "-k", w.path("mkeys"))
	outputs = append(outputs, r.stdout, r.stderr)
	var after []string
	ents, _ = os.ReadDir(w.path("mkeys"))
	for _, e := range ents {
		b, _ := os.ReadFile(w.path("mkeys", e.Name()))
		after = append(after, e.Name()+sum(b))
	}
	if r.code == 0 || !strings.Contains(r.stderr, "not empty") || strings.Join(before, ",") != strings.Join(after, ",") {
		problems = append(problems, "init into a used key directory: "+r.String())
	}
	// Verbose runs log plugin traffic; a key must not be in it.
	for _, args := range [][]string{
		{"-v", "--mirror", w.path("m"), "--key-dir", w.path("mkeys"), "grant", "alice"},
		{"-v", "genkey", "-p"},
	} {
		r := umask0(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		if r.code != 0 {
			problems = append(problems, strings.Join(args, " ")+": "+r.String())
		}
	}
	k := loadKey(t, key)
	secret := strings.Split(strings.TrimSpace(k.KeyInfo().Value["private"]), "\n")[2]
	for _, out := range outputs {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, secret) {
			problems = append(problems, "private key material in the output: "+out)
		}
	}
	record(t, attackreport.Result{Family: "key files", ID: "RP-18", Backend: "fs", Expected: "ACCEPT(0600 in 0700, never printed, never overwritten)",
		Met: len(problems) == 0, Detail: "genkey, genkey again, init -k, init into a used key directory, -v grant and genkey -p under umask 0; " + strings.Join(problems, "; ")})
}

// runCmd runs an arbitrary program in the world's environment.
func runCmd(t *testing.T, w *world, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = w.dir
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	if r.panicked() {
		t.Fatalf("%s %v panicked:\n%s", name, args, r)
	}
	return r
}
