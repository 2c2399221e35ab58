package faulttest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/faulttest"
)

// TestSignerMisbehaviour is RP-16: the owner's signer (publish) or a root
// key's signer (rotate) crashes in the middle of Sign, hangs, signs other
// bytes, returns garbage or 10 MB. The host checks every signature it gets
// against the public key it expects, bounds the wait and the answer's
// size, and so aborts before it writes anything: the faulty backend's log
// shows no write, the mirror is unchanged, and the same command with an
// honest signer then succeeds.
func TestSignerMisbehaviour(t *testing.T) {
	t.Parallel()
	faults := []string{faulttest.SignCrash, faulttest.SignHang, faulttest.SignOtherBytes, faulttest.SignGarbage, faulttest.SignHuge, faulttest.SignError}
	verbs := []struct {
		name string
		args func(w *world, key string) []string
		key  func(w *world) string // the key file signed with through the faulty signer
	}{
		{"publish", func(w *world, key string) []string {
			return adminArgs(w, w.faultyAddr(), "publish", "hello", "v0.0.2", w.tarball("hello", "v0.0.2"), "hello", "-k", key)
		}, func(w *world) string { return w.path("home", "keys", "private.json") }},
		{"rotate", func(w *world, key string) []string {
			keys := strings.Split(w.rootKeys(), ",")
			keys[0] = key
			return adminArgs(w, w.faultyAddr(), "rotate", "--no-edit", "--no-session", "--sign-with", strings.Join(keys, ","), "--add-key", w.path("home", "keys", "newroot.json"))
		}, func(w *world) string { return strings.Split(w.rootKeys(), ",")[0] }},
	}
	for _, v := range verbs {
		for _, fault := range faults {
			t.Run(v.name+"/"+fault, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t)
				before, err := wholeView(w.mirrorDir())
				if err != nil {
					t.Fatal(err)
				}
				keyFile := v.key(w)
				ref := faulttest.Scheme + "://" + keyFile
				env, log, _ := w.planEnv("signer", faulttest.Plan{Signer: faulttest.SignerPlan{Fault: fault}})
				env = append(env, pluginTimeout)
				r := w.run(env, v.args(w, ref)...)
				fired, writes := false, 0
				for _, c := range readLog(t, log) {
					if c.Plugin == "signer" && c.Fault == fault {
						fired = true
					}
					if c.Plugin == "backend" && (isWrite(c) || c.Op == "Delete") {
						writes++
					}
				}
				after, err := wholeView(w.mirrorDir())
				if err != nil {
					t.Fatal(err)
				}
				met := fired && r.code != 0 && r.oneLineError() && writes == 0 && sameFiles(before, after)
				switch fault {
				case faulttest.SignHuge:
					// Refused by the host's cap on an answer, before it
					// is read whole.
					met = met && strings.Contains(r.stderr, "size limit")
				case faulttest.SignOtherBytes, faulttest.SignGarbage:
					met = met && strings.Contains(r.stderr, "invalid signature")
				case faulttest.SignHang:
					met = met && strings.Contains(r.stderr, "no answer within")
				}
				rr := w.run(nil, v.args(w, keyFile)...)
				recovery := "ok"
				if rr.code != 0 || w.run(nil, "verify", w.mirrorDir()).code != 0 {
					recovery = "failed"
				}
				record(t, attackreport.Result{Family: "signer misbehaviour", ID: "RP-16", Backend: "fs",
					Expected: "REJECT(abort before any write)", Met: met, Recovery: recovery,
					Detail: fmt.Sprintf("%s with a signer that does %s: fired %v, exit %d: %s; writes %d; re-run exit %d",
						v.name, fault, fired, r.code, lastLine(r.stderr), writes, rr.code)})
			})
		}
	}
}
