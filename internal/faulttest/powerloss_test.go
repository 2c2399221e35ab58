package faulttest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
)

// TestPowerLoss is RP-3: the faulty backend runs the page-cache model
// (journal.go) with the durability the fs backend provides; the power goes
// after mutation k, and PowerLoss drops whatever the model says had not
// reached the disk. Each cut must leave the old or the new state (or an
// interrupted commit) and a re-run must converge, exactly as for a crash:
// that holds because every Put the host waited for was fsynced, file and
// directory, before the next one began, and the timestamp comes last.
func TestPowerLoss(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"publish", "clone"} {
		v := verbNamed(t, name)
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			d := runDry(t, v)
			powerCut := func(w *world, state string) {
				undone, err := faulttest.PowerLoss(w.path(v.target), state, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range undone {
					t.Logf("power loss undid %s %s", e.Op, e.Key)
				}
			}
			for k := 1; k <= len(d.mutations); k++ {
				m := d.mutations[k-1]
				t.Run(fmt.Sprintf("k%d-%s-%s", k, m.Op, m.Key), func(t *testing.T) {
					t.Parallel()
					plan := faulttest.Plan{Backend: faulttest.BackendPlan{CrashAfterMutations: k, Volatile: faulttest.VolatileFsync}}
					crashAt(t, v, d, k, plan, "power loss", "RP-3", expectConverge, powerCut)
				})
			}
			t.Run("after-success", func(t *testing.T) {
				t.Parallel()
				// The verb reported success; the power goes a moment
				// later. Whatever it acknowledged must still be there.
				w := newWorld(t)
				env, _, state := w.planEnv("after", faulttest.Plan{Backend: faulttest.BackendPlan{Volatile: faulttest.VolatileFsync}})
				if r := w.run(env, v.args(w, w.addrOf(v))...); r.code != 0 {
					t.Fatalf("%s: %s", v.name, r)
				}
				powerCut(w, state)
				got, new := committedView(w.path(v.target)), d.new
				if v.keyless {
					got, new = keylessCommitted(got), keylessCommitted(new)
				}
				vr := w.run(nil, "verify", w.path(v.target))
				met := !got.interrupted && len(got.problems) == 0 && sameFiles(got, new) && vr.code == 0
				record(t, attackreport.Result{Family: "power loss", ID: "RP-3", Backend: "fs",
					Expected: "ACCEPT(an acknowledged verb survives the power cut)", Met: met,
					Detail: fmt.Sprintf("%s: power cut after success; verify exit %d; %s", v.name, vr.code, diff(got, new))})
			})
		})
	}
}

// TestPowerLossNoSyncControl is the control that shows RP-3 can fail: the
// same model for a backend that never fsyncs (stock tiup's local store
// writes in place without one). The publish completes; then the power goes
// and the kernel had written back only timestamp.json. The mirror is torn
// (the timestamp pins a snapshot the disk never got), and the checks that
// pass under the fs backend's durability must see it: verify refuses, the
// client refuses without trusting any of it.
func TestPowerLossNoSyncControl(t *testing.T) {
	t.Parallel()
	v := verbNamed(t, "publish")
	w := newWorld(t)
	env, _, state := w.planEnv("nosync", faulttest.Plan{Backend: faulttest.BackendPlan{Volatile: faulttest.VolatileNoSync}})
	if r := w.run(env, v.args(w, w.addrOf(v))...); r.code != 0 {
		t.Fatalf("publish under the no-fsync model: %s", r)
	}
	undone, err := faulttest.PowerLoss(w.mirrorDir(), state, func(e faulttest.JournalEntry) bool { return e.Key == "timestamp.json" })
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, e := range undone {
		lost = append(lost, e.Key)
	}
	before := manifestsDigest(t, w.path("client", "manifests"))
	vr := w.run(nil, "verify", w.mirrorDir())
	cr := w.client("install", "hello")
	after := manifestsDigest(t, w.path("client", "manifests"))
	met := len(lost) > 0 && vr.code == 3 && cr.code == 3 && before == after
	record(t, attackreport.Result{Family: "power loss", ID: "RP-3", Backend: "fs",
		Expected: "REJECT(verify and clients refuse the mirror a no-fsync backend tears)", Met: met,
		Detail: fmt.Sprintf("control: lost %s, kept timestamp.json; verify exit %d, client exit %d, client trust unchanged %v",
			strings.Join(lost, ", "), vr.code, cr.code, before == after)})
}

func verbNamed(t *testing.T, name string) verb {
	for _, v := range verbs {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no verb %s", name)
	return verb{}
}
