// Package sdk lets anyone extend the mirror tool with storage backends and
// signers of their own, built and shipped apart from it.
//
// A plugin is an executable. The mirror binary starts it as a subprocess
// when an address or key reference calls for it, talks to it over gRPC
// (hashicorp/go-plugin) on a private socket, and stops it when the command
// is done. Plugin authors need three packages:
//
//   - sdk (this package, standard library only): the Backend and Signer
//     interfaces, their data types and the sentinel errors;
//   - sdk/serve: a plugin's whole main, serve.Backend(open) or
//     serve.Signer(open);
//   - sdk/sdktest: conformance suites to run from the plugin's tests.
//
// The examples module of the mirror repository (examples/backend-memdir
// and examples/signer-envkey) holds a complete backend and a complete
// signer built that way, out of tree.
//
// # Writing a backend plugin
//
// Implement Backend and a BackendFactory that opens it, and serve it:
//
//	package main
//
//	import "github.com/mirrorkit/mirror/sdk/serve"
//
//	func main() { serve.Backend(open) }
//
//	func open(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
//		// cfg.Address is the mirror address as the user wrote it.
//	}
//
// The factory runs once, on the host's first call, with a Config:
// Address is the mirror address exactly as given (scheme included, so a
// plugin serving SCHEME:// sees "SCHEME://..."; under `mirror --backend NAME`
// it may be a plain path or any other string), and Options holds free-form
// settings from flags or configuration. The plugin runs in the user's working
// directory with the user's environment, so a relative path or an
// environment variable means what it means to the user. An address the
// plugin cannot use should fail the factory with an error wrapping
// fs.ErrInvalid.
//
// Keys are slash paths valid under io/fs.ValidPath ("root.json",
// "hello-v1.0.0-linux-amd64.tar.gz"); every method refuses any other key
// with an error wrapping fs.ErrInvalid, before touching storage.
//
// Errors cross the process boundary by sentinel: return (or wrap) one of
// ErrNotFound, ErrExist, ErrConflict, ErrIntegrity, ErrUnsupported,
// fs.ErrInvalid, context.Canceled or context.DeadlineExceeded, and the
// host's caller sees an error that errors.Is that sentinel and carries the
// plugin's message. Any other error arrives as its message alone. Write
// messages for users, on one line, in the form "op subject: cause", and
// never put secrets in them. The host turns the sentinels into exit codes:
// ErrNotFound is 5, ErrConflict is 4, ErrIntegrity is 3.
//
// Put must be atomic: readers see the old object or the whole new one,
// never a part, and a failed or cancelled Put stores nothing; the usual way
// is a temporary file (or multipart upload) committed by a rename. Check
// PutOptions while streaming: SizeKnown/Size and SHA256 fail with
// ErrIntegrity; IfNoneMatch fails with ErrExist on an existing key; IfMatch
// fails with ErrConflict when the current ETag differs, and the check and
// the commit must be one atomic step against other writers. If ctx is done
// before the commit, do not commit. ETags must change whenever the content
// does.
//
// Data streams both ways: Get's reader is sent to the host in chunks of at
// most 1 MiB as the host reads, and Put's reader yields the host's chunks
// as they arrive. Never read a whole object into memory; mirrors hold
// tarballs of hundreds of megabytes.
//
// Capabilities are sent once, when the plugin starts, because the host cannot
// type-assert across processes. Report them honestly and keep them constant:
// an operation whose capability is off must fail with ErrUnsupported.
// Concurrent writers are kept apart by Lock and ConditionalPut, so a
// writable backend should offer at least one of them.
//
// Lock(ctx, name) takes the mirror's writer lock and waits for it until ctx
// is done, then returns the context's error. Once taken, the host holds it
// through a stream; the plugin releases it when the host calls unlock,
// closes the plugin, or dies, so a crashed writer never leaves a mirror
// locked for ever. Lock names are single path elements not starting with a
// dot.
//
// LocalFiler is an optional fast path for a backend whose objects are files
// on the host's own machine: the host asks for a path (LocalPath) or hands
// one over (PutFile) instead of streaming bytes through the socket. Set
// Capabilities.LocalFiles only if the type implements LocalFiler; sdk/serve
// clears the flag otherwise.
//
// Stager is an optional fast path for a content-addressed backend (an OCI
// registry's blobs): a writer stages a large file with Stage while it waits
// for the writer lock, and once it holds the lock stores it with a Put
// whose PutOptions.Staged is set, which moves no data. Stage makes nothing
// visible and takes no lock; a Put with Staged takes the staged content by
// its sha256 (PutOptions.SHA256, with Size) without reading r, checks every
// other option as any Put does, and fails with ErrNotFound when it has no
// such content, after which the writer makes an ordinary Put. Set
// Capabilities.Stage only if the type implements Stager and honours
// Staged; sdk/serve clears the flag otherwise, and the host sends neither
// Stage nor Staged to a plugin without it, so plugins built before staging
// keep working unchanged.
//
// Logging: stdout belongs to the protocol. Log through serve.Logger, which
// writes to stderr in a form the host forwards to its own log (shown under
// `mirror -v`).
//
// # Writing a signer plugin
//
// Implement Signer and a SignerFactory, and serve it with
// serve.Signer(open). The factory's Config.Address is the key reference as
// the user wrote it, for example "kms://projects/p/keys/k" or
// "vault+https://vault.example/v1/transit/keys/k"; a reference NAME://... or
// NAME+SCHEME://... goes to the plugin mirror-signer-NAME. A plain path goes
// to the built-in key-file signer instead.
//
// PublicKey returns the key in TiUP's terms: KeyType "rsa", Scheme
// "rsassa-pss-sha256" and the PKIX public key in Go-standard PEM. Sign
// returns the RSASSA-PSS signature with SHA-256 over the payload bytes
// (TiUP signs with Go's default options, rsa.SignPSS(..., nil), and
// verifies any salt length); the signer never sees manifest structure, and the
// host verifies every signature against PublicKey before using it. The
// private key stays inside the plugin process (or in the KMS or HSM behind
// it): nothing in the protocol ever carries it. Sign may be called
// concurrently and should give up promptly when ctx is done.
//
// # The handshake and protocol versions
//
// serve.Backend and serve.Signer perform go-plugin's handshake: the host
// sets a magic cookie in the plugin's environment (a plugin started by hand
// says it is not meant to be run directly) and both sides announce
// ProtocolVersion. A plugin built against another protocol version is
// refused before any call, with an error naming both versions; rebuild it
// against the host's sdk. ProtocolVersion grows only when the wire changes
// incompatibly, so a plugin keeps working across host releases until then.
//
// # Naming and installing a plugin
//
// A backend serving addresses SCHEME://... is an executable named
// mirror-backend-SCHEME; a signer for references NAME://... is named
// mirror-signer-NAME. The host looks for it first in the plugin directory,
// $MIRROR_PLUGIN_DIR or else $TIUP_HOME/mirrorkit/plugins, then on PATH.
// Addresses served by a built-in backend (plain paths, file://, http://,
// https://) and references of the built-in key-file signer always go to
// the built-in, so a plugin cannot take over a built-in address.
// `mirror --backend NAME` forces mirror-backend-NAME for any address, which
// the plugin then receives unchanged.
//
// Users can pin a plugin's build in $TIUP_HOME/mirrorkit.toml:
//
//	[plugins]
//	"mirror-backend-memdir" = "sha256:<64 hex digits of the executable>"
//
// The host then hashes the executable before every start and refuses
// another build with exit code 3, naming both digests.
//
// # Testing a plugin
//
// sdk/sdktest runs the contract above as a conformance suite. Call it from
// the plugin's tests three times: on the implementation in-process, through
// the protocol in memory (sdk/host.InProcessBackend), and across a real
// process boundary, where sdk/plugintest runs the test binary itself as
// the plugin (so the plugin side is the code under test, built with the
// test's flags):
//
//	func TestMain(m *testing.M) {
//		plugintest.Serve(open, nil) // serves and exits when started as the plugin
//		os.Exit(m.Run())
//	}
//
//	func TestConformance(t *testing.T) {
//		t.Run("in-process", func(t *testing.T) {
//			sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
//				b, err := open(t.Context(), sdk.Config{Address: "memdir://" + t.TempDir()})
//				if err != nil {
//					t.Fatal(err)
//				}
//				return b
//			})
//		})
//		t.Run("plugin process", func(t *testing.T) {
//			sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
//				return plugintest.Backend(t, sdk.Config{Address: "memdir://" + t.TempDir()})
//			})
//		})
//	}
//
// sdktest.TestSigner and plugintest.Signer work the same way; TestSigner
// takes a verify function for the signer's scheme. Run the suites with
// -race, and -short for a quicker pass over smaller objects.
package sdk
