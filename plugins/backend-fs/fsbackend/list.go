package fsbackend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/mirrorkit/mirror/sdk"
)

// List calls fn for every object whose key starts with prefix, in
// byte-wise lexical order of the keys. It walks only the directories that can
// hold such keys, reading one directory at a time. Temporary and lock files
// are skipped; so are symbolic links that leave the mirror or point at
// directories (following those could loop), and anything that is not a
// regular file. A missing mirror directory lists nothing. An error from fn
// stops the walk and is returned as is.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
		// No valid key lies under an invalid directory.
		if !fs.ValidPath(start) || reserved(start) {
			return nil
		}
	}
	root, err := b.openRoot(false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	l := lister{ctx: ctx, root: root, prefix: prefix, fn: fn}
	err = l.walk(start)
	if errors.Is(err, errStop) {
		return l.fnErr
	}
	return err
}

// errStop carries fn's error out of the walk untouched.
var errStop = errors.New("listing stopped")

type lister struct {
	ctx    context.Context
	root   *os.Root
	prefix string
	fn     func(sdk.ObjectInfo) error
	fnErr  error
}

type entry struct {
	key  string
	dir  bool
	info fs.FileInfo
}

// sortKey orders a directory's entries the way their keys sort: the keys
// under directory "a" all start with "a/", so "a" sorts as "a/".
func (e entry) sortKey() string {
	if e.dir {
		return e.key + "/"
	}
	return e.key
}

func (l *lister) walk(dir string) error {
	if err := l.ctx.Err(); err != nil {
		return err
	}
	d, err := l.root.Open(dir)
	if err != nil {
		// A directory removed or replaced during the walk, or a start
		// directory that does not exist, has no objects.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("list %s: %w", dir, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("list %s: %w", dir, err)
	}
	entries := make([]entry, 0, len(names))
	for _, name := range names {
		if strings.HasPrefix(name, tmpPrefix) || strings.HasPrefix(name, lockPrefix) {
			continue
		}
		key := name
		if dir != "." {
			key = path.Join(dir, name)
		}
		if !l.relevant(key) {
			continue
		}
		fi, err := l.root.Lstat(key)
		if err != nil {
			continue // removed since the directory was read
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// Stat through os.Root refuses a link that leaves the
			// mirror; such a link, or a dangling one, is no object.
			if fi, err = l.root.Stat(key); err != nil || !fi.Mode().IsRegular() {
				continue
			}
		}
		switch {
		case fi.IsDir():
			if strings.HasPrefix(key+"/", l.prefix) || strings.HasPrefix(l.prefix, key+"/") {
				entries = append(entries, entry{key: key, dir: true})
			}
		case fi.Mode().IsRegular() && strings.HasPrefix(key, l.prefix):
			entries = append(entries, entry{key: key, info: fi})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.sortKey(), b.sortKey()) })
	for _, e := range entries {
		if e.dir {
			if err := l.walk(e.key); err != nil {
				return err
			}
			continue
		}
		if err := l.fn(infoOf(e.key, e.info)); err != nil {
			l.fnErr = err
			return errStop
		}
	}
	return nil
}

// relevant is the cheap test before a stat: could key, or a key under it,
// start with the prefix.
func (l *lister) relevant(key string) bool {
	return strings.HasPrefix(key, l.prefix) || strings.HasPrefix(l.prefix, key)
}
