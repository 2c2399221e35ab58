package attacktest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// Roles of the pool keys in a new Sim: keys 0-2 are the root keys
// (threshold 2), then one key each for index, snapshot and timestamp, one
// for the owner "pingcap" and one for the owner "other". The rest are
// spares for rotations and attackers (Sim.Spare).
const (
	firstSpare = 8
	// Owner is the owner of the components a new Sim publishes.
	Owner = "pingcap"
	// OtherOwner is a second owner with a key of its own.
	OtherOwner = "other"
	// Comp is the component a new Sim publishes, at Version.
	Comp = "foo"
	// Version is the version of Comp a new Sim publishes.
	Version = "v1.0.0"
	// Entry is the entry point of every version a Sim publishes.
	Entry = "bin/foo"
)

// Platform is the platform the client runs on and a Sim publishes for.
var Platform = manifest.Platform(runtime.GOOS, runtime.GOARCH)

// Sim is a TiUP v1 repository simulator: the current signed objects of
// every role, the keys that sign them, and the published bytes of every
// file. It is the go-tuf RepositorySimulator idea, without globals. Cases
// change the objects, then Commit (or RotateRoot) publishes them as TiUP
// does: bumped versions, new signatures, a new snapshot and timestamp.
// Lower-level helpers (Sign, SignRaw, SetFile) build the malicious bytes
// an attack serves.
//
// The manifests are changed by the test goroutine only; the published
// files are guarded, since the server reads them concurrently.
type Sim struct {
	// Now is the reference time: expiries are computed from it, and the
	// client runs with MIRROR_TEST_NOW set to it.
	Now time.Time

	Root       *manifest.Root
	Index      *manifest.Index
	Snapshot   *manifest.Snapshot
	Timestamp  *manifest.Timestamp
	Components map[string]*manifest.Component

	// Signers are the keys that sign each top-level role's manifests.
	Signers map[string][]*keys.PrivateKey
	// OwnerSigners are the keys that sign each owner's components.
	OwnerSigners map[string][]*keys.PrivateKey
	// Contents are the entries of every tarball published, by file name.
	Contents map[string][]TarEntry

	pool []*keys.PrivateKey

	mu    sync.Mutex
	files map[string][]byte
}

// NewSim returns a repository at root version 1 with the owners pingcap and
// other, the component foo (owned by pingcap) at version v1.0.0 for
// Platform, and its snapshot and timestamp, every manifest valid from now.
func NewSim(now time.Time) (*Sim, error) {
	pool, err := Keys()
	if err != nil {
		return nil, err
	}
	if len(pool) < 16 {
		return nil, fmt.Errorf("sim: %d test keys, want 16: run genkeys.go", len(pool))
	}
	s := &Sim{
		Now:          now,
		pool:         pool,
		Components:   map[string]*manifest.Component{},
		Contents:     map[string][]TarEntry{},
		files:        map[string][]byte{},
		Signers:      map[string][]*keys.PrivateKey{},
		OwnerSigners: map[string][]*keys.PrivateKey{},
	}
	s.Root = manifest.NewRoot(now)
	s.Root.Roles[manifest.RoleRoot].Threshold = 2
	// Clones, never subslices of the shared pool: a case appending to a
	// role's signers must not overwrite the pool's next key.
	s.Signers[manifest.RoleRoot] = slices.Clone(pool[0:3])
	s.Signers[manifest.RoleIndex] = slices.Clone(pool[3:4])
	s.Signers[manifest.RoleSnapshot] = slices.Clone(pool[4:5])
	s.Signers[manifest.RoleTimestamp] = slices.Clone(pool[5:6])
	for role, ks := range s.Signers {
		s.Root.Roles[role].Keys = KeyInfos(ks...)
	}
	s.OwnerSigners[Owner] = slices.Clone(pool[6:7])
	s.OwnerSigners[OtherOwner] = slices.Clone(pool[7:8])
	s.Index = manifest.NewIndex(now)
	for _, id := range []string{Owner, OtherOwner} {
		s.Index.Owners[id] = manifest.Owner{Name: id, Keys: KeyInfos(s.OwnerSigners[id]...), Threshold: 1}
	}
	s.Snapshot = manifest.NewSnapshot(now)
	s.Timestamp = manifest.NewTimestamp(now)
	s.Timestamp.Version = 0 // Commit bumps it to 1
	s.Index.Version = 0
	s.AddComponent(Comp, Owner)
	s.AddVersion(Comp, Version, DefaultFiles(Comp, Version))
	rootBody, err := s.sign(s.Root, s.Signers[manifest.RoleRoot])
	if err != nil {
		return nil, err
	}
	// TiUP's init writes root.json and no 1.root.json.
	s.SetFile("root.json", rootBody)
	s.Snapshot.Meta["/root.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(rootBody))}
	if err := s.commit("index", Comp); err != nil {
		return nil, err
	}
	return s, nil
}

// Spare returns spare pool key i (0 to 7): keys no role of a new Sim uses.
func (s *Sim) Spare(i int) *keys.PrivateKey { return s.pool[firstSpare+i] }

// Pool returns pool key i (0 to 15).
func (s *Sim) Pool(i int) *keys.PrivateKey { return s.pool[i] }

// KeyInfos returns the public key infos of ks by key ID, as roles and
// owners declare them.
func KeyInfos(ks ...*keys.PrivateKey) map[string]*manifest.KeyInfo {
	m := make(map[string]*manifest.KeyInfo, len(ks))
	for _, k := range ks {
		m[k.ID()] = k.Public().KeyInfo()
	}
	return m
}

// DefaultFiles are the files of a version Sim publishes: the entry point,
// a script that prints the component and version, and a README.
func DefaultFiles(id, version string) []TarEntry {
	return []TarEntry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: Entry, Body: "#!/bin/sh\necho " + id + " " + version + "\n", Mode: 0o755},
		{Name: "README", Body: id + " " + version + "\n", Mode: 0o644},
	}
}

// AddComponent adds a component owned by owner to the index, with an empty
// manifest at version 0; Commit("index", id) publishes both at their next
// version.
func (s *Sim) AddComponent(id, owner string) {
	s.Index.Components[id] = manifest.ComponentItem{Owner: owner, URL: manifest.ManifestURL(id)}
	c := manifest.NewComponent(id, "the "+id+" component", s.Now)
	c.Version = 0
	s.Components[id] = c
}

// AddVersion packs files into the tarball TiUP names for id, version and
// Platform, publishes it, and adds the version to the component manifest
// with its length, sha256 and sha512; Commit(id) publishes the manifest.
func (s *Sim) AddVersion(id, version string, files []TarEntry) manifest.VersionItem {
	tb := MakeTarball(files)
	return s.AddTarball(id, version, Platform, tb, files)
}

// AddTarball publishes tb as the tarball of id at version on platform and
// adds its item, as AddVersion does; files are what it should install.
func (s *Sim) AddTarball(id, version, platform string, tb []byte, files []TarEntry) manifest.VersionItem {
	goos, goarch, _ := cutPlatform(platform)
	name := manifest.TarballName(id, version, goos, goarch)
	s.SetFile(name, tb)
	s.Contents[name] = files
	item := manifest.VersionItem{
		URL:      "/" + name,
		Entry:    Entry,
		Released: manifest.FormatTime(s.Now),
		Hashes:   Hashes(tb),
		Length:   uint64(len(tb)),
	}
	c := s.Components[id]
	if c.Platforms[platform] == nil {
		c.Platforms[platform] = map[string]manifest.VersionItem{}
	}
	c.Platforms[platform][version] = item
	return item
}

func cutPlatform(p string) (string, string, bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", false
}

// Hashes returns the sha256 and sha512 of b as a manifest lists them.
func Hashes(b []byte) map[string]string {
	s256, s512 := sha256.Sum256(b), sha512.Sum512(b)
	return map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])}
}

// Item returns the published item of a component version on Platform.
func (s *Sim) Item(id, version string) manifest.VersionItem {
	return s.Components[id].Platforms[Platform][version]
}

// SetItem replaces the item of a component version on Platform.
func (s *Sim) SetItem(id, version string, item manifest.VersionItem) {
	s.Components[id].Platforms[Platform][version] = item
}

// Commit publishes the named manifests ("index" or component IDs) at their
// next version, signed by their current signers, then a new snapshot and a
// timestamp one version up: one TiUP commit.
func (s *Sim) Commit(names ...string) {
	must(s.commit(names...))
}

func (s *Sim) commit(names ...string) error {
	for _, name := range names {
		var err error
		if name == "index" {
			s.Index.Version++
			err = s.publish(s.Index, "index", s.Signers[manifest.RoleIndex])
		} else {
			c, ok := s.Components[name]
			if !ok {
				return fmt.Errorf("sim: commit %s: no such component", name)
			}
			c.Version++
			err = s.publish(c, name, s.OwnerSigners[s.Index.Components[name].Owner])
		}
		if err != nil {
			return err
		}
	}
	return s.publishTop()
}

// publish signs v and writes it as N.name.json, named in the snapshot.
func (s *Sim) publish(v manifest.Signed, name string, signers []*keys.PrivateKey) error {
	b, err := s.sign(v, signers)
	if err != nil {
		return err
	}
	s.SetFile(manifest.VersionedName(v.Header().Version, name), b)
	s.Snapshot.Meta[manifest.ManifestURL(name)] = manifest.FileVersion{Version: v.Header().Version, Length: uint64(len(b))}
	return nil
}

// publishTop signs the snapshot and a timestamp one version up that pins
// it with sha256 and sha512 (TiUP's init lists both).
func (s *Sim) publishTop() error {
	snap, err := s.sign(s.Snapshot, s.Signers[manifest.RoleSnapshot])
	if err != nil {
		return err
	}
	s.SetFile("snapshot.json", snap)
	s.Timestamp.Version++
	s.Timestamp.Meta = map[string]manifest.FileHash{"/snapshot.json": {Hashes: Hashes(snap), Length: uint64(len(snap))}}
	ts, err := s.sign(s.Timestamp, s.Signers[manifest.RoleTimestamp])
	if err != nil {
		return err
	}
	s.SetFile("timestamp.json", ts)
	return nil
}

// RotateRoot publishes root version N+1: mutate changes the root (keys,
// thresholds, expiry), and the new root is signed by the current root
// signers and by next, which become the root signers. The snapshot and
// timestamp are committed after it.
func (s *Sim) RotateRoot(mutate func(r *manifest.Root), next []*keys.PrivateKey) {
	old := s.Signers[manifest.RoleRoot]
	if mutate != nil {
		mutate(s.Root)
	}
	signers := slices.Clone(old)
	for _, k := range next {
		if !slices.ContainsFunc(signers, func(o *keys.PrivateKey) bool { return o.ID() == k.ID() }) {
			signers = append(signers, k)
		}
	}
	s.PublishRoot(signers...)
	s.Signers[manifest.RoleRoot] = next
	must(s.publishTop())
}

// PublishRoot bumps the root version and publishes N.root.json signed by
// exactly signers, naming it in the snapshot; it does not commit the
// snapshot and timestamp (RotateRoot does).
func (s *Sim) PublishRoot(signers ...*keys.PrivateKey) []byte {
	s.Root.Version++
	b, err := s.sign(s.Root, signers)
	must(err)
	s.SetFile(manifest.VersionedName(s.Root.Version, "root"), b)
	s.Snapshot.Meta["/root.json"] = manifest.FileVersion{Version: s.Root.Version, Length: uint64(len(b))}
	return b
}

// ResignRoot publishes the current root again at its version (as
// root.json for version 1), signed by the root signers, and commits the
// snapshot and timestamp: for cases that shape the root before the client
// first trusts it.
func (s *Sim) ResignRoot() {
	b := s.Sign(s.Root, s.Signers[manifest.RoleRoot]...)
	name := manifest.VersionedName(s.Root.Version, "root")
	if s.Root.Version == 1 {
		name = "root.json"
	}
	s.SetFile(name, b)
	s.Snapshot.Meta["/root.json"] = manifest.FileVersion{Version: s.Root.Version, Length: uint64(len(b))}
	must(s.publishTop())
}

// CommitRaw publishes file as the next version of a manifest ("index" or
// a component ID) whatever its content, bumping the Sim's version of it,
// and commits the snapshot and timestamp naming it: an index or owner key
// holder publishing hostile bytes. Commit(name) later publishes a valid
// manifest at the version after.
func (s *Sim) CommitRaw(name string, file []byte) {
	var v uint64
	if name == "index" {
		s.Index.Version++
		v = s.Index.Version
	} else {
		s.Components[name].Version++
		v = s.Components[name].Version
	}
	s.SetFile(manifest.VersionedName(v, name), file)
	s.Snapshot.Meta[manifest.ManifestURL(name)] = manifest.FileVersion{Version: v, Length: uint64(len(file))}
	must(s.publishTop())
}

// NextRoot returns root version N+1 as mutate makes it from a copy of the
// current root, signed by signers (default: the current root signers),
// without publishing it.
func (s *Sim) NextRoot(mutate func(r *manifest.Root), signers ...*keys.PrivateKey) []byte {
	r := CloneRoot(s.Root)
	r.Version++
	if mutate != nil {
		mutate(r)
	}
	if len(signers) == 0 {
		signers = s.Signers[manifest.RoleRoot]
	}
	return s.Sign(r, signers...)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// CloneRoot returns a deep copy of r.
func CloneRoot(r *manifest.Root) *manifest.Root {
	var out manifest.Root
	must(json.Unmarshal(Encode(r), &out))
	return &out
}

// SetRoleKeys gives a top-level role new keys and threshold in the root
// (call it inside RotateRoot's mutate) and makes them the role's signers.
func (s *Sim) SetRoleKeys(r *manifest.Root, role string, threshold uint64, ks ...*keys.PrivateKey) {
	r.Roles[role].Keys = KeyInfos(ks...)
	r.Roles[role].Threshold = threshold
	if role != manifest.RoleRoot {
		s.Signers[role] = ks
	}
}

// Sign returns the manifest file of v signed by signers, in canonical form.
func (s *Sim) Sign(v manifest.Signed, signers ...*keys.PrivateKey) []byte {
	b, err := s.sign(v, signers)
	must(err)
	return b
}

func (s *Sim) sign(v manifest.Signed, signers []*keys.PrivateKey) ([]byte, error) {
	env, err := manifest.NewEnvelope(v)
	if err != nil {
		return nil, err
	}
	return signEnvelope(env, signers)
}

// SignRaw returns a manifest file whose signed member is exactly signed
// (any bytes, canonical or not), signed by signers.
func (s *Sim) SignRaw(signed []byte, signers ...*keys.PrivateKey) []byte {
	b, err := signEnvelope(&manifest.Envelope{Signed: signed}, signers)
	must(err)
	return b
}

func signEnvelope(env *manifest.Envelope, signers []*keys.PrivateKey) ([]byte, error) {
	for _, k := range signers {
		sig, err := k.Sign(env.Signed)
		if err != nil {
			return nil, err
		}
		if err := env.AddSignature(k.ID(), sig); err != nil {
			return nil, err
		}
	}
	return env.Bytes()
}

// Encode returns the canonical encoding of v, the bytes a signer signs.
func Encode(v any) []byte {
	b, err := manifest.Encode(v)
	must(err)
	return b
}

// Timestamp returns a timestamp file at version pinning snapshot bytes,
// with the current timestamp's expiry, signed by signers (default: the
// timestamp role's).
func (s *Sim) TimestampFor(snapshot []byte, version uint64, signers ...*keys.PrivateKey) []byte {
	ts := *s.Timestamp
	ts.Version = version
	ts.Meta = map[string]manifest.FileHash{"/snapshot.json": {Hashes: Hashes(snapshot), Length: uint64(len(snapshot))}}
	if len(signers) == 0 {
		signers = s.Signers[manifest.RoleTimestamp]
	}
	return s.Sign(&ts, signers...)
}

// File returns the published bytes of a file, nil if there is none.
func (s *Sim) File(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[name]
}

// SetFile publishes b as the file name, replacing what was there.
func (s *Sim) SetFile(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = b
}

// RemoveFile unpublishes a file.
func (s *Sim) RemoveFile(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, name)
}

// Files returns a copy of the published files.
func (s *Sim) Files() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.files)
}

// IndexFile is the published file name of the current index.
func (s *Sim) IndexFile() string { return manifest.VersionedName(s.Index.Version, "index") }

// ComponentFile is the published file name of a component's current
// manifest.
func (s *Sim) ComponentFile(id string) string {
	return manifest.VersionedName(s.Components[id].Version, id)
}

// TarballFile is the published file name of a version's tarball.
func (s *Sim) TarballFile(id, version string) string {
	return s.Item(id, version).URL[1:]
}

// TarEntry is one entry of a test tarball.
type TarEntry struct {
	Name     string
	Body     string
	Mode     int64 // 0 means 0644, or 0755 for a directory
	Type     byte  // tar.TypeReg when 0
	Linkname string
	// Size overrides the header's size; the archive ends right after this
	// entry's (shorter) body, as a bomb's header would.
	Size int64
}

// MakeTarball returns a gzip-compressed tar archive of entries, written
// as given: names, types, modes and link targets are not checked, so a
// case can build any hostile archive.
func MakeTarball(entries []TarEntry) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	mtime := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	truncated := false
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		size := int64(len(e.Body))
		if typ != tar.TypeReg {
			size = 0
		}
		if e.Size > 0 {
			size = e.Size
		}
		hdr := &tar.Header{Typeflag: typ, Name: e.Name, Linkname: e.Linkname, Mode: mode, Size: size, ModTime: mtime, Format: tar.FormatPAX}
		must(tw.WriteHeader(hdr))
		if typ == tar.TypeReg && e.Body != "" {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				must(err)
			}
		}
		if size > int64(len(e.Body)) {
			truncated = true
			break
		}
	}
	if !truncated {
		must(tw.Close())
	}
	return Gzip(tb.Bytes())
}

// Gzip compresses b as one gzip member.
func Gzip(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, err := zw.Write(b)
	must(err)
	must(zw.Close())
	return out.Bytes()
}

// must panics on errors that only a bug in a case can cause (a manifest
// that cannot be encoded, a key that cannot sign); the test fails loudly.
func must(err error) {
	if err != nil {
		panic("attacktest: " + err.Error())
	}
}
