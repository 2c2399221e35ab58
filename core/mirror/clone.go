package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	_ "embed"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// CloneOwner is the owner every component of a clone gets, as in stock
// tiup; CloneOwnerName is its display name.
const (
	CloneOwner     = "pingcap"
	CloneOwnerName = "PingCAP"
)

// LocalInstallScript is the offline installer every clone holds at its
// root: run on the offline machine, it points TiUP there (see
// local_install.sh beside this file).
const LocalInstallScript = "local_install.sh"

//go:embed local_install.sh
var localInstallScript []byte

// cloneLifetime keeps the snapshot and timestamp of an offline clone valid
// for 50 years, as stock clone does, since nobody republishes to it.
const cloneLifetime = 50 * 365 * 24 * time.Hour

// Version aliases a clone selection accepts.
const (
	VersionLatest  = "latest"
	VersionNightly = "nightly"
	VersionAll     = "all"
)

// CloneOptions configure Clone; the fields follow `tiup mirror clone`.
type CloneOptions struct {
	// Target is the address of the clone. A new or empty target gets a new
	// mirror with fresh keys; a target that already is a mirror whose keys
	// are found is refreshed, keeping its root and keys.
	Target string
	// From is the source address; default the current mirror. A source
	// given here is trusted from its own root.json.
	From string
	// KeyDir holds the target's keys; default <Target>/keys (or the
	// directory recorded for the target, or --key-dir).
	KeyDir string
	// Full selects every version of every component.
	Full bool
	// Versions are global versions, selected in every component; a
	// component without one on a platform gets its latest there.
	Versions []string
	// Components selects versions per component; each must exist.
	Components map[string][]string
	// Prefix lets every global and per-component version be a prefix that
	// selects all versions under it at a dot or dash boundary: v1 selects
	// v1.0.0 and v1.2.3-rc.1 but not v10.0.0. Stock tiup aborts on these.
	Prefix bool
	// OS and Arch filter platforms; any/any is always kept. Default: every
	// platform with Full, else linux,darwin and amd64,arm64.
	OS, Arch []string
	// Jobs is how many tarballs are copied at once; default four per CPU,
	// at most 16.
	Jobs int
	// Progress, when set, is told how the copy goes; calls are serialized.
	Progress func(CloneProgress)
}

// CloneProgress is how far the tarball copy is.
type CloneProgress struct {
	Done, Total       int   // tarballs finished (copied or skipped), in all
	Bytes, TotalBytes int64 // bytes copied, and the size of all tarballs
}

// CloneResult says what Clone did.
type CloneResult struct {
	Target     string
	KeyDir     string
	Refreshed  bool // the target was a clone already; its root and keys were kept
	Components int  // components in the clone
	Manifests  int  // component manifests written
	Tarballs   int  // tarballs the clone names
	Skipped    int  // of those, already present and intact
	Bytes      int64
	Unchanged  bool // a refresh found nothing to change
}

// clonePlan is what to copy: the components with their selected versions
// and the tarballs they name.
type clonePlan struct {
	comps    map[string]*plannedComponent
	ids      []string
	defaults []string
	items    []manifest.VersionItem
	bytes    int64
}

type plannedComponent struct {
	item manifest.ComponentItem
	c    *manifest.Component // Version and Expires are set at commit
}

// Clone copies a verified selection of a mirror into a new mirror with its
// own keys, or refreshes a clone made earlier. Every component manifest and
// tarball is verified against the source's chain of trust before it lands;
// tarballs are copied first, several at once, then the manifests are
// committed in one transaction, the timestamp last.
func Clone(ctx context.Context, env *Env, opts CloneOptions) (*CloneResult, error) {
	if opts.Target == "" {
		return nil, fmt.Errorf("%w: clone needs the target address, e.g. `mirror clone ./offline --full`", ErrUsage)
	}
	if opts.Jobs < 0 {
		return nil, fmt.Errorf("%w: clone: --jobs %d must not be negative", ErrUsage, opts.Jobs)
	}
	sel, err := newSelection(opts)
	if err != nil {
		return nil, err
	}
	target := normalizeAddress(opts.Target)
	srcAddr := env.Address()
	if opts.From != "" {
		srcAddr = normalizeAddress(opts.From)
	}
	if srcAddr == target {
		return nil, fmt.Errorf("%w: clone: the target %s is the source mirror; choose another target", ErrUsage, displayAddress(target))
	}
	// The target's plugin starts, and a new clone's keys are generated,
	// while the source is opened and verified: process starts and RSA key
	// generation would otherwise come before the first byte is copied.
	tgt := openCloneTarget(ctx, env, target)
	src, srcBackend, err := openCloneSource(ctx, env, opts.From, srcAddr)
	if err != nil {
		tgt.discard()
		return nil, err
	}
	defer srcBackend.Close()
	plan, err := planClone(ctx, src, sel)
	if err != nil {
		tgt.discard()
		return nil, err
	}
	t := <-tgt
	if t.err != nil {
		return nil, t.err
	}
	dst := t.backend
	defer dst.Close()
	res := &CloneResult{Target: displayAddress(target), Components: len(plan.ids), Tarballs: len(plan.items), Refreshed: t.refresh}

	var ks publish.KeySource
	var owner func(ctx context.Context, tx *publish.Txn) ([]sdk.Signer, error)
	if res.Refreshed {
		res.KeyDir = opts.KeyDir
		if res.KeyDir == "" {
			res.KeyDir = env.keyDir(target)
		}
		switch _, err := dst.Stat(ctx, "timestamp.json"); {
		case errors.Is(err, fs.ErrNotExist):
			// An earlier clone stopped inside its init, after root.json
			// and before the timestamp: finish the init with the keys it
			// left, then refresh as from any earlier clone.
			if err := resumeInitClone(ctx, env, dst, res.KeyDir); err != nil {
				return nil, fmt.Errorf("clone into %s: resume an interrupted clone: %w", res.Target, err)
			}
		case err != nil:
			return nil, fmt.Errorf("clone into %s: %w", res.Target, err)
		}
		dk := newDirKeys(env, res.KeyDir)
		defer dk.Close()
		ks = dk
		var opened []*host.Signer
		defer func() { closeSigners(opened) }()
		owner = func(ctx context.Context, tx *publish.Txn) ([]sdk.Signer, error) {
			if err := checkRoleKeys(ctx, tx, dk); err != nil {
				return nil, fmt.Errorf("refresh %s: %w", res.Target, err)
			}
			if opened == nil {
				ss, err := cloneOwnerSigners(ctx, env, tx.Index, res.KeyDir)
				if err != nil {
					return nil, fmt.Errorf("refresh %s: %w", res.Target, err)
				}
				opened = ss
			}
			out := make([]sdk.Signer, len(opened))
			for i, s := range opened {
				out[i] = s
			}
			return out, nil
		}
	} else {
		mk, ownerKey, keyDir, err := initClone(ctx, env, dst, target, opts.KeyDir, t.keys)
		if err != nil {
			return nil, err
		}
		res.KeyDir = keyDir
		ks = mk
		owner = func(context.Context, *publish.Txn) ([]sdk.Signer, error) {
			return []sdk.Signer{ownerKey.Signer()}, nil
		}
	}

	copied := false
	w := &publish.Writer{Backend: dst, Keys: ks, Clock: env.Clock}
	err = w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		tx.SnapshotLifetime, tx.TimestampLifetime = cloneLifetime, cloneLifetime
		signers, err := owner(ctx, tx)
		if err != nil {
			return err
		}
		if !copied {
			skipped, n, err := copyTarballs(ctx, src, dst, plan, opts.Jobs, opts.Progress)
			if err != nil {
				return err
			}
			if err := writeOfflineFiles(ctx, dst, plan); err != nil {
				return err
			}
			res.Skipped, res.Bytes, copied = skipped, n, true
		}
		res.Manifests = 0
		changed, err := stageClone(ctx, tx, plan, signers, &res.Manifests)
		if err != nil {
			return err
		}
		if !changed {
			return errUnchanged
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

// openCloneSource opens and verifies the source: an address given with
// --from is trusted from its own root.json (the user named it), the current
// mirror from the configured trust anchor.
func openCloneSource(ctx context.Context, env *Env, from, addr string) (*repo.Repo, *host.Backend, error) {
	if from == "" {
		return env.openRepo(ctx)
	}
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	anchor, err := readSmall(ctx, b, "root.json", manifest.MaxRootSize)
	if err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("open mirror %s: %w", displayAddress(addr), err)
	}
	r, err := repo.Open(ctx, b, repo.Options{Anchor: anchor, Store: repo.MemStore{}, Clock: env.Clock})
	if err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("open mirror %s: %w", displayAddress(addr), err)
	}
	return r, b, nil
}

// cloneTarget is the opened target of a clone: refresh says it already is
// a mirror; otherwise keys delivers the keys of the new clone, generated
// in the background.
type cloneTarget struct {
	backend *host.Backend
	refresh bool
	keys    func() ([]*keys.PrivateKey, error)
	err     error
}

// openCloneTarget starts the target's backend plugin and finds out whether
// the target is a clone to refresh; for a new one it starts generating its
// keys at once. The result arrives on the channel.
func openCloneTarget(ctx context.Context, env *Env, target string) targetFuture {
	out := make(chan cloneTarget, 1)
	go func() {
		// A local directory without root.json is almost surely a new
		// clone: its keys can start before the plugin has, and the
		// backend's answer below still decides.
		var newKeys func() ([]*keys.PrivateKey, error)
		if isLocal(target) {
			if _, err := os.Stat(filepath.Join(target, "root.json")); errors.Is(err, fs.ErrNotExist) {
				newKeys = generateKeysAsync(len(cloneRoles))
			}
		}
		b, err := env.OpenBackend(ctx, target)
		if err != nil {
			out <- cloneTarget{err: err}
			return
		}
		t := cloneTarget{backend: b}
		if !b.Caps().Write {
			t.err = fmt.Errorf("clone into %s: %w: the backend is read-only", displayAddress(target), sdk.ErrUnsupported)
		} else if _, err := b.Stat(ctx, "root.json"); err == nil {
			t.refresh = true
		} else if errors.Is(err, fs.ErrNotExist) {
			if newKeys == nil {
				newKeys = generateKeysAsync(len(cloneRoles))
			}
			t.keys = newKeys
		} else {
			t.err = fmt.Errorf("clone into %s: %w", displayAddress(target), err)
		}
		if t.err != nil {
			b.Close()
			t.backend = nil
		}
		out <- t
	}()
	return out
}

// targetFuture delivers the cloneTarget once.
type targetFuture <-chan cloneTarget

// discard waits for the target and closes it, for a clone that failed
// before it needed the target. Keys still being generated are dropped.
func (f targetFuture) discard() {
	if t := <-f; t.backend != nil {
		t.backend.Close()
	}
}

// generateKeysAsync generates n keys in the background; the function it
// returns waits for them.
func generateKeysAsync(n int) func() ([]*keys.PrivateKey, error) {
	type result struct {
		ks  []*keys.PrivateKey
		err error
	}
	done := make(chan result, 1)
	go func() {
		ks, err := generateKeys(n)
		done <- result{ks, err}
	}()
	var once sync.Once
	var r result
	return func() ([]*keys.PrivateKey, error) {
		once.Do(func() { r = <-done })
		return r.ks, r.err
	}
}

// selection is what the user asked to copy.
type selection struct {
	full     bool
	prefix   bool
	global   []string
	perComp  map[string][]string
	os, arch map[string]bool // nil: any
}

func newSelection(opts CloneOptions) (*selection, error) {
	s := &selection{full: opts.Full, prefix: opts.Prefix, perComp: map[string][]string{}}
	for _, v := range opts.Versions {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !isAlias(v) && !strings.HasPrefix(v, "v") {
			v = "v" + v // as stock FmtVer does for global versions
		}
		if err := checkCloneVersion(v, opts.Prefix); err != nil {
			return nil, err
		}
		s.global = append(s.global, v)
	}
	for id, vs := range opts.Components {
		if err := manifest.ValidComponentID(id); err != nil {
			return nil, fmt.Errorf("%w: clone: unknown flag --%s", ErrUsage, id)
		}
		for _, v := range vs {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if err := checkCloneVersion(v, opts.Prefix); err != nil {
				return nil, err
			}
			s.perComp[id] = append(s.perComp[id], v)
		}
		if len(s.perComp[id]) == 0 {
			return nil, fmt.Errorf("%w: clone: --%s needs versions, e.g. --%s v1.0.0,latest", ErrUsage, id, id)
		}
	}
	if !s.full && len(s.global) == 0 && len(s.perComp) == 0 {
		return nil, fmt.Errorf("%w: clone: nothing selected; pass --full, global versions or --COMPONENT VERSIONS", ErrUsage)
	}
	var err error
	if s.os, err = platformFilter("os", opts.OS, opts.Full, []string{"linux", "darwin"}); err != nil {
		return nil, err
	}
	if s.arch, err = platformFilter("arch", opts.Arch, opts.Full, []string{"amd64", "arm64"}); err != nil {
		return nil, err
	}
	return s, nil
}

func isAlias(v string) bool {
	return v == VersionLatest || v == VersionNightly || v == VersionAll
}

func checkCloneVersion(v string, prefix bool) error {
	if isAlias(v) {
		return nil
	}
	if prefix {
		// A prefix is a leading part of a version, so only its characters
		// can be checked.
		if len(v) < 2 || v[0] != 'v' || strings.Trim(v[1:], "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-+") != "" {
			return fmt.Errorf("%w: clone: version prefix %q is not the start of a version such as v1 or v1.2", ErrUsage, v)
		}
		return nil
	}
	if err := manifest.ValidVersion(v); err != nil {
		return fmt.Errorf("%w: clone: version: %v", ErrUsage, err)
	}
	return nil
}

// platformFilter turns --os or --arch into a set; nil means every value.
func platformFilter(flag string, vals []string, full bool, def []string) (map[string]bool, error) {
	if len(vals) == 0 {
		if full {
			return nil, nil
		}
		vals = def
	}
	set := map[string]bool{}
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" || strings.ContainsAny(v, "/, ") {
			return nil, fmt.Errorf("%w: clone: --%s %q is not a platform name", ErrUsage, flag, v)
		}
		set[v] = true
	}
	return set, nil
}

func (s *selection) platformWanted(platform string) bool {
	if platform == manifest.PlatformAny {
		return true
	}
	goos, goarch, ok := strings.Cut(platform, "/")
	if !ok {
		return false
	}
	return (s.os == nil || s.os[goos]) && (s.arch == nil || s.arch[goarch])
}

// planClone reads and verifies every component manifest the selection
// touches and works out what the clone holds, before anything is written.
func planClone(ctx context.Context, src *repo.Repo, sel *selection) (*clonePlan, error) {
	ix := src.Index()
	for id := range sel.perComp {
		if item, ok := ix.Components[id]; !ok || item.Yanked {
			return nil, fmt.Errorf("%w: clone: unknown flag --%s: the source has no component %s", ErrUsage, id, id)
		}
	}
	ids := make([]string, 0, len(ix.Components))
	for id, item := range ix.Components {
		if item.Yanked {
			continue
		}
		if _, named := sel.perComp[id]; !sel.full && len(sel.global) == 0 && !named {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	plan := &clonePlan{comps: map[string]*plannedComponent{}}
	byURL := map[string]manifest.VersionItem{}
	for _, id := range ids {
		c, _, err := src.Component(ctx, id, false)
		if err != nil {
			return nil, fmt.Errorf("clone %s: %w", id, err)
		}
		platforms, err := sel.versions(id, c)
		if err != nil {
			return nil, err
		}
		if len(platforms) == 0 {
			continue
		}
		want := &manifest.Component{
			Base:        manifest.Base{Type: manifest.TypeComponent, SpecVersion: manifest.SpecVersion},
			ID:          id,
			Description: c.Description,
			Platforms:   platforms,
		}
		for _, versions := range platforms {
			if _, ok := versions[c.Nightly]; ok && c.Nightly != "" {
				want.Nightly = c.Nightly
			}
			for _, item := range versions {
				if err := checkTarballItem(id, item); err != nil {
					return nil, err
				}
				if prev, ok := byURL[item.URL]; ok {
					if prev.Hashes["sha256"] != item.Hashes["sha256"] || prev.Length != item.Length {
						return nil, fmt.Errorf("%w: clone: %s is named with two different contents", trust.ErrUntrusted, item.URL)
					}
					continue
				}
				byURL[item.URL] = item
			}
		}
		src := ix.Components[id]
		plan.comps[id] = &plannedComponent{
			item: manifest.ComponentItem{Owner: CloneOwner, URL: manifest.ManifestURL(id), Standalone: src.Standalone, Hidden: src.Hidden},
			c:    want,
		}
		plan.ids = append(plan.ids, id)
	}
	plan.defaults = []string{}
	for _, id := range ix.DefaultComponents {
		if _, ok := plan.comps[id]; ok {
			plan.defaults = append(plan.defaults, id)
		}
	}
	for _, item := range byURL {
		plan.items = append(plan.items, item)
		plan.bytes += int64(item.Length)
	}
	slices.SortFunc(plan.items, func(a, b manifest.VersionItem) int { return strings.Compare(a.URL, b.URL) })
	return plan, nil
}

// checkTarballItem refuses a signed item the copy could not verify or that
// names a file outside the mirror.
func checkTarballItem(id string, item manifest.VersionItem) error {
	key := strings.TrimPrefix(item.URL, "/")
	if !fs.ValidPath(key) || key == "." {
		return fmt.Errorf("%w: clone %s: tarball url %q is not a path inside the mirror", trust.ErrUntrusted, id, item.URL)
	}
	if len(item.Hashes["sha256"]) != sha256.Size*2 {
		return fmt.Errorf("%w: clone %s: %s has no sha256", trust.ErrUntrusted, id, item.URL)
	}
	return nil
}

// versions returns the selected, non-yanked versions of c on each wanted
// platform. Yanked versions are never copied: a clone holds only what can
// be installed.
func (s *selection) versions(id string, c *manifest.Component) (map[string]map[string]manifest.VersionItem, error) {
	specs := s.perComp[id]
	found := map[string]bool{}
	out := map[string]map[string]manifest.VersionItem{}
	for platform, versions := range c.Platforms {
		if !s.platformWanted(platform) {
			continue
		}
		chosen := map[string]manifest.VersionItem{}
		add := func(v string) bool {
			item, ok := versions[v]
			if !ok || item.Yanked {
				return false
			}
			chosen[v] = item
			return true
		}
		latest := func() {
			if v, ok := c.LatestStable(platform, false); ok {
				add(v)
			}
		}
		pick := func(spec string, global bool) {
			switch spec {
			case VersionAll:
				for v := range versions {
					add(v)
				}
			case VersionLatest:
				latest()
			case VersionNightly:
				if c.Nightly != "" {
					add(c.Nightly)
				}
			default:
				hit := false
				if s.prefix {
					for v := range versions {
						if hasVersionPrefix(v, spec) && add(v) {
							hit = true
						}
					}
				} else {
					hit = add(spec)
				}
				if hit {
					found[spec] = true
				} else if global {
					latest()
				}
			}
		}
		if s.full {
			pick(VersionAll, true)
		}
		for _, spec := range specs {
			pick(spec, false)
		}
		for _, spec := range s.global {
			pick(spec, true)
		}
		if len(chosen) > 0 {
			out[platform] = chosen
		}
	}
	for _, spec := range specs {
		if !isAlias(spec) && !found[spec] {
			return nil, fmt.Errorf("clone %s: no version %s on the selected platforms: %w; see `mirror list %s --all`", id, spec, fs.ErrNotExist, id)
		}
	}
	return out, nil
}

// hasVersionPrefix reports whether prefix selects version v: v is the
// prefix itself or continues it at a version boundary, so that v1 takes
// v1.2.0 but not v10.0.0.
func hasVersionPrefix(v, prefix string) bool {
	if !strings.HasPrefix(v, prefix) {
		return false
	}
	if len(v) == len(prefix) || strings.ContainsAny(prefix[len(prefix)-1:], ".-+") {
		return true
	}
	return strings.ContainsRune(".-+", rune(v[len(prefix)]))
}

// initClone makes the target a new, empty mirror with fresh keys: three
// root keys, index, snapshot, timestamp and the pingcap owner key. The
// mirror exists before any tarball is copied, so an interrupted clone is
// resumed as a refresh that keeps these keys.
func initClone(ctx context.Context, env *Env, dst sdk.Backend, target, keyDir string, newKeys func() ([]*keys.PrivateKey, error)) (memKeys, *keys.PrivateKey, string, error) {
	if keyDir == "" {
		keyDir = env.KeyDir
	}
	if keyDir == "" {
		if !isLocal(target) {
			return nil, nil, "", fmt.Errorf("%w: clone into a remote mirror needs -k KEYDIR for its private keys", ErrUsage)
		}
		keyDir = filepath.Join(target, "keys")
	}
	keyDir, _ = filepath.Abs(keyDir)
	if isLocal(target) {
		if empty, err := isDirEmpty(target); err != nil || !empty {
			return nil, nil, "", fmt.Errorf("clone into %s: the directory is not empty and not a mirror: %w; choose a new or empty directory", target, fs.ErrExist)
		}
	} else if err := dst.List(ctx, "", func(sdk.ObjectInfo) error { return fs.ErrExist }); err != nil && !errors.Is(err, sdk.ErrUnsupported) {
		if errors.Is(err, fs.ErrExist) {
			return nil, nil, "", fmt.Errorf("clone into %s: the target is not empty and not a mirror: %w", displayAddress(target), fs.ErrExist)
		}
		return nil, nil, "", fmt.Errorf("clone into %s: %w", displayAddress(target), err)
	}
	if empty, err := isDirEmpty(keyDir); err != nil || !empty {
		return nil, nil, "", fmt.Errorf("clone into %s: key directory %s is not empty: %w; choose a new one", displayAddress(target), keyDir, fs.ErrExist)
	}
	generated, err := newKeys()
	if err != nil {
		return nil, nil, "", err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, nil, "", fmt.Errorf("clone: %w", err)
	}
	mk := memKeys{}
	signers := map[string][]sdk.Signer{}
	for i, k := range generated {
		if err := writeRoleKey(keyDir, k, cloneRoles[i]); err != nil {
			return nil, nil, "", fmt.Errorf("clone: %w", err)
		}
		if cloneRoles[i] != CloneOwner {
			mk[k.ID()] = k.Signer()
			signers[cloneRoles[i]] = append(signers[cloneRoles[i]], k.Signer())
		}
	}
	if err := publish.Init(ctx, dst, signers, env.Clock()); err != nil {
		return nil, nil, "", err
	}
	if !isLocal(target) || !within(keyDir, target) {
		if err := env.rememberKeyDir(target, keyDir); err != nil {
			return nil, nil, "", fmt.Errorf("clone: record key directory: %w", err)
		}
	}
	return mk, generated[len(generated)-1], keyDir, nil
}

// resumeInitClone finishes the init of a clone that stopped before its
// timestamp.json: the role keys are the ones root.json names, found in the
// key directory where initClone wrote them before it wrote anything to the
// target.
func resumeInitClone(ctx context.Context, env *Env, dst sdk.Backend, keyDir string) error {
	anchor, err := readSmall(ctx, dst, "root.json", manifest.MaxRootSize)
	if err != nil {
		return err
	}
	st, err := trust.New(anchor, env.Clock)
	if err != nil {
		return err
	}
	dk := newDirKeys(env, keyDir)
	defer dk.Close()
	roles := map[string][]sdk.Signer{}
	for _, role := range []string{manifest.RoleRoot, manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		for _, id := range slices.Sorted(maps.Keys(st.Root.Roles[role].Keys)) {
			s, err := dk.Signer(ctx, id)
			if err != nil {
				return fmt.Errorf("%w; the target was started with other keys, pass its key directory with -k KEYDIR", err)
			}
			roles[role] = append(roles[role], s)
		}
	}
	return publish.ResumeInit(ctx, dst, roles, env.Clock())
}

// cloneRoles are the roles of the keys a new clone gets, in the order
// initClone uses them: three root keys, index, snapshot, timestamp and the
// owner.
var cloneRoles = []string{manifest.RoleRoot, manifest.RoleRoot, manifest.RoleRoot, manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp, CloneOwner}

// memKeys is a publish.KeySource of keys this process just generated.
type memKeys map[string]sdk.Signer

// Signer implements publish.KeySource.
func (m memKeys) Signer(_ context.Context, keyID string) (sdk.Signer, error) {
	if s, ok := m[keyID]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("key %s: %w", keyID[:16], publish.ErrMissingKey)
}

// checkRoleKeys makes sure a refresh can sign index, snapshot and timestamp
// before any tarball is copied.
func checkRoleKeys(ctx context.Context, tx *publish.Txn, ks publish.KeySource) error {
	for _, role := range []string{manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		r := tx.Root().Roles[role]
		n := uint64(0)
		for id := range r.Keys {
			if _, err := ks.Signer(ctx, id); err == nil {
				n++
			} else if !errors.Is(err, publish.ErrMissingKey) {
				return err
			}
		}
		if n < r.Threshold {
			return fmt.Errorf("the %s keys of the target are not in the key directory: %w; pass it with -k KEYDIR", role, publish.ErrMissingKey)
		}
	}
	return nil
}

// cloneOwnerSigners opens the pingcap owner keys of a clone made earlier,
// found by tiup's key file name <id16>-pingcap.json.
func cloneOwnerSigners(ctx context.Context, env *Env, ix *manifest.Index, keyDir string) ([]*host.Signer, error) {
	o, ok := ix.Owners[CloneOwner]
	if !ok {
		// A clone that stopped between its init and its first commit left
		// a mirror without the owner, and the owner key beside the role
		// keys: stageClone adds the owner with that key.
		files, _ := filepath.Glob(filepath.Join(keyDir, "*-"+CloneOwner+".json"))
		if len(files) != 1 {
			return nil, fmt.Errorf("the target has no owner %s, so it was not made by clone; clone into a new directory", CloneOwner)
		}
		s, err := env.openSigner(ctx, files[0])
		if err != nil {
			return nil, err
		}
		return []*host.Signer{s}, nil
	}
	var out []*host.Signer
	for _, id := range slices.Sorted(maps.Keys(o.Keys)) {
		if uint64(len(out)) >= o.Threshold {
			break
		}
		path := filepath.Join(keyDir, keys.KeyFileName(id, CloneOwner))
		if _, err := os.Stat(path); err != nil {
			continue
		}
		s, err := env.openSigner(ctx, path)
		if err != nil {
			closeSigners(out)
			return nil, err
		}
		pub, err := s.PublicKey(ctx)
		var pk *keys.PublicKey
		if err == nil {
			pk, err = keys.FromSDK(pub)
		}
		if err != nil || pk.ID() != id {
			s.Close()
			continue
		}
		out = append(out, s)
	}
	if uint64(len(out)) < o.Threshold || len(out) == 0 {
		closeSigners(out)
		return nil, fmt.Errorf("the %s owner key is not in %s: %w; pass the key directory with -k KEYDIR", CloneOwner, keyDir, publish.ErrMissingKey)
	}
	return out, nil
}

// stageClone brings the target's index and component manifests in line
// with the plan: a component manifest is written only where its content
// changed, and components the plan no longer holds are yanked (so clients
// that cached them see them go). It reports whether anything changed.
func stageClone(ctx context.Context, tx *publish.Txn, plan *clonePlan, signers []sdk.Signer, written *int) (bool, error) {
	changed := false
	if _, ok := tx.Index.Owners[CloneOwner]; !ok {
		pub, err := signers[0].PublicKey(ctx)
		if err != nil {
			return false, fmt.Errorf("clone: %w", err)
		}
		pk, err := keys.FromSDK(pub)
		if err != nil {
			return false, fmt.Errorf("clone: %w", err)
		}
		tx.Index.Owners[CloneOwner] = manifest.Owner{Name: CloneOwnerName, Keys: map[string]*manifest.KeyInfo{pk.ID(): pk.KeyInfo()}, Threshold: 1}
		changed = true
	}
	for _, id := range plan.ids {
		p := plan.comps[id]
		if cur, ok := tx.Index.Components[id]; !ok || cur != p.item {
			tx.Index.Components[id] = p.item
			changed = true
		}
		cur, err := tx.Component(ctx, id)
		if err != nil {
			return false, err
		}
		if cur != nil && sameContent(cur, p.c) {
			continue
		}
		c := *p.c
		c.Version = 1
		c.Expires = manifest.FormatTime(tx.Now().Add(manifest.LifetimeComponent))
		if fv, ok := tx.State().Meta(id); ok {
			c.Version = fv.Version + 1
		}
		if cur != nil && later(cur.Expires, c.Expires) {
			c.Expires = cur.Expires // an expiry only ever moves later
		}
		env, err := manifest.NewEnvelope(&c)
		if err != nil {
			return false, err
		}
		for _, s := range signers {
			if err := publish.SignWith(ctx, env, s); err != nil {
				return false, err
			}
		}
		if err := tx.PutComponent(env); err != nil {
			return false, err
		}
		*written++
		changed = true
	}
	for id, item := range tx.Index.Components {
		if _, ok := plan.comps[id]; !ok && !item.Yanked {
			item.Yanked = true
			tx.Index.Components[id] = item
			changed = true
		}
	}
	if !slices.Equal(tx.Index.DefaultComponents, plan.defaults) {
		tx.Index.DefaultComponents = plan.defaults
		changed = true
	}
	if changed {
		tx.IndexChanged()
	}
	return changed || *written > 0, nil
}

// sameContent reports whether two component manifests say the same apart
// from version and expiry.
func sameContent(a, b *manifest.Component) bool {
	type content struct {
		D string
		N string
		P map[string]map[string]manifest.VersionItem
	}
	ja, erra := json.Marshal(content{a.Description, a.Nightly, a.Platforms})
	jb, errb := json.Marshal(content{b.Description, b.Nightly, b.Platforms})
	return erra == nil && errb == nil && string(ja) == string(jb)
}

// copyTarballs copies the plan's tarballs with jobs workers and returns how
// many were skipped and how many bytes were copied. The first failure
// cancels the rest; a failed copy stores nothing under the final name.
func copyTarballs(ctx context.Context, src *repo.Repo, dst sdk.Backend, plan *clonePlan, jobs int, progress func(CloneProgress)) (int, int64, error) {
	if jobs <= 0 {
		// Copies wait on fsync and on the network more than on the CPU, so
		// more of them than cores keep both the disk and the cores busy.
		jobs = min(4*runtime.NumCPU(), 16)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		state    = CloneProgress{Total: len(plan.items), TotalBytes: plan.bytes}
		skipped  int
		firstErr error
	)
	report := func(files int, n int64) {
		mu.Lock()
		defer mu.Unlock()
		state.Done += files
		state.Bytes += n
		if progress != nil {
			progress(state)
		}
	}
	next := make(chan manifest.VersionItem)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range next {
				skip, err := copyTarball(ctx, src, dst, item, func(n int64) { report(0, n) })
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				if skip {
					skipped++
				}
				mu.Unlock()
				if err == nil {
					report(1, 0)
				}
			}
		}()
	}
feed:
	for _, item := range plan.items {
		select {
		case next <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return skipped, state.Bytes, nil
}

// copyTarball copies one tarball unless the target already has it intact
// (a re-run after an interrupted clone). The bytes stream through the
// source's verifier into a create-only (or compare-and-swap, to replace a
// damaged copy) Put that checks size and sha256 again, so nothing that
// fails verification is stored.
func copyTarball(ctx context.Context, src *repo.Repo, dst sdk.Backend, item manifest.VersionItem, count func(int64)) (bool, error) {
	key, err := repo.TarballKey(item.URL)
	if err != nil {
		return false, err
	}
	sum := item.Hashes["sha256"]
	opts := sdk.PutOptions{Size: int64(item.Length), SizeKnown: true, SHA256: sum}
	info, err := dst.Stat(ctx, key)
	switch {
	case err == nil:
		if info.Size == int64(item.Length) {
			ok, err := hasSHA256(ctx, dst, key, sum)
			if err != nil {
				return false, err
			}
			if ok {
				return true, nil
			}
		}
		if info.ETag != "" {
			opts.IfMatch = info.ETag
		} else {
			if err := dst.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("clone %s: remove damaged copy: %w", key, err)
			}
			opts.IfNoneMatch = true
		}
	case errors.Is(err, fs.ErrNotExist):
		opts.IfNoneMatch = true
	default:
		return false, fmt.Errorf("clone %s: %w", key, err)
	}
	// fs to fs: the target copies the source file itself (copy_file_range)
	// and checks length and sha256 on the stored copy, so the bytes never
	// cross the plugin protocol. The signed sha256 is the check that
	// matters; the sha512 beside it adds nothing once sha256 matched.
	if path, ok := localPath(ctx, src.Backend(), key); ok {
		if lf, ok := dst.(sdk.LocalFiler); ok && hasLocalFiles(ctx, dst) {
			_, err := lf.PutFile(ctx, key, path, opts)
			if err == nil {
				count(int64(item.Length))
				return false, nil
			}
			if !errors.Is(err, sdk.ErrUnsupported) {
				return false, fmt.Errorf("clone %s: %w", key, err)
			}
		}
	}
	if err := putTarball(ctx, src.Backend(), dst, key, item, opts, count); err != nil {
		return false, fmt.Errorf("clone %s: %w", key, err)
	}
	return false, nil
}

// putTarball streams the tarball item names, stored under key (see
// repo.TarballKey), from src into dst with opts, which carry the item's
// length and sha256; see openForPut for who checks what. count is told the
// bytes as they pass.
func putTarball(ctx context.Context, src, dst sdk.Backend, key string, item manifest.VersionItem, opts sdk.PutOptions, count func(int64)) error {
	rc, err := openForPut(ctx, src, key, item)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = dst.Put(ctx, key, &countingReader{r: rc, count: count}, opts)
	return err
}

// openForPut opens the tarball item names, stored under key, on b, to be streamed into a Put
// whose options carry its signed length and sha256. Every backend checks
// those while it stores and keeps nothing that fails them (the contract of
// sdk.PutOptions, which the sdktest suite holds backends to), so the
// stream is checked here against the length and the other signed hash,
// sha512: each hash is computed once, in two processes that run on two
// cores, instead of sha256 twice. The stream's last Read fails, before the
// Put can commit, when sha512 or the length is wrong. Without a signed
// sha512 the stream is checked against every signed hash here as well.
func openForPut(ctx context.Context, b sdk.Backend, key string, item manifest.VersionItem) (*repo.Verifier, error) {
	rc, err := repo.OpenObject(sdk.WithCallerVerifies(ctx), b, key)
	if err != nil {
		return nil, err
	}
	want := item.Hashes
	if sum, ok := item.Hashes["sha512"]; ok {
		want = map[string]string{"sha512": sum}
	}
	return repo.NewVerifier(rc, key, item.Length, want), nil
}

// localPath returns the file behind key when b keeps its objects as local
// files.
func localPath(ctx context.Context, b sdk.Backend, key string) (string, bool) {
	lf, ok := b.(sdk.LocalFiler)
	if !ok || !hasLocalFiles(ctx, b) {
		return "", false
	}
	path, err := lf.LocalPath(ctx, key)
	return path, err == nil
}

// hasLocalFiles reports whether b says it implements LocalFiler; the host's
// plugin client always has the methods, so the capability decides.
func hasLocalFiles(ctx context.Context, b sdk.Backend) bool {
	if c, ok := b.(interface{ Caps() sdk.Capabilities }); ok {
		return c.Caps().LocalFiles
	}
	caps, err := b.Capabilities(ctx)
	return err == nil && caps.LocalFiles
}

// hasSHA256 reports whether the stored object has the given digest.
func hasSHA256(ctx context.Context, b sdk.Backend, key, sum string) (bool, error) {
	rc, err := repo.OpenObject(sdk.WithCallerVerifies(ctx), b, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == sum, nil
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r     io.Reader
	count func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.count(int64(n))
	}
	return n, err
}

// writeOfflineFiles gives the clone what an offline machine installs TiUP
// from, as stock clone does: tiup-<os>-<arch>.tar.gz, a copy of the newest
// stable tiup tarball the clone holds for each platform, and the installer
// script. Files already there with the same content are left alone.
func writeOfflineFiles(ctx context.Context, dst sdk.Backend, plan *clonePlan) error {
	if p, ok := plan.comps[tiupComponent]; ok {
		platforms := make([]string, 0, len(p.c.Platforms))
		for platform := range p.c.Platforms {
			platforms = append(platforms, platform)
		}
		slices.Sort(platforms)
		for _, platform := range platforms {
			goos, goarch, ok := strings.Cut(platform, "/")
			v, found := p.c.LatestStable(platform, false)
			if !ok || platform == manifest.PlatformAny || !found {
				continue
			}
			item := p.c.Platforms[platform][v]
			from := strings.TrimPrefix(item.URL, "/")
			open := func() (io.ReadCloser, error) { return repo.OpenObject(ctx, dst, from) }
			key := tiupCopyName(goos, goarch)
			if err := putIfChanged(ctx, dst, key, int64(item.Length), item.Hashes["sha256"], open); err != nil {
				return err
			}
		}
	}
	sum := sha256.Sum256(localInstallScript)
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(localInstallScript)), nil }
	if err := putIfChanged(ctx, dst, LocalInstallScript, int64(len(localInstallScript)), hex.EncodeToString(sum[:]), open); err != nil {
		return err
	}
	// Backends store objects 0644; the script is meant to be run directly,
	// so it is made executable where it is a local file.
	if lf, ok := dst.(sdk.LocalFiler); ok {
		path, err := lf.LocalPath(ctx, LocalInstallScript)
		if err == nil {
			err = os.Chmod(path, 0o755)
		}
		if err != nil && !errors.Is(err, sdk.ErrUnsupported) {
			return fmt.Errorf("clone %s: %w", LocalInstallScript, err)
		}
	}
	return nil
}

// tiupComponent is the component of TiUP itself, whose newest stable
// tarball of each platform a mirror also keeps unversioned (tiupCopyName).
const tiupComponent = "tiup"

// tiupCopyName is the unversioned copy of the newest stable tiup tarball of
// a platform, which install.sh and local_install.sh unpack.
func tiupCopyName(goos, goarch string) string { return "tiup-" + goos + "-" + goarch + ".tar.gz" }

// putIfChanged stores the stream open gives under key unless the target
// already has that content; the Put checks size and sha256 on the way.
func putIfChanged(ctx context.Context, dst sdk.Backend, key string, size int64, sum string, open func() (io.ReadCloser, error)) error {
	info, err := dst.Stat(ctx, key)
	switch {
	case err == nil:
		if info.Size == size {
			same, err := hasSHA256(ctx, dst, key, sum)
			if err != nil || same {
				return err
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("write %s: %w", key, err)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	defer rc.Close()
	if _, err := dst.Put(ctx, key, rc, sdk.PutOptions{Size: size, SizeKnown: true, SHA256: sum}); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}
