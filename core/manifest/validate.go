package manifest

import (
	"errors"
	"fmt"
	"slices"
)

// Validate checks the structure of a root: the four roles are present with
// their tiup URLs, each threshold is at least 1 and met by the number of
// keys, and every key is a public rsa / rsassa-pss-sha256 key. Key IDs are
// checked by the keys package, since computing them takes crypto.
func (r *Root) Validate() error {
	if r.Type != TypeRoot {
		return fmt.Errorf("validate root: field _type is %q", r.Type)
	}
	for _, name := range []string{RoleRoot, RoleIndex, RoleSnapshot, RoleTimestamp} {
		role, ok := r.Roles[name]
		if !ok || role == nil {
			return fmt.Errorf("validate root: missing role %q", name)
		}
		if want := ManifestURL(name); role.URL != want {
			return fmt.Errorf("validate root role %s: url is %q, want %q", name, role.URL, want)
		}
		if err := checkKeys(role.Keys, role.Threshold); err != nil {
			return fmt.Errorf("validate root role %s: %w", name, err)
		}
	}
	return nil
}

// Validate checks the structure of an index: component IDs are valid and
// owned by a declared owner with a matching URL, default components exist,
// no owner takes a role name (owners share the keystore namespace with the
// roles), and every owner's threshold is between 1 and its key count.
func (ix *Index) Validate() error {
	if ix.Type != TypeIndex {
		return fmt.Errorf("validate index: field _type is %q", ix.Type)
	}
	for _, id := range sortedKeys(ix.Owners) {
		if id == "" {
			return errors.New("validate index: empty owner id")
		}
		if isRoleName(id) {
			return fmt.Errorf("validate index owner %s: owner id is a role name", id)
		}
		o := ix.Owners[id]
		if err := checkKeys(o.Keys, o.Threshold); err != nil {
			return fmt.Errorf("validate index owner %s: %w", id, err)
		}
	}
	for _, id := range sortedKeys(ix.Components) {
		if err := ValidComponentID(id); err != nil {
			return fmt.Errorf("validate index: %w", err)
		}
		item := ix.Components[id]
		if _, ok := ix.Owners[item.Owner]; !ok {
			return fmt.Errorf("validate index component %s: owner %q does not exist", id, item.Owner)
		}
		if want := ManifestURL(id); item.URL != want {
			return fmt.Errorf("validate index component %s: url is %q, want %q", id, item.URL, want)
		}
	}
	for _, id := range ix.DefaultComponents {
		if _, ok := ix.Components[id]; !ok {
			return fmt.Errorf("validate index: default component %q does not exist", id)
		}
	}
	return nil
}

func checkKeys(keys map[string]*KeyInfo, threshold uint64) error {
	if threshold < 1 {
		return errors.New("threshold is 0")
	}
	if uint64(len(keys)) < threshold {
		return fmt.Errorf("%d keys for threshold %d", len(keys), threshold)
	}
	for _, id := range sortedKeys(keys) {
		ki := keys[id]
		if ki == nil {
			return fmt.Errorf("key %s: null", id)
		}
		if ki.Type != KeyTypeRSA {
			return fmt.Errorf("key %s: keytype %q, want %q", id, ki.Type, KeyTypeRSA)
		}
		if ki.Scheme != SchemeRSAPSS {
			return fmt.Errorf("key %s: scheme %q, want %q", id, ki.Scheme, SchemeRSAPSS)
		}
		if _, ok := ki.Value["private"]; ok {
			return fmt.Errorf("key %s: private key in a manifest", id)
		}
		if ki.Value["public"] == "" {
			return fmt.Errorf("key %s: no public key", id)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
