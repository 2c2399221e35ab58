package manifest

import "time"

// NewRoot returns a version 1 root as tiup mirror init makes it: the four
// roles with their URLs and thresholds (root 3, the others 1) and empty key
// maps for the caller to fill, expiring after LifetimeRoot.
func NewRoot(now time.Time) *Root {
	r := &Root{
		Base:  newBase(TypeRoot, 1, now, LifetimeRoot),
		Roles: make(map[string]*Role, 4),
	}
	for _, name := range []string{RoleRoot, RoleIndex, RoleSnapshot, RoleTimestamp} {
		threshold := uint64(1)
		if name == RoleRoot {
			threshold = 3
		}
		r.Roles[name] = &Role{URL: ManifestURL(name), Keys: map[string]*KeyInfo{}, Threshold: threshold}
	}
	return r
}

// NewIndex returns a version 1 index with no owners, no components and an
// empty (not null) default_components, expiring after LifetimeIndex.
func NewIndex(now time.Time) *Index {
	return &Index{
		Base:              newBase(TypeIndex, 1, now, LifetimeIndex),
		Owners:            map[string]Owner{},
		Components:        map[string]ComponentItem{},
		DefaultComponents: []string{},
	}
}

// NewSnapshot returns a snapshot with an empty meta map. Its version is 0
// and stays 0: tiup never bumps it.
func NewSnapshot(now time.Time) *Snapshot {
	return &Snapshot{
		Base: newBase(TypeSnapshot, 0, now, LifetimeSnapshot),
		Meta: map[string]FileVersion{},
	}
}

// NewTimestamp returns a version 1 timestamp with an empty meta map for the
// caller to pin the snapshot in.
func NewTimestamp(now time.Time) *Timestamp {
	return &Timestamp{
		Base: newBase(TypeTimestamp, 1, now, LifetimeTimestamp),
		Meta: map[string]FileHash{},
	}
}

// NewComponent returns a version 1 component manifest with no nightly and no
// platforms, expiring after LifetimeComponent.
func NewComponent(id, desc string, now time.Time) *Component {
	return &Component{
		Base:        newBase(TypeComponent, 1, now, LifetimeComponent),
		ID:          id,
		Description: desc,
		Platforms:   map[string]map[string]VersionItem{},
	}
}

func newBase(typ string, version uint64, now time.Time, lifetime time.Duration) Base {
	return Base{
		Type:        typ,
		SpecVersion: SpecVersion,
		Expires:     FormatTime(now.Add(lifetime)),
		Version:     version,
	}
}
