package attacktest

import (
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// TestFreeze is the catalogue's 1.4: an expired manifest is never trusted,
// whoever signed it, while expired local copies never block a fresh
// update.
func TestFreeze(t *testing.T) {
	day := 24 * time.Hour
	past := manifest.FormatTime(Now.Add(-time.Hour))
	fresh := func(c *Case) { // heal by publishing a fresh state
		c.Heal()
		c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(30 * day))
		c.Sim.Snapshot.Expires = manifest.FormatTime(Now.Add(30 * day))
		c.Sim.Index.Expires = manifest.FormatTime(Now.Add(365 * day))
		c.Sim.Components[Comp].Expires = manifest.FormatTime(Now.Add(365 * day))
		c.Sim.Commit("index", Comp)
	}
	RunAttacks(t, "freeze", []Attack{
		{ID: "FZ-1", Expect: "freeze", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = past
			c.Sim.Commit()
		}, Heal: fresh, Verify: func(c *Case, r Result) error { return onlyFetched(c, "timestamp.json") }},
		{ID: "FZ-2", Expect: "freeze", Attack: func(c *Case) {
			c.Sim.Snapshot.Expires = past
			c.Sim.Commit()
		}, Heal: fresh, MayChange: []string{"timestamp.json"}},
		{ID: "FZ-3", Expect: "freeze", Attack: func(c *Case) {
			c.Sim.Index.Expires = past
			c.Sim.Commit("index")
		}, Heal: fresh},
		{ID: "FZ-4", Expect: decision(t, "FZ-4").Expect, Cmd: installFoo, Attack: func(c *Case) {
			c.Sim.Components[Comp].Expires = past
			c.Sim.Commit(Comp)
		}, Heal: fresh, MayChange: committed, Detail: "policy: an expired component manifest refuses install and list"},
		{ID: "FZ-5", Expect: "freeze", NoBaseline: true, Setup: func(c *Case) {
			c.Sim.Root.Expires = manifest.FormatTime(Now.Add(-3 * day))
			c.Sim.ResignRoot()
		}, Attack: func(c *Case) {
			c.Sim.RotateRoot(func(r *manifest.Root) { r.Expires = manifest.FormatTime(Now.Add(-2 * day)) }, c.Sim.Signers[manifest.RoleRoot])
			c.Sim.RotateRoot(func(r *manifest.Root) { r.Expires = manifest.FormatTime(Now.Add(-day)) }, c.Sim.Signers[manifest.RoleRoot])
		}, MayChange: []string{"root.json", "*.root.json"}, Verify: func(c *Case, r Result) error {
			// The final root is kept even though it expired: the next
			// run starts from it.
			return trustedRoot(3)(c, r)
		}, Heal: func(c *Case) {
			c.Heal()
			c.Sim.RotateRoot(func(r *manifest.Root) { r.Expires = manifest.FormatTime(Now.Add(365 * day)) }, c.Sim.Signers[manifest.RoleRoot])
		}},
		{ID: "FZ-6", Expect: "ACCEPT", NoBaseline: true, Setup: func(c *Case) {
			c.Sim.Root.Expires = manifest.FormatTime(Now.Add(-2 * day))
			c.Sim.ResignRoot()
		}, Attack: func(c *Case) {
			c.Sim.RotateRoot(func(r *manifest.Root) { r.Expires = manifest.FormatTime(Now.Add(-day)) }, c.Sim.Signers[manifest.RoleRoot])
			c.Sim.RotateRoot(func(r *manifest.Root) { r.Expires = manifest.FormatTime(Now.Add(365 * day)) }, c.Sim.Signers[manifest.RoleRoot])
		}, NoRecovery: true, Detail: "control: an expired intermediate root is passed through to a fresh one"},
		{ID: "FZ-7", Expect: "ACCEPT", Setup: func(c *Case) {
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(7 * day))
			c.Sim.Snapshot.Expires = manifest.FormatTime(Now.Add(7 * day))
			c.Sim.Commit()
		}, Attack: func(c *Case) {
			c.Client.Now = Now.Add(18 * day)
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(40 * day))
			c.Sim.Snapshot.Expires = manifest.FormatTime(Now.Add(40 * day))
			c.Sim.Commit()
		}, NoRecovery: true, Detail: "control: expired local timestamp and snapshot, fresh remote ones"},
		{ID: "FZ-8", Expect: "freeze", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now) // expires == now
			c.Sim.Commit()
		}, Heal: fresh, Detail: "expires equal to now is expired: the rule is expires > now"},
		{ID: "FZ-8b", Expect: "ACCEPT", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = manifest.FormatTime(Now.Add(time.Second))
			c.Sim.Commit()
		}, NoRecovery: true, Detail: "control: expires one second after now"},
		{ID: "FZ-8c", Expect: "freeze", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = Now.Add(-time.Second).In(time.FixedZone("", 8*3600)).Format(time.RFC3339) // 07:59:59+08:00
			c.Sim.Commit()
		}, Heal: fresh, Detail: "a +08:00 offset is honoured: one second ago"},
		{ID: "FZ-8d", Expect: "ACCEPT", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = Now.Add(time.Second).In(time.FixedZone("", 8*3600)).Format(time.RFC3339)
			c.Sim.Commit()
		}, NoRecovery: true, Detail: "control: a +08:00 offset one second ahead"},
		{ID: "FZ-8e", Expect: "ACCEPT", Attack: func(c *Case) {
			c.Sim.Timestamp.Expires = Now.Add(1500 * time.Millisecond).Format(time.RFC3339Nano)
			c.Sim.Commit()
		}, NoRecovery: true, Detail: "fractional seconds parse (RFC 3339); tiup never writes them"},
	})
}
