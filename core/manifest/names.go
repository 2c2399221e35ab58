package manifest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/semver"
)

// PlatformAny is the platform key of a component that runs anywhere.
const PlatformAny = "any/any"

// MaxComponentIDLen bounds a component ID; it ends up in file names.
const MaxComponentIDLen = 128

// VersionedName returns the file name of version n of a manifest:
// VersionedName(3, "greet") is "3.greet.json".
func VersionedName(n uint64, name string) string {
	return strconv.FormatUint(n, 10) + "." + name + ".json"
}

// ManifestURL returns the unversioned URL of a manifest, as index items,
// root roles and snapshot meta keys name it: "/greet.json".
func ManifestURL(name string) string {
	return "/" + name + ".json"
}

// VersionedURL inserts "N." after the last '/' of url, the way the client
// turns a role URL into the file to fetch: "/index.json" and 15 give
// "/15.index.json".
func VersionedURL(url string, n uint64) string {
	i := strings.LastIndexByte(url, '/') + 1
	return url[:i] + strconv.FormatUint(n, 10) + "." + url[i:]
}

// TarballName returns the file name tiup derives for a component tarball,
// whatever the uploaded file was called: "hello-v1.0.0-linux-amd64.tar.gz".
func TarballName(id, version, goos, goarch string) string {
	return id + "-" + version + "-" + goos + "-" + goarch + ".tar.gz"
}

// Platform returns the platform key of a component manifest: "linux/amd64".
func Platform(goos, goarch string) string {
	return goos + "/" + goarch
}

// ValidComponentID checks that id is usable as a component ID: lowercase
// letters, digits, '-' and '_', starting with a letter or digit, at most
// MaxComponentIDLen bytes, and not a role name, because the component's
// /<id>.json would collide with the role's manifest.
func ValidComponentID(id string) error {
	if id == "" {
		return errors.New("validate component id: empty")
	}
	if len(id) > MaxComponentIDLen {
		return fmt.Errorf("validate component id %q: longer than %d bytes", id, MaxComponentIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("validate component id %q: invalid character %q at %d", id, c, i)
		}
	}
	if isRoleName(id) {
		return fmt.Errorf("validate component id %q: reserved role name", id)
	}
	return nil
}

func isRoleName(s string) bool {
	switch s {
	case RoleRoot, RoleIndex, RoleSnapshot, RoleTimestamp:
		return true
	}
	return false
}

// ValidVersion checks that v is a full semantic version with its leading
// "v" (v1.2.3, v2.1.0-nightly-20261122). The x/mod shorthands v1 and v1.2
// are refused: they compare equal to v1.0.0 and v1.2.0, so two spellings of
// one version could be published as separate tarballs.
func ValidVersion(v string) error {
	if !semver.IsValid(v) {
		return fmt.Errorf("validate version %q: not a semantic version with a leading v", v)
	}
	core := v
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		core = core[:i]
	}
	if strings.Count(core, ".") != 2 {
		return fmt.Errorf("validate version %q: want major.minor.patch", v)
	}
	return nil
}

// ValidPlatform checks goos/goarch against the platforms tiup publish
// accepts: any/any, or linux or darwin on amd64 or arm64.
func ValidPlatform(goos, goarch string) error {
	if goos == "any" && goarch == "any" {
		return nil
	}
	if (goos == "linux" || goos == "darwin") && (goarch == "amd64" || goarch == "arm64") {
		return nil
	}
	return fmt.Errorf("validate platform %q: want any/any or linux|darwin on amd64|arm64", Platform(goos, goarch))
}
