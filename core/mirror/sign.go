package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
)

// maxSignFile caps the manifest file Sign reads; the largest official
// component manifests are a few MiB.
const maxSignFile = 64 << 20

// SignOptions configure Sign (`tiup mirror sign FILE`).
type SignOptions struct {
	// File is a manifest file (N.root.json, a component manifest, ...).
	File string
	// Keys are the key files (or signer URLs) to sign with; default
	// $TIUP_HOME/keys/private.json.
	Keys []string
}

// SignResult says what Sign added.
type SignResult struct {
	File       string
	KeyIDs     []string // the keys that signed now
	Signatures int      // signatures in the file afterwards
	// Recanonicalized says the signed part was not canonical JSON and was
	// re-encoded before signing, as stock tiup does; signatures made over
	// the old bytes no longer verify.
	Recanonicalized bool
}

// Sign adds signatures to a manifest file and writes the whole envelope
// back canonically. The file is replaced atomically, so a crash leaves
// either the old file or the new one.
func Sign(ctx context.Context, env *Env, opts SignOptions) (*SignResult, error) {
	if opts.File == "" {
		return nil, fmt.Errorf("%w: sign needs the manifest file", ErrUsage)
	}
	if strings.Contains(opts.File, "://") {
		return nil, fmt.Errorf("%w: sign %s: signing-session URLs come with `mirror rotate`; sign a local file here", ErrUsage, opts.File)
	}
	st, err := os.Stat(opts.File)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, fs.ErrNotExist)
	}
	if !st.Mode().IsRegular() || st.Size() > maxSignFile {
		return nil, fmt.Errorf("%w: sign %s: not a manifest file", ErrUsage, opts.File)
	}
	data, err := os.ReadFile(opts.File)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	envl, err := manifest.ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	res := &SignResult{File: opts.File}
	canon, err := canonical(envl.Signed)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	if !bytes.Equal(canon, envl.Signed) {
		envl.Signed, res.Recanonicalized = canon, true
	}

	signers, ids, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer closeSigners(signers)
	seen := map[string]bool{}
	for _, s := range envl.Signatures {
		seen[s.KeyID] = true
	}
	for _, id := range ids {
		if seen[id] {
			return nil, fmt.Errorf("sign %s: already signed by key %s: %w", opts.File, id[:16], fs.ErrExist)
		}
		seen[id] = true
	}
	for i, s := range signers {
		if err := publish.SignWith(ctx, envl, s); err != nil {
			return nil, fmt.Errorf("sign %s: %w", opts.File, err)
		}
		res.KeyIDs = append(res.KeyIDs, ids[i])
	}
	out, err := envl.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	if err := replaceFile(opts.File, out, st.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	res.Signatures = len(envl.Signatures)
	return res, nil
}

// canonical re-encodes a JSON object canonically. Numbers are kept as
// written (json.Number), so no integer is rounded through a float.
func canonical(signed []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(signed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode signed: %w", err)
	}
	return manifest.Encode(v)
}

// replaceFile writes data to a temporary file beside path and renames it
// over path.
func replaceFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-sign-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
