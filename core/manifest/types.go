// Package manifest holds the TiUP v1 wire types with tiup's exact JSON field
// set, the signed envelope that keeps the raw signed bytes, canonical
// encoding, and the URL and file-name rules. It does no I/O and no crypto.
package manifest

import (
	"encoding/json"
	"time"
)

// SpecVersion is the only spec_version TiUP v1 accepts.
const SpecVersion = "0.1.0"

// Manifest type names, the values of "_type".
const (
	TypeRoot      = "root"
	TypeIndex     = "index"
	TypeComponent = "component"
	TypeSnapshot  = "snapshot"
	TypeTimestamp = "timestamp"
)

// Role names in a root manifest; they share the keystore namespace with index
// owner IDs, so an owner may never take one of these names.
const (
	RoleRoot      = "root"
	RoleIndex     = "index"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// Default lifetimes, as stock tiup renews them.
const (
	LifetimeRoot      = 365 * 24 * time.Hour
	LifetimeIndex     = 365 * 24 * time.Hour
	LifetimeComponent = 5 * 365 * 24 * time.Hour
	LifetimeSnapshot  = 30 * 24 * time.Hour
	LifetimeTimestamp = 30 * 24 * time.Hour
)

// Key type and scheme of every TiUP v1 key.
const (
	KeyTypeRSA   = "rsa"
	SchemeRSAPSS = "rsassa-pss-sha256"
)

// MaxTimestampSize is the largest timestamp.json the stock client accepts.
const MaxTimestampSize = 1024

// MaxRootSize caps a root manifest download, as the stock client does.
const MaxRootSize = 1 << 20

// Envelope is a manifest file: signatures plus the signed body. Signed keeps
// the exact bytes read from the file, because signatures are checked over
// those bytes and never over a re-encoding.
type Envelope struct {
	Signatures []Signature     `json:"signatures"`
	Signed     json.RawMessage `json:"signed"`
}

// Signature is one signature over an envelope's signed bytes.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // standard base64 with padding
}

// Base is the part every manifest has.
type Base struct {
	Type        string `json:"_type"`
	SpecVersion string `json:"spec_version"`
	Expires     string `json:"expires"` // RFC 3339, no fractional seconds
	Version     uint64 `json:"version"`
}

// Signed is implemented by the five manifest types through their Base.
type Signed interface {
	Header() *Base
}

// Header returns the common fields; it lets generic code bump versions and
// expiries.
func (b *Base) Header() *Base { return b }

// KeyInfo is a key as TiUP stores it: the public form has Value["public"], a
// private key file has Value["private"].
type KeyInfo struct {
	Type   string            `json:"keytype"`
	Value  map[string]string `json:"keyval"`
	Scheme string            `json:"scheme"`
}

// Role is one top-level role of a root manifest.
type Role struct {
	URL       string              `json:"url"`
	Keys      map[string]*KeyInfo `json:"keys"`
	Threshold uint64              `json:"threshold"`
}

// Root is the root manifest: the keys and thresholds of the four roles.
type Root struct {
	Base
	Roles map[string]*Role `json:"roles"`
}

// Owner is a publisher of components, declared in the index.
type Owner struct {
	Name      string              `json:"name"`
	Keys      map[string]*KeyInfo `json:"keys"`
	Threshold uint64              `json:"threshold"`
}

// ComponentItem is a component's entry in the index.
type ComponentItem struct {
	Yanked     bool   `json:"yanked"`
	Owner      string `json:"owner"`
	URL        string `json:"url"`
	Standalone bool   `json:"standalone"`
	Hidden     bool   `json:"hidden"`
}

// Index lists owners and components.
type Index struct {
	Base
	Owners            map[string]Owner         `json:"owners"`
	Components        map[string]ComponentItem `json:"components"`
	DefaultComponents []string                 `json:"default_components"`
}

// VersionItem is one version of a component on one platform.
type VersionItem struct {
	URL          string            `json:"url"`
	Yanked       bool              `json:"yanked"`
	Entry        string            `json:"entry"`
	Released     string            `json:"released"`
	Dependencies map[string]string `json:"dependencies"`
	Hashes       map[string]string `json:"hashes"`
	Length       uint64            `json:"length"`
}

// Component is a component manifest: its versions on each platform.
type Component struct {
	Base
	ID          string                            `json:"id"`
	Description string                            `json:"description"`
	Nightly     string                            `json:"nightly"`
	Platforms   map[string]map[string]VersionItem `json:"platforms"`
}

// FileVersion is a snapshot entry: the newest version of a manifest and the
// exact length of that file.
type FileVersion struct {
	Version uint64 `json:"version"`
	Length  uint64 `json:"length"`
}

// Snapshot names the newest version of every other manifest.
type Snapshot struct {
	Base
	Meta map[string]FileVersion `json:"meta"`
}

// FileHash is a timestamp entry: the hashes and length of snapshot.json.
type FileHash struct {
	Hashes map[string]string `json:"hashes"`
	Length uint64            `json:"length"`
}

// Timestamp pins the current snapshot by hash; it is the commit point.
type Timestamp struct {
	Base
	Meta map[string]FileHash `json:"meta"`
}
