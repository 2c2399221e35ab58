// Package ocibackend stores a mirror in an OCI registry (distribution,
// Harbor, GHCR, ECR, ...), on go-containerregistry. It implements
// sdk.Backend; plugins/backend-oci serves it as a plugin for the addresses
// oci://REGISTRY/REPO (HTTPS) and oci+http://REGISTRY/REPO (plain HTTP).
//
// Every mirror file is an OCI 1.1 artifact in the repository REPO, tagged
// with a reversible escape of its key; docs/oci-layout.md describes the
// layout, the lease that serializes writers, and what is atomic and what is
// not. In short:
//
//   - Put streams the file to a blob (1 MiB of it in memory at most, or two
//     chunks with the chunk-size option), checks size and sha256 before
//     anything is tagged, and then pushes the small manifest under the
//     key's tag: readers see the old file or the new one. A blob the
//     repository already has, or can mount from another repository, is not
//     uploaded again.
//   - Stage (sdk.Stager) is the upload of a Put without the manifest and
//     the tag, so it needs no lease: a writer stages its tarball while the
//     lease settles, and a Put with PutOptions.Staged then tags the blob,
//     through the same code as any Put, without sending it again.
//   - The ETag is the manifest digest.
//   - Registries have no compare-and-swap on tags. IfMatch and IfNoneMatch
//     are checked just before the tag moves, serialized per key inside the
//     process; across processes they are atomic only among writers holding
//     the lease, which every mirrorkit writer takes (Lock).
//   - Lock is a lease: an artifact on tag "_lease-NAME" naming a random
//     holder, claimed by write, settle delay and read-back, renewed every
//     third of its TTL and taken over only after it went unrenewed for a
//     whole TTL.
package ocibackend

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// Defaults of the settings in Config.Options.
const (
	// DefaultLeaseTTL is how long a lease survives its holder: a crashed
	// writer blocks others for this long at most.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultLeaseSettle is the delay between claiming a lease and reading
	// the claim back, and the longest a claim's read-then-write may take.
	DefaultLeaseSettle = time.Second
	// MountFromEnv names the environment variable listing, comma-separated,
	// repositories of the same registry to mount blobs from (the
	// "mount-from" option does the same).
	MountFromEnv = "MIRROR_OCI_MOUNT_FROM"
)

// maxManifestSize caps a manifest read; ours are under a kilobyte.
const maxManifestSize = 4 << 20

// listWorkers bounds the manifest fetches of one List.
const listWorkers = 8

// Backend is a mirror in one repository of an OCI registry. It is safe for
// concurrent use; several Backend values, in one process or many, may share
// a repository, and serialize their writes with Lock.
type Backend struct {
	c           *client
	chunkSize   int // 0: stream each blob in one request
	chunkPool   sync.Pool
	leaseTTL    time.Duration
	leaseSettle time.Duration
	log         hclog.Logger

	// sleep and now are the clock, replaced by tests.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time

	emptyMu sync.Mutex
	emptyOK bool // the empty config blob is in the repository

	keyMu    sync.Mutex
	keyLocks map[string]*keyLock

	leaseMu sync.Mutex
	sems    map[string]chan struct{} // one local holder per lock name
	held    map[string]*heldLease
	closed  bool
}

var (
	_ sdk.Backend = (*Backend)(nil)
	_ sdk.Stager  = (*Backend)(nil)
	_ io.Closer   = (*Backend)(nil)
)

// Open is the sdk.BackendFactory of the OCI backend. cfg.Address is
// oci://REGISTRY/REPO or oci+http://REGISTRY/REPO. cfg.Options may hold
// "insecure" ("true": plain HTTP, as oci+http://), "mount-from"
// (comma-separated repositories of the same registry to mount blobs from),
// "chunk-size" (upload large files in chunks of this many bytes, each retried
// on its own, instead of one streamed request), "lease-ttl" and "lease-settle"
// (Go durations). Credentials come from the Docker configuration
// (~/.docker/config.json, DOCKER_CONFIG, credential helpers). Open does not
// contact the registry; the first operation does.
func Open(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
	b, err := open(cfg, os.Getenv(MountFromEnv))
	if err != nil {
		return nil, err
	}
	// Retries and lease events reach the host's log (mirror -v) when this
	// runs as a plugin.
	b.log = serve.Logger("backend-oci")
	return b, nil
}

// repoPattern is the distribution spec's repository name grammar.
var repoPattern = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

func open(cfg sdk.Config, mountEnv string) (*Backend, error) {
	addr := cfg.Address
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("open oci backend %s: %s: %w", redact(addr), fmt.Sprintf(format, args...), fs.ErrInvalid)
	}
	var rest string
	insecure := false
	switch {
	case strings.HasPrefix(addr, "oci://"):
		rest = strings.TrimPrefix(addr, "oci://")
	case strings.HasPrefix(addr, "oci+http://"):
		rest, insecure = strings.TrimPrefix(addr, "oci+http://"), true
	default:
		return nil, invalid("want oci://REGISTRY/REPO or oci+http://REGISTRY/REPO")
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, invalid("an address takes no query or fragment; pass settings as options")
	}
	host, repoPath, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return nil, invalid("credentials do not go in the address; run `docker login` instead")
	}
	repoPath = strings.TrimSuffix(repoPath, "/")
	if host == "" || repoPath == "" {
		return nil, invalid("want oci://REGISTRY/REPO, with a repository")
	}
	if !repoPattern.MatchString(repoPath) || len(repoPath) > 255 {
		return nil, invalid("repository %q is not a valid name (lowercase letters, digits, separators . _ - and /)", repoPath)
	}
	// An option nobody reads is most likely misspelt: refuse it rather
	// than run with a default the user meant to change.
	known := []string{"chunk-size", "insecure", "lease-settle", "lease-ttl", "mount-from"}
	var unknown []string
	for k := range cfg.Options {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, invalid("unknown option %s; the oci backend knows %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	switch v := cfg.Options["insecure"]; v {
	case "", "false":
	case "true":
		insecure = true
	default:
		return nil, invalid("option insecure=%q: want true or false", v)
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, invalid("registry %q: %v", host, err)
	}
	b := &Backend{
		leaseTTL:    DefaultLeaseTTL,
		leaseSettle: DefaultLeaseSettle,
		log:         hclog.NewNullLogger(),
		sleep:       sleepContext,
		now:         time.Now,
		keyLocks:    map[string]*keyLock{},
		sems:        map[string]chan struct{}{},
		held:        map[string]*heldLease{},
	}
	if v := cfg.Options["chunk-size"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 {
			return nil, invalid("option chunk-size=%q: want a number of bytes, at least 1024", v)
		}
		b.chunkSize = n
	}
	for _, o := range []struct {
		name string
		dst  *time.Duration
	}{{"lease-ttl", &b.leaseTTL}, {"lease-settle", &b.leaseSettle}} {
		if v := cfg.Options[o.name]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, invalid("option %s=%q: want a duration such as 30s", o.name, v)
			}
			*o.dst = d
		}
	}
	if b.leaseSettle*3 > b.leaseTTL {
		return nil, invalid("lease-settle %v must be at most a third of lease-ttl %v", b.leaseSettle, b.leaseTTL)
	}
	var mountFrom []name.Repository
	for _, list := range []string{cfg.Options["mount-from"], mountEnv} {
		for _, m := range strings.Split(list, ",") {
			m = strings.TrimSpace(m)
			m = strings.TrimPrefix(strings.TrimPrefix(m, "oci://"), "oci+http://")
			m = strings.TrimPrefix(m, host+"/")
			if m == "" || m == repoPath {
				continue
			}
			if !repoPattern.MatchString(m) {
				return nil, invalid("mount-from repository %q is not a valid name", m)
			}
			mountFrom = append(mountFrom, reg.Repo(m))
		}
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Uploads of many chunks and parallel List fetches reuse connections.
	base.MaxIdleConnsPerHost = 16
	var inner http.RoundTripper = base
	if !insecure {
		inner = httpsGuard{inner}
	}
	rt := &retryTransport{inner: inner, attempts: retryAttempts}
	rt.sleep = func(ctx context.Context, d time.Duration) error { return b.sleep(ctx, d) }
	rt.onRetry = func(req *http.Request, status int, err error, wait time.Duration) {
		b.log.Debug("retrying registry request", "method", req.Method, "host", req.URL.Host, "status", status, "error", err, "wait", wait)
	}
	b.c = &client{
		repo:      reg.Repo(repoPath),
		host:      reg.RegistryStr(),
		insecure:  insecure,
		keychain:  authn.DefaultKeychain,
		mountFrom: mountFrom,
		retry:     rt,
		pool:      base,
	}
	return b, nil
}

// redact hides credentials someone put in an address, so they never reach
// a message.
func redact(addr string) string {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return addr
	}
	host, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(host, "@"); i >= 0 {
		return scheme + "://***@" + host[i+1:] + "/" + path
	}
	return addr
}

// SetLogger sets where the backend logs retries and lease events; the
// default discards them.
func (b *Backend) SetLogger(l hclog.Logger) { b.log = l }

// Repository returns the repository the mirror is in, REGISTRY/REPO.
func (b *Backend) Repository() string { return b.c.repo.Name() }

// Capabilities reports a writable backend that lists, deletes, locks,
// compares-and-swaps and stages. Locking and compare-and-swap are emulated
// (see the package comment): the core's publish takes the lock and then
// relies on IfMatch for the timestamp, and IfMatch is atomic among lock
// holders. Staging is native: a blob uploaded and not yet tagged.
func (b *Backend) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{Write: true, List: true, Delete: true, ConditionalPut: true, Lock: true, Stage: true}, nil
}

// Close releases the leases this value holds and its idle connections.
// Operations after Close fail with an error wrapping fs.ErrClosed.
func (b *Backend) Close() error {
	b.leaseMu.Lock()
	b.closed = true
	b.leaseMu.Unlock()
	var errs []error
	for _, h := range b.heldLeases() {
		errs = append(errs, h.unlock())
	}
	b.c.closeIdle()
	return errors.Join(errs...)
}

func (b *Backend) checkOpen(op, key string) error {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	if b.closed {
		return fmt.Errorf("%s %s: %w", op, key, fs.ErrClosed)
	}
	return nil
}

// manifestAccept lists what a manifest GET accepts: ours, and whatever else
// could sit on a tag, so a foreign tag is recognized rather than refused.
var manifestAccept = strings.Join([]string{
	string(types.OCIManifestSchema1), string(types.OCIImageIndex),
	string(types.DockerManifestSchema2), string(types.DockerManifestList),
}, ", ")

// getManifest fetches the manifest under tag; a missing one is
// sdk.ErrNotFound.
func (b *Backend) getManifest(ctx context.Context, tag string) ([]byte, error) {
	h := http.Header{}
	h.Set("Accept", manifestAccept)
	resp, err := b.c.do(ctx, request{method: http.MethodGet, url: b.c.url("manifests/" + tag), header: h})
	if err != nil {
		return nil, err
	}
	if err := b.c.expect(resp, http.StatusOK); err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("registry %s: read manifest: %w", b.c.host, err)
	}
	if len(body) > maxManifestSize {
		return nil, fmt.Errorf("registry %s: manifest %s is over %d bytes", b.c.host, tag, maxManifestSize)
	}
	return body, nil
}

// stat reads key's manifest.
func (b *Backend) stat(ctx context.Context, op, key string) (fileObject, error) {
	body, err := b.getManifest(ctx, TagForKey(key))
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return fileObject{}, fmt.Errorf("%s %s: not in %s: %w", op, key, b.c.repo.Name(), sdk.ErrNotFound)
		}
		return fileObject{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	obj, err := parseFileManifest(key, body)
	if err != nil {
		return fileObject{}, fmt.Errorf("%s %s: tag %s of %s holds no mirror file: %v: %w", op, key, TagForKey(key), b.c.repo.Name(), err, sdk.ErrNotFound)
	}
	return obj, nil
}

// Stat returns the object's info: its size from the manifest's layer, the
// manifest digest as ETag, and the time of the Put. A missing key is
// sdk.ErrNotFound; an invalid key or one under keys/ wraps fs.ErrInvalid.
func (b *Backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := checkKey("stat", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := b.checkOpen("stat", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	obj, err := b.stat(ctx, "stat", key)
	return obj.info, err
}

// Get streams the object's blob. The reader checks the size and sha256
// named by the manifest as it goes and fails with sdk.ErrIntegrity on a
// mismatch, so a damaged registry never passes a file off as whole. When
// the caller checks the content against signed hashes itself
// (sdk.CallerVerifies: an install, a clone), the sha256 here would only
// repeat that check, on the same cores, and is skipped; the size check
// stays.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := checkKey("get", key); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	if err := b.checkOpen("get", key); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	obj, err := b.stat(ctx, "get", key)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	resp, err := b.c.do(ctx, request{method: http.MethodGet, url: b.c.url("blobs/" + obj.blob.String())})
	if err != nil {
		return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	if err := b.c.expect(resp, http.StatusOK); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: the manifest is there but blob %s is missing: %w", key, obj.blob, err)
		}
		return nil, sdk.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	r := &blobReader{body: resp.Body, key: key, want: obj.blob, size: obj.info.Size}
	if !sdk.CallerVerifies(ctx) {
		r.h = sha256.New()
	}
	return r, obj.info, nil
}

// Put stores r under key: the blob first, checked against opts, then the
// manifest under the key's tag, which is the atomic step. IfNoneMatch and
// IfMatch are checked before the upload (to fail early) and again just
// before the tag moves. With opts.Staged the blob is one Stage uploaded:
// r is not read, and the Put fails with sdk.ErrNotFound when the
// repository does not have the blob.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := checkKey("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := checkPutOptions("put "+key, opts); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := b.checkOpen("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := b.leaseHealthy("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	conditional := opts.IfMatch != "" || opts.IfNoneMatch
	if conditional {
		unlock, err := b.lockKey(ctx, key)
		if err != nil {
			return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
		}
		defer unlock()
		if err := b.checkCondition(ctx, key, opts); err != nil {
			return sdk.ObjectInfo{}, err
		}
	}
	var bl blob
	var err error
	if opts.Staged {
		bl, err = b.stagedBlob(ctx, key, opts)
	} else {
		bl, err = b.putBlob(ctx, "put "+key, r, opts)
	}
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	return b.tagBlob(ctx, key, bl, opts)
}

// tagBlob makes key name bl, a blob the repository has: it pushes the
// key's manifest under its tag, once the conditions of opts still hold
// and the lease is still ours. It is the commit of every Put, staged or
// not; a conditional caller holds the key's in-process lock.
func (b *Backend) tagBlob(ctx context.Context, key string, bl blob, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	now := b.now().UTC().Round(0)
	body := fileManifest(key, bl.digest, bl.size, now)
	if opts.IfMatch != "" || opts.IfNoneMatch {
		if err := b.checkCondition(ctx, key, opts); err != nil {
			return sdk.ObjectInfo{}, err
		}
	}
	if err := b.leaseHealthy("put", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	if err := b.putManifest(ctx, TagForKey(key), body); err != nil {
		return sdk.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	return sdk.ObjectInfo{Key: key, Size: bl.size, ETag: manifestDigest(body), ModTime: now}, nil
}

// Stage uploads r as a blob of the repository, checked against opts as
// Put checks it, and returns its sha256: the upload of a Put, without the
// manifest and the tag. It takes no lease and needs none, since an untagged
// blob is invisible to Stat, Get and List; a later Put with
// PutOptions.Staged tags it, and the registry's garbage collection removes
// it if none does. Given opts.SHA256, a blob the repository already has,
// or can mount, is not uploaded again.
func (b *Backend) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	if opts.IfMatch != "" || opts.IfNoneMatch || opts.Staged {
		return "", fmt.Errorf("stage: IfMatch, IfNoneMatch and Staged do not apply to staging: %w", fs.ErrInvalid)
	}
	if err := checkPutOptions("stage", opts); err != nil {
		return "", err
	}
	if err := b.checkOpen("stage", "blob"); err != nil {
		return "", err
	}
	bl, err := b.putBlob(ctx, "stage", r, opts)
	if err != nil {
		return "", err
	}
	return bl.digest.Hex, nil
}

// stagedBlob finds the blob a Put with opts.Staged names: the repository
// must have it, at opts.Size bytes. Missing is sdk.ErrNotFound, the
// caller's cue to Put the bytes (which also tries mounting it).
func (b *Backend) stagedBlob(ctx context.Context, key string, opts sdk.PutOptions) (blob, error) {
	d := v1.Hash{Algorithm: "sha256", Hex: opts.SHA256}
	size, ok, err := b.blobSize(ctx, b.c.url("blobs/"+d.String()))
	switch {
	case err != nil:
		return blob{}, fmt.Errorf("put %s: %w", key, err)
	case !ok:
		return blob{}, fmt.Errorf("put %s: blob %s was not staged in %s: %w", key, d, b.c.repo.Name(), sdk.ErrNotFound)
	case size >= 0 && size != opts.Size:
		return blob{}, fmt.Errorf("put %s: the staged blob %s has %d bytes, want %d: %w", key, d, size, opts.Size, sdk.ErrIntegrity)
	}
	return blob{digest: d, size: opts.Size}, nil
}

// checkPutOptions refuses options that cannot be right whatever is stored;
// op ("put KEY" or "stage") leads the error.
func checkPutOptions(op string, opts sdk.PutOptions) error {
	switch {
	case opts.IfMatch != "" && opts.IfNoneMatch:
		return fmt.Errorf("%s: IfMatch and IfNoneMatch together: %w", op, fs.ErrInvalid)
	case opts.SizeKnown && opts.Size < 0:
		return fmt.Errorf("%s: negative size %d: %w", op, opts.Size, fs.ErrInvalid)
	case opts.SHA256 != "" && (len(opts.SHA256) != 64 || !isLowerHex(opts.SHA256)):
		return fmt.Errorf("%s: sha256 %q is not 64 lowercase hex digits: %w", op, opts.SHA256, fs.ErrInvalid)
	case opts.Staged && (opts.SHA256 == "" || !opts.SizeKnown):
		return fmt.Errorf("%s: a staged put needs the content's sha256 and size: %w", op, fs.ErrInvalid)
	}
	return nil
}

// checkCondition compares the key's current manifest with opts.
func (b *Backend) checkCondition(ctx context.Context, key string, opts sdk.PutOptions) error {
	obj, err := b.stat(ctx, "put", key)
	exists := err == nil
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return err
	}
	switch {
	case opts.IfNoneMatch && exists:
		return fmt.Errorf("put %s: create-only, and the key exists: %w", key, sdk.ErrExist)
	case opts.IfMatch != "" && !exists:
		return fmt.Errorf("put %s: expected ETag %s, and the key is gone: %w", key, opts.IfMatch, sdk.ErrConflict)
	case opts.IfMatch != "" && obj.info.ETag != opts.IfMatch:
		return fmt.Errorf("put %s: expected ETag %s, found %s: %w", key, opts.IfMatch, obj.info.ETag, sdk.ErrConflict)
	}
	return nil
}

// ensureEmpty puts the empty config blob "{}" in the repository once.
func (b *Backend) ensureEmpty(ctx context.Context) error {
	b.emptyMu.Lock()
	defer b.emptyMu.Unlock()
	if b.emptyOK {
		return nil
	}
	ok, err := b.hasBlob(ctx, b.c.url("blobs/"+emptyDigest.String()))
	if err != nil {
		return err
	}
	if !ok {
		_, loc, err := b.postUpload(ctx, b.c.url("blobs/uploads/"))
		if err != nil {
			return err
		}
		if err := b.finishUpload(ctx, loc, emptyDigest, 0, []byte(emptyJSON)); err != nil {
			return err
		}
	}
	b.emptyOK = true
	return nil
}

// putManifest pushes a manifest under tag: the atomic step of every write.
func (b *Backend) putManifest(ctx context.Context, tag string, body []byte) error {
	for attempt := 0; ; attempt++ {
		if err := b.ensureEmpty(ctx); err != nil {
			return err
		}
		h := http.Header{}
		h.Set("Content-Type", string(types.OCIManifestSchema1))
		resp, err := b.c.do(ctx, request{method: http.MethodPut, url: b.c.url("manifests/" + tag), header: h, body: body})
		if err != nil {
			return fmt.Errorf("tag %s: %w", tag, err)
		}
		err = b.c.expect(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		// The repository lost the empty blob (garbage collection, or it was
		// deleted and made again): put it back once.
		if attempt == 0 && strings.Contains(err.Error(), string(transport.ManifestBlobUnknownErrorCode)) {
			b.emptyMu.Lock()
			b.emptyOK = false
			b.emptyMu.Unlock()
			continue
		}
		return fmt.Errorf("tag %s: %w", tag, err)
	}
}

// List calls fn for every key under prefix, in key order. The registry's
// tag list is the index: each tag is decoded back to its key (a hashed tag
// through its manifest) and each matching key's manifest is read for its
// size and ETag, several at a time. Tags this backend did not write are
// skipped.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	if err := b.checkOpen("list", prefix); err != nil {
		return err
	}
	tags, err := b.tags(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", b.c.repo.Name(), err)
	}
	type candidate struct {
		tag, key string // key is "" for a hashed tag
	}
	var cands []candidate
	for _, tag := range tags {
		key, kind := parseTag(tag)
		switch {
		case kind == tagKey && strings.HasPrefix(key, prefix):
			cands = append(cands, candidate{tag, key})
		case kind == tagHashed:
			cands = append(cands, candidate{tag, ""})
		}
	}
	infos := make([]*sdk.ObjectInfo, len(cands))
	errs := make([]error, len(cands))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(listWorkers, len(cands)) {
		wg.Go(func() {
			for i := range next {
				c := cands[i]
				body, err := b.getManifest(ctx, c.tag)
				if errors.Is(err, sdk.ErrNotFound) {
					continue // deleted since the tag list
				}
				if err != nil {
					errs[i] = err
					cancel()
					continue
				}
				key := c.key
				if key == "" {
					key = keyOfManifest(body)
					if validKey(key) != nil || TagForKey(key) != c.tag || !strings.HasPrefix(key, prefix) {
						continue
					}
				}
				if obj, err := parseFileManifest(key, body); err == nil {
					infos[i] = &obj.info
				}
			}
		})
	}
feed:
	for i := range cands {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("list %s: %w", b.c.repo.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", b.c.repo.Name(), err)
	}
	var out []sdk.ObjectInfo
	for _, in := range infos {
		if in != nil {
			out = append(out, *in)
		}
	}
	slices.SortFunc(out, func(a, b sdk.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, in := range out {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// tagPage is the number of tags asked for per tag-list request; a variable
// so tests can make pages small.
var tagPage = 1000

// tags returns every tag of the repository, following the pagination (the
// Link header, else the last tag of a full page). A repository that does not
// exist yet has none.
func (b *Backend) tags(ctx context.Context) ([]string, error) {
	var all []string
	seen := map[string]bool{}
	u := b.c.url("tags/list") + "?n=" + strconv.Itoa(tagPage)
	for {
		resp, err := b.c.do(ctx, request{method: http.MethodGet, url: u})
		if err != nil {
			return nil, err
		}
		if err := b.c.expect(resp, http.StatusOK); err != nil {
			if errors.Is(err, sdk.ErrNotFound) {
				return all, nil
			}
			return nil, err
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("registry %s: read the tag list: %v", b.c.host, err)
		}
		// A registry that ignores n and last (distribution 2.8 does) sends
		// every tag each time: stop when a page brings nothing new.
		added := 0
		for _, t := range page.Tags {
			if !seen[t] {
				seen[t] = true
				all = append(all, t)
				added++
			}
		}
		if added == 0 {
			return all, nil
		}
		link := nextLink(resp)
		switch {
		case link != "":
			nu, err := resp.Request.URL.Parse(link)
			if err != nil {
				return nil, fmt.Errorf("registry %s: tag list link %q: %v", b.c.host, link, err)
			}
			if nu.String() == u {
				return all, nil
			}
			u = nu.String()
		case len(page.Tags) >= tagPage:
			// No Link header, but a full page: ask for what follows.
			u = b.c.url("tags/list") + "?n=" + strconv.Itoa(tagPage) + "&last=" + url.QueryEscape(page.Tags[len(page.Tags)-1])
		default:
			return all, nil
		}
	}
}

// nextLink returns the target of a Link: <...>; rel="next" header.
func nextLink(resp *http.Response) string {
	for _, l := range resp.Header.Values("Link") {
		target, params, ok := strings.Cut(l, ";")
		if ok && strings.Contains(params, `rel="next"`) {
			return strings.Trim(strings.TrimSpace(target), "<>")
		}
	}
	return ""
}

// Delete removes the key's tag. A registry that refuses deletes (many
// hosted ones do, and distribution unless storage.delete.enabled is set)
// gives sdk.ErrUnsupported. The blob stays until the registry's garbage
// collection: other keys or mirrors may share it.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	if err := b.checkOpen("delete", key); err != nil {
		return err
	}
	if err := b.leaseHealthy("delete", key); err != nil {
		return err
	}
	unlock, err := b.lockKey(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	defer unlock()
	obj, err := b.stat(ctx, "delete", key)
	if err != nil {
		return err
	}
	if err := b.deleteManifest(ctx, TagForKey(key), obj.info.ETag); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// deleteManifest deletes by tag (OCI 1.1) and, where the registry does not
// know that, by digest (distribution 2.8): the manifest is this key's alone,
// since it names the key and the time of its Put.
func (b *Backend) deleteManifest(ctx context.Context, tag, digest string) error {
	resp, err := b.c.do(ctx, request{method: http.MethodDelete, url: b.c.url("manifests/" + tag)})
	if err != nil {
		return err
	}
	err = b.c.expect(resp, http.StatusAccepted, http.StatusOK, http.StatusNoContent)
	if err == nil {
		resp.Body.Close()
		return nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return err
	}
	resp, err = b.c.do(ctx, request{method: http.MethodDelete, url: b.c.url("manifests/" + digest)})
	if err != nil {
		return err
	}
	err = b.c.expect(resp, http.StatusAccepted, http.StatusOK, http.StatusNoContent)
	if errors.Is(err, sdk.ErrUnsupported) {
		return fmt.Errorf("registry %s refuses to delete manifests (distribution needs storage.delete.enabled: true): %w", b.c.host, sdk.ErrUnsupported)
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// keyLock serializes the conditional writes of one key in this process.
type keyLock struct {
	ch   chan struct{}
	refs int
}

// lockKey takes the key's in-process lock, waiting until ctx is done.
func (b *Backend) lockKey(ctx context.Context, key string) (func(), error) {
	b.keyMu.Lock()
	l := b.keyLocks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		b.keyLocks[key] = l
	}
	l.refs++
	b.keyMu.Unlock()
	release := func() {
		b.keyMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(b.keyLocks, key)
		}
		b.keyMu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// randomID returns 16 random bytes in hex.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
