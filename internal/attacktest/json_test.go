package attacktest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/internal/attackreport"
)

// TestMalformedJSON is the catalogue's 1.8 through the CLI: a manifest
// means one thing or is refused, however its signer wrote it.
func TestMalformedJSON(t *testing.T) {
	// ts returns the next timestamp's canonical signed bytes with edit
	// applied, signed by the timestamp key (or with the original
	// signature when resign is false).
	ts := func(edit func(string) string, resign bool) func(c *Case) {
		return func(c *Case) {
			t := *c.Sim.Timestamp
			t.Version++
			signed := Encode(&t)
			mutated := []byte(edit(string(signed)))
			if resign {
				c.Serve("timestamp.json", c.Sim.SignRaw(mutated, c.Sim.Signers[manifest.RoleTimestamp]...))
				return
			}
			env, err := manifest.ParseEnvelope(c.Sim.SignRaw(signed, c.Sim.Signers[manifest.RoleTimestamp]...))
			if err != nil {
				c.T.Fatal(err)
			}
			env.Signed = mutated
			b, _ := env.Bytes()
			c.Serve("timestamp.json", b)
		}
	}
	re := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				panic(fmt.Sprintf("attacktest: %q not in %s", old, s))
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	version := func(c *Case) string { return fmt.Sprintf(`"version":%d}`, c.Sim.Timestamp.Version+1) }
	tsVersion := func(repl func(v string) string) func(c *Case) {
		return func(c *Case) {
			v := version(c)
			ts(re(v, repl(v)), true)(c)
		}
	}
	// cm publishes foo's manifest at its next version with edit applied,
	// validly signed by its owner.
	cm := func(edit func(string) string) func(c *Case) {
		return func(c *Case) {
			m := *c.Sim.Components[Comp]
			m.Version++
			c.Sim.CommitRaw(Comp, c.Sim.SignRaw([]byte(edit(string(Encode(&m)))), c.Sim.OwnerSigners[Owner]...))
		}
	}
	healCM := func(c *Case) {
		c.Heal()
		c.Sim.Commit(Comp)
	}
	RunAttacks(t, "malformed JSON", []Attack{
		{ID: "JS-1", Expect: "signature", Attack: func(c *Case) {
			b, _ := c.Served("timestamp.json")
			i := bytes.Index(b, []byte(`"expires":"`)) + len(`"expires":"`)
			c.Serve("timestamp.json", flip(b, i))
		}, Detail: "a flipped byte inside signed"},
		{ID: "JS-1b", Expect: "malformed", Attack: func(c *Case) {
			b, _ := c.Served("timestamp.json")
			c.Serve("timestamp.json", flip(b, 0))
		}, Detail: "a flipped first byte"},
		{ID: "JS-2", Expect: "malformed", Attack: func(c *Case) {
			b, _ := c.Served("timestamp.json")
			c.Serve("timestamp.json", b[:len(b)/2])
		}, Detail: "a timestamp cut in half"},
		{ID: "JS-3", Expect: "malformed", Attack: tsVersion(func(v string) string { return `"version":999,` + v[1:] }), Detail: "two version members, signed"},
		{ID: "JS-4", Expect: "malformed", Attack: ts(re(`"version":`, `"Version":`), true), Detail: "Version for version, signed"},
		{ID: "JS-4b", Expect: "malformed", Attack: ts(re(`"version":`, `"versi\u006fn":`), true), Detail: "an escaped member name, signed"},
		{ID: "JS-5", Expect: "malformed", Attack: func(c *Case) {
			b, _ := c.Served("timestamp.json")
			c.Serve("timestamp.json", append(append([]byte(nil), b...), " garbage"...))
		}, Detail: "trailing data"},
		{ID: "JS-5b", Expect: "malformed", Attack: func(c *Case) {
			b, _ := c.Served("timestamp.json")
			c.Serve("timestamp.json", append(append([]byte(nil), b...), `{"signatures":[],"signed":{}}`...))
		}, Detail: "a second JSON value after the manifest"},
		{ID: "JS-6", Expect: "signature", Attack: ts(re(`"version":`, `"version": `), false), Detail: "whitespace added to signed bytes"},
		{ID: "JS-7", Expect: decision(t, "JS-7").Expect, Attack: tsVersion(func(v string) string { return strings.TrimSuffix(v, "}") + `,"x_extra":"1"}` }),
			Detail: "policy: " + decision(t, "JS-7").Decision},
		{ID: "JS-8", Expect: "malformed", Attack: func(c *Case) {
			t := *c.Sim.Timestamp
			t.Version++
			s := string(Encode(&t))
			i, j := strings.Index(s, `"meta":`), strings.Index(s, `,"spec_version"`)
			c.Serve("timestamp.json", c.Sim.SignRaw([]byte(s[:i]+`"meta":null`+s[j:]), c.Sim.Signers[manifest.RoleTimestamp]...))
		}, Detail: `"meta":null`},
		{ID: "JS-8b", Expect: "malformed", Attack: func(c *Case) {
			ix := *c.Sim.Index
			ix.Version++
			s := string(Encode(&ix))
			i, j := strings.Index(s, `"owners":`), strings.Index(s, `,"spec_version"`)
			c.Sim.CommitRaw("index", c.Sim.SignRaw([]byte(s[:i]+`"owners":null`+s[j:]), c.Sim.Signers[manifest.RoleIndex]...))
		}, Heal: func(c *Case) { c.Heal(); c.Sim.Commit("index") }, Detail: `"owners":null`},
		{ID: "JS-8c", Expect: "malformed", Cmd: installFoo, Attack: func(c *Case) {
			m := *c.Sim.Components[Comp]
			m.Version++
			s := string(Encode(&m))
			i, j := strings.Index(s, `"platforms":`), strings.Index(s, `,"spec_version"`)
			c.Sim.CommitRaw(Comp, c.Sim.SignRaw([]byte(s[:i]+`"platforms":null`+s[j:]), c.Sim.OwnerSigners[Owner]...))
		}, Heal: healCM, MayChange: committed, Detail: `"platforms":null`},
		{ID: "JS-9", Expect: "malformed", Attack: tsVersion(func(string) string { return `"version":-1}` }), Detail: "version -1"},
		{ID: "JS-9b", Expect: "malformed", Attack: tsVersion(func(v string) string { return strings.TrimSuffix(v, "}") + `.5}` }), Detail: "a float version"},
		{ID: "JS-9c", Expect: "malformed", Attack: tsVersion(func(string) string { return `"version":18446744073709551616}` }), Detail: "version 2^64"},
		{ID: "JS-9d", Expect: "malformed", Attack: tsVersion(func(v string) string { return `"version":0` + v[len(`"version":`):] }), Detail: "a leading zero"},
		{ID: "JS-10", Expect: "malformed", Attack: func(c *Case) {
			e := `"expires":"` + c.Sim.Timestamp.Expires + `",`
			ts(re(e, ""), true)(c)
		}, Detail: "no expires"},
		{ID: "JS-10b", Expect: "malformed", Attack: func(c *Case) {
			ts(re(c.Sim.Timestamp.Expires, "next tuesday"), true)(c)
		}, Detail: "expires not RFC 3339"},
		{ID: "JS-10c", Expect: "freeze", Attack: func(c *Case) {
			ts(re(c.Sim.Timestamp.Expires, "0001-01-01T00:00:00Z"), true)(c)
		}, Detail: "expires in year 1"},
		{ID: "JS-10d", Expect: "ACCEPT", Attack: func(c *Case) {
			ts(re(c.Sim.Timestamp.Expires, "9999-12-31T23:59:59Z"), true)(c)
		}, NoRecovery: true, Detail: "expires in year 9999 is valid: no upper bound"},
		{ID: "JS-11", Expect: "malformed", Attack: ts(re(`"spec_version":"0.1.0"`, `"spec_version":"10.1.0"`), true), Detail: "spec_version 10.1.0"},
		{ID: "JS-12", Expect: "malformed", Cmd: installFoo, Attack: cm(re(`"description":"the foo`, "\"description\":\"the \xff foo")), Heal: healCM, MayChange: committed, Detail: "invalid UTF-8"},
		{ID: "JS-12b", Expect: "malformed", Cmd: installFoo, Attack: cm(re(`"description":"the foo`, `"description":"the \u0000 foo`)), Heal: healCM, MayChange: committed, Detail: "an escaped NUL"},
		{ID: "JS-12c", Expect: "malformed", Cmd: installFoo, Attack: cm(re(`"description":"the foo`, `"description":"the \u0007 foo`)), Heal: healCM, MayChange: committed, Detail: "an escaped BEL"},
	})
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x01
	return out
}

// TestMutationSweep is JS-1 and JS-2 in process, for every position: each
// manifest of a Sim, with any one byte changed or cut at any length, is
// refused by the verifier, unless the change left the signed bytes intact
// and the threshold met (a changed key ID of one of three root
// signatures). No mutation may panic.
func TestMutationSweep(t *testing.T) {
	t.Parallel()
	sim, err := NewSim(Now)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"root.json":      sim.File("root.json"),
		"timestamp.json": sim.File("timestamp.json"),
		"snapshot.json":  sim.File("snapshot.json"),
		"index.json":     sim.File(sim.IndexFile()),
		"foo.json":       sim.File(sim.ComponentFile(Comp)),
	}
	// verify runs the check that applies to a file at its place in the
	// chain, with everything before it trusted; the states are built once.
	clock := func() time.Time { return Now }
	chain := func(upto string) *trust.State {
		st, err := trust.New(files["root.json"], clock)
		steps := []struct {
			name string
			do   func() error
		}{
			{"timestamp.json", func() error { return st.UpdateTimestamp(files["timestamp.json"], 0) }},
			{"snapshot.json", func() error { return st.UpdateSnapshot(files["snapshot.json"], nil) }},
			{"index.json", func() error { return st.UpdateIndex(files["index.json"]) }},
		}
		for _, step := range steps {
			if err != nil || step.name == upto {
				break
			}
			err = step.do()
		}
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	states := map[string]*trust.State{}
	for _, name := range []string{"timestamp.json", "snapshot.json", "index.json", "foo.json"} {
		states[name] = chain(name)
	}
	verify := func(name string, b []byte) error {
		st := states[name]
		switch name {
		case "root.json":
			st, err := trust.New(b, clock)
			if err == nil {
				err = st.CheckRootExpiry()
			}
			return err
		case "timestamp.json":
			return st.UpdateTimestamp(b, 0)
		case "snapshot.json":
			// The timestamp pins it by hash; RecoverSnapshot checks the
			// signature alone, which is the interesting part.
			return st.RecoverSnapshot(b)
		case "index.json":
			return st.UpdateIndex(b)
		}
		_, err := st.VerifyComponent(Comp, b)
		return err
	}
	signedOf := func(b []byte) []byte {
		env, err := manifest.ParseEnvelope(b)
		if err != nil {
			return nil
		}
		return env.Signed
	}
	for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "index.json", "foo.json"} {
		b := files[name]
		if err := verify(name, b); err != nil {
			t.Fatalf("%s as published: %v", name, err)
		}
		flips, flipsKept, cuts := 0, 0, 0
		for i := range b {
			m := flip(b, i)
			if verify(name, m) == nil {
				if !bytes.Equal(signedOf(m), signedOf(b)) {
					t.Errorf("%s with byte %d flipped verifies with other signed bytes", name, i)
					continue
				}
				flipsKept++
				continue
			}
			flips++
		}
		for n := range len(b) {
			if verify(name, b[:n]) == nil {
				t.Errorf("%s cut to %d bytes verifies", name, n)
				continue
			}
			cuts++
		}
		ok := flips+flipsKept == len(b) && cuts == len(b)
		attackreport.Record(t, attackreport.Result{Family: "malformed JSON", ID: "JS-1/JS-2 " + name, Backend: "in-process",
			Expected: "REJECT(any)", Met: ok, Detail: fmt.Sprintf("%d flips refused, %d accepted with signed bytes intact; %d of %d cuts refused", flips, flipsKept, cuts, len(b))})
	}
}
