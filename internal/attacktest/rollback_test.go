package attacktest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// TestRollback is the catalogue's 1.3: nothing the client trusted may be
// replaced by an older version, whatever the attacker signs with the
// online keys.
func TestRollback(t *testing.T) {
	RunAttacks(t, "rollback", []Attack{
		{ID: "RB-1", Expect: "rollback", Setup: func(c *Case) {
			for range 3 {
				c.Sim.Commit()
			}
			c.Keep("ts4", c.Sim.File("timestamp.json"))
			c.Sim.Commit() // the client trusts timestamp v5
		}, Attack: func(c *Case) {
			c.Serve("timestamp.json", c.Kept("ts4"))
		}, Verify: func(c *Case, r Result) error {
			if v := c.TrustedVersion("timestamp.json"); v != 5 {
				return fmt.Errorf("trusted timestamp version %d, want 5", v)
			}
			return onlyFetched(c, "timestamp.json")
		}},
		{ID: "RB-2", Expect: decision(t, "RB-2").Expect, Attack: func(c *Case) {
			// Another timestamp at the trusted version: same snapshot,
			// a later expiry.
			ts := *c.Sim.Timestamp
			ts.Expires = manifest.FormatTime(Now.Add(40 * 24 * time.Hour))
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Signers[manifest.RoleTimestamp]...))
		}, NoRecovery: true, Detail: "policy: the equal-version timestamp is verified and trusted (TiUP's rule)"},
		{ID: "RB-3", Expect: "mix-and-match", Setup: func(c *Case) {
			c.Sim.Commit("index") // index v2 trusted
		}, Attack: func(c *Case) {
			c.Sim.Commit("index")
			old := c.Sim.File(c.Sim.IndexFile())
			c.Sim.Commit("index")
			c.Serve(c.Sim.IndexFile(), old) // v3's bytes at /4.index.json
		}},
		{ID: "RB-4", Expect: "mix-and-match", Cmd: installFoo, Setup: func(c *Case) {
			c.Sim.Commit(Comp)
			c.Keep("cm2", c.Sim.File(c.Sim.ComponentFile(Comp)))
			c.Sim.Commit(Comp) // foo v3 trusted
		}, Attack: func(c *Case) {
			c.Serve(c.Sim.ComponentFile(Comp), c.Kept("cm2"))
		}},
		{ID: "RB-5", Expect: "rollback", Setup: func(c *Case) {
			c.Sim.AddComponent("bar", Owner)
			c.Sim.AddVersion("bar", Version, DefaultFiles("bar", Version))
			c.Sim.Commit("index", "bar")
			c.Keep("sn", c.Sim.File("snapshot.json")) // names bar v1
			c.Sim.Commit("bar")
			c.Sim.Commit("bar") // the client trusts a snapshot naming bar v3
		}, Attack: func(c *Case) {
			// The holder of the online timestamp key pins the old,
			// validly signed snapshot under a new timestamp.
			old := c.Kept("sn")
			c.Serve("snapshot.json", old)
			c.Serve("timestamp.json", c.Sim.TimestampFor(old, c.Sim.Timestamp.Version+1))
		}},
		{ID: "RB-5b", Expect: "rollback", Setup: func(c *Case) {
			c.Keep("sn", c.Sim.File("snapshot.json")) // before bar existed
			c.Sim.AddComponent("bar", Owner)
			c.Sim.AddVersion("bar", Version, DefaultFiles("bar", Version))
			c.Sim.Commit("index", "bar")
		}, Attack: func(c *Case) {
			// An entry of the trusted snapshot disappears.
			old := c.Kept("sn")
			c.Serve("snapshot.json", old)
			c.Serve("timestamp.json", c.Sim.TimestampFor(old, c.Sim.Timestamp.Version+1))
		}},
		{ID: "RB-6", Expect: "rollback", Setup: func(c *Case) {
			c.Keep("ts1", c.Sim.File("timestamp.json"))
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(7 * 24 * time.Hour))
			c.Sim.Commit() // v2, expiring on day 7, trusted
		}, Attack: func(c *Case) {
			// Day 18: the trusted timestamp expired; the attacker serves
			// v1 re-signed with a fresh expiry.
			c.Client.Now = Now.Add(18 * 24 * time.Hour)
			ts := *c.Sim.Timestamp
			ts.Version = 1
			ts.Expires = manifest.FormatTime(Now.Add(30 * 24 * time.Hour))
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Signers[manifest.RoleTimestamp]...))
		}, Heal: func(c *Case) {
			c.Heal()
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(40 * 24 * time.Hour))
			c.Sim.Commit()
		}},
		{ID: "RB-7", Expect: "mix-and-match", Attack: func(c *Case) {
			// /2.root.json holds version 1.
			root, _ := c.Served("root.json")
			c.Serve("2.root.json", root)
		}, Verify: trustedRoot(1)},
		{ID: "RB-7b", Expect: "mix-and-match", Attack: func(c *Case) {
			// /2.root.json holds version 3.
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) { r.Version = 3 }))
		}, Verify: trustedRoot(1)},
		{ID: "RB-8", Expect: "length", Cmd: []string{"install", Comp + ":v2.0.0"}, Setup: func(c *Case) {
			c.Sim.AddVersion(Comp, "v2.0.0", DefaultFiles(Comp, "v2.0.0"))
			c.Sim.Commit(Comp)
			c.Keep("cm", c.Sim.File(c.Sim.ComponentFile(Comp)))
			item := c.Sim.Item(Comp, "v2.0.0")
			item.Yanked = true
			c.Sim.SetItem(Comp, "v2.0.0", item)
			c.Sim.Commit(Comp) // v2.0.0 yanked in the manifest the client trusts
		}, Attack: func(c *Case) {
			c.Serve(c.Sim.ComponentFile(Comp), c.Kept("cm"))
		}, Heal: func(c *Case) {
			c.Heal()
			item := c.Sim.Item(Comp, "v2.0.0")
			item.Yanked = false
			c.Sim.SetItem(Comp, "v2.0.0", item)
			c.Sim.Commit(Comp)
		}, Detail: "the replayed manifest is not the length the snapshot pins"},
	})
}

// onlyFetched checks, on the http backend, that the attacked run asked for
// nothing but names (and the probe for a next root, which comes first): the
// client stopped at the first bad file.
func onlyFetched(c *Case, names ...string) error {
	if c.Srv == nil {
		return nil
	}
	allowed := map[string]bool{}
	for _, n := range names {
		allowed[n] = true
	}
	for _, p := range c.Srv.Paths() {
		if !allowed[p] && !strings.HasSuffix(p, ".root.json") {
			return fmt.Errorf("the client went on to fetch %s (requests: %v)", p, c.Srv.Paths())
		}
	}
	return nil
}

// trustedRoot checks the version of the client's trusted root.
func trustedRoot(want uint64) func(c *Case, r Result) error {
	return func(c *Case, r Result) error {
		got := c.TrustedVersion("root.json")
		if got == 0 {
			got = 1 // never rotated: bin/root.json is the trusted root
		}
		if got != want {
			return fmt.Errorf("trusted root version %d, want %d", got, want)
		}
		return nil
	}
}
