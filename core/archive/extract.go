package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/pgzip"
)

const (
	// maxNameLen bounds entry names and link targets; PATH_MAX on Linux.
	maxNameLen = 4096
	// maxTrailer bounds the zero padding read after the end-of-archive
	// marker. tar pads to its record size (10 KiB by default, at most a few
	// MiB with large blocking factors); anything longer is a bomb.
	maxTrailer = 4 << 20
	// maxLinkHops bounds symlink expansions while resolving a link target,
	// far above the kernel's own limit of 40.
	maxLinkHops = 255
	// copyBufSize is the chunk size for file content; ctx is checked
	// between chunks.
	copyBufSize = 256 << 10
)

type entryKind uint8

const (
	kindImplicitDir entryKind = iota + 1
	kindDir
	kindFile
	kindSymlink
)

// Extract reads the gzip-compressed tar stream r and writes its entries
// under dir, creating dir with mode 0755 if it is missing.
//
// The stream is processed one entry at a time and never held in memory.
// Every write goes through an os.Root opened on dir, so the kernel refuses
// escapes even if a name check here were wrong. On top of that, Extract
// refuses with an error wrapping ErrUnsafePath: absolute names, names that
// climb out of dir, names containing NUL, symlinks whose target leaves dir
// (resolved through the archive's other symlinks), hard links to anything
// but a regular file earlier in the archive, entries below a symlink the
// archive created, devices and FIFOs. Duplicate names and names equal under
// case folding are refused with ErrFormat, so no entry can replace another.
//
// Regular files get the header's permission bits (mode & 0777, which drops
// setuid, setgid and sticky) regardless of umask; directories get at least
// 0755. Ownership is not restored.
//
// dir is expected to be empty: existing names conflict with archive entries.
// If Extract created dir and fails, it removes dir; if dir already existed,
// it may hold a partial extraction, and the caller should discard it.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (stats Stats, err error) {
	if opts.MaxBytes < 0 || opts.MaxEntries < 0 {
		return Stats{}, fmt.Errorf("extract %s: negative limit in options", dir)
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("extract %s: %w", dir, err)
	}
	_, statErr := os.Lstat(dir)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, fmt.Errorf("extract %s: %w", dir, err)
	}
	if created {
		defer func() {
			if err != nil {
				// RemoveAll does not follow symlinks, so cleaning up a
				// hostile partial tree cannot delete anything outside dir.
				_ = os.RemoveAll(dir)
			}
		}()
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("extract %s: %w", dir, err)
	}
	defer root.Close()

	src := &sourceReader{r: r}
	// A bufio.Reader is an io.ByteReader, so pgzip leaves it positioned
	// right after the gzip member and trailing bytes can be detected.
	br := bufio.NewReader(src)
	zr, err := pgzip.NewReader(br)
	if err != nil {
		return Stats{}, src.classify("extract "+dir, err)
	}
	defer zr.Close()
	zr.Multistream(false)

	x := &extractor{
		root:  root,
		opts:  opts,
		kinds: make(map[string]entryKind),
		fold:  make(map[string]string),
		links: make(map[string]string),
		buf:   make([]byte, copyBufSize),
	}
	tail := &tailReader{r: zr}
	if err := x.run(ctx, tar.NewReader(tail), tail, src); err != nil {
		return x.stats, err
	}
	if err := x.checkTrailer(ctx, tail, br, src); err != nil {
		return x.stats, err
	}
	return x.stats, nil
}

type extractor struct {
	root    *os.Root
	opts    ExtractOptions
	stats   Stats
	entries int
	// kinds records every name created so far, including implicit parents,
	// so that duplicates, writes below symlinks and hard link targets are
	// judged against what the archive itself made.
	kinds map[string]entryKind
	// fold maps a case-folded name to the name that claimed it, because on
	// case-insensitive file systems (macOS) two such names are one file.
	fold map[string]string
	// links maps each created symlink to its target, for resolving chains.
	links map[string]string
	buf   []byte
}

func (x *extractor) run(ctx context.Context, tr *tar.Reader, tail *tailReader, src *sourceReader) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extract archive: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Go's tar reader also reports a clean EOF when the stream stops
			// at a header boundary without the two zero blocks that end an
			// archive; that is a truncated archive.
			if tail.zeroRun < 2*512 {
				return fmt.Errorf("extract archive: %w: missing end-of-archive marker", ErrFormat)
			}
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return src.classify("extract archive", err)
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags non-local names
		// itself; fall through so the entry is refused with ErrUnsafePath.
		x.entries++
		if x.opts.MaxEntries > 0 && x.entries > x.opts.MaxEntries {
			return fmt.Errorf("extract archive: %w: more than %d entries", ErrTooLarge, x.opts.MaxEntries)
		}
		if err := x.entry(ctx, tr, hdr, src); err != nil {
			return err
		}
	}
	// A later symlink can change how an earlier one resolves (a -> x/../..
	// followed by x -> sub/dir), so every target is judged again against
	// the final set of links.
	names := make([]string, 0, len(x.links))
	for name := range x.links {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := x.checkSymlinkTarget(name, x.links[name]); err != nil {
			return err
		}
	}
	return nil
}

func unsafeEntry(name, reason string) error {
	return fmt.Errorf("extract entry %q: %w: %s", name, ErrUnsafePath, reason)
}

func badEntry(name, reason string) error {
	return fmt.Errorf("extract entry %q: %w: %s", name, ErrFormat, reason)
}

// cleanName validates a raw archive name and returns its canonical form
// relative to the destination ("." for the destination itself).
func cleanName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", unsafeEntry(raw, "empty name")
	case len(raw) > maxNameLen:
		return "", unsafeEntry(raw[:64]+"...", "name too long")
	case strings.IndexByte(raw, 0) >= 0:
		return "", unsafeEntry(raw, "name contains NUL")
	case path.IsAbs(raw) || filepath.IsAbs(raw):
		return "", unsafeEntry(raw, "absolute name")
	}
	name := path.Clean(raw)
	if name == "." {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return "", unsafeEntry(raw, "name escapes destination")
	}
	return name, nil
}

func (x *extractor) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header, src *sourceReader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		// git archive and others emit a pax global header; it carries no
		// file, and the reader already applied what it means.
		return nil
	case tar.TypeChar, tar.TypeBlock:
		return unsafeEntry(hdr.Name, "device file")
	case tar.TypeFifo:
		return unsafeEntry(hdr.Name, "fifo")
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			// "./" names the destination itself; its mode stays ours.
			return nil
		}
		return unsafeEntry(hdr.Name, "non-directory entry names the destination")
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name, hdr)
	case tar.TypeReg, tar.TypeRegA:
		return x.file(ctx, tr, name, hdr, src)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeLink:
		return x.hardlink(name, hdr)
	default:
		return badEntry(hdr.Name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
}

// prepareParent refuses names below a symlink or a file created earlier and
// creates the missing parent directories of name.
func (x *extractor) prepareParent(raw, name string) error {
	parent := path.Dir(name)
	if parent == "." {
		return nil
	}
	missing := false
	for p := parent; p != "."; p = path.Dir(p) {
		switch x.kinds[p] {
		case kindSymlink:
			return unsafeEntry(raw, fmt.Sprintf("path goes through symlink %q", p))
		case kindFile:
			return badEntry(raw, fmt.Sprintf("parent %q is not a directory", p))
		case 0:
			missing = true
		}
	}
	if !missing {
		return nil
	}
	for p := parent; p != "."; p = path.Dir(p) {
		if x.kinds[p] != 0 {
			break
		}
		if err := x.claim(raw, p, kindImplicitDir); err != nil {
			return err
		}
	}
	if err := x.root.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("extract entry %q: %w", raw, err)
	}
	return nil
}

// claim records name as kind, refusing duplicates (other than a directory
// named twice) and case-folding collisions.
func (x *extractor) claim(raw, name string, kind entryKind) error {
	if prev, ok := x.kinds[name]; ok {
		isDir := func(k entryKind) bool { return k == kindDir || k == kindImplicitDir }
		if isDir(prev) && isDir(kind) {
			if kind == kindDir {
				x.kinds[name] = kindDir
			}
			return nil
		}
		return badEntry(raw, "duplicate entry")
	}
	folded := strings.ToLower(name)
	if other, ok := x.fold[folded]; ok && other != name {
		return badEntry(raw, fmt.Sprintf("name collides with %q under case folding", other))
	}
	x.fold[folded] = name
	x.kinds[name] = kind
	return nil
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if err := x.prepareParent(hdr.Name, name); err != nil {
		return err
	}
	prev := x.kinds[name]
	if err := x.claim(hdr.Name, name, kindDir); err != nil {
		return err
	}
	if prev == kindDir {
		return nil
	}
	if prev == 0 {
		if err := x.root.Mkdir(name, 0o755); err != nil {
			return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
		}
	}
	// Chmod rather than rely on Mkdir's perm, which the umask trims.
	perm := fs.FileMode(hdr.Mode)&0o777 | 0o755
	if err := x.root.Chmod(name, perm); err != nil {
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	x.stats.Dirs++
	return nil
}

func (x *extractor) file(ctx context.Context, tr *tar.Reader, name string, hdr *tar.Header, src *sourceReader) error {
	if hdr.Size < 0 {
		return badEntry(hdr.Name, "negative size")
	}
	// Judge the declared size before reading any content, so a bomb stops
	// at its header instead of after decompressing up to the cap.
	if x.opts.MaxBytes > 0 && hdr.Size > x.opts.MaxBytes-x.stats.Bytes {
		return fmt.Errorf("extract entry %q: %w: content exceeds %d bytes", hdr.Name, ErrTooLarge, x.opts.MaxBytes)
	}
	if err := x.prepareParent(hdr.Name, name); err != nil {
		return err
	}
	if err := x.claim(hdr.Name, name, kindFile); err != nil {
		return err
	}
	// O_EXCL never follows a symlink at the final component, and the file
	// stays private until its content is complete.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	n, err := x.copyContent(ctx, f, tr, hdr.Size)
	x.stats.Bytes += n
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
		}
		return src.classify(fmt.Sprintf("extract entry %q", hdr.Name), err)
	}
	if err := f.Chmod(fs.FileMode(hdr.Mode) & 0o777); err != nil {
		f.Close()
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	if !hdr.ModTime.IsZero() {
		if err := x.root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
			return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
		}
	}
	x.stats.Files++
	return nil
}

// copyContent copies exactly size bytes from r to w in chunks, checking ctx
// between chunks.
func (x *extractor) copyContent(ctx context.Context, w io.Writer, r io.Reader, size int64) (int64, error) {
	var written int64
	for written < size {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		chunk := x.buf[:min(int64(len(x.buf)), size-written)]
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			m, werr := w.Write(chunk[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return written, err
		}
	}
	return written, nil
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if err := x.prepareParent(hdr.Name, name); err != nil {
		return err
	}
	if err := x.checkSymlinkTarget(name, hdr.Linkname); err != nil {
		return err
	}
	if err := x.claim(hdr.Name, name, kindSymlink); err != nil {
		return err
	}
	x.links[name] = hdr.Linkname
	// Root.Symlink does not validate the target; checkSymlinkTarget did.
	if err := x.root.Symlink(hdr.Linkname, name); err != nil {
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	x.stats.Links++
	return nil
}

// checkSymlinkTarget resolves target as the kernel would from the directory
// holding the link at name, expanding the archive's own symlinks, and
// refuses it if any step leaves the destination. Components that do not
// exist are treated as directories, the most permissive reading.
func (x *extractor) checkSymlinkTarget(name, target string) error {
	switch {
	case target == "":
		return unsafeEntry(name, "empty symlink target")
	case len(target) > maxNameLen:
		return unsafeEntry(name, "symlink target too long")
	case strings.IndexByte(target, 0) >= 0:
		return unsafeEntry(name, "symlink target contains NUL")
	case path.IsAbs(target) || filepath.IsAbs(target):
		return unsafeEntry(name, fmt.Sprintf("absolute symlink target %q", target))
	}
	var stack []string
	if dir := path.Dir(name); dir != "." {
		stack = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return unsafeEntry(name, fmt.Sprintf("symlink target %q leaves destination", target))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		next, ok := x.links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		hops++
		if hops > maxLinkHops {
			return unsafeEntry(name, fmt.Sprintf("symlink target %q loops", target))
		}
		if path.IsAbs(next) {
			return unsafeEntry(name, fmt.Sprintf("symlink target %q leaves destination", target))
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}

func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	// Hard link targets are archive names, relative to the destination.
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return unsafeEntry(hdr.Name, fmt.Sprintf("hard link target %q is unsafe", hdr.Linkname))
	}
	switch x.kinds[target] {
	case kindFile:
	case 0:
		return unsafeEntry(hdr.Name, fmt.Sprintf("hard link target %q is not an earlier entry", hdr.Linkname))
	case kindSymlink:
		// Root.Link would copy the symlink itself to a new directory, where
		// its relative target can point somewhere else entirely.
		return unsafeEntry(hdr.Name, fmt.Sprintf("hard link target %q is a symlink", hdr.Linkname))
	default:
		return unsafeEntry(hdr.Name, fmt.Sprintf("hard link target %q is a directory", hdr.Linkname))
	}
	if err := x.prepareParent(hdr.Name, name); err != nil {
		return err
	}
	if err := x.claim(hdr.Name, name, kindFile); err != nil {
		return err
	}
	if err := x.root.Link(target, name); err != nil {
		return fmt.Errorf("extract entry %q: %w", hdr.Name, err)
	}
	x.stats.Links++
	return nil
}

// checkTrailer reads what follows the end-of-archive marker: only zero
// padding is allowed, then the gzip member must end (which also verifies
// its CRC and length), and nothing may follow it.
func (x *extractor) checkTrailer(ctx context.Context, tail *tailReader, br *bufio.Reader, src *sourceReader) error {
	limit := int64(maxTrailer)
	if x.opts.MaxBytes > 0 {
		limit = min(limit, x.opts.MaxBytes)
	}
	var padding int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extract archive: %w", err)
		}
		n, err := tail.Read(x.buf)
		for _, b := range x.buf[:n] {
			if b != 0 {
				return fmt.Errorf("extract archive: %w: data after end-of-archive marker", ErrFormat)
			}
		}
		padding += int64(n)
		if padding > limit {
			return fmt.Errorf("extract archive: %w: more than %d bytes of padding", ErrTooLarge, limit)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return src.classify("extract archive", err)
		}
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return src.classify("extract archive", err)
		}
		return fmt.Errorf("extract archive: %w: data after gzip stream", ErrFormat)
	}
	return nil
}

// sourceReader remembers the first error of the caller's reader so that a
// failing transport is reported as such and not as a malformed archive.
// pgzip reads it from a read-ahead goroutine, hence the mutex.
type sourceReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return n, err
}

// classify wraps err from decompression or tar parsing: a read error of
// the source passes through, anything else is ErrFormat.
func (s *sourceReader) classify(op string, err error) error {
	s.mu.Lock()
	srcErr := s.err
	s.mu.Unlock()
	if srcErr != nil {
		return fmt.Errorf("%s: %w", op, srcErr)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrFormat, err)
}

// tailReader tracks how many zero bytes ended the data read so far, which
// tells a proper end-of-archive marker from a stream cut at a header.
type tailReader struct {
	r       io.Reader
	zeroRun int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	// Scan backwards: for ordinary content the first byte checked is
	// non-zero, so this costs almost nothing.
	i := n - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		t.zeroRun += int64(n)
	} else {
		t.zeroRun = int64(n - 1 - i)
	}
	return n, err
}
