package keys

import (
	"fmt"
	"maps"
	"slices"

	"github.com/mirrorkit/mirror/core/manifest"
)

// ValidateRootKeyIDs checks that every key of every role in r parses and is
// declared under the ID tiup computes for it. It complements
// manifest.Root.Validate, which checks structure without crypto.
func ValidateRootKeyIDs(r *manifest.Root) error {
	for _, name := range slices.Sorted(maps.Keys(r.Roles)) {
		role := r.Roles[name]
		if role == nil {
			return fmt.Errorf("validate root role %s: null", name)
		}
		if err := checkIDs(role.Keys); err != nil {
			return fmt.Errorf("validate root role %s: %w", name, err)
		}
	}
	return nil
}

// ValidateIndexKeyIDs checks that every owner key in ix parses and is
// declared under the ID tiup computes for it.
func ValidateIndexKeyIDs(ix *manifest.Index) error {
	for _, name := range slices.Sorted(maps.Keys(ix.Owners)) {
		if err := checkIDs(ix.Owners[name].Keys); err != nil {
			return fmt.Errorf("validate index owner %s: %w", name, err)
		}
	}
	return nil
}

func checkIDs(keys map[string]*manifest.KeyInfo) error {
	for _, declared := range slices.Sorted(maps.Keys(keys)) {
		id, err := KeyID(keys[declared])
		if err != nil {
			return fmt.Errorf("key %s: %w", declared, err)
		}
		if id != declared {
			return fmt.Errorf("key %s: computed id is %s", declared, id)
		}
	}
	return nil
}
