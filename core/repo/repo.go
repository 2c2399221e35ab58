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

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

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
}

// Repo is a mirror whose timestamp, snapshot, root chain and index have been
// verified. Component manifests and tarballs are verified as they are read.
type Repo struct {
	backend sdk.Backend
	state   *trust.State
	store   Store
}

// Open verifies the mirror's current state (spec §5, in TUF's order: the
// root chain first, then timestamp, snapshot and index) and saves what it
// trusted to the store.
func Open(ctx context.Context, b sdk.Backend, opts Options) (*Repo, error) {
	store := opts.Store
	if store == nil {
		store = MemStore{}
	}
	anchor, err := store.Load("root.json")
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
	r := &Repo{backend: b, state: st, store: store}
	if err := r.update(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// State returns the verified metadata.
func (r *Repo) State() *trust.State { return r.state }

// Index returns the verified index.
func (r *Repo) Index() *manifest.Index { return r.state.Index }

// Backend returns the backend the repo reads.
func (r *Repo) Backend() sdk.Backend { return r.backend }

func (r *Repo) update(ctx context.Context) error {
	rootChanged, err := r.updateRoot(ctx)
	if err != nil {
		return err
	}
	if err := r.state.CheckRootExpiry(); err != nil {
		return err
	}
	prevTS, prevSnap := r.trustedBefore()
	b, err := r.fetch(ctx, "timestamp.json", manifest.MaxTimestampSize)
	if err != nil {
		return err
	}
	if err := r.state.UpdateTimestamp(b, prevTS); err != nil {
		return err
	}
	if b, err = r.fetch(ctx, "snapshot.json", r.state.SnapshotLength()); err != nil {
		return err
	}
	if err := r.state.UpdateSnapshot(b, prevSnap); err != nil {
		return err
	}
	if r.state.RootBehind() {
		return fmt.Errorf("%w: snapshot.json names root version %d, but the mirror has no %s",
			trust.ErrUntrusted, r.state.Snapshot.Meta["/root.json"].Version,
			manifest.VersionedName(r.state.Root.Version+1, "root"))
	}
	fv, _ := r.state.Meta("index")
	if b, err = r.fetch(ctx, manifest.VersionedName(fv.Version, "index"), fv.Length); err != nil {
		return err
	}
	if err := r.state.UpdateIndex(b); err != nil {
		return err
	}
	// The snapshot is saved before the timestamp, as the stock client does,
	// so a crash between the two leaves a state that re-verifies.
	saves := []struct {
		name string
		b    []byte
	}{{"snapshot.json", r.state.SnapshotBytes}, {"timestamp.json", r.state.TimestampBytes}, {"index.json", r.state.IndexBytes}}
	if rootChanged {
		saves = append([]struct {
			name string
			b    []byte
		}{{"root.json", r.state.RootBytes}}, saves...)
	}
	for _, s := range saves {
		if err := r.store.Save(s.name, s.b); err != nil {
			return err
		}
	}
	return nil
}

// updateRoot follows the root chain and saves each new root.
func (r *Repo) updateRoot(ctx context.Context) (bool, error) {
	return FollowRootChain(ctx, r.backend, r.state, r.store.Save)
}

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
		if saved != nil {
			if err := saved(name, data); err != nil {
				return changed, err
			}
		}
		changed = true
	}
}

// trustedBefore returns what the store trusted on an earlier run, for the
// rollback checks. The store holds only files that verified when saved.
func (r *Repo) trustedBefore() (uint64, *manifest.Snapshot) {
	var tsVersion uint64
	if b, err := r.store.Load("timestamp.json"); err == nil {
		var ts manifest.Timestamp
		if env, err := manifest.ParseEnvelope(b); err == nil && env.Decode(&ts) == nil {
			tsVersion = ts.Version
		}
	}
	var snap *manifest.Snapshot
	if b, err := r.store.Load("snapshot.json"); err == nil {
		var s manifest.Snapshot
		if env, err := manifest.ParseEnvelope(b); err == nil && env.Decode(&s) == nil {
			snap = &s
		}
	}
	return tsVersion, snap
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
		return nil, info, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, int64(max)+1))
	if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", key, err)
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
	key := item.URL
	if len(key) > 0 && key[0] == '/' {
		key = key[1:]
	}
	if !fs.ValidPath(key) || key == "." {
		return nil, fmt.Errorf("%w: tarball url %q is not a path inside the mirror", trust.ErrUntrusted, item.URL)
	}
	rc, err := OpenObject(ctx, r.backend, key)
	if err != nil {
		return nil, err
	}
	return NewVerifier(rc, key, item.Length, item.Hashes), nil
}

// OpenObject opens a stored object, taking the local-file fast path when the
// backend offers one.
func OpenObject(ctx context.Context, b sdk.Backend, key string) (io.ReadCloser, error) {
	if lf, ok := b.(sdk.LocalFiler); ok && localFiles(ctx, b) {
		path, err := lf.LocalPath(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", key, err)
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
		return nil, fmt.Errorf("read %s: %w", key, err)
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
