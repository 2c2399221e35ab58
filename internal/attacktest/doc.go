// Package attacktest is the outside-in harness of the attack suite (issue 8,
// the attack catalogue's section 0) and, in its tests, the client-side
// cases of the catalogue.
//
// The harness has four parts:
//
//   - CLI: the real mirror binary, built once per test run with
//     -tags testclock (Build), run with os/exec in a sandbox per case with
//     its own TIUP_HOME and MIRROR_TEST_NOW (Client).
//   - SIM: a TiUP-format repository simulator (Sim) built on core/manifest
//     and core/keys, signing with a pool of pre-generated test keys
//     (testdata/keys, made by genkeys.go), keeping the current signed
//     objects per role and the published bytes of every file, which a case
//     may overwrite byte by byte.
//   - SRV: a loopback HTTP server (Server) that serves those files under
//     their TiUP names with a fault plan keyed by path and request count,
//     and records every request.
//   - Checks (Case.Check): exit code, the stable error token on stderr,
//     trusted state unchanged except what a case allows, nothing new in the
//     sandbox (install dir, canary dirs beside the home), no panic, and a
//     successful re-run once the fault is healed.
//
// The cases record their outcomes with internal/attackreport; `make attack`
// prints the table.
package attacktest
