package faulttest_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
)

// verb is one admin command run under the faulty backend.
type verb struct {
	name string
	id   string // catalogue row: RP-1 for publish, RP-2 for the others
	// setup prepares a fresh world for the verb; it runs the same way
	// before the dry run and before every crash, so all start equal.
	setup func(w *world)
	// args is the command, writing to the mirror at addr.
	args func(w *world, addr string) []string
	// target is the directory the verb writes, relative to the world.
	target string
	// idempotent verbs are re-run even after a crash that left the new
	// state: the re-run must then change nothing. A non-idempotent verb
	// (renew bumps a version each time) is re-run only when the crash
	// left the old state; an operator re-runs what did not happen.
	idempotent bool
	// client is what a client that trusted the mirror before runs after
	// the crash; nil for a verb no client reads (a clone's new target).
	client []string
	// keyless compares results without the role and owner keys, for a
	// verb that makes fresh keys on every run (a clone into a new target).
	keyless bool
}

func (w *world) rootKeys() string {
	files, _ := filepath.Glob(w.path("keys", "*-root.json"))
	slices.Sort(files)
	return strings.Join(files, ",")
}

func adminArgs(w *world, addr string, args ...string) []string {
	return append([]string{"--mirror", addr, "--key-dir", w.path("keys")}, args...)
}

var installHello = []string{"install", "hello"}

// verbs are the writers of RP-1 and RP-2, each on one small change.
var verbs = []verb{
	{name: "publish", id: "RP-1", target: "m", idempotent: true, client: installHello,
		args: func(w *world, addr string) []string {
			return adminArgs(w, addr, "publish", "hello", "v0.0.2", w.tarball("hello", "v0.0.2"), "hello")
		}},
	{name: "rotate", id: "RP-2", target: "m", client: installHello,
		args: func(w *world, addr string) []string {
			return adminArgs(w, addr, "rotate", "--no-edit", "--no-session", "--sign-with", w.rootKeys(), "--add-key", w.path("home", "keys", "newroot.json"))
		}},
	{name: "renew", id: "RP-2", target: "m", client: installHello,
		args: func(w *world, addr string) []string { return adminArgs(w, addr, "renew", "hello") }},
	{name: "grant", id: "RP-2", target: "m", client: installHello,
		args: func(w *world, addr string) []string {
			return adminArgs(w, addr, "grant", "bob", "-k", w.path("home", "keys", "bob.json"))
		}},
	{name: "yank", id: "RP-2", target: "m", client: []string{"list", "hello", "--all"},
		args: func(w *world, addr string) []string {
			return adminArgs(w, addr, "modify", "hello:v0.0.1", "--yank")
		}},
	{name: "merge", id: "RP-2", target: "m", idempotent: true, client: installHello,
		args: func(w *world, addr string) []string { return adminArgs(w, addr, "merge", w.path("src")) }},
	{name: "clone", id: "RP-2", target: "clone", idempotent: true, keyless: true,
		args: func(w *world, addr string) []string {
			return []string{"clone", addr, "--from", w.mirrorDir(), "--full", "-k", w.path("clone-keys")}
		}},
}

// addrOf is the faulty address of the verb's target.
func (w *world) addrOf(v verb) string {
	return faulttest.Scheme + "://" + w.path(v.target)
}

// dryRun runs the verb once through the faulty backend with no fault: its
// log gives the mutating calls, its result the state every crash must
// converge to.
type dryRun struct {
	calls     []faulttest.Call
	mutations []faulttest.Call
	old, new  view // committed views before and after
	whole     view // every object after
	twice     view // every object after a second run, for verbs that are not idempotent
}

func runDry(t *testing.T, v verb) dryRun {
	t.Helper()
	w := newWorld(t)
	if v.setup != nil {
		v.setup(w)
	}
	dir := w.path(v.target)
	var d dryRun
	d.old = committedView(dir)
	env, log, _ := w.planEnv("dry", faulttest.Plan{})
	if r := w.run(env, v.args(w, w.addrOf(v))...); r.code != 0 {
		t.Fatalf("dry run of %s: %s", v.name, r)
	}
	d.calls = readLog(t, log)
	d.mutations = faulttest.Mutations(d.calls)
	if len(d.mutations) == 0 {
		t.Fatalf("dry run of %s logged no mutating call", v.name)
	}
	d.new = committedView(dir)
	if len(d.new.problems) > 0 || d.new.interrupted {
		t.Fatalf("dry run of %s left a broken mirror:\n%s", v.name, d.new)
	}
	var err error
	if d.whole, err = wholeView(dir); err != nil {
		t.Fatal(err)
	}
	if !v.idempotent {
		// What running the verb twice gives: a re-run after a crash that
		// had already committed the change may legitimately do this.
		if r := w.run(nil, v.args(w, w.addrOf(v))...); r.code == 0 {
			if d.twice, err = wholeView(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// outcome is what the checks after one fault found.
type outcome struct {
	state    string // old, new, interrupted, root-ahead or torn
	met      bool
	recovery string
	problems []string
}

func (o *outcome) fail(format string, args ...any) {
	o.met = false
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
}

// checkAfterFault runs the checks of RP-1 on a world whose verb just failed
// under a fault: (a) `mirror verify` finds the old or the new state, or an
// interrupted commit, which it names; (b) a client that trusted the old
// state reads exactly the old or the new one, or refuses an interrupted
// commit without trusting any of it; (c) re-running the verb with the fault
// gone succeeds, and (d) the mirror then equals the dry run's result. A
// verb that is not idempotent may, when the crash had already committed
// its change, apply it a second time on the re-run (equal to running it
// twice without a crash) or refuse the repeat in one line (equal to the dry
// run's result).
func checkAfterFault(t *testing.T, w *world, v verb, d dryRun) *outcome {
	t.Helper()
	o := &outcome{met: true}
	dir := w.path(v.target)
	got := committedView(dir)
	old, new := d.old, d.new
	if v.keyless {
		got, old, new = keylessCommitted(got), keylessCommitted(old), keylessCommitted(new)
	}
	o.state = classify(got, old, new)
	if o.state == stateTorn {
		o.fail("the committed state is neither old nor new:\n%s\nold:\n%s\nnew:\n%s", got, old, new)
	}

	// (a) verify
	vr := w.run(nil, "verify", dir)
	switch {
	case got.empty:
		// Nothing was committed: there is no mirror to verify yet.
		if vr.code == 0 {
			o.fail("verify passed a target where nothing was committed: %s", vr)
		}
	case o.state == stateInterrupted:
		if vr.code != 3 || !strings.Contains(vr.stdout+vr.stderr, "snapshot") {
			o.fail("verify of an interrupted commit: want exit 3 naming the snapshot: %s", vr)
		}
	case vr.code != 0:
		o.fail("verify after the fault (%s state): %s", o.state, vr)
	}

	// (b) a client that trusted the old state
	if v.client != nil {
		before := manifestsDigest(t, w.path("client", "manifests"))
		cr := w.client(v.client...)
		trusted := clientVersion(t, w)
		switch {
		case o.state == stateInterrupted:
			if cr.code != 3 {
				o.fail("client on an interrupted commit: want exit 3: %s", cr)
			}
			if after := manifestsDigest(t, w.path("client", "manifests")); after != before {
				o.fail("a refused refresh changed what the client trusts:\n%s\nwas:\n%s", after, before)
			}
		case cr.code != 0:
			o.fail("client %s (%s state): %s", strings.Join(v.client, " "), o.state, cr)
		case (o.state == stateOld || o.state == stateRootAhead) && trusted != d.old.tsVersion:
			o.fail("client trusts timestamp %d, the old state is %d", trusted, d.old.tsVersion)
		case o.state == stateNew && trusted != d.new.tsVersion:
			o.fail("client trusts timestamp %d, the new state is %d", trusted, d.new.tsVersion)
		}
	}

	// (c) and (d): the re-run, with the fault gone.
	done := o.state != stateOld // the change is in, or pending
	rr := w.run(nil, v.args(w, w.addrOf(v))...)
	final, err := wholeView(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, twice := d.whole, d.twice
	if v.keyless {
		final, want = final.keyless(), want.keyless()
		twice = twice.keyless()
	}
	recovered := true
	switch {
	case rr.code == 0 && sameFiles(final, want):
	case rr.code == 0 && done && !v.idempotent && twice.files != nil && sameFiles(withoutTimestamp(final), withoutTimestamp(twice)):
		// The change was applied twice. An interrupted commit rolled
		// forward together with the repeat takes one timestamp version
		// fewer than two clean runs, so the timestamp is not compared.
	case rr.code != 0 && done && !v.idempotent && rr.oneLineError() && sameFiles(final, want):
		// The re-run refused to make the change again, and the mirror
		// holds it once.
	case rr.code != 0:
		recovered = false
		o.fail("re-run after the fault: %s", rr)
	default:
		recovered = false
		o.fail("the recovered mirror differs from the no-fault result: %s", diff(final, want))
	}
	if vr := w.run(nil, "verify", dir); vr.code != 0 {
		recovered = false
		o.fail("verify after recovery: %s", vr)
	}
	o.recovery = "ok"
	if !recovered {
		o.recovery = "failed"
	}
	return o
}

func withoutTimestamp(v view) view {
	out := view{files: maps.Clone(v.files)}
	delete(out.files, "timestamp.json")
	return out
}

// keylessCommitted keeps what keyless keeps and the view's flags.
func keylessCommitted(v view) view {
	k := v.keyless()
	k.empty, k.interrupted, k.problems, k.tsVersion = v.empty, v.interrupted, v.problems, v.tsVersion
	return k
}

// manifestsDigest summarises a client's trusted manifests.
func manifestsDigest(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if e.Name() == "root.json" || isRootFile(e.Name()) {
			// The root chain may advance before a refusal, as TUF
			// orders it; nothing after it may.
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", e.Name(), sum(data))
	}
	return b.String()
}

// clientVersion is the timestamp version the client trusts.
func clientVersion(t *testing.T, w *world) uint64 {
	t.Helper()
	b, err := os.ReadFile(w.path("client", "manifests", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ts manifest.Timestamp
	if err := decode(b, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Version
}

// TestCrashPoints is RP-1 and RP-2: every verb is dry-run to count its K
// mutating calls, then run K times more, the plugin killing itself with
// SIGKILL after mutation k reached storage and before its answer left.
// Each crash must leave the old state, the new one, or an interrupted
// commit that verify names and clients refuse; the re-run must converge to
// the dry run's result.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	for _, v := range verbs {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			d := runDry(t, v)
			t.Run("write-order", func(t *testing.T) { checkWriteOrder(t, v, d) })
			for k := 1; k <= len(d.mutations); k++ {
				m := d.mutations[k-1]
				t.Run(fmt.Sprintf("k%d-%s-%s", k, m.Op, m.Key), func(t *testing.T) {
					t.Parallel()
					crashAt(t, v, d, k, faulttest.Plan{Backend: faulttest.BackendPlan{CrashAfterMutations: k}}, "crash points", v.id, expectConverge, nil)
				})
			}
		})
	}
}

const expectConverge = "ACCEPT(old or new state, re-run converges)"

// crashAt runs the verb under plan, which must fault at mutation k and
// fail the verb, runs after (the power-loss model) on the stopped world,
// and checks and records the outcome.
func crashAt(t *testing.T, v verb, d dryRun, k int, plan faulttest.Plan, family, id, expected string, after func(w *world, state string)) {
	w := newWorld(t)
	if v.setup != nil {
		v.setup(w)
	}
	env, log, state := w.planEnv(fmt.Sprintf("k%d", k), plan)
	r := w.run(env, v.args(w, w.addrOf(v))...)
	res := attackreport.Result{Family: family, ID: id, Backend: "fs", Expected: expected}
	fired := false
	for _, c := range readLog(t, log) {
		if c.Seq == k && c.Fault != "" {
			fired = true
		}
	}
	var detail []string
	if !fired {
		detail = append(detail, fmt.Sprintf("the fault at mutation %d never fired", k))
	}
	if r.code == 0 || !r.oneLineError() {
		detail = append(detail, fmt.Sprintf("the crashed run should fail with one error line: %s", r))
	}
	if after != nil {
		after(w, state)
	}
	o := checkAfterFault(t, w, v, d)
	res.Met = o.met && fired && len(detail) == 0
	res.Recovery = o.recovery
	res.Torn = o.state == stateTorn
	detail = append(detail, fmt.Sprintf("%s k=%d/%d (%s %s): %s state", v.name, k, len(d.mutations), d.mutations[k-1].Op, d.mutations[k-1].Key, o.state))
	detail = append(detail, o.problems...)
	res.Detail = strings.Join(detail, "; ")
	record(t, res)
}

// rank orders the files of one commit as readers need them (spec
// "repository operations"): tarballs and other plain files first, then
// roots and component manifests, the index, the snapshot and, last, the
// timestamp.
func rank(key string) int {
	switch {
	case key == "timestamp.json":
		return 4
	case key == "snapshot.json":
		return 3
	case strings.HasSuffix(key, ".index.json"):
		return 2
	case strings.HasSuffix(key, ".json"):
		return 1
	}
	return 0
}

// versioned reports a file that, once committed, never changes: N.x.json
// and tarballs.
func versioned(key string) bool {
	if strings.HasSuffix(key, ".tar.gz") {
		return true
	}
	n, _, ok := strings.Cut(key, ".")
	if !ok || n == "" {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return strings.HasSuffix(key, ".json")
}

// checkWriteOrder is RP-5 on a verb's dry-run log: within every commit the
// writes go TB → CM → IX → SN → TS, the timestamp is written last and with
// compare-and-swap (create-only for a new mirror), no versioned file that
// existed is written again, and each commit holds the writer lock.
func checkWriteOrder(t *testing.T, v verb, d dryRun) {
	var problems []string
	var order []string
	last, locked, commits := -1, false, 0
	for _, c := range d.mutations {
		order = append(order, c.Op+" "+c.Key)
		switch c.Op {
		case "Lock":
			locked = true
			continue
		case "Delete":
			continue
		}
		r := rank(c.Key)
		if r < last {
			problems = append(problems, fmt.Sprintf("%s written after a file of rank %d", c.Key, last))
		}
		last = r
		if versioned(c.Key) && c.Existed {
			problems = append(problems, fmt.Sprintf("%s existed and was written again", c.Key))
		}
		if c.Key == "timestamp.json" {
			if !c.IfMatch && !c.IfNoneMatch {
				problems = append(problems, "timestamp.json written without compare-and-swap")
			}
			if !locked && !c.IfNoneMatch {
				problems = append(problems, "timestamp.json written without the writer lock")
			}
			last, locked = -1, false
			commits++
		}
	}
	if n := len(d.mutations); n == 0 || d.mutations[n-1].Key != "timestamp.json" {
		problems = append(problems, "the last write is not timestamp.json")
	}
	if commits == 0 {
		problems = append(problems, "no commit")
	}
	record(t, attackreport.Result{Family: "write order", ID: "RP-5", Backend: "fs",
		Expected: "ACCEPT(TB → CM → IX → SN → TS, no versioned file overwritten)", Met: len(problems) == 0,
		Detail: fmt.Sprintf("%s: %s%s", v.name, strings.Join(order, ", "), strings.Join(append([]string{""}, problems...), "; "))})
}
