package keys

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

// FuzzKeyInfo: parsing a key info (PEM, PKIX or PKCS#1/#8 inside, type and
// scheme around) never panics, and a key that parses has one stable ID:
// computed twice, from the public form, from the private form, and after a
// round trip through its own KeyInfo, it is the same, and the parsed key
// is the one that went in. Seeds cover the public and the private form,
// other labels, trailing data, short keys and other key types
// (testdata/fuzz/FuzzKeyInfo).
func FuzzKeyInfo(f *testing.F) {
	k := fuzzKey(f)
	pub := k.Public().KeyInfo().Value["public"]
	priv := k.KeyInfo().Value["private"]
	f.Add("public", pub, manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("private", priv, manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("private", strings.Replace(priv, "PRIVATE KEY", "RSA PRIVATE KEY", 2), manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("public", pub+"trailing", manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("public", pub, "ed25519", manifest.SchemeRSAPSS)
	f.Add("public", strings.Replace(pub, "PUBLIC KEY", "CERTIFICATE", 2), manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("public", shortKeyPEM(f), manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Add("public", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", manifest.KeyTypeRSA, manifest.SchemeRSAPSS)
	f.Fuzz(func(t *testing.T, form, text, keyType, scheme string) {
		ki := &manifest.KeyInfo{Type: keyType, Scheme: scheme, Value: map[string]string{form: text}}
		p, err := ParseKeyInfo(ki)
		id, idErr := KeyID(ki)
		if (err == nil) != (idErr == nil) {
			t.Fatalf("ParseKeyInfo error %v, KeyID error %v", err, idErr)
		}
		if err != nil {
			return
		}
		if again, err := KeyID(ki); err != nil || again != id {
			t.Fatalf("KeyID is not stable: %q then %q (%v)", id, again, err)
		}
		if p.ID() != id && form == "private" {
			t.Fatalf("a private key's ID %q is not its public half's %q", id, p.ID())
		}
		back, err := ParseKeyInfo(p.KeyInfo())
		if err != nil || !back.Equal(p) {
			t.Fatalf("the key does not round-trip through its KeyInfo: %v", err)
		}
		if back.ID() != p.ID() {
			t.Fatalf("ID %q after the round trip, %q before", back.ID(), p.ID())
		}
		if form == "public" && id != p.ID() && text == p.PEM() {
			t.Fatalf("the canonical public form has ID %q, the key %q", id, p.ID())
		}
		if n := p.key.N.BitLen(); n < Bits {
			t.Fatalf("accepted a %d-bit key", n)
		}
	})
}

// fuzzKey is the committed test key, so seeds stay the same key across
// runs.
func fuzzKey(f *testing.F) *PrivateKey {
	ki, err := ReadKeyFile("../trust/testdata/fuzz-key.json")
	if err != nil {
		f.Fatal(err)
	}
	k, err := ParsePrivateKeyInfo(ki)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// shortKeyPEM is a 1024-bit public key, which must be refused.
func shortKeyPEM(f *testing.F) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Skip("this Go refuses to make 1024-bit keys")
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
