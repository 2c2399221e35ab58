// Package publish changes a mirror in transactions. A transaction reads the
// mirror's current verified state, lets the caller stage changes, and
// commits them in the order that keeps every reader safe (spec §6): new
// files (tarballs), then N.<component>.json, then N.index.json, then
// snapshot.json, then timestamp.json last. The timestamp is the commit
// point: it is written with compare-and-swap on the one read at the start,
// and writers hold the backend's lock, so a concurrent change is detected
// and the transaction is run again on the new state, never lost.
package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// ErrMissingKey reports that a role key needed to sign is not available.
var ErrMissingKey = errors.New("private key is missing")

// KeySource finds the signer of a mirror role key by key ID; it returns an
// error wrapping ErrMissingKey when it has none.
type KeySource interface {
	Signer(ctx context.Context, keyID string) (sdk.Signer, error)
}

// KeyPreparer is a KeySource that can get signers ready ahead of use, all at
// once (a signer plugin takes tens of milliseconds to start).
type KeyPreparer interface {
	Prepare(ctx context.Context, keyIDs []string)
}

// Writer commits transactions to one mirror.
type Writer struct {
	Backend sdk.Backend
	Keys    KeySource
	Clock   trust.Clock
	// Attempts bounds how often a transaction is run again after losing to
	// a concurrent writer; zero means 10, as stock tiup retries.
	Attempts int
	// BeforeCommitPoint, when set, runs just before timestamp.json is
	// written; tests use it to stand in for a crash or a rival writer.
	BeforeCommitPoint func(ctx context.Context) error
	// Ahead lists local files the transaction will add with AddFile (the
	// tarball being published). When the backend stages content (an
	// sdk.Stager reporting Capabilities.Stage, as an OCI registry does),
	// Update uploads them while it waits for the writer lock, and the
	// commit stores each with a Put that moves no data. A file that could
	// not be staged, or whose content is not what AddFile names, is
	// uploaded by the commit as usual.
	Ahead []string
}

// Txn is one transaction: the mirror's current state and the staged changes.
type Txn struct {
	w     *Writer
	state *trust.State
	now   time.Time

	// Index is the current index; callers change it in place and call
	// IndexChanged.
	Index        *manifest.Index
	indexChanged bool
	tsETag       string

	// SnapshotLifetime and TimestampLifetime, when non-zero, replace the
	// default lifetimes (manifest.LifetimeSnapshot, LifetimeTimestamp) the
	// commit renews snapshot.json and timestamp.json with, so that a mirror
	// nobody publishes to need not go stale after 30 days. Renewing still
	// never shortens an expiry.
	SnapshotLifetime  time.Duration
	TimestampLifetime time.Duration

	files []stagedFile
	comps map[string]*manifest.Envelope
	roots []*manifest.Envelope

	// recovered says begin found an interrupted commit: snapshot.json
	// newer than the timestamp (taken as the current snapshot), or a root
	// newer than the snapshot names.
	recovered bool

	// ahead holds the files of Writer.Ahead the backend has staged, by
	// path.
	ahead map[string]aheadBlob
}

type stagedFile struct {
	key  string
	path string // a local file to copy
	size int64
	sum  string // sha256 hex
}

// Update runs fn in a transaction and commits what it staged. fn may be run
// more than once: it must derive its changes from the Txn it is given.
// The files of w.Ahead are uploaded while the lock is being taken, where
// the backend can stage them (see Writer.Ahead).
func (w *Writer) Update(ctx context.Context, fn func(ctx context.Context, tx *Txn) error) error {
	ahead := w.uploadAhead(ctx)
	// Whatever ends the update, no upload outlives it.
	defer ahead.stop()
	unlock, err := w.Backend.Lock(ctx, "write")
	if err != nil && !errors.Is(err, sdk.ErrUnsupported) {
		return fmt.Errorf("lock mirror: %w", err)
	}
	if unlock != nil {
		defer unlock()
	}
	attempts := w.Attempts
	if attempts == 0 {
		attempts = 10
	}
	for i := 0; ; i++ {
		tx, err := w.begin(ctx)
		if err != nil {
			return err
		}
		if p, ok := w.Keys.(KeyPreparer); ok && i == 0 {
			p.Prepare(ctx, tx.signingKeyIDs())
		}
		if err := fn(ctx, tx); err != nil {
			if tx.recovered {
				// An earlier commit stopped between snapshot.json and
				// timestamp.json (clients refuse the mirror until a
				// timestamp pins that snapshot), or between a new root and
				// its snapshot. This transaction has nothing to add (or
				// was refused), but the earlier one must still be
				// finished, or the mirror stays half-committed until some
				// later write happens to commit.
				if cerr := tx.rollForward(ctx, unlock != nil); cerr != nil {
					return fmt.Errorf("%w; finishing an interrupted commit failed too: %v", err, cerr)
				}
			}
			return err
		}
		// The commit waits for the uploads ahead, rather than sending a
		// file a second time beside its staging.
		if tx.ahead, err = ahead.wait(ctx); err != nil {
			return err
		}
		err = tx.commit(ctx, unlock != nil)
		if !errors.Is(err, sdk.ErrConflict) || i+1 >= attempts {
			return err
		}
	}
}

// aheadBlob is a file staged ahead of the lock: the sha256 the backend
// computed of the bytes it read, and their number.
type aheadBlob struct {
	sum  string
	size int64
}

// aheadUploads is the staging of Writer.Ahead, running beside the lock.
type aheadUploads struct {
	cancel context.CancelFunc
	done   chan struct{}
	staged map[string]aheadBlob // complete once done is closed
}

// uploadAhead starts staging w.Ahead when the backend can stage. A file
// that fails to stage is left to the commit: the only error that counts is
// the caller's cancellation, which wait reports.
func (w *Writer) uploadAhead(ctx context.Context) *aheadUploads {
	a := &aheadUploads{cancel: func() {}, done: make(chan struct{})}
	st, ok := w.Backend.(sdk.Stager)
	if !ok || len(w.Ahead) == 0 {
		close(a.done)
		return a
	}
	if caps, err := w.Backend.Capabilities(ctx); err != nil || !caps.Stage {
		close(a.done)
		return a
	}
	sctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	paths := slices.Clone(w.Ahead)
	go func() {
		defer close(a.done)
		staged := map[string]aheadBlob{}
		for _, path := range paths {
			if sctx.Err() != nil {
				break
			}
			if b, err := stageFile(sctx, st, path); err == nil {
				staged[path] = b
			}
		}
		a.staged = staged
	}()
	return a
}

// stageFile stages the regular file at path, pinned to the size it has
// when opened.
func stageFile(ctx context.Context, st sdk.Stager, path string) (aheadBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return aheadBlob{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return aheadBlob{}, err
	}
	if !fi.Mode().IsRegular() {
		return aheadBlob{}, fmt.Errorf("stage %s: not a regular file", path)
	}
	sum, err := st.Stage(ctx, f, sdk.PutOptions{Size: fi.Size(), SizeKnown: true})
	if err != nil {
		return aheadBlob{}, err
	}
	return aheadBlob{sum: sum, size: fi.Size()}, nil
}

// wait returns the staged files once the staging is over, or the error of
// ctx when the caller gave up meanwhile.
func (a *aheadUploads) wait(ctx context.Context) (map[string]aheadBlob, error) {
	select {
	case <-a.done:
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("upload ahead of the writer lock: %w", err)
	}
	return a.staged, nil
}

// stop cancels the staging and waits for it to end, so that no file is
// read after Update returns.
func (a *aheadUploads) stop() {
	a.cancel()
	<-a.done
}

// begin reads and verifies the mirror as it is now. The writer trusts the
// mirror's own root.json (it holds the keys; this is not a client's trust
// decision) but still verifies every signature down from it, so it never
// builds on a tampered manifest.
func (w *Writer) begin(ctx context.Context) (*Txn, error) {
	anchor, _, err := w.read(ctx, "root.json", manifest.MaxRootSize)
	if err != nil {
		return nil, err
	}
	st, err := trust.New(anchor, w.Clock)
	if err != nil {
		return nil, err
	}
	st.AllowExpired = true
	if _, err := repo.FollowRootChain(ctx, w.Backend, st, nil); err != nil {
		return nil, err
	}
	tsBytes, tsInfo, err := w.read(ctx, "timestamp.json", manifest.MaxTimestampSize)
	if err != nil {
		return nil, err
	}
	if err := st.UpdateTimestamp(tsBytes, 0); err != nil {
		return nil, err
	}
	snapBytes, _, err := w.read(ctx, "snapshot.json", manifest.MaxRootSize)
	if err != nil {
		return nil, err
	}
	recovered := false
	if err := st.UpdateSnapshot(snapBytes, nil); err != nil {
		var he *trust.HashError
		if !errors.As(err, &he) {
			return nil, err
		}
		// An earlier commit stopped between snapshot and timestamp: roll
		// it forward.
		if err := st.RecoverSnapshot(snapBytes); err != nil {
			return nil, err
		}
		recovered = true
	}
	if st.Root.Version > st.Snapshot.Meta["/root.json"].Version {
		// A rotation stopped after writing N+1.root.json and before its
		// snapshot. Clients follow the root chain by probing N+1.root.json,
		// so some may trust that root already: it stays, and the next
		// commit names it in the snapshot.
		recovered = true
	}
	fv, _ := st.Meta("index")
	ixBytes, _, err := w.read(ctx, manifest.VersionedName(fv.Version, "index"), fv.Length)
	if err != nil {
		return nil, err
	}
	if err := st.UpdateIndex(ixBytes); err != nil {
		return nil, err
	}
	// The caller edits a copy, so a retry starts from the mirror again.
	var ix manifest.Index
	env, _ := manifest.ParseEnvelope(ixBytes)
	if err := env.Decode(&ix); err != nil {
		return nil, err
	}
	return &Txn{w: w, state: st, now: w.Clock().UTC().Truncate(time.Second), Index: &ix, tsETag: tsInfo.ETag, comps: map[string]*manifest.Envelope{}, recovered: recovered}, nil
}

// rollForward commits the recovered snapshot under a new timestamp with
// none of the transaction's own changes.
func (tx *Txn) rollForward(ctx context.Context, locked bool) error {
	clean := &Txn{w: tx.w, state: tx.state, now: tx.now, Index: tx.state.Index, tsETag: tx.tsETag, comps: map[string]*manifest.Envelope{}}
	return clean.commit(ctx, locked)
}

func (w *Writer) read(ctx context.Context, key string, max uint64) ([]byte, sdk.ObjectInfo, error) {
	return repo.ReadCapped(ctx, w.Backend, key, max)
}

// signingKeyIDs lists the keys of the roles a commit signs with.
func (tx *Txn) signingKeyIDs() []string {
	var ids []string
	for _, role := range []string{manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		for id := range tx.state.Root.Roles[role].Keys {
			ids = append(ids, id)
		}
	}
	return ids
}

// Now is the transaction's time, truncated to seconds as manifests store it.
func (tx *Txn) Now() time.Time { return tx.now }

// Root returns the newest root of the mirror.
func (tx *Txn) Root() *manifest.Root { return tx.state.Root }

// State returns the verified state the transaction started from.
func (tx *Txn) State() *trust.State { return tx.state }

// IndexChanged marks the index to be committed as a new version.
func (tx *Txn) IndexChanged() { tx.indexChanged = true }

// Component returns the current manifest of a component, verified against
// its owner's keys, or nil when the mirror has none. Yanked components are
// returned too: writers see everything.
func (tx *Txn) Component(ctx context.Context, id string) (*manifest.Component, error) {
	if _, ok := tx.state.Index.Components[id]; !ok {
		return nil, nil
	}
	fv, ok := tx.state.Meta(id)
	if !ok {
		return nil, fmt.Errorf("%w: component %s is in the index but not in the snapshot", trust.ErrUntrusted, id)
	}
	b, _, err := tx.w.read(ctx, manifest.VersionedName(fv.Version, id), fv.Length)
	if err != nil {
		return nil, err
	}
	c, err := tx.state.VerifyComponent(id, b)
	var ee *trust.ExpiredError
	if errors.As(err, &ee) {
		err = nil
	}
	return c, err
}

// AddFile stages a local file (a tarball) to be stored under key. size and
// sum (sha256 hex) are checked while it is copied.
func (tx *Txn) AddFile(key, path string, size int64, sum string) {
	tx.files = append(tx.files, stagedFile{key: key, path: path, size: size, sum: sum})
}

// PutComponent stages a signed component manifest. Its version must be the
// next after the committed one, and its signatures must meet the threshold of
// its owner in the index as it will be committed.
func (tx *Txn) PutComponent(env *manifest.Envelope) error {
	var c manifest.Component
	if err := env.Decode(&c); err != nil {
		return err
	}
	want := uint64(1)
	if fv, ok := tx.state.Meta(c.ID); ok {
		want = fv.Version + 1
	}
	if c.Version != want {
		return fmt.Errorf("publish %s: manifest version %d, the mirror needs %d: %w", c.ID, c.Version, want, sdk.ErrConflict)
	}
	tx.comps[c.ID] = env
	return nil
}

// PutRoot stages a root manifest N+1 that already carries its signatures.
func (tx *Txn) PutRoot(env *manifest.Envelope) { tx.roots = append(tx.roots, env) }

// Sign signs v with the mirror's keys of role (enough of them to meet the
// role's threshold in the newest root).
func (tx *Txn) Sign(ctx context.Context, role string, v manifest.Signed) (*manifest.Envelope, error) {
	r := tx.state.Root.Roles[role]
	env, err := manifest.NewEnvelope(v)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(r.Keys))
	for id := range r.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var missing []string
	for _, id := range ids {
		if uint64(len(env.Signatures)) >= r.Threshold {
			break
		}
		s, err := tx.w.Keys.Signer(ctx, id)
		if errors.Is(err, ErrMissingKey) {
			missing = append(missing, id[:16])
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := SignWith(ctx, env, s); err != nil {
			return nil, err
		}
	}
	if uint64(len(env.Signatures)) < r.Threshold {
		return nil, fmt.Errorf("sign %s: %w for key(s) %v; pass the directory holding the mirror keys with --key-dir", role, ErrMissingKey, missing)
	}
	return env, nil
}

// SignWith adds one signature by s to env.
func SignWith(ctx context.Context, env *manifest.Envelope, s sdk.Signer) error {
	pub, err := s.PublicKey(ctx)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	pk, err := keys.FromSDK(pub)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	sig, err := s.Sign(ctx, env.Signed)
	if err != nil {
		return fmt.Errorf("sign with key %s: %w", pk.ID()[:16], err)
	}
	// A signer returning garbage must not reach the mirror.
	if err := pk.Verify(env.Signed, sig); err != nil {
		return fmt.Errorf("sign with key %s: the signer returned an invalid signature", pk.ID()[:16])
	}
	return env.AddSignature(pk.ID(), sig)
}

// commit writes the staged changes in the safe order. locked says the
// writer holds the backend's lock, so a staged N.<id>.json already present
// can only be left by a commit that stopped before its timestamp, and is
// overwritten.
func (tx *Txn) commit(ctx context.Context, locked bool) error {
	b := tx.w.Backend
	for _, f := range tx.files {
		if err := tx.putFile(ctx, f); err != nil {
			return err
		}
	}
	// Every manifest written before the commit point, for the read-back.
	var written []writtenFile
	snap := tx.state.Snapshot
	meta := make(map[string]manifest.FileVersion, len(snap.Meta)+len(tx.comps))
	for k, v := range snap.Meta {
		meta[k] = v
	}
	if fv := meta["/root.json"]; tx.state.Root.Version > fv.Version {
		meta["/root.json"] = manifest.FileVersion{Version: tx.state.Root.Version, Length: uint64(len(tx.state.RootBytes))}
	}
	for _, env := range tx.roots {
		var r manifest.Root
		if err := env.Decode(&r); err != nil {
			return err
		}
		body, err := env.Bytes()
		if err != nil {
			return err
		}
		if err := putManifest(ctx, b, manifest.VersionedName(r.Version, "root"), body, locked); err != nil {
			return err
		}
		written = append(written, writtenFile{manifest.VersionedName(r.Version, "root"), body})
		meta["/root.json"] = manifest.FileVersion{Version: r.Version, Length: uint64(len(body))}
	}
	ids := make([]string, 0, len(tx.comps))
	for id := range tx.comps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	ownerKeys := map[string]*trust.KeySet{}
	for _, id := range ids {
		env := tx.comps[id]
		item, ok := tx.Index.Components[id]
		if !ok {
			return fmt.Errorf("publish %s: the component is not in the index", id)
		}
		ks := ownerKeys[item.Owner]
		if ks == nil {
			o, ok := tx.Index.Owners[item.Owner]
			if !ok {
				return fmt.Errorf("publish %s: owner %s is not in the index", id, item.Owner)
			}
			var err error
			if ks, err = trust.NewKeySet("owner "+item.Owner, o.Keys, o.Threshold); err != nil {
				return err
			}
			ownerKeys[item.Owner] = ks
		}
		var c manifest.Component
		if err := env.Decode(&c); err != nil {
			return err
		}
		if err := ks.Verify(manifest.VersionedName(c.Version, id), env); err != nil {
			return fmt.Errorf("publish %s: %w", id, err)
		}
		body, err := env.Bytes()
		if err != nil {
			return err
		}
		if err := putManifest(ctx, b, manifest.VersionedName(c.Version, id), body, locked); err != nil {
			return err
		}
		written = append(written, writtenFile{manifest.VersionedName(c.Version, id), body})
		meta[manifest.ManifestURL(id)] = manifest.FileVersion{Version: c.Version, Length: uint64(len(body))}
	}
	if tx.indexChanged {
		if err := tx.Index.Validate(); err != nil {
			return fmt.Errorf("update index: %w", err)
		}
		// Renew bumps the version by one from the committed one.
		tx.Index.Version = tx.state.Index.Version
		tx.Index.Renew(tx.now, manifest.LifetimeIndex)
		env, err := tx.Sign(ctx, manifest.RoleIndex, tx.Index)
		if err != nil {
			return err
		}
		body, err := env.Bytes()
		if err != nil {
			return err
		}
		if err := putManifest(ctx, b, manifest.VersionedName(tx.Index.Version, "index"), body, locked); err != nil {
			return err
		}
		written = append(written, writtenFile{manifest.VersionedName(tx.Index.Version, "index"), body})
		meta["/index.json"] = manifest.FileVersion{Version: tx.Index.Version, Length: uint64(len(body))}
	}
	newSnap := *snap
	newSnap.Meta = meta
	newSnap.Renew(tx.now, lifetimeOr(tx.SnapshotLifetime, manifest.LifetimeSnapshot))
	snapEnv, err := tx.Sign(ctx, manifest.RoleSnapshot, &newSnap)
	if err != nil {
		return err
	}
	snapBody, err := snapEnv.Bytes()
	if err != nil {
		return err
	}
	ts := *tx.state.Timestamp
	ts.Renew(tx.now, lifetimeOr(tx.TimestampLifetime, manifest.LifetimeTimestamp))
	sum := sha256.Sum256(snapBody)
	ts.Meta = map[string]manifest.FileHash{"/snapshot.json": {Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}, Length: uint64(len(snapBody))}}
	tsEnv, err := tx.Sign(ctx, manifest.RoleTimestamp, &ts)
	if err != nil {
		return err
	}
	tsBody, err := tsEnv.Bytes()
	if err != nil {
		return err
	}
	if len(tsBody) > manifest.MaxTimestampSize {
		return fmt.Errorf("sign timestamp: %d bytes, over the client's limit of %d; use a single timestamp key", len(tsBody), manifest.MaxTimestampSize)
	}
	// The backend is a plugin, and plugins are untrusted like the network:
	// before the timestamp makes anything reachable, read back what this
	// commit wrote. A write that was acknowledged but never made, or made
	// with other bytes, stops the commit here, while clients still see the
	// old state, instead of leaving them a timestamp over missing files.
	for _, f := range tx.files {
		if err := checkStored(ctx, b, f.key, f.size); err != nil {
			return err
		}
	}
	for _, f := range written {
		if err := readBack(ctx, b, f.key, f.body); err != nil {
			return err
		}
	}
	if _, err := b.Put(ctx, "snapshot.json", bytes.NewReader(snapBody), sdk.PutOptions{}); err != nil {
		return fmt.Errorf("write snapshot.json: %w", err)
	}
	if err := readBack(ctx, b, "snapshot.json", snapBody); err != nil {
		if !locked {
			// Without the lock another writer may have replaced it in
			// between: run the transaction again on what is there now.
			return fmt.Errorf("%w: %v", sdk.ErrConflict, err)
		}
		return err
	}
	if tx.w.BeforeCommitPoint != nil {
		if err := tx.w.BeforeCommitPoint(ctx); err != nil {
			return err
		}
	}
	if _, err := b.Put(ctx, "timestamp.json", bytes.NewReader(tsBody), sdk.PutOptions{IfMatch: tx.tsETag}); err != nil {
		return fmt.Errorf("write timestamp.json: %w", err)
	}
	return checkTimestamp(ctx, b, tsBody, ts.Version)
}

// writtenFile is a manifest a commit wrote, kept for the read-back.
type writtenFile struct {
	key  string
	body []byte
}

// readBack checks that the backend holds exactly body under key.
func readBack(ctx context.Context, b sdk.Backend, key string, body []byte) error {
	got, err := readAtMost(ctx, b, key, int64(len(body)))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, body) {
		return fmt.Errorf("read back %s: the backend acknowledged the write but holds other bytes: %w; nothing was committed, run the command again", key, sdk.ErrIntegrity)
	}
	return nil
}

// readAtMost reads key, or its first max+1 bytes when it is longer: enough
// to tell it from a file of max bytes. A missing key is a lost write.
func readAtMost(ctx context.Context, b sdk.Backend, key string, max int64) ([]byte, error) {
	rc, _, err := b.Get(ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, lostWrite(key)
	}
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", key, err)
	}
	return got, nil
}

// lostWrite is the error of a read-back that finds nothing under key, which
// the backend said it stored.
func lostWrite(key string) error {
	return fmt.Errorf("read back %s: the backend acknowledged the write but does not have it: %w; nothing was committed, run the command again", key, sdk.ErrIntegrity)
}

// checkStored checks that a file the commit copied is there at its size;
// its sha256 was checked by the backend as it stored it, and clients check
// every byte again, so reading a tarball back whole would only cost time.
func checkStored(ctx context.Context, b sdk.Backend, key string, size int64) error {
	info, err := b.Stat(ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return lostWrite(key)
	}
	if err != nil {
		return fmt.Errorf("read back %s: %w", key, err)
	}
	if info.Size != size {
		return fmt.Errorf("read back %s: %d bytes stored, want %d: %w; nothing was committed, run the command again", key, info.Size, size, sdk.ErrIntegrity)
	}
	return nil
}

// checkTimestamp reads timestamp.json back after the commit point. Another
// writer may already have committed on top (without a lock, its
// compare-and-swap read ours), so a newer version is fine; anything else
// means the backend lost the commit.
func checkTimestamp(ctx context.Context, b sdk.Backend, body []byte, version uint64) error {
	got, err := readAtMost(ctx, b, "timestamp.json", manifest.MaxTimestampSize)
	if err != nil {
		return err
	}
	if bytes.Equal(got, body) {
		return nil
	}
	if env, err := manifest.ParseEnvelope(got); err == nil {
		var ts manifest.Timestamp
		if env.Decode(&ts) == nil && ts.Version > version {
			return nil
		}
	}
	return fmt.Errorf("read back timestamp.json: the backend acknowledged the write but holds other bytes: %w; the commit is not visible, run the command again", sdk.ErrIntegrity)
}

// lifetimeOr returns d, or def when d is zero.
func lifetimeOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// putManifest writes an immutable N.<name>.json. Without the lock it is
// create-only, so two writers cannot both claim version N.
func putManifest(ctx context.Context, b sdk.Backend, key string, body []byte, locked bool) error {
	opts := sdk.PutOptions{IfNoneMatch: !locked}
	if _, err := b.Put(ctx, key, bytes.NewReader(body), opts); err != nil {
		if errors.Is(err, sdk.ErrExist) {
			return fmt.Errorf("write %s: another writer took this version: %w", key, sdk.ErrConflict)
		}
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// putFile stores a staged local file create-only. A file already there
// with the same content is kept (a re-run after an interrupted commit); one
// with other content is an error when a committed manifest names it,
// because published tarballs are immutable, and is replaced otherwise: it
// is debris of a commit that never reached its timestamp (a backend that
// tore the write, say), which no client was ever pointed at.
func (tx *Txn) putFile(ctx context.Context, f stagedFile) error {
	b := tx.w.Backend
	opts := sdk.PutOptions{Size: f.size, SizeKnown: true, SHA256: f.sum, IfNoneMatch: true}
	// Staged content counts only if it is the very file AddFile names: the
	// tarball may have changed between its staging and its hashing.
	ahead, ok := tx.ahead[f.path]
	staged := ok && ahead.sum == f.sum && ahead.size == f.size
	err := storeFile(ctx, b, f, staged, opts)
	if errors.Is(err, sdk.ErrExist) {
		same, info, serr := sameContent(ctx, b, f)
		if serr != nil {
			return serr
		}
		if same {
			return nil
		}
		named, rerr := tx.committedURL(ctx, "/"+f.key)
		if rerr != nil {
			return rerr
		}
		if named {
			return fmt.Errorf("publish %s: the mirror already has a different file of that name; publish another version", f.key)
		}
		opts.IfNoneMatch, opts.IfMatch = false, info.ETag
		err = storeFile(ctx, b, f, staged, opts)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", f.key, err)
	}
	return nil
}

// committedURL reports whether a committed component manifest names url.
func (tx *Txn) committedURL(ctx context.Context, url string) (bool, error) {
	for id := range tx.state.Index.Components {
		c, err := tx.Component(ctx, id)
		if err != nil {
			return false, err
		}
		if c == nil {
			continue
		}
		for _, versions := range c.Platforms {
			for _, item := range versions {
				if item.URL == url {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// storeFile stores f under its key. Content staged ahead (staged) is
// stored with a Put that moves no data, unless the backend no longer has
// it; otherwise the backend gets the local path when it can take it (the
// fs fast path), and the streamed file when it cannot.
func storeFile(ctx context.Context, b sdk.Backend, f stagedFile, staged bool, opts sdk.PutOptions) error {
	if staged {
		sopts := opts
		sopts.Staged = true
		_, err := b.Put(ctx, f.key, strings.NewReader(""), sopts)
		if !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	if lf, ok := b.(sdk.LocalFiler); ok {
		_, err := lf.PutFile(ctx, f.key, f.path, opts)
		if !errors.Is(err, sdk.ErrUnsupported) {
			return err
		}
	}
	r, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = b.Put(ctx, f.key, r, opts)
	return err
}

func sameContent(ctx context.Context, b sdk.Backend, f stagedFile) (bool, sdk.ObjectInfo, error) {
	rc, info, err := b.Get(ctx, f.key)
	if err != nil {
		return false, info, fmt.Errorf("read %s: %w", f.key, err)
	}
	defer rc.Close()
	if info.Size != f.size {
		return false, info, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, info, fmt.Errorf("read %s: %w", f.key, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.sum, info, nil
}
