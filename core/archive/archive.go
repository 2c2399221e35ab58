// Package archive extracts and builds the gzip-compressed tarballs that carry
// component files, the way `tiup package` and the tiup client do, but without
// letting an archive written by a malicious or compromised owner touch
// anything outside the destination directory.
package archive

import (
	"errors"
	"fmt"
)

// ErrUnsafePath marks an archive entry (or a path given to Create) whose
// name, link target or type could reach outside the destination directory.
var ErrUnsafePath = errors.New("unsafe path")

// ErrTooLarge marks an archive that exceeds the byte or entry caps of
// ExtractOptions.
var ErrTooLarge = errors.New("archive too large")

// ErrFormat marks a stream that is not a single well-formed tar.gz archive:
// corrupt or multi-member gzip, a malformed or unterminated tar stream,
// trailing garbage, unsupported entry types, or duplicate entries.
var ErrFormat = errors.New("malformed archive")

// ExtractOptions bounds the resources one Extract call may consume.
type ExtractOptions struct {
	// MaxBytes caps the total uncompressed file content written; 0 means
	// unlimited.
	MaxBytes int64
	// MaxEntries caps the number of tar headers read; 0 means unlimited.
	MaxEntries int
}

// Stats counts what Extract wrote or Create stored.
type Stats struct {
	// Files counts regular files.
	Files int
	// Dirs counts directory entries present in the archive (parents created
	// implicitly for other entries are not counted).
	Dirs int
	// Links counts symbolic and hard links.
	Links int
	// Bytes is the total size of regular file content.
	Bytes int64
}

// PackageName returns the tarball file name tiup uses for a component
// release on one platform: "NAME-RELEASE-OS-ARCH.tar.gz".
func PackageName(name, release, goos, goarch string) string {
	return fmt.Sprintf("%s-%s-%s-%s.tar.gz", name, release, goos, goarch)
}
