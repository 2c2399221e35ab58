package mirror

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// dirKeys finds a mirror's role keys in a key directory by tiup's file-name
// rule (<first 16 hex of the key ID>-<role>.json) and signs through a
// signer plugin, so the private key bytes stay in the plugin process.
type dirKeys struct {
	env *Env
	dir string

	mu      sync.Mutex
	signers map[string]*host.Signer
}

func newDirKeys(env *Env, dir string) *dirKeys {
	return &dirKeys{env: env, dir: dir, signers: map[string]*host.Signer{}}
}

// Signer implements publish.KeySource.
func (k *dirKeys) Signer(ctx context.Context, keyID string) (sdk.Signer, error) {
	k.mu.Lock()
	s, ok := k.signers[keyID]
	k.mu.Unlock()
	if ok {
		return s, nil
	}
	if k.dir == "" {
		return nil, fmt.Errorf("key %s: %w (no key directory for this mirror)", keyID[:16], publish.ErrMissingKey)
	}
	matches, _ := filepath.Glob(filepath.Join(k.dir, keyID[:16]+"-*.json"))
	for _, path := range matches {
		s, err := k.env.openSigner(ctx, path)
		if err != nil {
			return nil, err
		}
		pub, err := s.PublicKey(ctx)
		if err == nil {
			var pk *keys.PublicKey
			if pk, err = keys.FromSDK(pub); err == nil && pk.ID() == keyID {
				return k.keep(keyID, s), nil
			}
		}
		s.Close()
	}
	return nil, fmt.Errorf("key %s in %s: %w", keyID[:16], k.dir, publish.ErrMissingKey)
}

// keep records a started signer; when another goroutine started one for the
// same key first, the spare is stopped.
func (k *dirKeys) keep(keyID string, s *host.Signer) *host.Signer {
	k.mu.Lock()
	defer k.mu.Unlock()
	if prev, ok := k.signers[keyID]; ok {
		s.Close()
		return prev
	}
	k.signers[keyID] = s
	return s
}

// Prepare implements publish.KeyPreparer: it starts the signer plugins of
// the given keys concurrently, so their start-up overlaps; keys it cannot
// find are left for Signer to report.
func (k *dirKeys) Prepare(ctx context.Context, keyIDs []string) {
	var wg sync.WaitGroup
	for _, id := range keyIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.Signer(ctx, id)
		}()
	}
	wg.Wait()
}

// Close stops the signer plugins.
func (k *dirKeys) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, s := range k.signers {
		s.Close()
		delete(k.signers, id)
	}
}

// writeRoleKey writes a freshly generated role key under tiup's name.
func writeRoleKey(dir string, k *keys.PrivateKey, role string) error {
	return k.WriteFile(filepath.Join(dir, keys.KeyFileName(k.ID(), role)))
}

// ownerSigners opens the signers named by -k (the default key when none).
func (e *Env) ownerSigners(ctx context.Context, refs []string) ([]*host.Signer, []string, error) {
	if len(refs) == 0 {
		refs = []string{e.DefaultKey()}
	}
	var signers []*host.Signer
	var ids []string
	for _, ref := range refs {
		s, err := e.openSigner(ctx, ref)
		if err != nil {
			closeSigners(signers)
			return nil, nil, err
		}
		pub, err := s.PublicKey(ctx)
		if err != nil {
			s.Close()
			closeSigners(signers)
			return nil, nil, fmt.Errorf("read key %s: %w", ref, err)
		}
		pk, err := keys.FromSDK(pub)
		if err != nil {
			s.Close()
			closeSigners(signers)
			return nil, nil, fmt.Errorf("read key %s: %w", ref, err)
		}
		signers = append(signers, s)
		ids = append(ids, pk.ID())
	}
	return signers, ids, nil
}

func closeSigners(ss []*host.Signer) {
	for _, s := range ss {
		s.Close()
	}
}

// isDirEmpty reports whether dir is absent or empty.
func isDirEmpty(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(ents) == 0, nil
}

// within reports whether path is inside dir.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
