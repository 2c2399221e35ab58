package attacktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// keyID is the ID TiUP computes for a key info: the sha256 of its
// canonical encoding, whatever the key inside.
func keyID(ki *manifest.KeyInfo) string {
	sum := sha256.Sum256(Encode(ki))
	return hex.EncodeToString(sum[:])
}

// publicPEM encodes any public key as TiUP stores keys.
func publicPEM(t testing.TB, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func rsaInfo(pemText string) *manifest.KeyInfo {
	return &manifest.KeyInfo{Type: manifest.KeyTypeRSA, Value: map[string]string{"public": pemText}, Scheme: manifest.SchemeRSAPSS}
}

// withTimestampKey returns a mutation of the next root that declares ki,
// under its computed ID, as the timestamp role's only key.
func withTimestampKey(ki *manifest.KeyInfo) func(r *manifest.Root) {
	return func(r *manifest.Root) {
		r.Roles[manifest.RoleTimestamp].Keys = map[string]*manifest.KeyInfo{keyID(ki): ki}
	}
}

// ownerChange changes the pingcap owner in a committed index; its heal
// restores the owner and publishes the component again.
func ownerChange(change func(c *Case, o *manifest.Owner)) (attack, heal func(c *Case)) {
	attack = func(c *Case) {
		o := c.Sim.Index.Owners[Owner]
		c.Keep("owner", Encode(o))
		change(c, &o)
		c.Sim.Index.Owners[Owner] = o
		c.Sim.Commit("index", Comp)
	}
	heal = func(c *Case) {
		c.Heal()
		var o manifest.Owner
		must(jsonUnmarshal(c.Kept("owner"), &o))
		c.Sim.Index.Owners[Owner] = o
		c.Sim.OwnerSigners[Owner] = c.Sim.OwnerSigners[Owner][:1]
		c.Sim.Commit("index", Comp)
	}
	return attack, heal
}

// TestSignatures is the catalogue's 1.6: thresholds of distinct trusted
// keys, counted strictly, over well-formed keys and signatures.
func TestSignatures(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smallKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rootSigners := func(c *Case) []*keys.PrivateKey { return c.Sim.Signers[manifest.RoleRoot] }
	spares := func(c *Case, idx ...int) []*keys.PrivateKey {
		var out []*keys.PrivateKey
		for _, i := range idx {
			out = append(out, c.Sim.Spare(i))
		}
		return out
	}
	newRootKeys := func(c *Case) func(r *manifest.Root) {
		return func(r *manifest.Root) {
			r.Roles[manifest.RoleRoot].Keys = KeyInfos(spares(c, 0, 1, 2)...)
		}
	}
	sg6, heal6 := ownerChange(func(c *Case, o *manifest.Owner) {
		o.Keys = KeyInfos(c.Sim.OwnerSigners[Owner][0], c.Sim.Spare(3))
		o.Threshold = 2
		c.Sim.OwnerSigners[Owner] = []*keys.PrivateKey{c.Sim.OwnerSigners[Owner][0], c.Sim.Spare(3)}
	})
	sg7, heal7 := ownerChange(func(c *Case, o *manifest.Owner) {
		// The owner's one key declared a second time with another scheme
		// string, which gives it another ID, at threshold 2.
		k := c.Sim.OwnerSigners[Owner][0]
		alias := k.Public().KeyInfo()
		alias.Scheme = "rsassa-pss-sha512"
		o.Keys[keyID(alias)] = alias
		o.Threshold = 2
	})
	sg8b, heal8b := ownerChange(func(c *Case, o *manifest.Owner) {
		k := c.Sim.OwnerSigners[Owner][0]
		o.Keys = map[string]*manifest.KeyInfo{strings.Repeat("ab", 32): k.Public().KeyInfo()}
	})
	sg12b, heal12b := ownerChange(func(c *Case, o *manifest.Owner) { o.Threshold = 3 })
	tsFile := func(c *Case, signed []byte, sigs []manifest.Signature) []byte {
		env := &manifest.Envelope{Signed: signed, Signatures: sigs}
		b, err := env.Bytes()
		if err != nil {
			c.T.Fatal(err)
		}
		return b
	}
	nextTS := func(c *Case) []byte {
		ts := *c.Sim.Timestamp
		ts.Version++
		return Encode(&ts)
	}
	RunAttacks(t, "signatures", []Attack{
		{ID: "SG-1", Expect: "threshold", Attack: func(c *Case) {
			ts := *c.Sim.Timestamp
			ts.Version++
			c.Serve("timestamp.json", c.Sim.Sign(&ts, c.Sim.Signers[manifest.RoleSnapshot]...))
		}},
		{ID: "SG-2", Expect: "threshold", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(nil, rootSigners(c)[0]))
		}, Verify: trustedRoot(1)},
		{ID: "SG-3", Expect: "threshold", Attack: func(c *Case) {
			// One old key compromised, two attacker keys.
			c.Serve("2.root.json", c.Sim.NextRoot(newRootKeys(c), c.Sim.Spare(0), c.Sim.Spare(1), rootSigners(c)[0]))
		}, Verify: trustedRoot(1)},
		{ID: "SG-4", Expect: "threshold", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(newRootKeys(c), spares(c, 0, 1, 2)...))
		}, Verify: trustedRoot(1)},
		{ID: "SG-5", Expect: "threshold", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(newRootKeys(c), rootSigners(c)[0], rootSigners(c)[1], c.Sim.Spare(0)))
		}, Verify: trustedRoot(1)},
		{ID: "SG-6", Expect: decision(t, "SG-6").Expect, Cmd: installFoo, Setup: func(c *Case) {
			sg6(c)
		}, Attack: func(c *Case) {
			// Threshold 2; one valid signature listed twice.
			k := c.Sim.OwnerSigners[Owner][0]
			signed := Encode(c.Sim.Components[Comp])
			s1, _ := k.Sign(signed)
			s2, _ := k.Sign(signed)
			c.Serve(c.Sim.ComponentFile(Comp), tsFile(c, signed, []manifest.Signature{
				{KeyID: k.ID(), Sig: base64.StdEncoding.EncodeToString(s1)},
				{KeyID: k.ID(), Sig: base64.StdEncoding.EncodeToString(s2)},
			}))
		}, Heal: heal6, Detail: "policy: " + decision(t, "SG-6").Decision},
		{ID: "SG-7", Expect: "malformed", Cmd: installFoo, Attack: func(c *Case) {
			sg7(c)
			k := c.Sim.OwnerSigners[Owner][0]
			signed := Encode(c.Sim.Components[Comp])
			sig, _ := k.Sign(signed)
			var alias string
			for id := range c.Sim.Index.Owners[Owner].Keys {
				if id != k.ID() {
					alias = id
				}
			}
			c.Sim.CommitRaw(Comp, tsFile(c, signed, []manifest.Signature{
				{KeyID: k.ID(), Sig: base64.StdEncoding.EncodeToString(sig)},
				{KeyID: alias, Sig: base64.StdEncoding.EncodeToString(sig)},
			}))
		}, Heal: heal7, Detail: "a key under a second scheme string is refused, so it cannot count twice"},
		{ID: "SG-8", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) {
				k := c.Sim.Signers[manifest.RoleTimestamp][0]
				r.Roles[manifest.RoleTimestamp].Keys = map[string]*manifest.KeyInfo{strings.Repeat("ab", 32): k.Public().KeyInfo()}
			}))
		}, Verify: trustedRoot(1)},
		{ID: "SG-8b", Expect: "malformed", Attack: sg8b, Heal: heal8b},
		{ID: "SG-9", Expect: "ACCEPT", Attack: func(c *Case) {
			// Threshold met, plus two signatures by keys of no role.
			sn := c.Sim.Sign(c.Sim.Snapshot, append(c.Sim.Signers[manifest.RoleSnapshot], c.Sim.Spare(4), c.Sim.Spare(5))...)
			c.Serve("snapshot.json", sn)
			c.Serve("timestamp.json", c.Sim.TimestampFor(sn, c.Sim.Timestamp.Version+1))
		}, NoRecovery: true, Detail: "control: unknown extra signatures are ignored; the snapshot is stored byte for byte"},
		{ID: "SG-10", Expect: decision(t, "SG-10").Expect, Attack: func(c *Case) {
			// Root threshold 2 met by two keys; the third root key's
			// signature is garbage.
			env, err := manifest.ParseEnvelope(c.Sim.NextRoot(nil))
			if err != nil {
				c.T.Fatal(err)
			}
			env.Signatures[2].Sig = base64.StdEncoding.EncodeToString(make([]byte, 256))
			b, _ := env.Bytes()
			c.Serve("2.root.json", b)
		}, Verify: trustedRoot(1), Detail: "policy: " + decision(t, "SG-10").Decision},
		{ID: "SG-11", Expect: "threshold", Attack: func(c *Case) {
			c.Serve("timestamp.json", tsFile(c, nextTS(c), []manifest.Signature{}))
		}, Detail: "no signatures at all"},
		{ID: "SG-11b", Expect: "signature", Attack: func(c *Case) {
			k := c.Sim.Signers[manifest.RoleTimestamp][0]
			c.Serve("timestamp.json", tsFile(c, nextTS(c), []manifest.Signature{{KeyID: k.ID(), Sig: "not base64!"}}))
		}},
		{ID: "SG-11c", Expect: "signature", Attack: func(c *Case) {
			k := c.Sim.Signers[manifest.RoleTimestamp][0]
			sig, _ := k.Sign([]byte("other bytes"))
			c.Serve("timestamp.json", tsFile(c, nextTS(c), []manifest.Signature{{KeyID: k.ID(), Sig: base64.StdEncoding.EncodeToString(sig)}}))
		}},
		{ID: "SG-11d", Expect: "malformed", Attack: func(c *Case) {
			k := c.Sim.Signers[manifest.RoleTimestamp][0]
			signed := nextTS(c)
			sig, _ := k.Sign(signed)
			c.Serve("timestamp.json", []byte(`{"signatures":[{"sig":"`+base64.StdEncoding.EncodeToString(sig)+`"}],"signed":`+string(signed)+`}`))
		}, Detail: "a signature without keyid"},
		{ID: "SG-12", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) { r.Roles[manifest.RoleTimestamp].Threshold = 0 }))
		}, Verify: trustedRoot(1)},
		{ID: "SG-12b", Expect: "malformed", Attack: sg12b, Heal: heal12b, Detail: "owner threshold 3 with one key"},
		{ID: "SG-13", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(withTimestampKey(rsaInfo(publicPEM(c.T, &ecKey.PublicKey)))))
		}, Verify: trustedRoot(1), Detail: "an ECDSA key labelled rsa"},
		{ID: "SG-13b", Expect: "malformed", Attack: func(c *Case) {
			p := c.Sim.Signers[manifest.RoleTimestamp][0].Public().PEM()
			c.Serve("2.root.json", c.Sim.NextRoot(withTimestampKey(rsaInfo(p[:len(p)/2]))))
		}, Verify: trustedRoot(1), Detail: "a truncated PEM"},
		{ID: "SG-13c", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(withTimestampKey(rsaInfo(publicPEM(c.T, &smallKey.PublicKey)))))
		}, Verify: trustedRoot(1), Detail: "a 1024-bit RSA key"},
		{ID: "SG-14", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) { delete(r.Roles, manifest.RoleTimestamp) }))
		}, Verify: trustedRoot(1), Detail: "no timestamp role"},
		{ID: "SG-14b", Expect: "malformed", Attack: func(c *Case) {
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) {
				r.Roles["foo"] = &manifest.Role{URL: "/foo.json", Keys: KeyInfos(c.Sim.Spare(0)), Threshold: 1}
			}))
		}, Verify: trustedRoot(1), Detail: "an extra role"},
	})
}
