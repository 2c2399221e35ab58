package manifest

import (
	"strings"

	"golang.org/x/mod/semver"
)

// IsNightly reports whether version names a nightly build; like tiup, any
// version containing "nightly" is one, and it is never the latest stable.
func IsNightly(version string) bool {
	return strings.Contains(version, "nightly")
}

// platformMap applies tiup's lookup rule: the exact platform key, and the
// any/any map only when that key is absent altogether.
func (c *Component) platformMap(platform string) map[string]VersionItem {
	if m, ok := c.Platforms[platform]; ok {
		return m
	}
	return c.Platforms[PlatformAny]
}

// VersionsFor returns the versions available on platform, yanked ones
// included, following the same lookup rule as Item. Items with an empty
// entry are left out because the client treats them as nonexistent. The
// result is a new map the caller may change.
func (c *Component) VersionsFor(platform string) map[string]VersionItem {
	src := c.platformMap(platform)
	out := make(map[string]VersionItem, len(src))
	for v, item := range src {
		if item.Entry != "" {
			out[v] = item
		}
	}
	return out
}

// Item returns version on platform: the exact platform map is used if its
// key exists, otherwise the any/any map. An item with an empty entry counts
// as absent.
func (c *Component) Item(platform, version string) (VersionItem, bool) {
	item, ok := c.platformMap(platform)[version]
	if !ok || item.Entry == "" {
		return VersionItem{}, false
	}
	return item, true
}

// LatestStable returns the highest version on platform without a
// prerelease, skipping nightlies and, unless includeYanked, yanked versions;
// when there is no such version it returns the highest non-nightly
// prerelease. It returns false when nothing qualifies.
func (c *Component) LatestStable(platform string, includeYanked bool) (string, bool) {
	var stable, best string
	for v, item := range c.VersionsFor(platform) {
		if IsNightly(v) || !semver.IsValid(v) || (item.Yanked && !includeYanked) {
			continue
		}
		if higher(v, best) {
			best = v
		}
		if semver.Prerelease(v) == "" && higher(v, stable) {
			stable = v
		}
	}
	if stable != "" {
		return stable, true
	}
	return best, best != ""
}

// higher orders by semver and breaks ties (build metadata) by string, so the
// answer does not depend on map iteration order.
func higher(v, cur string) bool {
	if cur == "" {
		return true
	}
	if c := semver.Compare(v, cur); c != 0 {
		return c > 0
	}
	return v > cur
}
