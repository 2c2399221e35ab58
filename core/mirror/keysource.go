package mirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// dirKeys finds a mirror's role keys: first among the --signer signers
// (Env.Signers) by key ID, then in a key directory by tiup's file-name rule
// (<first 16 hex of the key ID>-<role>.json). It signs through signer
// plugins, so the private key bytes stay in the plugin process, or on the
// remote signer's machine.
type dirKeys struct {
	env *Env
	dir string

	mu      sync.Mutex
	signers map[string]*host.Signer

	// refs are the --signer signers by key ID, opened on first need.
	refsMu   sync.Mutex
	refsDone bool
	refs     map[string]*host.Signer
	refsErr  error
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
	if len(k.env.Signers) > 0 {
		refs, err := k.openRefs(ctx)
		if err != nil {
			return nil, err
		}
		if s, ok := refs[keyID]; ok {
			return s, nil
		}
	}
	if k.dir == "" {
		if len(k.env.Signers) > 0 {
			return nil, fmt.Errorf("key %s: %w (no --signer holds it and there is no key directory for this mirror)", keyID[:16], publish.ErrMissingKey)
		}
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

// openRefs opens the --signer signers once, all at once; later calls
// return the same signers, or the same error.
func (k *dirKeys) openRefs(ctx context.Context) (map[string]*host.Signer, error) {
	k.refsMu.Lock()
	defer k.refsMu.Unlock()
	if !k.refsDone {
		k.refsDone = true
		signers, ids, err := k.env.openSignerRefs(ctx)
		k.refs, k.refsErr = map[string]*host.Signer{}, err
		for i, s := range signers {
			k.refs[ids[i]] = s
		}
	}
	return k.refs, k.refsErr
}

// Close stops the signer plugins.
func (k *dirKeys) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, s := range k.signers {
		s.Close()
		delete(k.signers, id)
	}
	k.refsMu.Lock()
	defer k.refsMu.Unlock()
	for id, s := range k.refs {
		s.Close()
		delete(k.refs, id)
	}
}

// ServeKeys returns the key source `mirror serve` signs with: the --signer
// signers, opened now so that one that cannot be reached stops the start,
// then the key directory RoleKeys finds. where says where the keys are, for
// the start-up line; ks is nil when there are neither signers nor a key
// directory. close stops the signer plugins.
func (e *Env) ServeKeys(ctx context.Context, addr string) (ks publish.KeySource, where string, close func(), err error) {
	rk, dir, closeRK := e.RoleKeys(addr)
	if len(e.Signers) == 0 {
		return rk, dir, closeRK, nil
	}
	dk, _ := rk.(*dirKeys)
	if dk == nil && e.KeyDir != "" {
		return nil, "", func() {}, fmt.Errorf("%w: serve: key directory %s does not exist", ErrUsage, e.KeyDir)
	}
	if dk == nil {
		dk = newDirKeys(e, "")
	}
	refs, err := dk.openRefs(ctx)
	if err != nil {
		dk.Close()
		return nil, "", func() {}, err
	}
	ids := make([]string, 0, len(refs))
	for id := range refs {
		ids = append(ids, id[:16])
	}
	slices.Sort(ids)
	where = "--signer keys " + strings.Join(ids, ", ")
	if dk.dir != "" {
		where += " and " + dk.dir
	}
	return dk, where, dk.Close, nil
}

// openSignerRefs opens every --signer reference, concurrently (a plugin
// takes tens of milliseconds to start, a remote one a TLS handshake more),
// and returns them with their key IDs, in the order given. A reference
// naming a key already opened is dropped.
func (e *Env) openSignerRefs(ctx context.Context) ([]*host.Signer, []string, error) {
	signers := make([]*host.Signer, len(e.Signers))
	ids := make([]string, len(e.Signers))
	errs := make([]error, len(e.Signers))
	var wg sync.WaitGroup
	for i, ref := range e.Signers {
		wg.Go(func() {
			s, err := e.openSigner(ctx, ref)
			if err != nil {
				errs[i] = fmt.Errorf("--signer: %w", err)
				return
			}
			signers[i] = s
			ids[i], errs[i] = signerKeyID(ctx, s, ref)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeSigners(signers)
		return nil, nil, err
	}
	var keptS []*host.Signer
	var keptIDs []string
	for i, s := range signers {
		if slices.Contains(keptIDs, ids[i]) {
			s.Close()
			continue
		}
		keptS, keptIDs = append(keptS, s), append(keptIDs, ids[i])
	}
	return keptS, keptIDs, nil
}

// signerKeyID reads the key ID of an opened signer.
func signerKeyID(ctx context.Context, s *host.Signer, ref string) (string, error) {
	pub, err := s.PublicKey(ctx)
	if err != nil {
		return "", fmt.Errorf("read key %s: %w", ref, err)
	}
	pk, err := keys.FromSDK(pub)
	if err != nil {
		return "", fmt.Errorf("read key %s: %w", ref, err)
	}
	return pk.ID(), nil
}

// ownerSignersFromRefs picks the owner keys among the --signer signers:
// those whose key is none of the mirror's role keys (root, index, snapshot,
// timestamp), which belong to dirKeys. The role keys come from the
// mirror's newest root; when it cannot be read (`mirror sign FILE` needs no
// mirror), every --signer signer counts.
func (e *Env) ownerSignersFromRefs(ctx context.Context) ([]*host.Signer, []string, error) {
	signers, ids, err := e.openSignerRefs(ctx)
	if err != nil {
		return nil, nil, err
	}
	roles := e.roleKeyIDs(ctx)
	var keptS []*host.Signer
	var keptIDs []string
	for i, s := range signers {
		if roles[ids[i]] {
			s.Close()
			continue
		}
		keptS, keptIDs = append(keptS, s), append(keptIDs, ids[i])
	}
	return keptS, keptIDs, nil
}

// roleKeyIDs returns the key IDs of every role in the current mirror's
// newest root, or nil when it cannot be read.
func (e *Env) roleKeyIDs(ctx context.Context) map[string]bool {
	_, root, err := latestRoot(ctx, e)
	if err != nil {
		return nil
	}
	ids := map[string]bool{}
	for _, r := range root.Roles {
		for id := range r.Keys {
			ids[id] = true
		}
	}
	return ids
}

// writeRoleKey writes a freshly generated role key under tiup's name.
func writeRoleKey(dir string, k *keys.PrivateKey, role string) error {
	return k.WriteFile(filepath.Join(dir, keys.KeyFileName(k.ID(), role)))
}

// ownerSigners opens the signers named by -k; without -k, the --signer
// signers that hold no role key of the mirror (see ownerSignersFromRefs),
// and when there are none of those either, the default key.
func (e *Env) ownerSigners(ctx context.Context, refs []string) ([]*host.Signer, []string, error) {
	if len(refs) == 0 && len(e.Signers) > 0 {
		signers, ids, err := e.ownerSignersFromRefs(ctx)
		if err != nil || len(signers) > 0 {
			return signers, ids, err
		}
	}
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
		id, err := signerKeyID(ctx, s, ref)
		if err != nil {
			s.Close()
			closeSigners(signers)
			return nil, nil, err
		}
		signers = append(signers, s)
		ids = append(ids, id)
	}
	return signers, ids, nil
}

func closeSigners(ss []*host.Signer) {
	for _, s := range ss {
		if s != nil {
			s.Close()
		}
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
