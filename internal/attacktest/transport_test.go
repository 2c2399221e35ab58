package attacktest

import (
	"fmt"
	"testing"
)

// TestTransport is the catalogue's 1.10, on the http backend: a server
// that stalls, drips, breaks off, lies about ranges or redirects
// anywhere cannot hold the client for long nor get anything past
// verification. The runs use MIRROR_HTTP_IDLE_TIMEOUT=2s,
// MIRROR_HTTP_HEADER_TIMEOUT=2s and MIRROR_HTTP_ATTEMPTS=3 (Client.Env),
// with the default minimum rate of 1 KiB/s after the idle timeout.
func TestTransport(t *testing.T) {
	tarball := func(c *Case) string { return c.Sim.TarballFile(Comp, Version) }
	rangeAsked := func(c *Case, r Result) error {
		for _, req := range c.Srv.Requests() {
			if req.Path == tarball(c) && req.Range != "" {
				return nil
			}
		}
		return fmt.Errorf("the broken body was not resumed with a Range request: %v", c.Srv.Requests())
	}
	http := []string{HTTP}
	RunAttacks(t, "transport", []Attack{
		{ID: "NW-1", Expect: "timeout", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Stall})
		}, Detail: "headers, then no body: the idle timeout, on each of 3 attempts"},
		{ID: "NW-2", Expect: "timeout", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("snapshot.json", Fault{Kind: Drip, N: 100})
		}, Detail: "10 bytes/s stops at the minimum rate once the idle timeout has passed"},
		{ID: "NW-3", Expect: "timeout", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: StallHeaders})
		}, Detail: "no headers: the response-header timeout, on each of 3 attempts"},
		{ID: "NW-4", Expect: "ACCEPT", Backends: http, Cmd: installFoo, Attack: func(c *Case) {
			c.Srv.Fault(tarball(c), Fault{Kind: ResetMidBody, Times: 1})
		}, Verify: rangeAsked, NoRecovery: true, Detail: "reset mid-tarball, resumed with Range and verified whole"},
		{ID: "NW-5", Expect: "ACCEPT", Backends: http, Cmd: installFoo, Attack: func(c *Case) {
			c.Srv.Fault(tarball(c), Fault{Kind: ResetMidBody, Times: 1})
			c.Srv.Fault(tarball(c), Fault{Kind: RangeIgnored, Skip: 1, Times: 1})
		}, Verify: rangeAsked, NoRecovery: true, Detail: "a Range answered with 200 and the whole file: what was read is skipped, never appended twice"},
		{ID: "NW-5b", Expect: "transport", Backends: http, Cmd: installFoo, Attack: func(c *Case) {
			c.Srv.Fault(tarball(c), Fault{Kind: ResetMidBody, Times: 1})
			c.Srv.Fault(tarball(c), Fault{Kind: RangeWrong, Skip: 1})
		}, Detail: "a 206 whose Content-Range starts elsewhere is refused"},
		{ID: "NW-6", Expect: "transport", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Status, N: 304})
		}, Detail: "304 to a request that was not conditional"},
		{ID: "NW-7", Expect: "ACCEPT", Backends: http, Cmd: installFoo, Attack: func(c *Case) {
			other := NewServer(c.Served)
			c.T.Cleanup(other.Close)
			c.Srv.Fault(tarball(c), Fault{Kind: Redirect, To: other.URL + "/" + tarball(c)})
		}, NoRecovery: true, Detail: "a redirect to another host serving the signed bytes"},
		{ID: "NW-7b", Expect: "malformed", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Redirect, To: "/snapshot.json"})
		}, Detail: "a redirect to other valid content is verified as the file asked for"},
		{ID: "NW-7c", Expect: "transport", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Redirect, N: 20, To: "/timestamp.json"})
		}, Detail: "a loop of redirects stops after 10"},
		{ID: "NW-7d", Expect: NoToken, Exit: 5, Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Redirect, To: "/timestamp.json%0d%0aX-Injected:%20yes"})
		}, Detail: "CR/LF in Location stays in the path: no header injection, the file is not found"},
		{ID: "NW-9", Expect: "malformed", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: HTML})
		}, Detail: "a captive portal's 200 HTML page as timestamp.json"},
		{ID: "NW-9b", Expect: "transport", Backends: http, Attack: func(c *Case) {
			c.Srv.Fault("timestamp.json", Fault{Kind: Status, N: 500})
		}, Detail: "500 on every attempt"},
	})
}
