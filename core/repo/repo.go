// Package repo is a verified read view of a mirror kept on any sdk.Backend.
// It fetches manifests in the client's order, each capped by the length the
// chain of trust signed for it, feeds them to core/trust, and keeps the
// locally trusted state so that a later run can detect a rollback.
package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// DefaultMaxRootSteps is how many new roots one Open follows when
// Options.MaxRootSteps is zero: go-tuf's and python-tuf's cap. Each root is
// saved as it is trusted, so a longer chain is walked over several runs.
const DefaultMaxRootSteps = 256

// Options configure Open.
type Options struct {
	// Anchor is the root the caller trusts when Store holds none yet (the
	// stock client's bin/root.json).
	Anchor []byte
	// Store keeps the trusted manifests between runs; nil keeps nothing, so
	// the only rollback protection is the anchor.
	Store Store
	// Clock tells the time for expiry checks.
	Clock trust.Clock
	// MaxRootSteps caps the new roots one Open follows; zero means
	// DefaultMaxRootSteps. An endless chain of valid roots would otherwise
	// keep a client busy forever.
	MaxRootSteps int
}

// Repo is a mirror whose timestamp, snapshot, root chain and index have been
// verified. Component manifests and tarballs are verified as they are read.
type Repo struct {
	backend  sdk.Backend
	state    *trust.State
	store    Store
	maxSteps int
}

// Open verifies the mirror's current state (spec §5, in TUF's order: the
// root chain first, then timestamp, snapshot and index) and saves what it
// trusted to the store.
func Open(ctx context.Context, b sdk.Backend, opts Options) (*Repo, error) {
	store := opts.Store
	if store == nil {
		store = MemStore{}
	}
	anchor, repaired, err := trustedRoot(store)
	if errors.Is(err, fs.ErrNotExist) {
		anchor = opts.Anchor
	} else if err != nil {
		return nil, err
	}
	if len(anchor) == 0 {
		return nil, fmt.Errorf("open mirror: no trusted root; run `mirror set ADDRESS` or pass --root")
	}
	st, err := trust.New(anchor, opts.Clock)
	if err != nil {
		return nil, fmt.Errorf("load trusted root: %w", err)
	}
	if repaired {
		if err := store.Save("root.json", anchor); err != nil {
			return nil, err
		}
	}
	r := &Repo{backend: b, state: st, store: store, maxSteps: opts.MaxRootSteps}
	if r.maxSteps <= 0 {
		r.maxSteps = DefaultMaxRootSteps
	}
	if err := r.update(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// trustedRoot loads the newest root the store trusted: root.json, or, when
// that is missing while N.root.json files are there (deleted by hand, or a
// store written by another client), the newest of those. Falling back to
// the caller's older anchor instead would trust again keys that a rotation
// retired (TiUP falls back to bin/root.json).
//
// repaired reports the fallback, so that root.json is saved again once
// the root verifies.
func trustedRoot(store Store) (b []byte, repaired bool, err error) {
	b, err = store.Load("root.json")
	if !errors.Is(err, fs.ErrNotExist) {
		return b, false, err
	}
	var newest []byte
	for n := uint64(2); ; n++ {
		nb, nerr := store.Load(manifest.VersionedName(n, "root"))
		if nerr != nil {
			break
		}
		newest = nb
	}
	if newest == nil {
		return nil, false, err
	}
	return newest, true, nil
}

// State returns the verified metadata.
func (r *Repo) State() *trust.State { return r.state }

// Index returns the verified index.
func (r *Repo) Index() *manifest.Index { return r.state.Index }

// Backend returns the backend the repo reads.
func (r *Repo) Backend() sdk.Backend { return r.backend }

func (r *Repo) update(ctx context.Context) error {
	if err := r.updateRoot(ctx); err != nil {
		return err
	}
	if err := r.state.CheckRootExpiry(); err != nil {
		return err
	}
	prevTS, prevSnap := r.trustedBefore()
	// A reader racing a writer can pair the old timestamp with the new
	// snapshot (the file names are not versioned): one refetch of both
	// settles that, and a mismatch that persists is an attack.
	for attempt := 1; ; attempt++ {
		b, err := r.fetch(ctx, "timestamp.json", manifest.MaxTimestampSize)
		if err != nil {
			return err
		}
		if err := r.state.UpdateTimestamp(b, prevTS); err != nil {
			return err
		}
		b, err = r.fetch(ctx, "snapshot.json", r.state.SnapshotLength())
		if err == nil {
			err = r.state.UpdateSnapshot(b, prevSnap)
		}
		var he *trust.HashError
		if err != nil && attempt == 1 && errors.As(err, &he) {
			prevTS = max(prevTS, r.state.Timestamp.Version)
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if r.state.RootBehind() {
		return trust.Errorf(trust.ClassRootChain, "snapshot.json names root version %d, but the mirror has no %s",
			r.state.Snapshot.Meta["/root.json"].Version, manifest.VersionedName(r.state.Root.Version+1, "root"))
	}
	fv, _ := r.state.Meta("index")
	b, err := r.fetch(ctx, manifest.VersionedName(fv.Version, "index"), fv.Length)
	if err != nil {
		return err
	}
	if err := r.state.UpdateIndex(b); err != nil {
		return err
	}
	// The snapshot is saved before the timestamp, as the stock client does,
	// so a crash between the two leaves a state that re-verifies. The raw
	// bytes are saved, never a re-encoding, so they verify again as served.
	for _, s := range []struct {
		name string
		b    []byte
	}{{"snapshot.json", r.state.SnapshotBytes}, {"timestamp.json", r.state.TimestampBytes}, {"index.json", r.state.IndexBytes}} {
		if err := r.store.Save(s.name, s.b); err != nil {
			return err
		}
	}
	return nil
}

// updateRoot follows the root chain, at most maxSteps roots, and saves each
// new root as N.root.json and as root.json as soon as it is trusted (spec
// 5.3.8): a run that fails later, or stops at the cap, leaves the next run
// to continue from there instead of walking again from an older root.
func (r *Repo) updateRoot(ctx context.Context) error {
	steps := 0
	_, err := FollowRootChain(ctx, r.backend, r.state, func(name string, data []byte) error {
		if err := r.store.Save(name, data); err != nil {
			return err
		}
		if err := r.store.Save("root.json", data); err != nil {
			return err
		}
		steps++
		if steps >= r.maxSteps {
			return errChainCap
		}
		return nil
	})
	if errors.Is(err, errChainCap) {
		if _, _, ferr := ReadCapped(ctx, r.backend, manifest.VersionedName(r.state.Root.Version+1, "root"), manifest.MaxRootSize); ferr == nil {
			return trust.Errorf(trust.ClassRootChain, "the root chain goes on past root version %d after %d new roots in one run; run again to continue", r.state.Root.Version, steps)
		}
		return nil
	}
	return err
}

// errChainCap stops FollowRootChain at the step cap.
var errChainCap = errors.New("root chain step cap")

// FollowRootChain moves st along N.root.json from its trusted version until
// the mirror has no next one; each step needs both the old and the new
// threshold (trust.State.UpdateRoot). saved, when not nil, is given each new
// root as it is trusted. It reports whether the root changed.
func FollowRootChain(ctx context.Context, b sdk.Backend, st *trust.State, saved func(name string, data []byte) error) (bool, error) {
	changed := false
	for {
		name := manifest.VersionedName(st.Root.Version+1, "root")
		data, _, err := ReadCapped(ctx, b, name, manifest.MaxRootSize)
		if errors.Is(err, fs.ErrNotExist) {
			return changed, nil
		}
		if err != nil {
			return changed, err
		}
		if err := st.UpdateRoot(data); err != nil {
			return changed, err
		}
		changed = true
		if saved != nil {
			if err := saved(name, data); err != nil {
				return changed, err
			}
		}
	}
}

// trustedBefore returns what the store trusted on an earlier run, for the
// rollback checks. A saved timestamp or snapshot counts only while it still
// verifies with the keys of the role in the current root: after a rotation
// of that role's keys it is discarded (spec 5.3.11), which is how a client
// recovers from a timestamp fast-forwarded with a compromised key. An
// expired or unreadable file does not make it count less: expiry never
// lifts the rollback check, and an unreadable one is absent (the decision
// recorded for LS-1 in docs/security.md).
func (r *Repo) trustedBefore() (uint64, *manifest.Snapshot) {
	var tsVersion uint64
	var ts manifest.Timestamp
	if r.loadTrusted("timestamp.json", manifest.RoleTimestamp, &ts) {
		tsVersion = ts.Version
	}
	var snap manifest.Snapshot
	if r.loadTrusted("snapshot.json", manifest.RoleSnapshot, &snap) {
		return tsVersion, &snap
	}
	return tsVersion, nil
}

func (r *Repo) loadTrusted(name, role string, v manifest.Signed) bool {
	b, err := r.store.Load(name)
	if err != nil {
		return false
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil || env.Decode(v) != nil {
		return false
	}
	return r.state.Role(role).Verify(name, env) == nil
}

// Component returns the verified newest manifest of a component, and its raw
// bytes. Components yanked in the index count as unknown unless
// includeYanked is set (spec §3.2). An expired manifest is returned with an
// *trust.ExpiredError.
func (r *Repo) Component(ctx context.Context, id string, includeYanked bool) (*manifest.Component, []byte, error) {
	item, ok := r.state.Index.Components[id]
	if !ok || (item.Yanked && !includeYanked) {
		return nil, nil, fmt.Errorf("component %s: %w in the mirror", id, fs.ErrNotExist)
	}
	fv, ok := r.state.Meta(id)
	if !ok {
		return nil, nil, fmt.Errorf("%w: component %s is in the index but not in the snapshot", trust.ErrUntrusted, id)
	}
	name := manifest.VersionedName(fv.Version, id)
	b, err := r.fetch(ctx, name, fv.Length)
	if err != nil {
		return nil, nil, err
	}
	c, err := r.state.VerifyComponent(id, b)
	return c, b, err
}

// fetch reads a whole small object, refusing more than max bytes.
func (r *Repo) fetch(ctx context.Context, key string, max uint64) ([]byte, error) {
	b, _, err := ReadCapped(ctx, r.backend, key, max)
	return b, err
}

// ReadCapped reads a whole small object (a manifest), refusing more than max
// bytes: it never reads past max+1, so an endless answer cannot exhaust
// memory.
func ReadCapped(ctx context.Context, b sdk.Backend, key string, max uint64) ([]byte, sdk.ObjectInfo, error) {
	rc, info, err := b.Get(ctx, key)
	if err != nil {
		return nil, info, &FetchError{Key: key, Err: err}
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, int64(max)+1))
	if err != nil {
		return nil, info, &FetchError{Key: key, Err: err}
	}
	if err := trust.CheckLength(key, uint64(len(data)), max); err != nil {
		return nil, info, err
	}
	return data, info, nil
}

// OpenTarball opens a component tarball through a reader that refuses to
// read past the signed length and checks length and hashes at EOF: the last
// Read returns a *trust.HashError instead of io.EOF when they differ. On a
// backend of local files it reads the file directly (the fast path).
func (r *Repo) OpenTarball(ctx context.Context, item manifest.VersionItem) (*Verifier, error) {
	key, err := TarballKey(item.URL)
	if err != nil {
		return nil, err
	}
	// The Verifier checks every byte against the signed hashes, so the
	// backend need not hash them too.
	rc, err := OpenObject(sdk.WithCallerVerifies(ctx), r.backend, key)
	if err != nil {
		return nil, err
	}
	return NewVerifier(rc, key, item.Length, item.Hashes), nil
}

// TarballKey returns the object key of a tarball URL from a component
// manifest. TiUP always writes "/" and one file name; anything else (a
// directory, "..", an escape, another host, a backslash) is refused, so an
// owner's manifest cannot point the client outside the mirror.
func TarballKey(url string) (string, error) {
	key, ok := strings.CutPrefix(url, "/")
	valid := ok && key != "" && key != "." && key != ".." && len(key) <= 255
	for i := 0; valid && i < len(key); i++ {
		c := key[i]
		valid = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '+'
	}
	if !valid {
		return "", trust.Errorf(trust.ClassUnsafePath, "tarball url %q is not one file name at the top of the mirror", url)
	}
	return key, nil
}

// FetchError is a failure to fetch an object at all (the network, the
// storage or the plugin failed), as opposed to a verification failure of
// what was fetched. It does not wrap trust.ErrUntrusted.
type FetchError struct {
	Key string
	Err error
}

func (e *FetchError) Error() string { return "read " + e.Key + ": " + e.Err.Error() }

// Unwrap returns the cause, so that errors.Is(err, fs.ErrNotExist) works.
func (e *FetchError) Unwrap() error { return e.Err }

// Class is trust.ClassTransport.
func (e *FetchError) Class() trust.Class { return trust.ClassTransport }

// OpenObject opens a stored object, taking the local-file fast path when the
// backend offers one.
func OpenObject(ctx context.Context, b sdk.Backend, key string) (io.ReadCloser, error) {
	if lf, ok := b.(sdk.LocalFiler); ok && localFiles(ctx, b) {
		path, err := lf.LocalPath(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FetchError{Key: key, Err: err}
		}
		if err == nil {
			if f, err := os.Open(path); err == nil {
				return f, nil
			}
		}
		// Any other failure falls back to streaming, which reports its own.
	}
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return nil, &FetchError{Key: key, Err: err}
	}
	return rc, nil
}

type capper interface{ Caps() sdk.Capabilities }

func localFiles(ctx context.Context, b sdk.Backend) bool {
	if c, ok := b.(capper); ok {
		return c.Caps().LocalFiles
	}
	caps, err := b.Capabilities(ctx)
	return err == nil && caps.LocalFiles
}
