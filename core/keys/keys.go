// Package keys handles TiUP v1 keys: RSA-2048 keys with RSASSA-PSS SHA-256
// signatures, their key IDs, and key files written exactly as tiup writes
// them. Errors never carry private key material.
package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/sdk"
)

// Bits is the modulus size of generated keys; smaller keys are refused.
const Bits = 2048

// PEM block labels. tiup writes PKCS#1 private keys under the PKCS#8 label
// "PRIVATE KEY"; stock tiup can only read its keys back in that form.
const (
	pemPublic     = "PUBLIC KEY"
	pemPrivate    = "PRIVATE KEY"
	pemRSAPrivate = "RSA PRIVATE KEY"
)

// ErrBadSignature is wrapped by every signature verification failure.
var ErrBadSignature = errors.New("bad signature")

// PrivateKey is an RSA private key used to sign manifests.
type PrivateKey struct {
	key *rsa.PrivateKey
}

// PublicKey is an RSA public key used to verify manifest signatures.
type PublicKey struct {
	key *rsa.PublicKey
}

// Generate returns a fresh RSA-2048 key.
func Generate() (*PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, Bits)
	if err != nil {
		return nil, fmt.Errorf("generate rsa key: %w", err)
	}
	return &PrivateKey{key: k}, nil
}

// Public returns the public half of k.
func (k *PrivateKey) Public() *PublicKey {
	return &PublicKey{key: &k.key.PublicKey}
}

// ID returns the key ID, which is the ID of the public half: tiup gives a
// private key and its public key one ID.
func (k *PrivateKey) ID() string {
	return k.Public().ID()
}

// KeyInfo returns the private form tiup writes to key files: keyval
// {"private": PEM of the PKCS#1 DER under the label "PRIVATE KEY"}.
func (k *PrivateKey) KeyInfo() *manifest.KeyInfo {
	block := &pem.Block{Type: pemPrivate, Bytes: x509.MarshalPKCS1PrivateKey(k.key)}
	return &manifest.KeyInfo{
		Type:   manifest.KeyTypeRSA,
		Value:  map[string]string{"private": string(pem.EncodeToMemory(block))},
		Scheme: manifest.SchemeRSAPSS,
	}
}

// Sign signs payload with RSASSA-PSS SHA-256. Like tiup it passes no PSS
// options, so the salt has the maximum length (222 bytes for RSA-2048).
func (k *PrivateKey) Sign(payload []byte) ([]byte, error) {
	digest := sha256.Sum256(payload)
	sig, err := rsa.SignPSS(rand.Reader, k.key, crypto.SHA256, digest[:], nil)
	if err != nil {
		return nil, fmt.Errorf("sign payload with key %s: %w", k.ID(), err)
	}
	return sig, nil
}

// PEM returns the Go-standard PEM of the PKIX public key, the form tiup
// stores and hashes into the key ID.
func (p *PublicKey) PEM() string {
	der, err := x509.MarshalPKIXPublicKey(p.key)
	if err != nil {
		// An *rsa.PublicKey with a valid modulus always marshals; the
		// constructors of PublicKey only admit such keys.
		panic(fmt.Sprintf("keys: marshal rsa public key: %v", err))
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}))
}

// KeyInfo returns the public form stored in root and index manifests.
func (p *PublicKey) KeyInfo() *manifest.KeyInfo {
	return &manifest.KeyInfo{
		Type:   manifest.KeyTypeRSA,
		Value:  map[string]string{"public": p.PEM()},
		Scheme: manifest.SchemeRSAPSS,
	}
}

// ID returns the key ID: lowercase hex SHA-256 of the canonical JSON of the
// public KeyInfo.
func (p *PublicKey) ID() string {
	id, err := hashKeyInfo(p.KeyInfo())
	if err != nil {
		// The public KeyInfo holds only ASCII strings, which always encode.
		panic(fmt.Sprintf("keys: hash public key info: %v", err))
	}
	return id
}

// Verify checks an RSASSA-PSS SHA-256 signature over payload. The salt
// length is detected from the signature, because tiup signs with the
// maximum salt while other signers use the hash length.
func (p *PublicKey) Verify(payload, sig []byte) error {
	digest := sha256.Sum256(payload)
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}
	if err := rsa.VerifyPSS(p.key, crypto.SHA256, digest[:], sig, opts); err != nil {
		return fmt.Errorf("verify signature with key %s: %w", p.ID(), ErrBadSignature)
	}
	return nil
}

// Equal reports whether p and q are the same key.
func (p *PublicKey) Equal(q *PublicKey) bool {
	return q != nil && p.key.Equal(q.key)
}

// SDK returns p in the plugin protocol's terms.
func (p *PublicKey) SDK() sdk.PublicKey {
	return sdk.PublicKey{KeyType: manifest.KeyTypeRSA, Scheme: manifest.SchemeRSAPSS, PEM: p.PEM()}
}

// FromSDK parses a public key received from a signer plugin, checking its
// key type and scheme.
func FromSDK(pk sdk.PublicKey) (*PublicKey, error) {
	if err := checkTypeScheme(pk.KeyType, pk.Scheme); err != nil {
		return nil, fmt.Errorf("parse signer public key: %w", err)
	}
	p, err := parsePublicPEM(pk.PEM)
	if err != nil {
		return nil, fmt.Errorf("parse signer public key: %w", err)
	}
	return p, nil
}

// ParseKeyInfo returns the public key of ki, which may be the public form or
// a private key file's form (the public half is then derived).
func ParseKeyInfo(ki *manifest.KeyInfo) (*PublicKey, error) {
	if ki == nil {
		return nil, errors.New("parse key info: nil")
	}
	if err := checkTypeScheme(ki.Type, ki.Scheme); err != nil {
		return nil, fmt.Errorf("parse key info: %w", err)
	}
	pub, hasPub := ki.Value["public"]
	_, hasPriv := ki.Value["private"]
	switch {
	case hasPub && hasPriv:
		return nil, errors.New("parse key info: both public and private keyval")
	case hasPriv:
		k, err := ParsePrivateKeyInfo(ki)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	case hasPub:
		p, err := parsePublicPEM(pub)
		if err != nil {
			return nil, fmt.Errorf("parse key info: %w", err)
		}
		return p, nil
	}
	return nil, errors.New("parse key info: no public or private keyval")
}

// KeyID returns the ID tiup computes for ki: the hash of the canonical
// KeyInfo as stored for the public form, and of the derived public KeyInfo
// for a private one. The key is parsed either way, so a malformed KeyInfo
// gets no ID.
func KeyID(ki *manifest.KeyInfo) (string, error) {
	p, err := ParseKeyInfo(ki)
	if err != nil {
		return "", err
	}
	if _, ok := ki.Value["private"]; ok {
		return p.ID(), nil
	}
	return hashKeyInfo(ki)
}

// ParsePrivateKeyInfo parses the private form of a KeyInfo. The PEM label
// may be "PRIVATE KEY" (tiup's) or "RSA PRIVATE KEY"; the body is PKCS#1,
// with PKCS#8 accepted as a fallback.
func ParsePrivateKeyInfo(ki *manifest.KeyInfo) (*PrivateKey, error) {
	if ki == nil {
		return nil, errors.New("parse private key info: nil")
	}
	if err := checkTypeScheme(ki.Type, ki.Scheme); err != nil {
		return nil, fmt.Errorf("parse private key info: %w", err)
	}
	text, ok := ki.Value["private"]
	if !ok {
		return nil, errors.New("parse private key info: no private keyval")
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("parse private key info: no pem block")
	}
	if len(rest) != 0 {
		return nil, errors.New("parse private key info: data after pem block")
	}
	if block.Type != pemPrivate && block.Type != pemRSAPrivate {
		return nil, fmt.Errorf("parse private key info: pem label %q", block.Type)
	}
	// The x509 parse errors describe the ASN.1 structure only, never key
	// bytes, so they are safe to wrap.
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		parsed, err8 := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err8 != nil {
			return nil, fmt.Errorf("parse private key info: neither pkcs1 nor pkcs8: %w", err)
		}
		rk, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key info: pkcs8 key is %T, want rsa", parsed)
		}
		k = rk
	}
	if n := k.N.BitLen(); n < Bits {
		return nil, fmt.Errorf("parse private key info: rsa key of %d bits, want at least %d", n, Bits)
	}
	return &PrivateKey{key: k}, nil
}

func parsePublicPEM(text string) (*PublicKey, error) {
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("no pem block")
	}
	if len(rest) != 0 {
		return nil, errors.New("data after pem block")
	}
	if block.Type != pemPublic {
		return nil, fmt.Errorf("pem label %q, want %q", block.Type, pemPublic)
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse pkix public key: %w", err)
	}
	k, ok := parsed.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want rsa", parsed)
	}
	if n := k.N.BitLen(); n < Bits {
		return nil, fmt.Errorf("rsa key of %d bits, want at least %d", n, Bits)
	}
	return &PublicKey{key: k}, nil
}

func checkTypeScheme(keyType, scheme string) error {
	if keyType != manifest.KeyTypeRSA {
		return fmt.Errorf("keytype %q, want %q", keyType, manifest.KeyTypeRSA)
	}
	if scheme != manifest.SchemeRSAPSS {
		return fmt.Errorf("scheme %q, want %q", scheme, manifest.SchemeRSAPSS)
	}
	return nil
}

func hashKeyInfo(ki *manifest.KeyInfo) (string, error) {
	b, err := manifest.Encode(ki)
	if err != nil {
		return "", fmt.Errorf("hash key info: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Signer returns an in-process sdk.Signer for k. Only code that holds a key
// it has just generated uses it (init); every other signature goes through a
// signer plugin, so the private key stays in that process.
func (k *PrivateKey) Signer() sdk.Signer { return localSigner{k} }

type localSigner struct{ k *PrivateKey }

func (s localSigner) PublicKey(context.Context) (sdk.PublicKey, error) {
	return s.k.Public().SDK(), nil
}

func (s localSigner) Sign(_ context.Context, payload []byte) ([]byte, error) {
	return s.k.Sign(payload)
}
