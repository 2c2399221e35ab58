package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
)

// maxKeyFileSize bounds a key file read; an RSA-2048 private key file is
// under 2 KiB, so anything far larger is not a key file.
const maxKeyFileSize = 64 << 10

// KeyFileName returns the file name tiup gives a mirror key: the first 16
// hex digits of the ID, a dash and the role, as in
// "6963be8377f51ad0-index.json".
func KeyFileName(id, role string) string {
	if len(id) > 16 {
		id = id[:16]
	}
	return id + "-" + role + ".json"
}

// ReadKeyFile reads a key file in either the public or the private form and
// checks that it holds a usable key.
func ReadKeyFile(path string) (*manifest.KeyInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("read key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	var ki manifest.KeyInfo
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	// Decoder errors name offsets and types, never the key text.
	if err := dec.Decode(&ki); err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("read key file %s: trailing data", path)
	}
	if _, err := ParseKeyInfo(&ki); err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return &ki, nil
}

// LoadPrivateKey reads a private key file.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	ki, err := ReadKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKeyInfo(ki)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return k, nil
}

// LoadDir loads every *.json file under dir, recursively, as a private key
// and returns them by key ID; this is how tiup reads a mirror's keys/
// directory. Any file that is not a private key is an error.
func LoadDir(dir string) (map[string]*PrivateKey, error) {
	out := map[string]*PrivateKey{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".json") {
			return nil
		}
		k, err := LoadPrivateKey(path)
		if err != nil {
			return err
		}
		out[k.ID()] = k
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load key dir %s: %w", dir, err)
	}
	return out, nil
}

// WriteFile writes k's private form to path as tiup does: Go's json.Encoder
// output of the KeyInfo with its trailing newline, mode 0600. It refuses to
// replace an existing file, with an error wrapping fs.ErrExist.
func (k *PrivateKey) WriteFile(path string) error {
	if err := writeKeyInfo(path, k.KeyInfo()); err != nil {
		return fmt.Errorf("write private key %s: %w", path, err)
	}
	return nil
}

// WritePublicKeyFile writes p's public form to path like WriteFile.
func WritePublicKeyFile(p *PublicKey, path string) error {
	if err := writeKeyInfo(path, p.KeyInfo()); err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return nil
}

// encodeKeyFile is tiup's key file encoding: json.Encoder, so struct field
// order (keytype, keyval, scheme), HTML escaping and a trailing newline.
func encodeKeyFile(ki *manifest.KeyInfo) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(ki); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeKeyInfo writes the file atomically: a temporary file in the same
// directory is synced and then hard-linked into place, because a link,
// unlike a rename, fails when the target exists.
func writeKeyInfo(path string, ki *manifest.KeyInfo) (err error) {
	data, err := encodeKeyFile(ki)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if _, err := os.Lstat(path); err == nil {
		return fs.ErrExist
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		// The temporary name is removed in every case: after a link the
		// target keeps the data, and after a failure it is garbage.
		if rmErr := os.Remove(tmpName); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = rmErr
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some filesystems refuse fsync on a directory; the link itself is done,
	// so only a real I/O error matters.
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
