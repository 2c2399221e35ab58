package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/pgzip"
)

// compressBlockSize is the pgzip block size; each block is compressed on
// its own goroutine.
const compressBlockSize = 1 << 20

// Create writes to w a gzip-compressed tar archive of paths, which are
// relative to baseDir, like `tar -czf OUT -C baseDir paths...`.
//
// Directories are stored recursively with their children in name order,
// so the same tree always gives the same archive. Entry names are relative
// to baseDir without a leading "./"; "." stores the contents of baseDir.
// Symlinks are stored as symlinks, regular files with their mode and
// modification time (to the second), every entry as owned by root (uid and
// gid 0). Hard-linked files are stored as separate regular files, and a
// name reached twice is stored once, so that Extract accepts the result.
//
// Paths that are absolute or climb out of baseDir, and symlinks whose
// target is absolute or climbs out of baseDir, are refused with an error
// wrapping ErrUnsafePath: Extract would refuse such an archive. Reads go
// through an os.Root on baseDir, so symlinks inside baseDir cannot lead
// the walk elsewhere. Sockets, devices and FIFOs are refused.
//
// Compression runs on all available cores through pgzip at the default
// level. On error, w holds a partial archive that the caller must discard.
func Create(ctx context.Context, w io.Writer, baseDir string, paths []string) (Stats, error) {
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		name, err := cleanSourcePath(p)
		if err != nil {
			return Stats{}, err
		}
		names = append(names, name)
	}
	root, err := os.OpenRoot(baseDir)
	if err != nil {
		return Stats{}, fmt.Errorf("create archive of %s: %w", baseDir, err)
	}
	defer root.Close()

	zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
	if err != nil {
		return Stats{}, fmt.Errorf("create archive of %s: %w", baseDir, err)
	}
	if err := zw.SetConcurrency(compressBlockSize, max(2, runtime.GOMAXPROCS(0))); err != nil {
		return Stats{}, fmt.Errorf("create archive of %s: %w", baseDir, err)
	}
	c := &creator{
		root: root,
		tw:   tar.NewWriter(zw),
		seen: make(map[string]bool),
		buf:  make([]byte, copyBufSize),
	}
	for _, name := range names {
		if err := c.add(ctx, name); err != nil {
			// Close waits for the compression goroutines; its error adds
			// nothing to the one being returned.
			_ = zw.Close()
			return c.stats, err
		}
	}
	if err := c.tw.Close(); err != nil {
		_ = zw.Close()
		return c.stats, fmt.Errorf("create archive of %s: %w", baseDir, err)
	}
	if err := zw.Close(); err != nil {
		return c.stats, fmt.Errorf("create archive of %s: %w", baseDir, err)
	}
	return c.stats, nil
}

// cleanSourcePath validates one Create argument and returns it in slash
// form relative to baseDir.
func cleanSourcePath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("create entry %q: %w: empty path", p, ErrUnsafePath)
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("create entry %q: %w: path contains NUL", p, ErrUnsafePath)
	case filepath.IsAbs(p):
		return "", fmt.Errorf("create entry %q: %w: absolute path", p, ErrUnsafePath)
	}
	name := filepath.ToSlash(filepath.Clean(p))
	if name != "." && !filepath.IsLocal(name) {
		return "", fmt.Errorf("create entry %q: %w: path escapes base directory", p, ErrUnsafePath)
	}
	return name, nil
}

type creator struct {
	root  *os.Root
	tw    *tar.Writer
	seen  map[string]bool
	stats Stats
	buf   []byte
}

func (c *creator) add(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create entry %q: %w", name, err)
	}
	if c.seen[name] {
		return nil
	}
	fi, err := c.root.Lstat(name)
	if err != nil {
		return fmt.Errorf("create entry %q: %w", name, err)
	}
	if name != "." {
		c.seen[name] = true
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    tarMode(fi.Mode()),
		ModTime: fi.ModTime().Truncate(time.Second),
		Uname:   "root",
		Gname:   "root",
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		if name != "." {
			hdr.Typeflag = tar.TypeDir
			hdr.Name = name + "/"
			if err := c.tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("create entry %q: %w", name, err)
			}
			c.stats.Dirs++
		}
		return c.addChildren(ctx, name)
	case mode&fs.ModeSymlink != 0:
		target, err := c.root.Readlink(name)
		if err != nil {
			return fmt.Errorf("create entry %q: %w", name, err)
		}
		if err := checkSourceLink(name, target); err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		if err := c.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("create entry %q: %w", name, err)
		}
		c.stats.Links++
		return nil
	case mode.IsRegular():
		return c.addFile(ctx, name, fi, hdr)
	default:
		return fmt.Errorf("create entry %q: unsupported file type %s", name, mode.Type())
	}
}

func (c *creator) addChildren(ctx context.Context, dir string) error {
	f, err := c.root.Open(dir)
	if err != nil {
		return fmt.Errorf("create entry %q: %w", dir, err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("create entry %q: %w", dir, err)
	}
	children := make([]string, 0, len(entries))
	for _, e := range entries {
		children = append(children, e.Name())
	}
	slices.Sort(children)
	for _, child := range children {
		name := child
		if dir != "." {
			name = dir + "/" + child
		}
		if err := c.add(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (c *creator) addFile(ctx context.Context, name string, fi fs.FileInfo, hdr *tar.Header) error {
	f, err := c.root.Open(name)
	if err != nil {
		return fmt.Errorf("create entry %q: %w", name, err)
	}
	defer f.Close()
	// The name could have been swapped for something else since Lstat;
	// store only the file that was inspected.
	opened, err := f.Stat()
	if err != nil {
		return fmt.Errorf("create entry %q: %w", name, err)
	}
	if !os.SameFile(fi, opened) {
		return fmt.Errorf("create entry %q: file changed while archiving", name)
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = fi.Size()
	if err := c.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("create entry %q: %w", name, err)
	}
	var written int64
	for written < hdr.Size {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("create entry %q: %w", name, err)
		}
		chunk := c.buf[:min(int64(len(c.buf)), hdr.Size-written)]
		n, err := io.ReadFull(f, chunk)
		if n > 0 {
			if _, werr := c.tw.Write(chunk[:n]); werr != nil {
				return fmt.Errorf("create entry %q: %w", name, werr)
			}
			written += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("create entry %q: file shrank while archiving", name)
			}
			return fmt.Errorf("create entry %q: %w", name, err)
		}
	}
	c.stats.Files++
	c.stats.Bytes += written
	return nil
}

// checkSourceLink refuses symlinks that Extract would refuse on their own.
// Chains through other symlinks are judged again at extraction.
func checkSourceLink(name, target string) error {
	if target == "" {
		return fmt.Errorf("create entry %q: %w: empty symlink target", name, ErrUnsafePath)
	}
	if path.IsAbs(target) || filepath.IsAbs(target) {
		return fmt.Errorf("create entry %q: %w: symlink target %q is absolute", name, ErrUnsafePath, target)
	}
	if !filepath.IsLocal(path.Join(path.Dir(name), target)) {
		return fmt.Errorf("create entry %q: %w: symlink target %q leaves base directory", name, ErrUnsafePath, target)
	}
	return nil
}

// tarMode converts permission and special bits to the tar header encoding.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
