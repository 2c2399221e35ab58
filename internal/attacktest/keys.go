package attacktest

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"sync"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
)

// keyFiles is the committed pool of test keys (see genkeys.go). They sign
// test manifests only and guard nothing.
//
//go:embed testdata/keys/*.json
var keyFiles embed.FS

var pool = sync.OnceValues(func() ([]*keys.PrivateKey, error) {
	names, err := fs.Glob(keyFiles, "testdata/keys/*.json")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]*keys.PrivateKey, 0, len(names))
	for _, name := range names {
		b, err := keyFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var ki manifest.KeyInfo
		if err := json.Unmarshal(b, &ki); err != nil {
			return nil, fmt.Errorf("test key %s: %w", name, err)
		}
		k, err := keys.ParsePrivateKeyInfo(&ki)
		if err != nil {
			return nil, fmt.Errorf("test key %s: %w", name, err)
		}
		out = append(out, k)
	}
	return out, nil
})

// Keys returns the pool of pre-generated test keys, parsed once. The keys
// are shared by every case; a *keys.PrivateKey is safe for concurrent use.
func Keys() ([]*keys.PrivateKey, error) {
	ks, err := pool()
	return slices.Clone(ks), err
}
