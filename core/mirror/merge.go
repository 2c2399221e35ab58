package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/sdk/host"
)

// MergeOptions configure Merge; the fields follow `tiup mirror merge`,
// plus the owner and the trust anchors that stock tiup lacks.
type MergeOptions struct {
	// Sources are the addresses of the mirrors to merge from. They are
	// taken in order: a version a source adds counts as the base's for
	// the sources after it.
	Sources []string
	// Roots, when given, are the root files to trust, one per source in
	// the order of Sources; default each source's own root.json.
	Roots []string
	// Owner owns the components new to the base; it must be in the base
	// index. Default: the owner of the first key in Keys.
	Owner string
	// Keys are the owner key files (or signer URLs) that sign the changed
	// component manifests; default $TIUP_HOME/keys/private.json. Each
	// changed component is signed by those of them that belong to its
	// owner, and they must meet the owner's threshold.
	Keys []string
}

// MergeSource is what one source added to the base.
type MergeSource struct {
	Address string
	// Versions counts the component versions added; a version added on
	// several platforms counts once.
	Versions int
	// Components counts the components that gained a version, and
	// NewComponents those of them the base did not have.
	Components    int
	NewComponents int
	// Tarballs counts the tarballs copied.
	Tarballs int
}

// MergeResult says what Merge committed.
type MergeResult struct {
	Sources []MergeSource
	// IndexVersion is the new index version, 0 when the index kept its
	// version (no new component).
	IndexVersion uint64
	// Unchanged says the base already had everything; nothing was written.
	Unchanged bool
}

// mergeSource is one opened, verified source and what it offers.
type mergeSource struct {
	addr    string
	repo    *repo.Repo
	backend *host.Backend
	comps   []offeredComponent
}

// offeredComponent is a non-yanked component of a source with the
// versions it offers for merging.
type offeredComponent struct {
	id    string
	item  manifest.ComponentItem
	c     *manifest.Component
	items []offeredItem
}

// offeredItem is one version on one platform, as the source signed it.
type offeredItem struct {
	platform, goos, goarch, version string
	item                            manifest.VersionItem
}

// mergedComponent is a base component being changed by the merge.
type mergedComponent struct {
	c       *manifest.Component
	item    manifest.ComponentItem
	isNew   bool
	changed bool
}

// Merge copies into the current mirror every non-yanked version of every
// non-yanked component of the sources that the base lacks, with its
// tarball. Unlike stock tiup, each source's chain of trust is verified
// first (from its own root.json or the given root) and every tarball while
// it streams, descriptions and release times are kept, and the whole merge
// is one transaction: one new manifest per changed component, at most one
// index version, one snapshot and one timestamp. A version both sides have
// with other hashes refuses the whole merge.
//
// Nightlies are kept simple: a source's nightly version is merged only when
// it is the source's current nightly (the component's nightly field) and the
// base's current nightly is not newer; it then becomes the base's current
// nightly, and older nightlies leave the manifest as on publish.
func Merge(ctx context.Context, env *Env, opts MergeOptions) (*MergeResult, error) {
	if len(opts.Sources) == 0 {
		return nil, fmt.Errorf("%w: merge needs the address of at least one mirror to merge from", ErrUsage)
	}
	if len(opts.Roots) > 0 && len(opts.Roots) != len(opts.Sources) {
		return nil, fmt.Errorf("%w: merge: %d --root files for %d sources; give one per source, in order, or none", ErrUsage, len(opts.Roots), len(opts.Sources))
	}
	if opts.Owner != "" {
		if err := manifest.ValidComponentID(opts.Owner); err != nil {
			return nil, fmt.Errorf("%w: owner ID: %v", ErrUsage, err)
		}
	}
	base := env.Address()
	seen := map[string]bool{base: true}
	addrs := make([]string, len(opts.Sources))
	for i, s := range opts.Sources {
		addrs[i] = normalizeAddress(s)
		if addrs[i] == base {
			return nil, fmt.Errorf("%w: merge: %s is the current mirror; name other mirrors to merge from", ErrUsage, displayAddress(base))
		}
		if seen[addrs[i]] {
			return nil, fmt.Errorf("%w: merge: %s is named twice", ErrUsage, displayAddress(addrs[i]))
		}
		seen[addrs[i]] = true
	}

	signers, ids, release, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer release()

	var sources []*mergeSource
	defer func() {
		for _, s := range sources {
			s.backend.Close()
		}
	}()
	for i, addr := range addrs {
		root := ""
		if len(opts.Roots) > 0 {
			root = opts.Roots[i]
		}
		s, err := openMergeSource(ctx, env, addr, root)
		if err != nil {
			return nil, err
		}
		sources = append(sources, s)
		if err := s.plan(ctx); err != nil {
			return nil, err
		}
	}

	stage, err := newTarballStage()
	if err != nil {
		return nil, err
	}
	defer stage.remove()

	var res *MergeResult
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		// The transaction may run again on a newer base: start afresh.
		res = &MergeResult{}
		m := &merger{tx: tx, opts: opts, ids: ids, stage: stage, comps: map[string]*mergedComponent{}}
		if opts.Owner != "" {
			if _, ok := tx.Index.Owners[opts.Owner]; !ok {
				return fmt.Errorf("merge: owner %s is not in the base index; run `mirror grant %s` first or pass another --owner", opts.Owner, opts.Owner)
			}
		}
		for _, s := range sources {
			sum, err := m.add(ctx, s)
			if err != nil {
				return err
			}
			res.Sources = append(res.Sources, sum)
		}
		changed, err := m.stageManifests(ctx, signers)
		if err != nil {
			return err
		}
		if !changed {
			return errUnchanged
		}
		if m.indexChanged {
			tx.IndexChanged()
			res.IndexVersion = tx.Index.Version + 1
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		res.Unchanged = true
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// openMergeSource opens and verifies a source: it is trusted from rootFile
// when given, else from its own root.json (the user named it).
func openMergeSource(ctx context.Context, env *Env, addr, rootFile string) (*mergeSource, error) {
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, err
	}
	var anchor []byte
	if rootFile != "" {
		anchor, err = os.ReadFile(rootFile)
	} else {
		anchor, err = readSmall(ctx, b, "root.json", manifest.MaxRootSize)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("merge: open source %s: read root: %w", displayAddress(addr), err)
	}
	r, err := repo.Open(ctx, b, repo.Options{Anchor: anchor, Store: repo.MemStore{}, Clock: env.Clock})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("merge: open source %s: %w", displayAddress(addr), err)
	}
	return &mergeSource{addr: addr, repo: r, backend: b}, nil
}

// plan reads and verifies every non-yanked component manifest of the
// source and lists what it offers: its non-yanked versions, and of its
// nightlies only the current one.
func (s *mergeSource) plan(ctx context.Context) error {
	ix := s.repo.Index()
	ids := make([]string, 0, len(ix.Components))
	for id, item := range ix.Components {
		if !item.Yanked {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := manifest.ValidComponentID(id); err != nil {
			return fmt.Errorf("merge: source %s: %w", displayAddress(s.addr), err)
		}
		c, _, err := s.repo.Component(ctx, id, false)
		if err != nil {
			return fmt.Errorf("merge: source %s: %w", displayAddress(s.addr), err)
		}
		oc := offeredComponent{id: id, item: ix.Components[id], c: c}
		for platform, versions := range c.Platforms {
			goos, goarch, ok := splitPlatform(platform)
			if !ok {
				return fmt.Errorf("merge: source %s: component %s has platform %q, want OS/ARCH", displayAddress(s.addr), id, platform)
			}
			for v, item := range versions {
				// An empty entry is a version the client treats as absent.
				if item.Yanked || item.Entry == "" {
					continue
				}
				if manifest.IsNightly(v) && v != c.Nightly {
					continue
				}
				if err := manifest.ValidVersion(v); err != nil {
					return fmt.Errorf("merge: source %s: component %s: %w", displayAddress(s.addr), id, err)
				}
				oc.items = append(oc.items, offeredItem{platform: platform, goos: goos, goarch: goarch, version: v, item: item})
			}
		}
		// A fixed order makes the merged manifests and the error reported
		// for a source with several problems the same on every run.
		slices.SortFunc(oc.items, func(a, b offeredItem) int {
			if c := strings.Compare(a.platform, b.platform); c != 0 {
				return c
			}
			return semver.Compare(a.version, b.version)
		})
		if len(oc.items) > 0 {
			s.comps = append(s.comps, oc)
		}
	}
	return nil
}

// splitPlatform splits an OS/ARCH platform key whose parts are safe in a
// tarball name.
func splitPlatform(platform string) (string, string, bool) {
	goos, goarch, ok := strings.Cut(platform, "/")
	return goos, goarch, ok && platformWord(goos) && platformWord(goarch)
}

func platformWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// merger carries one run of the merge transaction.
type merger struct {
	tx           *publish.Txn
	opts         MergeOptions
	ids          []string // key IDs of the signers
	stage        *tarballStage
	comps        map[string]*mergedComponent
	order        []string
	indexChanged bool
}

// add merges what one source offers and the base lacks.
func (m *merger) add(ctx context.Context, s *mergeSource) (MergeSource, error) {
	sum := MergeSource{Address: displayAddress(s.addr)}
	for _, oc := range s.comps {
		added := map[string]bool{}
		isNew := false
		for _, off := range oc.items {
			mc, err := m.component(ctx, oc)
			if err != nil {
				return sum, err
			}
			if old, ok := mc.c.Platforms[off.platform][off.version]; ok {
				if !sameTarball(old, off.item) {
					return sum, fmt.Errorf("merge: %s %s %s differs between the base and %s (other hashes); publish it under another version", oc.id, off.version, off.platform, displayAddress(s.addr))
				}
				continue
			}
			if manifest.IsNightly(off.version) && mc.c.Nightly != "" && semver.Compare(mc.c.Nightly, off.version) >= 0 {
				continue
			}
			if err := m.own(mc, oc.id); err != nil {
				return sum, err
			}
			key := manifest.TarballName(oc.id, off.version, off.goos, off.goarch)
			path, err := m.stage.fetch(ctx, s, off.item, key)
			if err != nil {
				return sum, err
			}
			m.tx.AddFile(key, path, int64(off.item.Length), off.item.Hashes["sha256"])
			item := off.item
			item.URL = "/" + key
			if mc.c.Platforms[off.platform] == nil {
				mc.c.Platforms[off.platform] = map[string]manifest.VersionItem{}
			}
			mc.c.Platforms[off.platform][off.version] = item
			if manifest.IsNightly(off.version) {
				mc.c.Nightly = off.version
				pruneNightlies(mc.c)
			}
			if mc.c.Description == "" {
				mc.c.Description = oc.c.Description
			}
			added[off.version] = true
			isNew = mc.isNew
			sum.Tarballs++
		}
		if len(added) > 0 {
			sum.Versions += len(added)
			sum.Components++
			if isNew {
				sum.NewComponents++
			}
		}
	}
	return sum, nil
}

// component returns the base's component as the merge has changed it so
// far, or a new one that the base lacks, not yet counted as changed.
func (m *merger) component(ctx context.Context, oc offeredComponent) (*mergedComponent, error) {
	if mc, ok := m.comps[oc.id]; ok {
		return mc, nil
	}
	mc := &mergedComponent{}
	if item, ok := m.tx.Index.Components[oc.id]; ok {
		c, err := m.tx.Component(ctx, oc.id)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if c == nil {
			return nil, fmt.Errorf("merge: component %s is in the base index but has no manifest", oc.id)
		}
		if c.Platforms == nil {
			c.Platforms = map[string]map[string]manifest.VersionItem{}
		}
		mc.c, mc.item = c, item
	} else {
		mc.isNew = true
		mc.c = manifest.NewComponent(oc.id, oc.c.Description, m.tx.Now())
		mc.item = manifest.ComponentItem{URL: manifest.ManifestURL(oc.id), Standalone: oc.item.Standalone, Hidden: oc.item.Hidden}
	}
	m.comps[oc.id] = mc
	m.order = append(m.order, oc.id)
	return mc, nil
}

// own checks, the first time a component changes, that the keys meet its
// owner's threshold; a new component first gets its owner. A component
// yanked in the base is not merged into: that would hide the new versions.
func (m *merger) own(mc *mergedComponent, id string) error {
	if mc.changed {
		return nil
	}
	if mc.item.Yanked {
		return fmt.Errorf("merge: component %s is yanked in the base; un-yank it with `mirror modify %s --yank=false` or merge without that source", id, id)
	}
	if mc.isNew {
		owner := m.opts.Owner
		if owner == "" {
			owner = ownerOfKey(m.tx.Index, m.ids[0])
			if owner == "" {
				return fmt.Errorf("merge: new component %s: missing owner keys: key %s is not an owner's key in the base; pass --owner ID or grant the key first", id, m.ids[0][:16])
			}
		}
		mc.item.Owner = owner
	}
	if err := checkOwnerKeys(m.tx.Index, mc.item.Owner, m.ids); err != nil {
		return fmt.Errorf("merge: %s: missing owner keys for owner %s: %w", id, mc.item.Owner, err)
	}
	mc.changed = true
	return nil
}

// ownerOfKey returns the owner in the index that holds key id, or "".
func ownerOfKey(ix *manifest.Index, id string) string {
	owners := make([]string, 0, len(ix.Owners))
	for o := range ix.Owners {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	for _, o := range owners {
		if _, ok := ix.Owners[o].Keys[id]; ok {
			return o
		}
	}
	return ""
}

// stageManifests signs every changed component with its owner's keys and
// stages it, and adds the new components to the index.
func (m *merger) stageManifests(ctx context.Context, signers []*host.Signer) (bool, error) {
	changed := false
	for _, id := range m.order {
		mc := m.comps[id]
		if !mc.changed {
			continue
		}
		changed = true
		if mc.isNew {
			m.tx.Index.Components[id] = mc.item
			m.indexChanged = true
		} else {
			mc.c.Renew(m.tx.Now(), manifest.LifetimeComponent)
		}
		owner := m.tx.Index.Owners[mc.item.Owner]
		var own []*host.Signer
		for i, s := range signers {
			if _, ok := owner.Keys[m.ids[i]]; ok {
				own = append(own, s)
			}
		}
		if err := putSignedComponent(ctx, m.tx, mc.c, own); err != nil {
			return false, fmt.Errorf("merge %s: %w", id, err)
		}
	}
	return changed, nil
}

// sameTarball reports whether two version items name the same content:
// the same length and every hash both of them carry equal.
func sameTarball(a, b manifest.VersionItem) bool {
	if a.Length != b.Length {
		return false
	}
	common := 0
	for name, h := range a.Hashes {
		if g, ok := b.Hashes[name]; ok {
			if g != h {
				return false
			}
			common++
		}
	}
	return common > 0
}

// tarballStage holds the verified tarballs of a merge in a private
// temporary directory until the commit copies them into the base.
type tarballStage struct {
	dir   string
	paths map[string]string // source address + "\x00" + key -> staged file
}

func newTarballStage() (*tarballStage, error) {
	dir, err := os.MkdirTemp("", "mirror-merge-")
	if err != nil {
		return nil, fmt.Errorf("merge: stage tarballs: %w", err)
	}
	return &tarballStage{dir: dir, paths: map[string]string{}}, nil
}

// fetch streams a tarball from the source into the stage through the
// source's verifier (signed length, sha256 and sha512), so only content the
// source's chain vouches for is staged; a tarball staged by an earlier run
// of the transaction is reused.
func (st *tarballStage) fetch(ctx context.Context, s *mergeSource, item manifest.VersionItem, key string) (string, error) {
	tag := s.addr + "\x00" + key
	if p, ok := st.paths[tag]; ok {
		return p, nil
	}
	rc, err := s.repo.OpenTarball(ctx, item)
	if err != nil {
		return "", fmt.Errorf("merge: source %s: %w", displayAddress(s.addr), err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(st.dir, "tarball-*")
	if err != nil {
		return "", fmt.Errorf("merge: stage %s: %w", key, err)
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("merge: source %s: copy %s: %w", displayAddress(s.addr), strings.TrimPrefix(item.URL, "/"), err)
	}
	st.paths[tag] = f.Name()
	return f.Name(), nil
}

func (st *tarballStage) remove() { os.RemoveAll(st.dir) }
