// Package localsigner signs with a TiUP private key file. It implements
// sdk.Signer; plugins/signer-local serves it as a plugin, so the private key
// lives only in the plugin process: the host gets the public key and
// signatures, and no error message carries key material.
package localsigner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/sdk"
)

// Signer signs payloads with one private key loaded from a file. It is safe
// for concurrent use.
type Signer struct {
	key *keys.PrivateKey
	pub *keys.PublicKey
}

var _ sdk.Signer = (*Signer)(nil)

// Open is the sdk.SignerFactory of the local signer: cfg.Address is the path
// of a TiUP private key file.
func Open(ctx context.Context, cfg sdk.Config) (sdk.Signer, error) {
	return Load(cfg.Address)
}

// Load reads the private key file at path. A missing file gives an error
// wrapping sdk.ErrNotFound; a file holding only a public key, or anything
// else that is not a TiUP private key, gives a one-line error saying so.
func Load(path string) (*Signer, error) {
	if path == "" {
		return nil, &keyError{path: `""`, msg: "no key file named", err: fs.ErrInvalid}
	}
	ki, err := keys.ReadKeyFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &keyError{path: path, msg: "no such file", err: sdk.ErrNotFound}
		}
		// The keys package names the path too; say it once.
		cause := strings.TrimPrefix(err.Error(), "read key file "+path+": ")
		return nil, &keyError{path: path, msg: "not a private key file: " + oneLine(cause), err: err}
	}
	if _, ok := ki.Value["private"]; !ok {
		return nil, &keyError{path: path, msg: "not a private key file: it holds only a public key", err: fs.ErrInvalid}
	}
	k, err := keys.ParsePrivateKeyInfo(ki)
	if err != nil {
		return nil, &keyError{path: path, msg: "not a usable private key: " + oneLine(err.Error()), err: err}
	}
	return &Signer{key: k, pub: k.Public()}, nil
}

// ID returns the TiUP key ID of the signing key.
func (s *Signer) ID() string { return s.pub.ID() }

// PublicKey returns the public half of the key.
func (s *Signer) PublicKey(ctx context.Context) (sdk.PublicKey, error) {
	return s.pub.SDK(), nil
}

// Sign returns the RSASSA-PSS (SHA-256) signature over payload.
func (s *Signer) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", s.pub.ID(), err)
	}
	sig, err := s.key.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", s.pub.ID(), err)
	}
	return sig, nil
}

// keyError reports a key file that cannot be used, in the form
// "open key PATH: what is wrong".
type keyError struct {
	path string
	msg  string
	err  error
}

func (e *keyError) Error() string { return "open key " + e.path + ": " + e.msg }

func (e *keyError) Unwrap() error { return e.err }

// oneLine keeps a wrapped cause on the error's single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
