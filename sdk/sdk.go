package sdk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// ProtocolVersion is the version of the plugin protocol. The host and a plugin
// refuse each other when their versions differ; it grows only when the wire
// changes incompatibly.
const ProtocolVersion = 1

// Sentinel errors. They survive the plugin boundary: a plugin returns one
// (possibly wrapped) and the host's caller can test for it with errors.Is.
var (
	// ErrNotFound reports that a key does not exist. It is fs.ErrNotExist, so
	// os.IsNotExist-style checks work too.
	ErrNotFound = fs.ErrNotExist
	// ErrExist reports that a create-only Put found the key present.
	ErrExist = fs.ErrExist
	// ErrConflict reports that a conditional Put lost against a concurrent
	// change (the ETag no longer matched). Callers re-read and retry.
	ErrConflict = errors.New("conflict: the object changed concurrently")
	// ErrIntegrity reports that data did not match its expected size or hash.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrUnsupported reports an operation the implementation does not offer.
	ErrUnsupported = errors.ErrUnsupported
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	// Key is the object's slash-separated path, valid per io/fs.ValidPath.
	Key string
	// Size is the length in bytes.
	Size int64
	// ETag changes whenever the content changes; it is what PutOptions.IfMatch
	// compares against. Empty when the backend has none.
	ETag string
	// ModTime is the last modification time; zero when unknown.
	ModTime time.Time
}

// PutOptions qualify a Put.
type PutOptions struct {
	// Size is the expected length, checked only when SizeKnown is set: a
	// stream of another length fails with ErrIntegrity and stores nothing.
	Size int64
	// SizeKnown says Size is meaningful; it is separate so that the zero
	// PutOptions checks nothing and an empty file can still be pinned to 0.
	SizeKnown bool
	// SHA256 is the expected lowercase hex digest; a mismatch fails with
	// ErrIntegrity and stores nothing. Empty means unchecked.
	SHA256 string
	// IfMatch makes the Put conditional on the current ETag (compare-and-swap):
	// a different current ETag fails with ErrConflict.
	IfMatch string
	// IfNoneMatch makes the Put create-only: an existing key fails with
	// ErrExist.
	IfNoneMatch bool
	// Staged says the content was uploaded ahead with Stager.Stage: the
	// backend stores the staged content whose sha256 is SHA256 (required,
	// with SizeKnown and Size, or the Put fails with an error wrapping
	// fs.ErrInvalid) under key without reading r, and fails with
	// ErrNotFound, storing nothing, when it does not have that content (it
	// was never staged, or already collected); the caller then makes an
	// ordinary Put. Staged content of another size than Size fails with
	// ErrIntegrity. Every other option keeps its meaning, so IfMatch and
	// IfNoneMatch are checked as for any Put. Callers set it only for a
	// backend that reports Capabilities.Stage; sdk/host refuses it with
	// ErrUnsupported for any other plugin, which predates the option and
	// would read an empty r.
	Staged bool
}

// Capabilities say what a backend offers. They travel once, when the plugin
// starts, because type assertions do not cross processes.
type Capabilities struct {
	Write          bool // Put works
	List           bool // List works
	Delete         bool // Delete works
	ConditionalPut bool // IfMatch and IfNoneMatch are honoured atomically
	Lock           bool // Lock works (the backend can serialize writers)
	LocalFiles     bool // the backend implements LocalFiler
	Stage          bool // the backend implements Stager and honours PutOptions.Staged
}

// Backend stores a mirror's files. Implementations must be safe for
// concurrent use. Every key is a slash path satisfying io/fs.ValidPath; an
// invalid key fails with an error wrapping fs.ErrInvalid.
type Backend interface {
	// Capabilities reports what the backend offers.
	Capabilities(ctx context.Context) (Capabilities, error)
	// Stat returns the object's info, or ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Get opens the object for reading; the caller closes the reader.
	// A missing key returns ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// Put stores r under key atomically: readers see the old object or the
	// whole new one, never a part. It checks opts while streaming and stores
	// nothing when a check fails.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in no
	// particular order; an error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object; a missing key returns ErrNotFound.
	Delete(ctx context.Context, key string) error
	// Lock takes the mirror's writer lock, waiting until ctx is done; the
	// returned function releases it. Backends without one return
	// ErrUnsupported; writers then rely on ConditionalPut alone.
	Lock(ctx context.Context, name string) (unlock func() error, err error)
}

// LocalFiler is the fast path of a backend whose objects are local files:
// the host hands it paths instead of streaming bytes through the plugin.
type LocalFiler interface {
	// LocalPath returns the path of the object's file, or ErrNotFound.
	LocalPath(ctx context.Context, key string) (string, error)
	// PutFile stores the file at path under key, as Put would, by copying
	// (or linking) it rather than streaming it through the protocol.
	PutFile(ctx context.Context, key, path string, opts PutOptions) (ObjectInfo, error)
}

// Stager is the upload-ahead of a content-addressed backend (an OCI
// registry's blobs): a writer stages a large file's bytes while it waits
// for the writer lock, and once it holds the lock it stores them under their
// key with a Put whose PutOptions.Staged is set, which moves no data. Set
// Capabilities.Stage only if the type implements Stager and its Put honours
// Staged; sdk/serve clears the flag otherwise.
type Stager interface {
	// Stage stores r's bytes where a later Put with PutOptions.Staged and
	// the same sha256 finds them, and returns their sha256 in lowercase
	// hex. It makes nothing visible: Stat, Get and List answer as before.
	// It takes no lock and may run while another writer holds it. Of opts
	// only SizeKnown, Size and SHA256 apply, and they are checked as Put
	// checks them: a mismatch fails with ErrIntegrity and keeps nothing;
	// IfMatch, IfNoneMatch or Staged set fail with an error wrapping
	// fs.ErrInvalid. Staged content that no Put claims is the backend's to
	// collect (an OCI registry's garbage collection of untagged blobs), so
	// a writer that gives up leaves nothing a reader could see.
	Stage(ctx context.Context, r io.Reader, opts PutOptions) (sha256hex string, err error)
}

// Config is what a plugin is opened with.
type Config struct {
	// Address is the mirror address (a backend: path or URL) or the key
	// reference (a signer: a key file path or URL).
	Address string
	// Options are settings from the command line (--backend-option
	// KEY=VALUE, or NAME:KEY=VALUE for the plugin NAME only). A plugin
	// refuses a key it does not know, naming it, with an error wrapping
	// fs.ErrInvalid: a misspelt setting must not pass silently.
	Options map[string]string
}

// BackendFactory opens a backend for a configuration.
type BackendFactory func(ctx context.Context, cfg Config) (Backend, error)

// PublicKey is a signer's public key in TiUP's terms.
type PublicKey struct {
	// KeyType is "rsa" for every TiUP v1 key.
	KeyType string
	// Scheme is "rsassa-pss-sha256" for every TiUP v1 key.
	Scheme string
	// PEM is the Go-standard PEM encoding of the PKIX public key.
	PEM string
}

// Signer signs payloads with a private key it never reveals. It sees bytes,
// never manifest structure. Implementations must be safe for concurrent use.
type Signer interface {
	// PublicKey returns the public half of the signing key.
	PublicKey(ctx context.Context) (PublicKey, error)
	// Sign returns the signature over payload under the key's scheme
	// (RSASSA-PSS with SHA-256 for TiUP keys).
	Sign(ctx context.Context, payload []byte) ([]byte, error)
}

// SignerFactory opens a signer for a configuration.
type SignerFactory func(ctx context.Context, cfg Config) (Signer, error)

// callerVerifiesKey marks a context whose Get reads content the caller
// checks itself against signed hashes.
type callerVerifiesKey struct{}

// WithCallerVerifies returns a context for a Get whose caller checks the
// content it reads against a signed length and hashes (a tarball a client
// installs, clones or verifies). A backend may then skip a content hash of
// its own that only repeats that check, as the OCI backend's sha256 of
// each blob does; it must still never return more bytes than the object
// has. The hint crosses the plugin protocol.
func WithCallerVerifies(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerVerifiesKey{}, true)
}

// CallerVerifies reports whether ctx carries WithCallerVerifies.
func CallerVerifies(ctx context.Context) bool {
	v, _ := ctx.Value(callerVerifiesKey{}).(bool)
	return v
}
