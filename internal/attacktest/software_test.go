package attacktest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

var installFoo = []string{"install", Comp + ":" + Version}

// TestArbitrarySoftware is the catalogue's 1.1: the client installs
// nothing but the bytes the owner signed for the version asked for.
func TestArbitrarySoftware(t *testing.T) {
	tarball := func(c *Case) string { return c.Sim.TarballFile(Comp, Version) }
	RunAttacks(t, "arbitrary software", []Attack{
		{ID: "A-0", Expect: "ACCEPT", Cmd: installFoo, NoRecovery: true, Detail: "positive control: the published version installs"},
		{ID: "A-1", Expect: "hash", Cmd: installFoo, Attack: func(c *Case) {
			tb, _ := c.Served(tarball(c))
			c.Serve(tarball(c), bytes.Repeat([]byte{0x1f}, len(tb)))
		}},
		{ID: "A-2", Expect: "length", Cmd: installFoo, Attack: func(c *Case) {
			tb, _ := c.Served(tarball(c))
			c.Serve(tarball(c), tb[:len(tb)-1])
		}},
		{ID: "A-3", Expect: "length", Cmd: installFoo, Attack: func(c *Case) {
			tb, _ := c.Served(tarball(c))
			c.Serve(tarball(c), append(append([]byte(nil), tb...), 0))
		}},
		{ID: "A-4", Expect: decision(t, "HASH").Expect, Cmd: installFoo, Attack: func(c *Case) {
			// The owner signs a manifest whose sha512 is not the
			// tarball's, while its sha256 is.
			item := c.Sim.Item(Comp, Version)
			item.Hashes = map[string]string{"sha256": item.Hashes["sha256"], "sha512": Hashes([]byte("other"))["sha512"]}
			c.Sim.SetItem(Comp, Version, item)
			c.Sim.Commit(Comp)
		}, Heal: republishFoo, MayChange: committed},
		{ID: "A-5", Expect: "hash", Cmd: installFoo, Attack: func(c *Case) {
			item := c.Sim.Item(Comp, Version)
			item.Hashes = map[string]string{"blake9": item.Hashes["sha256"]}
			c.Sim.SetItem(Comp, Version, item)
			c.Sim.Commit(Comp)
		}, Heal: republishFoo, MayChange: committed},
		{ID: "A-6", Expect: "mix-and-match", Cmd: installFoo, Setup: func(c *Case) {
			// bar has the same shape as foo, so its manifest has the same
			// length and version: only its id tells them apart.
			c.Sim.AddComponent("bar", Owner)
			c.Sim.AddVersion("bar", Version, DefaultFiles("bar", Version))
			c.Sim.Commit("index", "bar")
		}, Attack: func(c *Case) {
			foo, bar := c.Sim.ComponentFile(Comp), c.Sim.ComponentFile("bar")
			fb, _ := c.Served(foo)
			bb, _ := c.Served(bar)
			if len(fb) != len(bb) || foo[:2] != bar[:2] {
				c.T.Fatalf("setup: %s is %d bytes, %s %d: the id check would not be reached", foo, len(fb), bar, len(bb))
			}
			c.Serve(foo, bb)
		}},
		{ID: "A-7", Expect: "malformed", Setup: func(c *Case) {
			// Snapshot and timestamp share one key, as a careless admin
			// might set them up.
			ts := c.Sim.Signers[manifest.RoleTimestamp]
			c.Sim.SetRoleKeys(c.Sim.Root, manifest.RoleSnapshot, 1, ts...)
			c.Sim.ResignRoot()
		}, Attack: func(c *Case) {
			sn, _ := c.Served("snapshot.json")
			c.Serve("timestamp.json", sn)
		}},
		{ID: "A-8", Expect: "ACCEPT", Cmd: installFoo, Attack: func(c *Case) {
			if r := c.Run(installFoo...); r.Code != 0 {
				c.T.Fatalf("install before the attack: %v", r)
			}
			tb, _ := c.Served(tarball(c))
			c.Serve(tarball(c), bytes.Repeat([]byte{0x1f}, len(tb)))
		}, Detail: "an installed version is never replaced by bytes served later"},
		{ID: "A-8b", Expect: "hash", Cmd: []string{"install", "bar:" + Version}, Setup: func(c *Case) {
			c.Sim.AddComponent("bar", Owner)
			c.Sim.AddVersion("bar", Version, DefaultFiles("bar", Version))
			c.Sim.Commit("index", "bar")
		}, Attack: func(c *Case) {
			if r := c.Run(installFoo...); r.Code != 0 {
				c.T.Fatalf("install before the attack: %v", r)
			}
			name := c.Sim.TarballFile("bar", Version)
			foo, _ := c.Served(tarball(c))
			c.Serve(name, foo)
		}},
		{ID: "A-9", Expect: "ACCEPT", Attack: func(c *Case) {
			for _, name := range []string{"index.json", "snapshot.json"} {
				p := filepath.Join(c.Client.Home, "manifests", name)
				b, err := os.ReadFile(p)
				if err != nil {
					c.T.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(p, b, 0o644); err != nil {
					c.T.Fatal(err)
				}
			}
		}, NoRecovery: true, Detail: "tampered local copies are re-verified or refetched, never used as they are"},
		{ID: "A-10", Expect: "threshold", Cmd: installFoo, Attack: func(c *Case) {
			c.Serve(c.Sim.ComponentFile(Comp), c.Sim.Sign(c.Sim.Components[Comp], c.Sim.OwnerSigners[OtherOwner]...))
		}},
	})
}

// republishFoo heals a case that published a bad foo manifest: the owner
// publishes a correct one at the next version.
func republishFoo(c *Case) {
	c.Heal()
	item := c.Sim.Item(Comp, Version)
	tb, _ := c.Served(item.URL[1:])
	item.Hashes = Hashes(tb)
	c.Sim.SetItem(Comp, Version, item)
	c.Sim.Commit(Comp)
}

// committed are the trusted files a run advances when the attack itself
// was a legitimate commit (an owner publishing a bad manifest).
var committed = []string{"timestamp.json", "snapshot.json", "index.json"}
