package localsigner

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/sdk"
)

// fixtures is the stock-tiup fixture tree in the shared directory beside the
// checkout (this package is three levels below the module root).
func fixtures(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "..", "shared", "fixtures", "tiup-v1-mirror")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("fixtures not found at %s", dir)
	}
	return dir
}

// ownerKeyID reads owner's only key ID from the fixture's latest index.
func ownerKeyID(t *testing.T, dir, owner string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "mirror", "15.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ix struct {
		Signed struct {
			Owners map[string]struct {
				Keys map[string]json.RawMessage `json:"keys"`
			} `json:"owners"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &ix); err != nil {
		t.Fatal(err)
	}
	o, ok := ix.Signed.Owners[owner]
	if !ok || len(o.Keys) != 1 {
		t.Fatalf("owner %s in 15.index.json: %d keys, want 1", owner, len(o.Keys))
	}
	for id := range o.Keys {
		return id
	}
	return ""
}

func TestSignFixtureKey(t *testing.T) {
	dir := fixtures(t)
	ctx := context.Background()
	s, err := Open(ctx, sdk.Config{Address: filepath.Join(dir, "owner-keys", "alice.json")})
	if err != nil {
		t.Fatal(err)
	}
	spk, err := s.PublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if spk.KeyType != "rsa" || spk.Scheme != "rsassa-pss-sha256" || !strings.HasPrefix(spk.PEM, "-----BEGIN PUBLIC KEY-----\n") {
		t.Errorf("PublicKey() = %+v, want an rsa rsassa-pss-sha256 public PEM", spk)
	}
	if strings.Contains(spk.PEM, "PRIVATE") {
		t.Fatal("PublicKey() carries private key material")
	}
	pub, err := keys.FromSDK(spk)
	if err != nil {
		t.Fatal(err)
	}
	if want := ownerKeyID(t, dir, "alice"); pub.ID() != want {
		t.Errorf("key ID %s, want alice's %s from 15.index.json", pub.ID(), want)
	}
	if got := s.(*Signer).ID(); got != pub.ID() {
		t.Errorf("ID() = %s, want %s", got, pub.ID())
	}
	payload := []byte(`{"signed":"bytes"}`)
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(payload, sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if err := pub.Verify([]byte(`{"signed":"other"}`), sig); err == nil {
		t.Error("signature verifies over other bytes")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Sign(cancelled, payload); !errors.Is(err, context.Canceled) {
		t.Errorf("Sign with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := fixtures(t)
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A public-only key file: alice's public KeyInfo as the index lists it.
	alice, err := keys.LoadPrivateKey(filepath.Join(dir, "owner-keys", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	pubJSON, err := json.Marshal(alice.Public().KeyInfo())
	if err != nil {
		t.Fatal(err)
	}
	privText, err := os.ReadFile(filepath.Join(dir, "owner-keys", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing.json")
	tests := []struct {
		name    string
		path    string
		wantErr error
		wantMsg string
	}{
		{name: "missing file", path: missing, wantErr: sdk.ErrNotFound, wantMsg: "open key " + missing + ": no such file"},
		{name: "public key file", path: write("public.json", string(pubJSON)), wantErr: fs.ErrInvalid, wantMsg: "holds only a public key"},
		{name: "not json", path: write("junk.json", "hello\nworld\n"), wantMsg: "not a private key file"},
		{name: "a directory", path: tmp, wantMsg: "not a private key file"},
		{name: "truncated private key", path: write("cut.json", string(privText[:len(privText)/2])), wantMsg: "not a private key file"},
		{name: "empty path", path: "", wantErr: fs.ErrInvalid, wantMsg: "no key file named"},
	}
	secret := string(privText[60:120]) // a stretch of the base64 key body
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), sdk.Config{Address: tt.path})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open = %v, want an error wrapping %v", err, tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Open = %q, want it to contain %q", msg, tt.wantMsg)
			}
			if !strings.HasPrefix(msg, "open key ") || strings.Contains(msg, "\n") {
				t.Errorf("Open = %q, want one line starting with \"open key \"", msg)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "MII") {
				t.Errorf("Open = %q, which shows key material", msg)
			}
		})
	}
}

func TestMirrorKeys(t *testing.T) {
	dir := filepath.Join(fixtures(t), "mirror", "keys")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			s, err := Load(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			// tiup names a mirror key file after the first 16 hex digits
			// of its ID.
			if want := strings.SplitN(e.Name(), "-", 2)[0]; !strings.HasPrefix(s.ID(), want) {
				t.Errorf("ID() = %s, want the prefix %s from the file name", s.ID(), want)
			}
		})
	}
}
