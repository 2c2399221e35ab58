package mirror

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/mirrorkit/mirror/core/archive"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
)

// PublishOptions configure Publish; the fields follow `tiup mirror publish`.
type PublishOptions struct {
	Component  string
	Version    string
	Tarball    string // a local .tar.gz
	Entry      string // the executable, relative to the unpacked tarball
	OS, Arch   string // default: this machine's
	Desc       string
	Standalone bool
	Hide       bool
	// Keys are the owner key files (or signer URLs); default
	// $TIUP_HOME/keys/private.json. Give several for an owner whose
	// threshold is above one.
	Keys []string
}

// PublishResult says what was published.
type PublishResult struct {
	URL              string
	ComponentVersion uint64
	Unchanged        bool // the same tarball was already published: a re-run
}

// Publish adds a version of a component for one platform: the tarball, then
// the component manifest signed by its owner, then index (for a new
// component), snapshot and timestamp signed by the mirror's role keys.
func Publish(ctx context.Context, env *Env, opts PublishOptions) (*PublishResult, error) {
	if opts.OS == "" {
		opts.OS = runtime.GOOS
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if err := manifest.ValidComponentID(opts.Component); err != nil {
		return nil, fmt.Errorf("%w: component: %v", ErrUsage, err)
	}
	if err := manifest.ValidVersion(opts.Version); err != nil {
		return nil, fmt.Errorf("%w: version: %v", ErrUsage, err)
	}
	if err := manifest.ValidPlatform(opts.OS, opts.Arch); err != nil {
		return nil, fmt.Errorf("%w: platform: %v", ErrUsage, err)
	}
	if opts.Entry == "" || !fs.ValidPath(opts.Entry) {
		return nil, fmt.Errorf("%w: entry %q must be a relative path inside the tarball, e.g. bin/hello", ErrUsage, opts.Entry)
	}
	if _, err := os.Stat(opts.Tarball); err != nil {
		return nil, fmt.Errorf("open tarball %s: %w", opts.Tarball, fs.ErrNotExist)
	}
	// Hash on other cores while the plugins start and the mirror is read.
	type digest struct {
		sums map[string]string
		size int64
	}
	hashed := sync.OnceValues(func() (digest, error) {
		sums, size, err := hashFile(opts.Tarball)
		return digest{sums, size}, err
	})
	go hashed()
	signers, ids, release, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer release()

	platform := manifest.Platform(opts.OS, opts.Arch)
	name := manifest.TarballName(opts.Component, opts.Version, opts.OS, opts.Arch)
	res := &PublishResult{URL: "/" + name}
	var final *manifest.Component // the component as committed, or as found unchanged
	// The tarball is uploaded while the writer lock is taken, where the
	// backend can stage it (an OCI registry's lease settles for a second).
	err = env.updateAhead(ctx, []string{opts.Tarball}, func(ctx context.Context, tx *publish.Txn) error {
		res.Unchanged = false
		d, err := hashed()
		if err != nil {
			return err
		}
		sums, size := d.sums, d.size
		c, err := tx.Component(ctx, opts.Component)
		if err != nil {
			return err
		}
		item, exists := tx.Index.Components[opts.Component]
		if !exists {
			owner, err := ownerOf(tx.Index, ids)
			if err != nil {
				return fmt.Errorf("publish %s: %w", opts.Component, err)
			}
			item = manifest.ComponentItem{Owner: owner, URL: manifest.ManifestURL(opts.Component), Standalone: opts.Standalone, Hidden: opts.Hide}
			tx.Index.Components[opts.Component] = item
			tx.IndexChanged()
			c = manifest.NewComponent(opts.Component, opts.Desc, tx.Now())
		} else {
			if err := checkOwnerKeys(tx.Index, item.Owner, ids); err != nil {
				return fmt.Errorf("publish %s: %w", opts.Component, err)
			}
			if old, ok := c.Platforms[platform][opts.Version]; ok {
				if old.Hashes["sha256"] == sums["sha256"] && old.Length == uint64(size) {
					res.Unchanged, res.ComponentVersion, final = true, c.Version, c
					return errUnchanged
				}
				return fmt.Errorf("publish %s %s: the version is already published for %s with another tarball: %w; publish a new version", opts.Component, opts.Version, platform, fs.ErrExist)
			}
			c.Renew(tx.Now(), manifest.LifetimeComponent)
		}
		if opts.Desc != "" {
			c.Description = opts.Desc
		}
		if manifest.IsNightly(opts.Version) {
			c.Nightly = opts.Version
		}
		pruneNightlies(c)
		if c.Platforms[platform] == nil {
			c.Platforms[platform] = map[string]manifest.VersionItem{}
		}
		c.Platforms[platform][opts.Version] = manifest.VersionItem{
			URL:      "/" + name,
			Entry:    opts.Entry,
			Released: manifest.FormatTime(tx.Now()),
			Hashes:   sums,
			Length:   uint64(size),
		}
		envl, err := manifest.NewEnvelope(c)
		if err != nil {
			return err
		}
		for _, s := range signers {
			if err := publish.SignWith(ctx, envl, s); err != nil {
				return err
			}
		}
		if err := tx.PutComponent(envl); err != nil {
			return err
		}
		tx.AddFile(name, opts.Tarball, size, sums["sha256"])
		res.ComponentVersion, final = c.Version, c
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return nil, err
	}
	// A re-run of a publish whose copy was not written finds the version
	// unchanged and writes the copy then.
	if err := env.refreshTiupCopy(ctx, final, platform, opts.Version, opts.Tarball); err != nil {
		return nil, err
	}
	return res, nil
}

// refreshTiupCopy keeps tiup-OS-ARCH.tar.gz, the unversioned copy of TiUP
// that install.sh downloads (spec §2), at the newest stable tiup of the
// platform after version of component c was published from tarball. Stock
// tiup overwrites the copy on every publish of tiup, so publishing an older
// patch release or a nightly rolls new installs back; here only the newest
// stable version moves it. No manifest names the copy and nothing verifies
// it, so it is written after the commit point, never ahead of the signed
// state. A mirror behind an HTTP server is the server's to update.
func (e *Env) refreshTiupCopy(ctx context.Context, c *manifest.Component, platform, version, tarball string) error {
	if c == nil || c.ID != tiupComponent || platform == manifest.PlatformAny {
		return nil
	}
	if newest, ok := c.LatestStable(platform, false); !ok || newest != version {
		return nil
	}
	addr := e.Address()
	if isHTTP(addr) {
		return nil
	}
	item := c.Platforms[platform][version]
	b, err := e.OpenBackend(ctx, addr)
	if err != nil {
		return err
	}
	defer b.Close()
	goos, goarch, _ := strings.Cut(platform, "/")
	open := func() (io.ReadCloser, error) { return os.Open(tarball) }
	if err := putIfChanged(ctx, b, tiupCopyName(goos, goarch), int64(item.Length), item.Hashes["sha256"], open); err != nil {
		return fmt.Errorf("published %s %s, but %w; run the publish again", c.ID, version, err)
	}
	return nil
}

// errUnchanged ends a transaction that has nothing to do.
var errUnchanged = errors.New("nothing to change")

// pruneNightlies drops, from every platform, the nightly versions other than
// the current one, as stock tiup does on publish.
func pruneNightlies(c *manifest.Component) {
	for _, versions := range c.Platforms {
		for v := range versions {
			if manifest.IsNightly(v) && v != c.Nightly {
				delete(versions, v)
			}
		}
	}
}

// ownerOf finds the owner that holds the signing keys (a new component gets
// the owner of its signer, as in stock tiup).
func ownerOf(ix *manifest.Index, ids []string) (string, error) {
	owners := make([]string, 0, len(ix.Owners))
	for id := range ix.Owners {
		owners = append(owners, id)
	}
	slices.Sort(owners)
	var short error // an owner the keys belong to, below its threshold
	for _, owner := range owners {
		err := checkOwnerKeys(ix, owner, ids)
		if err == nil {
			return owner, nil
		}
		if short == nil && ownsAny(ix.Owners[owner], ids) {
			short = err
		}
	}
	if short != nil {
		return "", short
	}
	return "", fmt.Errorf("key %s is not an owner's key in this mirror; run `mirror grant OWNER -k KEY` first", ids[0][:16])
}

// ownsAny reports whether any of the keys is one of the owner's.
func ownsAny(o manifest.Owner, ids []string) bool {
	for _, id := range ids {
		if _, ok := o.Keys[id]; ok {
			return true
		}
	}
	return false
}

// checkOwnerKeys verifies that the given keys meet the owner's threshold,
// before anything is signed or written.
func checkOwnerKeys(ix *manifest.Index, owner string, ids []string) error {
	o, ok := ix.Owners[owner]
	if !ok {
		return fmt.Errorf("owner %s is not in the index", owner)
	}
	n := uint64(0)
	for _, id := range ids {
		if _, ok := o.Keys[id]; ok {
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("key %s is not a key of owner %s; pass the owner's key with -k", ids[0][:16], owner)
	}
	if n < o.Threshold {
		return fmt.Errorf("%d key(s) of owner %s given, its threshold is %d; pass more with -k", n, owner, o.Threshold)
	}
	return nil
}

// hashFile returns the sha256 and sha512 of a file and its length, hashing
// on two cores: the file is read once and each hash runs in its own
// goroutine.
func hashFile(path string) (map[string]string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open tarball %s: %w", path, fs.ErrNotExist)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%w: tarball %s is not a regular file", ErrUsage, path)
	}
	hs := []hash.Hash{sha256.New(), sha512.New()}
	n, err := parallelHash(f, hs...)
	if err != nil {
		return nil, 0, fmt.Errorf("read tarball %s: %w", path, err)
	}
	return map[string]string{
		"sha256": hex.EncodeToString(hs[0].Sum(nil)),
		"sha512": hex.EncodeToString(hs[1].Sum(nil)),
	}, n, nil
}

// parallelHash feeds r to every hash at once, each on its own goroutine,
// with two buffers: the next chunk is read while the last one is hashed, so
// memory stays at 2 MiB whatever the file size.
func parallelHash(r io.Reader, hs ...hash.Hash) (int64, error) {
	const bufSize = 1 << 20
	bufs := [2][]byte{make([]byte, bufSize), make([]byte, bufSize)}
	var wg sync.WaitGroup
	var total int64
	for i := 0; ; i ^= 1 {
		b := bufs[i]
		n, err := io.ReadFull(r, b)
		wg.Wait()
		if n > 0 {
			total += int64(n)
			wg.Add(len(hs))
			for _, h := range hs {
				go func() {
					h.Write(b[:n])
					wg.Done()
				}()
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			wg.Wait()
			return total, nil
		}
		if err != nil {
			wg.Wait()
			return total, err
		}
	}
}

// PackageOptions configure Package (`tiup package`).
type PackageOptions struct {
	Paths    []string
	Name     string
	Release  string
	OS, Arch string
	Dir      string // -C: the paths are relative to it
	OutDir   string // default ./package
}

// Package writes OUT/NAME-RELEASE-OS-ARCH.tar.gz holding the paths, as
// `tar -czf` would, and returns its path. The file appears under its final
// name only once complete.
func Package(ctx context.Context, opts PackageOptions) (string, error) {
	if opts.OS == "" {
		opts.OS = runtime.GOOS
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if len(opts.Paths) == 0 {
		return "", fmt.Errorf("%w: package needs the files to pack", ErrUsage)
	}
	if err := manifest.ValidComponentID(opts.Name); err != nil {
		return "", fmt.Errorf("%w: --name: %v", ErrUsage, err)
	}
	if err := manifest.ValidVersion(opts.Release); err != nil {
		return "", fmt.Errorf("%w: --release: %v", ErrUsage, err)
	}
	if err := manifest.ValidPlatform(opts.OS, opts.Arch); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	for _, p := range opts.Paths {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			return "", fmt.Errorf("package: %s: %w", p, fs.ErrNotExist)
		}
	}
	out := opts.OutDir
	if out == "" {
		out = "package"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	final := filepath.Join(out, archive.PackageName(opts.Name, opts.Release, opts.OS, opts.Arch))
	tmp, err := os.CreateTemp(out, ".tmp-package-*")
	if err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = archive.Create(ctx, tmp, dir, opts.Paths)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		return "", fmt.Errorf("package %s: %w", final, err)
	}
	return final, nil
}
