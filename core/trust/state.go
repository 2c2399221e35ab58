// Package trust verifies TiUP v1 manifests in the order the client must trust
// them: root (and its chain), timestamp, snapshot, index, component. It is
// the go-tuf TrustedMetadata idea: a State only ever holds manifests that
// verified against what it already trusted, so a caller cannot skip a step.
//
// It does no I/O: callers (core/repo) fetch bytes, capped by the lengths this
// package hands them, and feed them in.
package trust

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// Clock tells the time; it is injected so that expiry is testable.
type Clock func() time.Time

// State is the trusted metadata of one mirror, built step by step.
type State struct {
	clock Clock

	// AllowExpired skips expiry checks. Only a mirror's writer sets it: it
	// holds the keys and is about to renew what expired, and refusing to
	// read a stale mirror would leave no way to bring it back.
	AllowExpired bool

	Root      *manifest.Root
	Timestamp *manifest.Timestamp
	Snapshot  *manifest.Snapshot
	Index     *manifest.Index

	roles  map[string]*KeySet // the four top-level roles of Root
	owners map[string]*KeySet // the owners of Index

	// Raw bytes of each trusted file, as read, so callers can cache them
	// exactly (the stock client's cache re-serializes, which is the same
	// bytes for a tiup-shaped manifest).
	RootBytes, TimestampBytes, SnapshotBytes, IndexBytes []byte
}

// New starts a State from a trust anchor: a root the caller already trusts
// (shipped with the client or saved by `mirror set`). The anchor must be
// signed by its own root role up to its threshold; expiry is checked later,
// by CheckRootExpiry, because an expired anchor may still lead to a newer
// root (spec §5 update-root).
func New(anchor []byte, clock Clock) (*State, error) {
	root, env, err := decodeRoot("root.json", anchor)
	if err != nil {
		return nil, err
	}
	roles, err := rootRoles(root)
	if err != nil {
		return nil, err
	}
	if err := roles[manifest.RoleRoot].Verify("root.json", env); err != nil {
		return nil, err
	}
	return &State{clock: clock, Root: root, roles: roles, RootBytes: anchor}, nil
}

// Now returns the verifier's time.
func (s *State) Now() time.Time { return s.clock() }

// Role returns the key set of a top-level role of the trusted root.
func (s *State) Role(name string) *KeySet { return s.roles[name] }

// Owner returns the key set of an index owner, or nil.
func (s *State) Owner(id string) *KeySet { return s.owners[id] }

// UpdateRoot moves the trust to root version N+1 (spec §5 update-root): the
// new root must be signed by the trusted root's keys up to the trusted
// threshold and by its own keys up to its own threshold, carry exactly the
// next version, and not expire earlier. Everything trusted after the root is
// dropped, since it was verified with keys that may no longer hold.
func (s *State) UpdateRoot(b []byte) error {
	want := s.Root.Version + 1
	file := manifest.VersionedName(want, "root")
	root, env, err := decodeRoot(file, b)
	if err != nil {
		return err
	}
	if root.Version != want {
		return &VersionError{File: file, Got: root.Version, Want: want, Rule: "exactly"}
	}
	if err := s.roles[manifest.RoleRoot].Verify(file, env); err != nil {
		return err
	}
	roles, err := rootRoles(root)
	if err != nil {
		return err
	}
	if err := roles[manifest.RoleRoot].Verify(file, env); err != nil {
		return err
	}
	oldExp, err := s.Root.ExpiresAt()
	if err != nil {
		return untrusted("%s: %v", file, err)
	}
	newExp, err := root.ExpiresAt()
	if err != nil {
		return untrusted("%s: %v", file, err)
	}
	if newExp.Before(oldExp) {
		return Errorf(ClassRootChain, "verify %s: expires %s, before the previous root's %s", file, manifest.FormatTime(newExp), manifest.FormatTime(oldExp))
	}
	s.Root, s.roles, s.RootBytes = root, roles, b
	s.Timestamp, s.Snapshot, s.Index, s.owners = nil, nil, nil, nil
	s.TimestampBytes, s.SnapshotBytes, s.IndexBytes = nil, nil, nil
	return nil
}

// CheckRootExpiry fails when the trusted root has expired. Call it once the
// root chain has been followed to its end.
func (s *State) CheckRootExpiry() error {
	return s.checkExpiry("root.json", &s.Root.Base)
}

// UpdateTimestamp verifies timestamp.json. prev is the timestamp version the
// client trusted before (0 for none): a lower version is a rollback. The
// manifest must name exactly /snapshot.json with a sha256 (spec §3.5).
func (s *State) UpdateTimestamp(b []byte, prev uint64) error {
	const file = "timestamp.json"
	if len(b) > manifest.MaxTimestampSize {
		return &HashError{File: file, What: "length", Want: "at most " + strconv.Itoa(manifest.MaxTimestampSize), Got: strconv.Itoa(len(b))}
	}
	var ts manifest.Timestamp
	if err := s.decodeByRole(file, manifest.RoleTimestamp, b, &ts); err != nil {
		return err
	}
	if err := s.checkExpiry(file, &ts.Base); err != nil {
		return err
	}
	if ts.Version < prev {
		return &VersionError{File: file, Got: ts.Version, Want: prev, Rule: "at least"}
	}
	meta, ok := ts.Meta["/snapshot.json"]
	if len(ts.Meta) != 1 || !ok {
		return untrusted("verify %s: meta must name exactly /snapshot.json", file)
	}
	if len(meta.Hashes["sha256"]) != 64 {
		return untrusted("verify %s: /snapshot.json has no sha256", file)
	}
	s.Timestamp, s.TimestampBytes = &ts, b
	s.Snapshot, s.Index, s.owners = nil, nil, nil
	s.SnapshotBytes, s.IndexBytes = nil, nil
	return nil
}

// SnapshotLength is the signed length of snapshot.json, the cap for its
// download.
func (s *State) SnapshotLength() uint64 { return s.Timestamp.Meta["/snapshot.json"].Length }

// UpdateSnapshot verifies snapshot.json against the trusted timestamp (length
// and sha256 of the raw bytes) and the snapshot role. prev is the snapshot
// the client trusted before, or nil: no manifest it names may go back in
// version (the stock client skips this check; we do not).
func (s *State) UpdateSnapshot(b []byte, prev *manifest.Snapshot) error {
	const file = "snapshot.json"
	if s.Timestamp == nil {
		return untrusted("verify %s: no trusted timestamp", file)
	}
	meta := s.Timestamp.Meta["/snapshot.json"]
	if err := CheckLength(file, uint64(len(b)), meta.Length); err != nil {
		return err
	}
	if err := checkHashes(file, b, meta.Hashes); err != nil {
		return err
	}
	var snap manifest.Snapshot
	if err := s.decodeByRole(file, manifest.RoleSnapshot, b, &snap); err != nil {
		return err
	}
	if err := s.checkExpiry(file, &snap.Base); err != nil {
		return err
	}
	for _, name := range []string{"/root.json", "/index.json"} {
		if _, ok := snap.Meta[name]; !ok {
			return untrusted("verify %s: meta has no %s", file, name)
		}
	}
	// Spec 5.5.5: no manifest the trusted snapshot named may go back in
	// version or disappear; a writer never removes an entry, so a missing
	// one is an old snapshot replayed under a newer timestamp.
	if prev != nil {
		for _, name := range slices.Sorted(maps.Keys(prev.Meta)) {
			old := prev.Meta[name]
			cur, ok := snap.Meta[name]
			if !ok {
				return Errorf(ClassRollback, "verify %s: %s is missing, the trusted snapshot had version %d", file, name, old.Version)
			}
			if cur.Version < old.Version {
				return &VersionError{File: file + " " + name, Got: cur.Version, Want: old.Version, Rule: "at least"}
			}
		}
	}
	s.Snapshot, s.SnapshotBytes = &snap, b
	s.Index, s.owners, s.IndexBytes = nil, nil, nil
	return nil
}

// RecoverSnapshot accepts a snapshot.json that is signed by the snapshot
// role but not the one the timestamp pins. Only a writer calls it: a commit
// interrupted between writing snapshot.json and timestamp.json leaves exactly
// that state, and the writer rolls it forward by committing a new timestamp.
func (s *State) RecoverSnapshot(b []byte) error {
	const file = "snapshot.json"
	var snap manifest.Snapshot
	if err := s.decodeByRole(file, manifest.RoleSnapshot, b, &snap); err != nil {
		return err
	}
	s.Snapshot, s.SnapshotBytes = &snap, b
	s.Index, s.owners, s.IndexBytes = nil, nil, nil
	return nil
}

// RootBehind reports whether the snapshot announces a root newer than the
// trusted one, so the caller must follow the root chain first.
func (s *State) RootBehind() bool {
	return s.Snapshot != nil && s.Snapshot.Meta["/root.json"].Version > s.Root.Version
}

// Meta returns the snapshot entry for a manifest name ("index", "greet").
func (s *State) Meta(name string) (manifest.FileVersion, bool) {
	if s.Snapshot == nil {
		return manifest.FileVersion{}, false
	}
	fv, ok := s.Snapshot.Meta[manifest.ManifestURL(name)]
	return fv, ok
}

// UpdateIndex verifies N.index.json: exactly the version and length the
// snapshot names (mix-and-match defence), signed by the index role, and
// structurally valid. Its owners become the key sets for components.
func (s *State) UpdateIndex(b []byte) error {
	if s.Snapshot == nil {
		return untrusted("verify index: no trusted snapshot")
	}
	if s.RootBehind() {
		return Errorf(ClassRootChain, "verify index: the snapshot names root version %d; update the root first", s.Snapshot.Meta["/root.json"].Version)
	}
	fv, _ := s.Meta("index")
	file := manifest.VersionedName(fv.Version, "index")
	if err := CheckExactLength(file, uint64(len(b)), fv.Length); err != nil {
		return err
	}
	var ix manifest.Index
	if err := s.decodeByRole(file, manifest.RoleIndex, b, &ix); err != nil {
		return err
	}
	if ix.Version != fv.Version {
		return &VersionError{File: file, Got: ix.Version, Want: fv.Version, Rule: "exactly"}
	}
	if err := s.checkExpiry(file, &ix.Base); err != nil {
		return err
	}
	if ix.Owners == nil || ix.Components == nil {
		return untrusted("verify %s: owners and components must be objects, not null", file)
	}
	if err := ix.Validate(); err != nil {
		return untrusted("verify %s: %v", file, err)
	}
	owners := make(map[string]*KeySet, len(ix.Owners))
	for id, o := range ix.Owners {
		ks, err := NewKeySet("owner "+id, o.Keys, o.Threshold)
		if err != nil {
			return err
		}
		owners[id] = ks
	}
	s.Index, s.owners, s.IndexBytes = &ix, owners, b
	return nil
}

// VerifyComponent verifies N.<id>.json against the snapshot (exact version
// and length) and the keys and threshold of the component's owner in the
// index. An expired component is returned together with an *ExpiredError,
// as the stock client does, so a caller may choose to go on.
func (s *State) VerifyComponent(id string, b []byte) (*manifest.Component, error) {
	if s.Index == nil {
		return nil, untrusted("verify %s: no trusted index", id)
	}
	item, ok := s.Index.Components[id]
	if !ok {
		return nil, untrusted("verify %s: not in the index", id)
	}
	fv, ok := s.Meta(id)
	if !ok {
		return nil, untrusted("verify %s: not in the snapshot", id)
	}
	file := manifest.VersionedName(fv.Version, id)
	if err := CheckExactLength(file, uint64(len(b)), fv.Length); err != nil {
		return nil, err
	}
	var c manifest.Component
	env, err := decodeSigned(file, b, &c)
	if err != nil {
		return nil, err
	}
	owner := s.owners[item.Owner]
	if owner == nil {
		return nil, untrusted("verify %s: owner %s is not in the index", file, item.Owner)
	}
	if err := owner.Verify(file, env); err != nil {
		return nil, err
	}
	if c.Version != fv.Version {
		return nil, &VersionError{File: file, Got: c.Version, Want: fv.Version, Rule: "exactly"}
	}
	if c.ID != id {
		return nil, Errorf(ClassMixAndMatch, "verify %s: manifest is for component %q", file, c.ID)
	}
	if c.Platforms == nil {
		return nil, untrusted("verify %s: platforms must be an object, not null", file)
	}
	if err := s.checkExpiry(file, &c.Base); err != nil {
		return &c, err
	}
	return &c, nil
}

// CheckLength fails when n exceeds the signed length max.
func CheckLength(file string, n, max uint64) error {
	if n > max {
		return &HashError{File: file, What: "length", Want: "at most " + strconv.FormatUint(max, 10), Got: strconv.FormatUint(n, 10)}
	}
	return nil
}

// CheckExactLength fails when n differs from the signed length.
func CheckExactLength(file string, n, want uint64) error {
	if n != want {
		return &HashError{File: file, What: "length", Want: strconv.FormatUint(want, 10), Got: strconv.FormatUint(n, 10)}
	}
	return nil
}

func (s *State) checkExpiry(file string, b *manifest.Base) error {
	exp, err := b.ExpiresAt()
	if err != nil {
		return untrusted("verify %s: %v", file, err)
	}
	if s.AllowExpired {
		return nil
	}
	if !s.clock().Before(exp) {
		return &ExpiredError{File: file, Expires: exp}
	}
	return nil
}

// decodeByRole decodes a manifest into v and checks its signatures against
// a top-level role of the trusted root.
func (s *State) decodeByRole(file, role string, b []byte, v manifest.Signed) error {
	env, err := decodeSigned(file, b, v)
	if err != nil {
		return err
	}
	return s.roles[role].Verify(file, env)
}

func decodeSigned(file string, b []byte, v manifest.Signed) (*manifest.Envelope, error) {
	// encoding/json reads duplicate names (last wins), case variants of
	// field names and invalid UTF-8 leniently; a strict reader refuses
	// them, so that the bytes signed mean exactly one thing.
	if err := checkStrictJSON(b); err != nil {
		return nil, untrusted("decode %s: %v", file, err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return nil, untrusted("decode %s: %v", file, err)
	}
	if err := env.Decode(v); err != nil {
		return nil, untrusted("decode %s: %v", file, err)
	}
	return env, nil
}

func decodeRoot(file string, b []byte) (*manifest.Root, *manifest.Envelope, error) {
	if len(b) > manifest.MaxRootSize {
		return nil, nil, CheckLength(file, uint64(len(b)), manifest.MaxRootSize)
	}
	var root manifest.Root
	env, err := decodeSigned(file, b, &root)
	if err != nil {
		return nil, nil, err
	}
	if err := root.Validate(); err != nil {
		return nil, nil, untrusted("verify %s: %v", file, err)
	}
	// TiUP loads extra roles and ignores them; an unknown role is refused
	// here, since nothing legitimate writes one (python-tuf does the same).
	for _, name := range slices.Sorted(maps.Keys(root.Roles)) {
		switch name {
		case manifest.RoleRoot, manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp:
		default:
			return nil, nil, untrusted("verify %s: unknown role %q", file, name)
		}
	}
	return &root, env, nil
}

func rootRoles(root *manifest.Root) (map[string]*KeySet, error) {
	roles := make(map[string]*KeySet, 4)
	for _, name := range []string{manifest.RoleRoot, manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		r := root.Roles[name]
		if r == nil {
			return nil, untrusted("root version %d has no %s role", root.Version, name)
		}
		ks, err := NewKeySet(name, r.Keys, r.Threshold)
		if err != nil {
			return nil, err
		}
		roles[name] = ks
	}
	return roles, nil
}

// checkHashes checks b against every hash the timestamp lists that this
// client knows (sha256, which must be there, and sha512 when listed):
// TiUP checks sha256 only, but a listed digest that does not match means
// the file is not the one that was signed.
func checkHashes(file string, b []byte, want map[string]string) error {
	for _, alg := range []string{"sha256", "sha512"} {
		w, ok := want[alg]
		if !ok {
			continue
		}
		var got string
		if alg == "sha256" {
			sum := sha256.Sum256(b)
			got = hex.EncodeToString(sum[:])
		} else {
			sum := sha512.Sum512(b)
			got = hex.EncodeToString(sum[:])
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(w)) != 1 {
			return &HashError{File: file, What: alg, Want: w, Got: got}
		}
	}
	return nil
}
