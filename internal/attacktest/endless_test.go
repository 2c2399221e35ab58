package attacktest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

// sentBound is the most a server may have sent into an endless response
// before the client hung up: the client's cap plus what the kernel's
// socket buffers and the plugin's chunks hold. Without a cap the client
// would read until the server's safety limit of 4 GiB.
const sentBound = 64 << 20

// rssBound bounds the mirror process's peak memory while it refuses
// endless data: the cap is 1 MiB at most, and the rest is the runtime.
const rssBound = 128 << 10 // KiB

// TestEndlessData is the catalogue's 1.2: no answer can make the client
// read, hold or write more than the signed length (or the size cap of a
// file no length is signed for yet) plus one buffer.
func TestEndlessData(t *testing.T) {
	endless := func(name func(c *Case) string) func(c *Case) {
		return func(c *Case) {
			if c.Srv != nil {
				c.Srv.Fault(name(c), Fault{Kind: Endless})
				return
			}
			// On the fs backend (whose plugin refuses links out of the
			// mirror and anything but regular files) endless data is a
			// 64 GiB sparse file.
			c.Sparse(name(c), 64<<30)
		}
	}
	bounded := func(c *Case, r Result) error {
		if r.MaxRSS > rssBound {
			return fmt.Errorf("peak RSS %d KiB, bound %d KiB", r.MaxRSS, rssBound)
		}
		if c.Srv == nil {
			return nil
		}
		for _, req := range c.Srv.Requests() {
			if req.Sent > sentBound {
				return fmt.Errorf("server sent %d bytes of %s before the client stopped", req.Sent, req.Path)
			}
		}
		return nil
	}
	tarball := func(c *Case) string { return c.Sim.TarballFile(Comp, Version) }
	appendJunk := func(name func(c *Case) string, n int) func(c *Case) {
		return func(c *Case) {
			b, _ := c.Served(name(c))
			c.Serve(name(c), append(append([]byte(nil), b...), bytes.Repeat([]byte{' '}, n)...))
		}
	}
	RunAttacks(t, "endless data", []Attack{
		{ID: "E-1", Backends: []string{FS, HTTP}, Expect: "length", Attack: endless(func(*Case) string { return "timestamp.json" }), Verify: bounded},
		{ID: "E-2", Backends: []string{FS, HTTP}, Expect: "length", Attack: endless(func(*Case) string { return "2.root.json" }), Verify: bounded},
		{ID: "E-3", Expect: "length", Attack: appendJunk(func(*Case) string { return "snapshot.json" }, 1<<20), Verify: bounded},
		{ID: "E-4", Expect: "length", Attack: appendJunk(func(c *Case) string { return c.Sim.IndexFile() }, 1<<20), Verify: bounded},
		{ID: "E-4b", Expect: "length", Cmd: installFoo, Attack: appendJunk(func(c *Case) string { return c.Sim.ComponentFile(Comp) }, 1), Verify: bounded},
		{ID: "E-5", Backends: []string{FS, HTTP}, Expect: "length", Cmd: installFoo, Attack: endless(tarball), Verify: bounded},
		{ID: "E-6", Expect: "malformed", Backends: []string{HTTP}, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: LieLength, N: 10})
		}, Detail: "Content-Length 10 on a whole timestamp: the short read is refused, never trusted"},
		{ID: "E-6b", Expect: "transport", Backends: []string{HTTP}, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: LieLength, N: 10 << 30})
		}, Verify: bounded, Detail: "Content-Length 10 GiB on a small file: the body ends early on every attempt"},
		{ID: "E-7", Expect: "malformed", Backends: []string{HTTP}, Attack: func(c *Case) {
			c.Srv.Fault("snapshot.json", Fault{Kind: GzipEncoded})
			c.Srv.Fault("timestamp.json", Fault{Kind: GzipEncoded})
		}, Detail: "Content-Encoding: gzip is not decoded: manifests are verified byte for byte"},
		{ID: "E-8", Expect: "malformed", Attack: func(c *Case) {
			// 900 KiB of nesting inside the cap of a root.
			depth := 450 << 10
			c.Serve("2.root.json", []byte(`{"signatures":[],"signed":`+strings.Repeat("[", depth)+strings.Repeat("]", depth)+`}`))
		}},
		{ID: "E-8b", Expect: "malformed", Attack: func(c *Case) {
			var b strings.Builder
			b.WriteString(`{"signatures":[],"signed":{`)
			for i := range 60000 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `"k%d":%d`, i, i)
			}
			b.WriteString(`}}`)
			c.Serve("2.root.json", []byte(b.String()))
		}},
		{ID: "E-9", Expect: "signature", Attack: func(c *Case) {
			// A valid next root with 10,000 more signature entries by
			// unknown keys, within the 1 MiB root cap.
			env, err := manifest.ParseEnvelope(c.Sim.NextRoot(nil))
			if err != nil {
				c.T.Fatal(err)
			}
			for i := range 10000 {
				env.Signatures = append(env.Signatures, manifest.Signature{KeyID: fmt.Sprintf("%064x", i), Sig: "AA=="})
			}
			b, err := env.Bytes()
			if err != nil {
				c.T.Fatal(err)
			}
			if len(b) > manifest.MaxRootSize {
				c.T.Fatalf("setup: %d bytes, over the root cap", len(b))
			}
			c.Serve("2.root.json", b)
		}},
	})
}
