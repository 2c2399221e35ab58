package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/semver"

	"github.com/mirrorkit/mirror/core/archive"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk/host"
)

// openRepo opens the current mirror as a client does. The mirror saved by
// `mirror set` is trusted from bin/root.json and its state is kept in
// manifests/ (shared with the stock client, byte for byte). Any other
// address (--mirror, TIUP_MIRRORS) is used for this run only: it starts from
// its cached root if `mirror set` ever saw it, else from its own root.json,
// and nothing is saved.
func (e *Env) openRepo(ctx context.Context) (*repo.Repo, *host.Backend, error) {
	addr := e.Address()
	b, err := e.OpenBackend(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	opts := repo.Options{Clock: e.Clock}
	if addr == e.savedMirror() {
		opts.Store = repo.DirStore(filepath.Join(e.Home, "manifests"))
		opts.Anchor, err = os.ReadFile(filepath.Join(e.Home, "bin", "root.json"))
		if err != nil {
			b.Close()
			return nil, nil, fmt.Errorf("open mirror %s: no trusted root in %s: %w; run `mirror set %s`", displayAddress(addr), filepath.Join(e.Home, "bin"), fs.ErrNotExist, displayAddress(addr))
		}
	} else {
		opts.Store = repo.MemStore{}
		opts.Anchor, err = os.ReadFile(filepath.Join(e.Home, "bin", addrID(addr)+".root.json"))
		if err != nil {
			if opts.Anchor, err = readSmall(ctx, b, "root.json", manifest.MaxRootSize); err != nil {
				b.Close()
				return nil, nil, fmt.Errorf("open mirror %s: %w", displayAddress(addr), err)
			}
		}
	}
	r, err := repo.Open(ctx, b, opts)
	if err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("open mirror %s: %w", displayAddress(addr), err)
	}
	return r, b, nil
}

// ComponentInfo is one row of `mirror list`.
type ComponentInfo struct {
	ID, Owner, Description string
	Latest                 string // latest stable version for the platform, if any
	Hidden, Yanked         bool
	Standalone             bool
}

// VersionInfo is one row of `mirror list COMPONENT`.
type VersionInfo struct {
	Version   string
	Released  string
	Platforms []string
	Yanked    bool
	Nightly   bool
}

// ListOptions configure List.
type ListOptions struct {
	Component string
	All       bool // include hidden components and yanked versions
	OS, Arch  string
}

// ListResult holds what List found: Components without a component name,
// Versions with one.
type ListResult struct {
	Components []ComponentInfo
	Versions   []VersionInfo
}

// List shows what the mirror offers, after verifying the chain of trust.
func List(ctx context.Context, env *Env, opts ListOptions) (*ListResult, error) {
	platform := platformOf(opts.OS, opts.Arch)
	r, b, err := env.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	res := &ListResult{}
	if opts.Component != "" {
		c, _, err := r.Component(ctx, opts.Component, false)
		if err != nil {
			return nil, err
		}
		byVersion := map[string]*VersionInfo{}
		for plat, versions := range c.Platforms {
			for v, item := range versions {
				if item.Yanked && !opts.All {
					continue
				}
				vi := byVersion[v]
				if vi == nil {
					vi = &VersionInfo{Version: v, Released: item.Released, Nightly: manifest.IsNightly(v)}
					byVersion[v] = vi
				}
				vi.Yanked = vi.Yanked || item.Yanked
				vi.Platforms = append(vi.Platforms, plat)
			}
		}
		for _, vi := range byVersion {
			slices.Sort(vi.Platforms)
			res.Versions = append(res.Versions, *vi)
		}
		slices.SortFunc(res.Versions, func(a, b VersionInfo) int { return semver.Compare(a.Version, b.Version) })
		return res, nil
	}
	ids := make([]string, 0, len(r.Index().Components))
	for id, item := range r.Index().Components {
		if item.Yanked || (item.Hidden && !opts.All) {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		item := r.Index().Components[id]
		c, _, err := r.Component(ctx, id, false)
		if err != nil {
			return nil, err
		}
		latest, _ := c.LatestStable(platform, false)
		res.Components = append(res.Components, ComponentInfo{
			ID: id, Owner: item.Owner, Description: c.Description, Latest: latest,
			Hidden: item.Hidden, Standalone: item.Standalone,
		})
	}
	return res, nil
}

// maxArchiveEntries caps the entries of one component tarball: far above
// any real component (a few to a few thousand files), far below what fills
// a disk with empty files.
const maxArchiveEntries = 1 << 17

// InstallOptions configure Install.
type InstallOptions struct {
	Spec     string // COMPONENT[:VERSION]
	OS, Arch string
}

// InstallResult says where the component went.
type InstallResult struct {
	Component, Version string
	Dir                string
	Entry              string // absolute path of the entry point
	Already            bool
}

// Install downloads a component version, verifying it while it streams
// (length capped by the signed length, sha256 and sha512 checked), unpacks
// it into a staging directory beside the target with every entry confined
// to it, and moves it into $TIUP_HOME/components/ID/VERSION only when all of
// it verified. Memory stays flat whatever the tarball size.
func Install(ctx context.Context, env *Env, opts InstallOptions) (*InstallResult, error) {
	id, version, _ := strings.Cut(opts.Spec, ":")
	if err := manifest.ValidComponentID(id); err != nil {
		return nil, fmt.Errorf("%w: component: %v", ErrUsage, err)
	}
	if version != "" {
		if err := manifest.ValidVersion(version); err != nil {
			return nil, fmt.Errorf("%w: version: %v", ErrUsage, err)
		}
	}
	platform := platformOf(opts.OS, opts.Arch)
	r, b, err := env.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	c, _, err := r.Component(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if version == "" {
		v, ok := c.LatestStable(platform, false)
		if !ok {
			return nil, fmt.Errorf("install %s: no version for %s: %w", id, platform, fs.ErrNotExist)
		}
		version = v
	}
	item, ok := c.Item(platform, version)
	if !ok {
		return nil, fmt.Errorf("install %s:%s: no such version for %s: %w; see `mirror list %s`", id, version, platform, fs.ErrNotExist, id)
	}
	if item.Yanked {
		return nil, fmt.Errorf("install %s:%s: the version is yanked: %w", id, version, fs.ErrNotExist)
	}
	if !fs.ValidPath(item.Entry) || item.Entry == "." {
		return nil, trust.Errorf(trust.ClassUnsafePath, "install %s:%s: entry %q leaves the component directory", id, version, item.Entry)
	}
	parent := filepath.Join(env.Home, "components", id)
	dir := filepath.Join(parent, version)
	res := &InstallResult{Component: id, Version: version, Dir: dir, Entry: filepath.Join(dir, filepath.FromSlash(item.Entry))}
	if _, err := os.Stat(res.Entry); err == nil {
		res.Already = true
		return res, nil
	}
	// A failed install leaves no trace: the directories it had to create
	// are removed again when they are still empty.
	var created []string
	for _, d := range []string{filepath.Dir(parent), parent} {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			created = append(created, d)
		}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	res, err = install(ctx, r, item, res, parent, dir, id, version)
	if err != nil {
		for i := len(created) - 1; i >= 0; i-- {
			os.Remove(created[i])
		}
		return nil, err
	}
	return res, nil
}

// install downloads, verifies and unpacks one item into dir through a
// staging directory in parent.
func install(ctx context.Context, r *repo.Repo, item manifest.VersionItem, res *InstallResult, parent, dir, id, version string) (*InstallResult, error) {
	staging, err := os.MkdirTemp(parent, ".tmp-"+version+"-")
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	defer os.RemoveAll(staging)
	v, err := r.OpenTarball(ctx, item)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	// A gzip bomb inside a signed tarball is still refused: unpacked bytes
	// are capped far above any real component.
	limit := int64(item.Length)*200 + 1<<30
	if _, err := archive.Extract(ctx, v, staging, archive.ExtractOptions{MaxBytes: limit, MaxEntries: maxArchiveEntries}); err != nil {
		if verr := v.Drain(); verr != nil {
			err = verr // a tampered download explains a broken archive best
		} else if errors.Is(err, archive.ErrFormat) {
			// The bytes are the ones the owner signed, and they are not a
			// well-formed archive: the owner's content cannot be trusted.
			err = fmt.Errorf("%w (%w)", err, trust.ErrUntrusted)
		}
		return nil, fmt.Errorf("install %s:%s: %w", id, version, err)
	}
	if err := v.Drain(); err != nil {
		return nil, fmt.Errorf("install %s:%s: %w", id, version, err)
	}
	if _, err := os.Stat(filepath.Join(staging, filepath.FromSlash(item.Entry))); err != nil {
		return nil, trust.Errorf(trust.ClassMalformed, "install %s:%s: the tarball has no entry %s", id, version, item.Entry)
	}
	// Another process may have installed the same version meanwhile: its
	// complete copy stays, and this run reports it as already there.
	if _, err := os.Stat(res.Entry); err == nil {
		res.Already = true
		return res, nil
	}
	// The staging directory was made private (0700); the installed one is
	// as readable as the rest of the home, as stock tiup makes it.
	if err := os.Chmod(staging, 0o755); err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	os.RemoveAll(dir) // an earlier, incomplete install
	if err := os.Rename(staging, dir); err != nil {
		if _, serr := os.Stat(res.Entry); serr == nil {
			res.Already = true
			return res, nil
		}
		return nil, fmt.Errorf("install: %w", err)
	}
	return res, nil
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Address string // default: the current mirror
	Root    string // a root file to trust; default the mirror's own root.json
	Jobs    int    // tarballs checked at once; default the number of CPUs
}

// Problem is one thing wrong with a mirror.
type Problem struct {
	File    string
	Message string
}

// VerifyResult is what Verify checked and found.
type VerifyResult struct {
	Address     string
	RootVersion uint64
	Components  int
	Manifests   int
	Tarballs    int
	Problems    []Problem
}

// Verify checks a whole mirror: the root chain from the anchor, timestamp,
// snapshot, index, every component manifest (yanked ones too) and every
// tarball they name (length, sha256, sha512). It lists every problem it
// finds instead of stopping at the first.
func Verify(ctx context.Context, env *Env, opts VerifyOptions) (*VerifyResult, error) {
	addr := env.Address()
	if opts.Address != "" {
		addr = normalizeAddress(opts.Address)
	}
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	res := &VerifyResult{Address: displayAddress(addr)}
	var anchor []byte
	if opts.Root != "" {
		anchor, err = os.ReadFile(opts.Root)
	} else {
		anchor, err = readSmall(ctx, b, "root.json", manifest.MaxRootSize)
	}
	if err != nil {
		return nil, fmt.Errorf("verify %s: read root: %w", res.Address, err)
	}
	r, err := repo.Open(ctx, b, repo.Options{Anchor: anchor, Store: repo.MemStore{}, Clock: env.Clock})
	if err != nil {
		res.Problems = append(res.Problems, Problem{File: "chain of trust", Message: err.Error()})
		return res, nil
	}
	res.RootVersion = r.State().Root.Version
	res.Manifests = 4 + int(res.RootVersion) - 1
	ids := make([]string, 0, len(r.Index().Components))
	for id := range r.Index().Components {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var items []manifest.VersionItem
	for _, id := range ids {
		c, _, err := r.Component(ctx, id, true)
		if err != nil {
			res.Problems = append(res.Problems, Problem{File: id, Message: err.Error()})
			if c == nil {
				continue
			}
		}
		res.Components++
		res.Manifests++
		seen := map[string]bool{}
		for _, versions := range c.Platforms {
			for _, item := range versions {
				if !seen[item.URL] {
					seen[item.URL] = true
					items = append(items, item)
				}
			}
		}
	}
	slices.SortFunc(items, func(a, b manifest.VersionItem) int { return strings.Compare(a.URL, b.URL) })
	res.Tarballs = len(items)
	res.Problems = append(res.Problems, checkTarballs(ctx, r, items, opts.Jobs)...)
	return res, nil
}

// checkTarballs streams every tarball through a verifier, several at once.
func checkTarballs(ctx context.Context, r *repo.Repo, items []manifest.VersionItem, jobs int) []Problem {
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	problems := make([]*Problem, len(items))
	var wg sync.WaitGroup
	next := make(chan int)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rc, err := r.OpenTarball(ctx, items[i])
				if err == nil {
					err = rc.Drain()
					rc.Close()
				}
				if err != nil {
					problems[i] = &Problem{File: strings.TrimPrefix(items[i].URL, "/"), Message: err.Error()}
				}
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	var out []Problem
	for _, p := range problems {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

func platformOf(goos, goarch string) string {
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	return manifest.Platform(goos, goarch)
}
