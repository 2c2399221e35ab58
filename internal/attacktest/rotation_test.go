package attacktest

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// TestRootRotation is the catalogue's 1.7: the root chain is walked one
// version at a time, each step signed by the old and the new thresholds,
// and a rotation of the online keys lets the client recover from what
// those keys signed.
func TestRootRotation(t *testing.T) {
	rotateRootKeys := func(c *Case, idx ...int) {
		var next []*keys.PrivateKey
		for _, i := range idx {
			next = append(next, c.Sim.Spare(i))
		}
		c.Sim.RotateRoot(func(r *manifest.Root) { c.Sim.SetRoleKeys(r, manifest.RoleRoot, 2, next...) }, next)
	}
	rotateTimestampKey := func(c *Case, k *keys.PrivateKey) {
		c.Sim.RotateRoot(func(r *manifest.Root) { c.Sim.SetRoleKeys(r, manifest.RoleTimestamp, 1, k) }, c.Sim.Signers[manifest.RoleRoot])
	}
	RunAttacks(t, "root rotation", []Attack{
		{ID: "RT-1", Expect: "ACCEPT", Attack: func(c *Case) {
			rotateRootKeys(c, 0, 1, 2)
			rotateRootKeys(c, 3, 4, 5) // shares no key with version 1
		}, NoRecovery: true, Verify: trustedRoot(3), Detail: "control: full key replacement over two steps"},
		{ID: "RT-2", Expect: "ACCEPT", NoBaseline: true, Attack: func(c *Case) {
			for range 5 {
				c.Sim.RotateRoot(nil, c.Sim.Signers[manifest.RoleRoot])
			}
		}, NoRecovery: true, Verify: func(c *Case, r Result) error {
			if err := trustedRoot(6)(c, r); err != nil {
				return err
			}
			want := map[string]int{}
			for v := 2; v <= 7; v++ {
				want[strconv.Itoa(v)+".root.json"] = 1
			}
			return fetchedTimes(c, want)
		}, Detail: "control: a client bundled with root 1 walks 2..6, one request each"},
		{ID: "RT-3", Expect: "root-chain", Attack: func(c *Case) {
			c.Sim.RotateRoot(nil, c.Sim.Signers[manifest.RoleRoot])
			c.Sim.RotateRoot(nil, c.Sim.Signers[manifest.RoleRoot])
			c.Unserve("2.root.json")
		}, Verify: trustedRoot(1), Detail: "a gap in the chain is not skipped; the error names the missing root"},
		{ID: "RT-3b", Expect: "threshold", Attack: func(c *Case) {
			c.Sim.RotateRoot(nil, c.Sim.Signers[manifest.RoleRoot])
			rotateTimestampKey(c, c.Sim.Spare(6))
			c.Unserve("2.root.json")
		}, Verify: trustedRoot(1), Detail: "a gap, and a timestamp signed by a key only the unreachable root names"},
		{ID: "RT-4", Expect: "transport", Backends: []string{HTTP}, Attack: func(c *Case) {
			c.Srv.Fault("2.root.json", Fault{Kind: Status, N: 503})
		}, Detail: "5xx on the next root is an error, never the end of the chain"},
		{ID: "RT-4b", Expect: "transport", Backends: []string{HTTP}, Attack: func(c *Case) {
			c.Srv.Fault("2.root.json", Fault{Kind: Status, N: 403})
		}, Detail: "403 on the next root is an error, never the end of the chain"},
		{ID: "RT-5", Expect: "root-chain", Setup: func(c *Case) {
			// One root key at threshold 1 keeps the long chain cheap.
			c.Sim.Root.Roles[manifest.RoleRoot].Keys = KeyInfos(c.Sim.Pool(0))
			c.Sim.Root.Roles[manifest.RoleRoot].Threshold = 1
			c.Sim.Signers[manifest.RoleRoot] = []*keys.PrivateKey{c.Sim.Pool(0)}
			c.Sim.ResignRoot()
		}, Attack: func(c *Case) {
			for range 300 {
				c.Sim.PublishRoot(c.Sim.Pool(0))
			}
			c.Sim.Commit()
		}, MayChange: []string{"root.json", "*.root.json"}, Verify: trustedRoot(257), Heal: func(c *Case) {},
			Detail: "300 new roots: 256 per run, kept; the next run walks the rest"},
		{ID: "RT-7", Expect: "ACCEPT", Attack: func(c *Case) {
			// The holder of the timestamp key fast-forwards the client.
			ts := *c.Sim.Timestamp
			ts.Version = 1_000_000_000
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Signers[manifest.RoleTimestamp]...))
			if r := c.Run("list"); r.Code != 0 {
				c.T.Fatalf("fast-forward: %v", r)
			}
			c.Heal()
			// The admins rotate the timestamp key and restart at 1.
			rotateTimestampKey(c, c.Sim.Spare(6))
			c.Sim.Timestamp.Version = 0
			c.Sim.Commit()
		}, NoRecovery: true, Verify: func(c *Case, r Result) error {
			if v := c.TrustedVersion("timestamp.json"); v != 1 {
				return fmt.Errorf("trusted timestamp version %d, want 1", v)
			}
			return nil
		}, Detail: "a rotated timestamp key discards the fast-forwarded timestamp"},
		{ID: "RT-8", Expect: "threshold", Setup: func(c *Case) {
			rotateTimestampKey(c, c.Sim.Spare(6))
		}, Attack: func(c *Case) {
			ts := *c.Sim.Timestamp
			ts.Version++
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Pool(5))) // the retired key
		}},
	})
}

// rotationRow is one row of the rotation table (RT-6), ported as data from
// tuf-conformance's test_updater_key_rotations.py: the root versions after
// the first, each with its keys, threshold and signers (indices into the
// pool), and whether the client must accept the last one.
type rotationRow struct {
	name   string
	first  rootStep
	steps  []rootStep
	accept bool
}

type rootStep struct {
	keys      []int
	threshold uint64
	signers   []int
}

var rotationTable = []rotationRow{
	{"1-of-1-key-rotation", rootStep{[]int{0}, 1, []int{0}}, []rootStep{{[]int{1}, 1, []int{0, 1}}}, true},
	{"1-of-1-key-rotation-unused-signatures", rootStep{[]int{0}, 1, []int{0}}, []rootStep{{[]int{1}, 1, []int{2, 0, 1}}}, true},
	{"1-of-1-key-rotation-fail-not-signed-with-old-key", rootStep{[]int{0}, 1, []int{0}}, []rootStep{{[]int{1}, 1, []int{1, 2}}}, false},
	{"1-of-1-key-rotation-fail-not-signed-with-new-key", rootStep{[]int{0}, 1, []int{0}}, []rootStep{{[]int{1}, 1, []int{0, 2}}}, false},
	{"3-of-5-sign-with-different-keycombos", rootStep{[]int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}}, []rootStep{
		{[]int{0, 1, 2, 3, 4}, 3, []int{0, 4, 1}},
		{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 3}},
		{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 3}},
	}, true},
	{"3-of-5-one-key-rotated", rootStep{[]int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}}, []rootStep{{[]int{0, 1, 2, 3, 5}, 3, []int{0, 1, 2, 5}}}, true},
	{"3-of-5-one-key-rotated-with-intermediate-step", rootStep{[]int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}}, []rootStep{
		{[]int{0, 1, 2, 3, 5}, 3, []int{0, 2, 4, 5}},
		{[]int{0, 1, 2, 3, 5}, 3, []int{0, 2, 5}},
	}, true},
	{"3-of-5-all-keys-rotated-with-intermediate-step", rootStep{[]int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}}, []rootStep{
		{[]int{5, 6, 7, 8, 9}, 3, []int{0, 2, 4, 5, 6, 7}},
		{[]int{5, 6, 7, 8, 9}, 3, []int{5, 6, 7}},
	}, true},
	{"1-of-3-threshold-increase-to-2-of-3", rootStep{[]int{0, 1, 2}, 1, []int{0}}, []rootStep{{[]int{0, 1, 2}, 2, []int{0, 1}}}, true},
	{"1-of-3-threshold-increase-to-2-of-3-fail", rootStep{[]int{0, 1, 2}, 1, []int{0}}, []rootStep{{[]int{0, 1, 2}, 2, []int{0}}}, false},
	{"2-of-3-threshold-decrease-to-1-of-3", rootStep{[]int{0, 1, 2}, 2, []int{0, 1}}, []rootStep{{[]int{0, 1, 2}, 1, []int{0, 1}}}, true},
	{"2-of-3-threshold-decrease-to-1-of-3-fail", rootStep{[]int{0, 1, 2}, 2, []int{0, 1}}, []rootStep{{[]int{0, 1, 2}, 1, []int{0}}}, false},
	{"revoked-key-not-trusted", rootStep{[]int{0, 1}, 1, []int{0}}, []rootStep{
		{[]int{1}, 1, []int{0, 1}},
		{[]int{0}, 1, []int{0}},
	}, false},
}

// TestRotationTable is RT-6: each row's chain through the CLI; the last
// root is trusted exactly when the row says so.
func TestRotationTable(t *testing.T) {
	var attacks []Attack
	for _, row := range rotationTable {
		keysOf := func(c *Case, idx []int) []*keys.PrivateKey {
			var out []*keys.PrivateKey
			for _, i := range idx {
				out = append(out, c.Sim.Pool(i))
			}
			return out
		}
		a := Attack{ID: "RT-6/" + row.name, Expect: "threshold", NoBaseline: true, Detail: row.name, Setup: func(c *Case) {
			c.Sim.Root.Roles[manifest.RoleRoot].Keys = KeyInfos(keysOf(c, row.first.keys)...)
			c.Sim.Root.Roles[manifest.RoleRoot].Threshold = row.first.threshold
			c.Sim.Signers[manifest.RoleRoot] = keysOf(c, row.first.signers)
			c.Sim.ResignRoot()
		}, Attack: func(c *Case) {
			for _, step := range row.steps {
				c.Sim.Root.Roles[manifest.RoleRoot].Keys = KeyInfos(keysOf(c, step.keys)...)
				c.Sim.Root.Roles[manifest.RoleRoot].Threshold = step.threshold
				c.Sim.PublishRoot(keysOf(c, step.signers)...)
			}
			c.Sim.Commit()
		}, MayChange: []string{"root.json", "*.root.json"}}
		want := uint64(1 + len(row.steps))
		if row.accept {
			a.Expect, a.NoRecovery = "ACCEPT", true
		} else {
			want = 1 + uint64(len(row.steps)) - 1
			// The recovery: the admins publish a correctly signed root.
			a.Heal = func(c *Case) {}
			a.NoRecovery = true
		}
		a.Verify = trustedRoot(want)
		attacks = append(attacks, a)
	}
	RunAttacks(t, "root rotation", attacks)
}
