package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/sdk"
)

// EnvVar names the key file when the reference is envkey:// alone.
const EnvVar = "MIRROR_ENVKEY_FILE"

// signer signs with one TiUP private key. keys.PrivateKey is safe for
// concurrent use, and so is signer.
type signer struct {
	key *keys.PrivateKey
	pub sdk.PublicKey
}

var _ sdk.Signer = (*signer)(nil)

// open is the sdk.SignerFactory: cfg.Address is the key reference as the
// user wrote it, envkey://PATH or envkey://. A relative PATH is relative to
// the working directory the plugin shares with the mirror command.
func open(_ context.Context, cfg sdk.Config) (sdk.Signer, error) {
	path, err := keyPath(cfg.Address, os.Getenv)
	if err != nil {
		return nil, err
	}
	ki, err := keys.ReadKeyFile(path)
	if err != nil {
		// The keys package names the path already.
		return nil, fmt.Errorf("open envkey: %w", err)
	}
	if _, ok := ki.Value["private"]; !ok {
		return nil, fmt.Errorf("open envkey %s: the file holds only a public key: %w", path, fs.ErrInvalid)
	}
	k, err := keys.ParsePrivateKeyInfo(ki)
	if err != nil {
		return nil, fmt.Errorf("open envkey %s: %w", path, err)
	}
	return &signer{key: k, pub: k.Public().SDK()}, nil
}

// keyPath finds the key file a reference names; getenv is os.Getenv, a
// parameter so that tests need not change the process's environment.
func keyPath(ref string, getenv func(string) string) (string, error) {
	path, ok := strings.CutPrefix(ref, "envkey://")
	if !ok {
		return "", fmt.Errorf("open envkey %s: not an envkey:// reference: %w", ref, fs.ErrInvalid)
	}
	if path != "" {
		return path, nil
	}
	if path = getenv(EnvVar); path == "" {
		return "", fmt.Errorf("open envkey %s: no key file: write envkey://PATH or set %s: %w", ref, EnvVar, fs.ErrInvalid)
	}
	return path, nil
}

// PublicKey returns the public half of the key.
func (s *signer) PublicKey(context.Context) (sdk.PublicKey, error) { return s.pub, nil }

// Sign returns the RSASSA-PSS (SHA-256) signature over payload.
func (s *signer) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig, err := s.key.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}
