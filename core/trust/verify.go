package trust

import (
	"encoding/base64"
	"fmt"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// KeySet is the keys and threshold of one role or owner, with each key
// parsed once and its ID checked against the map key it was declared under.
type KeySet struct {
	Name      string
	Threshold uint64
	keys      map[string]*keys.PublicKey
}

// NewKeySet parses declared keys. A key whose computed ID differs from the
// ID it is declared under is refused (spec §3.1): otherwise one key could be
// declared under several IDs and count several times toward a threshold.
func NewKeySet(name string, declared map[string]*manifest.KeyInfo, threshold uint64) (*KeySet, error) {
	if threshold < 1 {
		return nil, untrusted("role %s: threshold %d is below 1", name, threshold)
	}
	if uint64(len(declared)) < threshold {
		return nil, untrusted("role %s: %d key(s) cannot meet threshold %d", name, len(declared), threshold)
	}
	ks := &KeySet{Name: name, Threshold: threshold, keys: make(map[string]*keys.PublicKey, len(declared))}
	for id, ki := range declared {
		if ki == nil {
			return nil, untrusted("role %s: key %s is null", name, short(id))
		}
		pk, err := keys.ParseKeyInfo(ki)
		if err != nil {
			return nil, untrusted("role %s: key %s: %v", name, short(id), err)
		}
		if pk.ID() != id {
			return nil, untrusted("role %s: key declared as %s has ID %s", name, short(id), short(pk.ID()))
		}
		ks.keys[id] = pk
	}
	return ks, nil
}

// Has reports whether the set holds a key with that ID.
func (ks *KeySet) Has(id string) bool { _, ok := ks.keys[id]; return ok }

// IDs returns the key IDs of the set.
func (ks *KeySet) IDs() []string {
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	return ids
}

// Count returns how many signatures in env are valid by keys of the set,
// applying tiup's rules (spec §4): a duplicate key ID is an error, a
// signature by a key outside the set is ignored, and a signature by a key of
// the set that does not verify is an error, since one bad signature means the
// file was tampered with or mis-signed.
func (ks *KeySet) Count(file string, env *manifest.Envelope) (int, error) {
	if len(env.Signatures) > MaxSignatures {
		return 0, &SignatureError{File: file, Role: ks.Name, Reason: fmt.Sprintf("%d signatures, more than the %d a manifest may carry", len(env.Signatures), MaxSignatures)}
	}
	seen := make(map[string]bool, len(env.Signatures))
	valid := 0
	for _, s := range env.Signatures {
		if seen[s.KeyID] {
			return 0, &SignatureError{File: file, Role: ks.Name, Reason: fmt.Sprintf("duplicate signature by key %s", short(s.KeyID))}
		}
		seen[s.KeyID] = true
		pk, ok := ks.keys[s.KeyID]
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return 0, &SignatureError{File: file, Role: ks.Name, Reason: fmt.Sprintf("signature by key %s is not base64", short(s.KeyID))}
		}
		if err := pk.Verify(env.Signed, sig); err != nil {
			return 0, &SignatureError{File: file, Role: ks.Name, Reason: fmt.Sprintf("signature by %s key %s does not verify", ks.Name, short(s.KeyID))}
		}
		valid++
	}
	return valid, nil
}

// Verify checks that env meets the set's threshold.
func (ks *KeySet) Verify(file string, env *manifest.Envelope) error {
	n, err := ks.Count(file, env)
	if err != nil {
		return err
	}
	if uint64(n) < ks.Threshold {
		return &SignatureError{File: file, Role: ks.Name, Valid: n, Need: ks.Threshold}
	}
	return nil
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
