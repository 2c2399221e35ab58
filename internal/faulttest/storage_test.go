package faulttest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
)

// pluginTimeout is the host's patience with a stuck plugin in these cases
// (MIRROR_PLUGIN_TIMEOUT); the default is minutes.
const pluginTimeout = "MIRROR_PLUGIN_TIMEOUT=3s"

func isWrite(c faulttest.Call) bool { return c.Op == "Put" || c.Op == "PutFile" }

// TestStorageFaults is RP-17 for publish, at every mutating call of its dry
// run: an I/O error, a write the backend acknowledges without making, and
// a write torn in place. Errors and lost writes must stop the commit before
// the timestamp (the read-back catches what the backend only claimed to
// store) and leave a state the re-run completes; a torn tarball or
// manifest is debris the re-run replaces.
func TestStorageFaults(t *testing.T) {
	t.Parallel()
	v := verbNamed(t, "publish")
	d := runDry(t, v)
	for k := 1; k <= len(d.mutations); k++ {
		m := d.mutations[k-1]
		name := fmt.Sprintf("k%d-%s-%s", k, m.Op, m.Key)
		t.Run("error/"+name, func(t *testing.T) {
			t.Parallel()
			crashAt(t, v, d, k, faulttest.Plan{Backend: faulttest.BackendPlan{ErrorAt: k}}, "storage misbehaviour", "RP-17",
				"ACCEPT(an I/O error leaves the old state, re-run converges)", nil)
		})
		if !isWrite(m) {
			continue
		}
		t.Run("drop/"+name, func(t *testing.T) {
			t.Parallel()
			crashAt(t, v, d, k, faulttest.Plan{Backend: faulttest.BackendPlan{DropWriteAt: k}}, "storage misbehaviour", "RP-17",
				"REJECT(an acknowledged write that never happened is caught before the commit point)", nil)
		})
		t.Run("torn/"+name, func(t *testing.T) {
			t.Parallel()
			plan := faulttest.Plan{Backend: faulttest.BackendPlan{TornWriteAt: k}}
			if m.Key == "snapshot.json" || m.Key == "timestamp.json" {
				tornCommitFile(t, v, k, plan)
				return
			}
			crashAt(t, v, d, k, plan, "storage misbehaviour", "RP-17",
				"ACCEPT(a torn new file is never referenced, re-run replaces it)", nil)
		})
	}
}

// tornCommitFile is a backend that tears snapshot.json or timestamp.json in
// place. The sdk contract makes Put atomic, and the fs backend keeps it; a
// backend that does not destroys the only copy of the committed snapshot or
// timestamp, which no re-run can rebuild. What must still hold: nothing
// trusts the torn file (verify and clients refuse it, a client's trusted
// state stays as it was), and the next writer refuses to build on it, in
// one line, without making it worse.
func tornCommitFile(t *testing.T, v verb, k int, plan faulttest.Plan) {
	w := newWorld(t)
	env, _, _ := w.planEnv("torn", plan)
	r := w.run(env, v.args(w, w.addrOf(v))...)
	before := manifestsDigest(t, w.path("client", "manifests"))
	vr := w.run(nil, "verify", w.mirrorDir())
	cr := w.client("install", "hello")
	after := manifestsDigest(t, w.path("client", "manifests"))
	whole, err := wholeView(w.mirrorDir())
	if err != nil {
		t.Fatal(err)
	}
	rr := w.run(nil, v.args(w, w.addrOf(v))...)
	again, err := wholeView(w.mirrorDir())
	if err != nil {
		t.Fatal(err)
	}
	met := r.code != 0 && vr.code == 3 && cr.code == 3 && before == after &&
		rr.code != 0 && rr.oneLineError() && sameFiles(whole, again)
	record(t, attackreport.Result{Family: "storage misbehaviour", ID: "RP-17", Backend: "fs",
		Expected: "REJECT(a commit file torn in place is detected and never trusted)", Met: met,
		Detail: fmt.Sprintf("publish torn at k=%d: verify exit %d, client exit %d (trust unchanged %v), re-run exit %d: %s; no re-run can rebuild the lost commit file: Put must be atomic (sdk contract)",
			k, vr.code, cr.code, before == after, rr.code, lastLine(rr.stderr))})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestCorruptReads is the read side of RP-17: a backend that flips a byte of
// what it returns. Every reader checks what it reads against the chain of
// trust, so the flip is refused where it is read, and nothing changes.
func TestCorruptReads(t *testing.T) {
	t.Parallel()
	tarball := "hello-v0.0.1-" + platform + ".tar.gz"
	cases := []struct {
		name    string
		key     string
		args    func(w *world) []string
		client  bool // run as the client home
		wantOut string
	}{
		{"publish reads a flipped timestamp", "timestamp.json", func(w *world) []string {
			return adminArgs(w, w.faultyAddr(), "publish", "hello", "v0.0.2", w.tarball("hello", "v0.0.2"), "hello")
		}, false, "timestamp.json"},
		{"publish reads a flipped component manifest", "1.hello.json", func(w *world) []string {
			return adminArgs(w, w.faultyAddr(), "publish", "hello", "v0.0.2", w.tarball("hello", "v0.0.2"), "hello")
		}, false, "hello"},
		{"verify reads a flipped tarball", tarball, func(w *world) []string {
			return []string{"--backend", faulttest.Scheme, "verify", w.mirrorDir()}
		}, false, tarball},
		{"install reads a flipped tarball", tarball, func(w *world) []string {
			return []string{"--mirror", w.faultyAddr(), "install", "hello"}
		}, true, "hello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			if tc.client {
				// A fresh client home: the read goes through the faulty
				// backend, not a copy already installed.
				os.RemoveAll(w.path("client", "components"))
			}
			before, err := wholeView(w.mirrorDir())
			if err != nil {
				t.Fatal(err)
			}
			env, log, _ := w.planEnv("corrupt", faulttest.Plan{Backend: faulttest.BackendPlan{CorruptRead: []string{tc.key}}})
			if tc.client {
				env = append(env, "TIUP_HOME="+w.path("client"))
			}
			r := w.run(env, tc.args(w)...)
			fired := false
			for _, c := range readLog(t, log) {
				if c.Fault == "corrupt_read" && c.Op == "Get" {
					fired = true
				}
			}
			after, err := wholeView(w.mirrorDir())
			if err != nil {
				t.Fatal(err)
			}
			installed := false
			if _, err := os.Stat(w.path("client", "components", "hello", "v0.0.1")); tc.client && err == nil {
				installed = true
			}
			out := r.stdout + r.stderr
			met := fired && r.code == 3 && strings.Contains(out, tc.wantOut) && sameFiles(before, after) && !installed
			// The fault gone, the same command works.
			rr := w.run(append([]string{}, envWithout(env, faulttest.EnvPlan)...), tc.args(w)...)
			recovery := "ok"
			if rr.code != 0 {
				recovery = "failed"
			}
			record(t, attackreport.Result{Family: "storage misbehaviour", ID: "RP-17", Backend: "fs",
				Expected: "REJECT(untrusted: a flipped byte on read is caught by the reader)", Met: met, Recovery: recovery,
				Detail: fmt.Sprintf("%s: fired %v, exit %d: %s; mirror unchanged %v, installed %v; re-run exit %d", tc.name, fired, r.code, lastLine(r.stderr), sameFiles(before, after), installed, rr.code)})
		})
	}
}

func envWithout(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestStuckBackend is the hang of RP-17 and its lock recovery: publish A's
// backend hangs forever writing timestamp.json while holding the writer
// lock; publish B starts meanwhile and waits for the lock. A must give up
// at the host's deadline, in one line, and release the lock; B must then
// get it and commit, rolling A's interrupted commit forward: both versions
// are in the mirror, nothing is lost, and it verifies.
func TestStuckBackend(t *testing.T) {
	t.Parallel()
	v := verbNamed(t, "publish")
	d := runDry(t, v)
	k := len(d.mutations) // timestamp.json
	if d.mutations[k-1].Key != "timestamp.json" {
		t.Fatalf("publish's last mutation is %s, not timestamp.json", d.mutations[k-1].Key)
	}
	w := newWorld(t)
	env, log, _ := w.planEnv("hang", faulttest.Plan{Backend: faulttest.BackendPlan{HangAt: k}})
	env = append(env, pluginTimeout)
	start := time.Now()
	a := make(chan result, 1)
	go func() { a <- w.run(env, v.args(w, w.addrOf(v))...) }()
	// B starts once A holds the lock and is stuck.
	deadline := time.Now().Add(time.Minute)
	for {
		hung := false
		for _, c := range readLog(t, log) {
			hung = hung || c.Fault == "hang"
		}
		if hung {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("publish A never reached its hanging write")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := w.run([]string{pluginTimeout}, adminArgs(w, w.mirrorDir(), "publish", "hello", "v9.9.9", w.tarball("hello", "v9.9.9"), "hello")...)
	ra := <-a
	took := time.Since(start)
	list := w.run(nil, "--mirror", w.mirrorDir(), "list", "hello", "--all")
	vr := w.run(nil, "verify", w.mirrorDir())
	lost := 0
	for _, ver := range []string{"v0.0.1", "v0.0.2", "v9.9.9"} {
		if !strings.Contains(list.stdout, ver) {
			lost++
		}
	}
	met := ra.code != 0 && ra.oneLineError() && strings.Contains(ra.stderr, "no answer within") && b.code == 0 && vr.code == 0
	recovery := "ok"
	if b.code != 0 || vr.code != 0 {
		recovery = "failed"
	}
	record(t, attackreport.Result{Family: "storage misbehaviour", ID: "RP-17", Backend: "fs",
		Expected: "REJECT(a stuck backend hits the deadline and frees the lock)", Met: met, Recovery: recovery, LostUpdates: lost,
		Detail: fmt.Sprintf("A exit %d after %v: %s; B exit %d: %s; verify exit %d; versions lost %d",
			ra.code, took.Round(100*time.Millisecond), lastLine(ra.stderr), b.code, lastLine(b.stderr), vr.code, lost)})
}

// TestListFlood is the million-entry listing of RP-17: init asks a target
// whether it is empty, and a plugin that answers with a million made-up
// objects and ignores being told to stop must neither hang it nor fill its
// memory: the first object is the answer.
func TestListFlood(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	target := faulttest.Scheme + "://" + w.path("flooded")
	env, log, _ := w.planEnv("flood", faulttest.Plan{Backend: faulttest.BackendPlan{ListFlood: 1_000_000}})
	env = append(env, pluginTimeout)
	start := time.Now()
	r := w.run(env, "init", target, "-k", w.path("flood-keys"))
	took := time.Since(start)
	fired := false
	for _, c := range readLog(t, log) {
		fired = fired || c.Fault == "list_flood"
	}
	_, statErr := os.Stat(w.path("flooded", "root.json"))
	met := fired && r.code != 0 && r.oneLineError() && strings.Contains(r.stderr, "not empty") && os.IsNotExist(statErr)
	record(t, attackreport.Result{Family: "storage misbehaviour", ID: "RP-17", Backend: "fs",
		Expected: "REJECT(a flooding listing is cut off at its first entry)", Met: met,
		Detail: fmt.Sprintf("init into a target listing 1e6 objects: exit %d after %v: %s", r.code, took.Round(100*time.Millisecond), lastLine(r.stderr))})
}
