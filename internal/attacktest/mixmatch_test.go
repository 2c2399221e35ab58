package attacktest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// TestMixAndMatch is the catalogue's 1.5: every manifest is exactly the
// one the chain above it pins (hash, length and version), never another
// validly signed one.
func TestMixAndMatch(t *testing.T) {
	otherSnapshot := func(c *Case) []byte {
		sn := *c.Sim.Snapshot
		sn.Expires = manifest.FormatTime(Now.Add(31 * 24 * time.Hour))
		return c.Sim.Sign(&sn, c.Sim.Signers[manifest.RoleSnapshot]...)
	}
	RunAttacks(t, "mix-and-match", []Attack{
		{ID: "MM-1", Expect: "hash", Attack: func(c *Case) {
			c.Serve("snapshot.json", otherSnapshot(c))
		}, Verify: func(c *Case, r Result) error {
			return fetchedTimes(c, map[string]int{"timestamp.json": 2, "snapshot.json": 2})
		}, Detail: "one refetch of timestamp and snapshot, then refused"},
		{ID: "MM-2", Expect: "hash", Attack: func(c *Case) {
			sn, _ := c.Served("snapshot.json")
			ts := *c.Sim.Timestamp
			ts.Version++
			h := Hashes(sn)
			h["sha512"] = Hashes([]byte("other"))["sha512"]
			ts.Meta = map[string]manifest.FileHash{"/snapshot.json": {Hashes: h, Length: uint64(len(sn))}}
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Signers[manifest.RoleTimestamp]...))
		}, Detail: decision(t, "HASH").Decision},
		{ID: "MM-3", Expect: "mix-and-match", Attack: func(c *Case) {
			ix := *c.Sim.Index
			ix.Version++ // /1.index.json holds version 2
			c.Serve(c.Sim.IndexFile(), c.Sim.Sign(&ix, c.Sim.Signers[manifest.RoleIndex]...))
		}},
		{ID: "MM-4", Expect: "mix-and-match", Cmd: installFoo, Attack: func(c *Case) {
			cm := *c.Sim.Components[Comp]
			cm.Version++
			c.Serve(c.Sim.ComponentFile(Comp), c.Sim.Sign(&cm, c.Sim.OwnerSigners[Owner]...))
		}},
		{ID: "MM-5", Expect: "length", Attack: func(c *Case) {
			b, _ := c.Served(c.Sim.IndexFile())
			c.Serve(c.Sim.IndexFile(), b[:len(b)-1])
		}},
		{ID: "MM-5b", Expect: "length", Cmd: installFoo, Attack: func(c *Case) {
			b, _ := c.Served(c.Sim.ComponentFile(Comp))
			c.Serve(c.Sim.ComponentFile(Comp), b[:len(b)-1])
		}},
		{ID: "MM-6", Expect: "malformed", Attack: func(c *Case) {
			c.Sim.Index.Components["baz"] = manifest.ComponentItem{Owner: "ghost", URL: "/baz.json"}
			c.Sim.Commit("index")
		}, Heal: func(c *Case) {
			c.Heal()
			delete(c.Sim.Index.Components, "baz")
			c.Sim.Commit("index")
		}},
		{ID: "MM-7", Expect: "ACCEPT", Backends: []string{HTTP}, Attack: func(c *Case) {
			// A reader racing a writer: the first snapshot it gets is
			// newer than the timestamp it got.
			c.Srv.Fault("snapshot.json", Fault{Kind: Replay, Body: otherSnapshot(c), Times: 1})
		}, Verify: func(c *Case, r Result) error {
			return fetchedTimes(c, map[string]int{"timestamp.json": 2, "snapshot.json": 2})
		}, NoRecovery: true, Detail: "a stale pair mid-sync settles with one refetch"},
		{ID: "MM-7b", Expect: "hash", Attack: func(c *Case) {
			c.Serve("snapshot.json", otherSnapshot(c))
			if c.Srv != nil {
				c.Srv.Fault("snapshot.json", Fault{Kind: Replay, Body: otherSnapshot(c)})
			}
		}, Detail: "a mismatch that persists after the one refetch is refused"},
	})
}

// fetchedTimes checks, on the http backend, how often the attacked run
// fetched some files.
func fetchedTimes(c *Case, want map[string]int) error {
	if c.Srv == nil {
		return nil
	}
	got := map[string]int{}
	for _, p := range c.Srv.Paths() {
		got[p]++
	}
	for name, n := range want {
		if got[name] != n {
			return fmt.Errorf("%s fetched %d times, want %d (requests: %v)", name, got[name], n, c.Srv.Paths())
		}
	}
	return nil
}
