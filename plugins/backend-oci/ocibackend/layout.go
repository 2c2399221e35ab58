package ocibackend

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mirrorkit/mirror/sdk"
)

// The layout, documented for users in docs/oci-layout.md. Every mirror key is
// one OCI 1.1 artifact in the mirror's repository: an image manifest with
// artifactType FileArtifactType, the empty config, and one layer whose blob
// is the file and whose title annotation is the file's name, tagged with
// TagForKey(key).
const (
	// FileArtifactType marks a manifest holding one mirror file.
	FileArtifactType = "application/vnd.mirrorkit.file.v1"
	// LeaseArtifactType marks a manifest holding a writer lease.
	LeaseArtifactType = "application/vnd.mirrorkit.lease.v1"

	// AnnotationKey holds the mirror key on a file manifest, so a hashed
	// tag can be mapped back to its key.
	AnnotationKey = "com.github.mirrorkit.key"
	// Lease annotations: the holder's random ID, a renewal counter, and
	// for people reading the registry, who holds it and until when.
	AnnotationLeaseHolder  = "com.github.mirrorkit.lease.holder"
	AnnotationLeaseSeq     = "com.github.mirrorkit.lease.seq"
	AnnotationLeaseOwner   = "com.github.mirrorkit.lease.owner"
	AnnotationLeaseExpires = "com.github.mirrorkit.lease.expires"

	// emptyJSON is the OCI empty descriptor's content, "{}".
	emptyJSON = "{}"
)

// emptyDigest is the sha256 of "{}", the OCI 1.1 empty descriptor.
var emptyDigest = v1.Hash{Algorithm: "sha256", Hex: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}

// emptyDescriptor is the config of every manifest the backend writes, and the
// single layer of a lease manifest.
func emptyDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: types.OCIEmptyJSON, Digest: emptyDigest, Size: int64(len(emptyJSON))}
}

// Tag rules: the distribution spec allows [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
const maxTagLen = 128

// Internal tags start with '_' and a letter that is not a hex digit, which an
// escaped key never does (its escapes are '_' and two lowercase hex digits),
// so no key can take them.
const (
	hashedTagPrefix = "_k" // a key too long to escape: "_k" + sha256(key)
	leaseTagPrefix  = "_lease-"
)

// TagForKey returns the tag a mirror key is stored under. Bytes in
// [A-Za-z0-9.-] stand for themselves, except a leading '.' or '-' (a tag
// cannot start with them); every other byte, '_' included, becomes '_' and
// two lowercase hex digits. The mapping is injective because '_' always
// starts an escape. A result longer than 128 characters is replaced by "_k"
// and the hex sha256 of the key, which the manifest's AnnotationKey maps
// back.
func TagForKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if plainTagByte(c) && !(i == 0 && (c == '.' || c == '-')) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	if b.Len() > maxTagLen {
		sum := sha256.Sum256([]byte(key))
		return hashedTagPrefix + hex.EncodeToString(sum[:])
	}
	return b.String()
}

func plainTagByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-'
}

// tagKind classifies a tag found in the repository's tag list.
type tagKind int

const (
	tagForeign tagKind = iota // not written by this backend: ignored
	tagKey                    // an escaped key, decoded
	tagHashed                 // a hashed key: the manifest names it
	tagLease                  // a lease: never listed
)

// KeyForTag reverses TagForKey for escaped tags. It reports ok false for a
// hashed tag, an internal tag and any tag TagForKey would not produce.
func KeyForTag(tag string) (key string, ok bool) {
	k, kind := parseTag(tag)
	return k, kind == tagKey
}

func parseTag(tag string) (string, tagKind) {
	switch {
	case strings.HasPrefix(tag, leaseTagPrefix):
		return "", tagLease
	case strings.HasPrefix(tag, hashedTagPrefix):
		if len(tag) == len(hashedTagPrefix)+64 && isLowerHex(tag[len(hashedTagPrefix):]) {
			return "", tagHashed
		}
		return "", tagForeign
	}
	var b strings.Builder
	for i := 0; i < len(tag); i++ {
		if tag[i] != '_' {
			b.WriteByte(tag[i])
			continue
		}
		if i+2 >= len(tag) || !isLowerHex(tag[i+1:i+3]) {
			return "", tagForeign
		}
		v, _ := hex.DecodeString(tag[i+1 : i+3])
		b.WriteByte(v[0])
		i += 2
	}
	key := b.String()
	// Only the canonical spelling is ours: "a_2eb" and "a.b" must not both
	// name key "a.b".
	if validKey(key) != nil || TagForKey(key) != tag {
		return "", tagForeign
	}
	return key, tagKey
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// leaseTag is the tag of the lease named name.
func leaseTag(name string) string {
	t := leaseTagPrefix + TagForKey(name)
	if len(t) > maxTagLen {
		sum := sha256.Sum256([]byte(name))
		t = leaseTagPrefix + hex.EncodeToString(sum[:])
	}
	return t
}

// validKey checks a mirror key: a valid io/fs path that is not under keys/,
// where a local mirror keeps its private keys; they never go to a registry.
func validKey(key string) error {
	if !fs.ValidPath(key) || key == "." {
		return fs.ErrInvalid
	}
	if strings.HasPrefix(key, "keys/") {
		return fs.ErrInvalid
	}
	return nil
}

// checkKey returns the error an operation reports for an invalid key.
func checkKey(op, key string) error {
	if validKey(key) == nil {
		return nil
	}
	if strings.HasPrefix(key, "keys/") {
		return fmt.Errorf("%s %s: private keys are never stored in a registry: %w", op, key, fs.ErrInvalid)
	}
	return fmt.Errorf("%s %q: not a valid key: %w", op, key, fs.ErrInvalid)
}

// layerMediaType gives a file's layer a media type tools understand: a TiUP
// tarball is a gzipped tar, a manifest is JSON.
func layerMediaType(key string) types.MediaType {
	switch {
	case strings.HasSuffix(key, ".tar.gz"), strings.HasSuffix(key, ".tgz"):
		return types.OCILayer
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	}
	return "application/octet-stream"
}

// fileManifest builds the manifest of key whose file is the blob blob.
func fileManifest(key string, blob v1.Hash, size int64, created time.Time) []byte {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  FileArtifactType,
		Config:        emptyDescriptor(),
		Layers: []v1.Descriptor{{
			MediaType:   layerMediaType(key),
			Digest:      blob,
			Size:        size,
			Annotations: map[string]string{"org.opencontainers.image.title": path.Base(key)},
		}},
		Annotations: map[string]string{
			AnnotationKey:                      key,
			"org.opencontainers.image.created": created.UTC().Format(time.RFC3339Nano),
		},
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only plain strings and numbers: cannot fail
	}
	return b
}

// manifestDigest is the digest a registry gives the manifest bytes.
func manifestDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fileObject is what a file manifest says about its object.
type fileObject struct {
	info sdk.ObjectInfo
	blob v1.Hash
}

// parseFileManifest reads a manifest fetched from tag. It refuses anything
// this backend did not write for key: another artifact or an image tagged
// with a name that happens to decode to a key is not a mirror file.
func parseFileManifest(key string, body []byte) (fileObject, error) {
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return fileObject{}, fmt.Errorf("not an OCI manifest: %v", err)
	}
	if m.ArtifactType != FileArtifactType || len(m.Layers) != 1 {
		return fileObject{}, fmt.Errorf("not a mirror file (artifactType %q)", m.ArtifactType)
	}
	if got := m.Annotations[AnnotationKey]; got != key {
		return fileObject{}, fmt.Errorf("the manifest is of key %q", got)
	}
	l := m.Layers[0]
	if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 || l.Size < 0 {
		return fileObject{}, fmt.Errorf("layer %s of size %d is not a sha256 blob", l.Digest, l.Size)
	}
	created, _ := time.Parse(time.RFC3339Nano, m.Annotations["org.opencontainers.image.created"])
	return fileObject{
		info: sdk.ObjectInfo{Key: key, Size: l.Size, ETag: manifestDigest(body), ModTime: created},
		blob: l.Digest,
	}, nil
}

// keyOfManifest returns the key a file manifest names, for hashed tags.
func keyOfManifest(body []byte) string {
	var m struct {
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	}
	if json.Unmarshal(body, &m) != nil || m.ArtifactType != FileArtifactType {
		return ""
	}
	return m.Annotations[AnnotationKey]
}

// leaseRecord is the content of a lease manifest.
type leaseRecord struct {
	Holder  string // empty: released
	Seq     uint64
	Owner   string
	Expires time.Time
}

func leaseManifest(r leaseRecord) []byte {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  LeaseArtifactType,
		Config:        emptyDescriptor(),
		// OCI 1.1: an artifact without content has the empty descriptor as
		// its one layer.
		Layers: []v1.Descriptor{emptyDescriptor()},
		Annotations: map[string]string{
			AnnotationLeaseHolder:  r.Holder,
			AnnotationLeaseSeq:     fmt.Sprint(r.Seq),
			AnnotationLeaseOwner:   r.Owner,
			AnnotationLeaseExpires: r.Expires.UTC().Format(time.RFC3339Nano),
		},
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func parseLeaseManifest(body []byte) (leaseRecord, error) {
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return leaseRecord{}, err
	}
	if m.ArtifactType != LeaseArtifactType {
		return leaseRecord{}, fmt.Errorf("not a lease (artifactType %q)", m.ArtifactType)
	}
	r := leaseRecord{Holder: m.Annotations[AnnotationLeaseHolder], Owner: m.Annotations[AnnotationLeaseOwner]}
	fmt.Sscan(m.Annotations[AnnotationLeaseSeq], &r.Seq)
	r.Expires, _ = time.Parse(time.RFC3339Nano, m.Annotations[AnnotationLeaseExpires])
	return r, nil
}
