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
// remote signer's machine. The --signer signers are the Env's, shared with
// the owner keys of the same run; dirKeys stops only the ones it started.
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
	if len(k.env.Signers) > 0 {
		refs, err := k.env.openSignerRefs(ctx)
		if err != nil {
			return nil, err
		}
		if s := refs.byKey(keyID); s != nil {
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

// Close stops the signer plugins of the key directory; the --signer ones
// are the Env's to stop.
func (k *dirKeys) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, s := range k.signers {
		s.Close()
		delete(k.signers, id)
	}
}

// ServeKeys returns the key source `mirror serve` signs with: the --signer
// signers, opened now so that one that cannot be reached stops the start,
// then the key directory RoleKeys finds. where says where the keys are, for
// the start-up line; ks is nil when there are neither signers nor a key
// directory. close stops the key directory's signer plugins; Env.Close
// stops the --signer ones.
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
	refs, err := e.openSignerRefs(ctx)
	if err != nil {
		dk.Close()
		return nil, "", func() {}, err
	}
	ids := make([]string, 0, len(refs.ids))
	for _, id := range refs.ids {
		ids = append(ids, id[:16])
	}
	slices.Sort(ids)
	where = "--signer keys " + strings.Join(ids, ", ")
	if dk.dir != "" {
		where += " and " + dk.dir
	}
	return dk, where, dk.Close, nil
}

// signerRefSet is a run's --signer signers. Each reference is opened once,
// on first need, and shared by everything the run signs with: the owner
// keys (ownerSigners), the role keys (dirKeys), rotate's signatures
// (signWithSignerRefs). So a remote signer costs one TLS handshake per run
// and a local one one process, however many manifests they sign. Env.Close
// stops them.
type signerRefSet struct {
	mu     sync.Mutex
	opened bool
	refs   signerRefs
	err    error
}

// signerRefs are the opened --signer signers. They are never changed once
// made, so callers read them without a lock.
type signerRefs struct {
	// signers holds one signer per distinct key, in the order given; ids
	// are their key IDs.
	signers []*host.Signer
	ids     []string
	// refIDs is the key ID of each reference of Env.Signers, in its order,
	// including a reference dropped for naming a key already opened.
	refIDs []string
}

// byKey returns the signer of a key ID, or nil.
func (r signerRefs) byKey(keyID string) *host.Signer {
	if i := slices.Index(r.ids, keyID); i >= 0 {
		return r.signers[i]
	}
	return nil
}

// openSignerRefs returns the run's --signer signers, opening them on the
// first call; later calls return the same signers, or the same error. The
// signers are the Env's: Env.Close stops them, callers must not.
func (e *Env) openSignerRefs(ctx context.Context) (signerRefs, error) {
	set := &e.signerRefs
	set.mu.Lock()
	defer set.mu.Unlock()
	if !set.opened {
		set.opened = true
		set.refs, set.err = e.openEachSignerRef(ctx)
	}
	return set.refs, set.err
}

// closeSignerRefs stops the run's --signer signers; a later need opens them
// again.
func (e *Env) closeSignerRefs() {
	set := &e.signerRefs
	set.mu.Lock()
	defer set.mu.Unlock()
	closeSigners(set.refs.signers)
	set.opened, set.refs, set.err = false, signerRefs{}, nil
}

// openEachSignerRef opens every --signer reference, concurrently (a plugin
// takes tens of milliseconds to start, a remote one a TLS handshake more),
// and reads their key IDs. A reference naming a key already opened is
// stopped again.
func (e *Env) openEachSignerRef(ctx context.Context) (signerRefs, error) {
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
		return signerRefs{}, err
	}
	r := signerRefs{refIDs: ids}
	for i, s := range signers {
		if slices.Contains(r.ids, ids[i]) {
			s.Close()
			continue
		}
		r.signers, r.ids = append(r.signers, s), append(r.ids, ids[i])
	}
	return r, nil
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
// timestamp), which are left for dirKeys. The role keys come from the
// mirror's newest root; when it cannot be read (`mirror sign FILE` needs no
// mirror), every --signer signer counts.
func (e *Env) ownerSignersFromRefs(ctx context.Context) ([]*host.Signer, []string, error) {
	refs, err := e.openSignerRefs(ctx)
	if err != nil {
		return nil, nil, err
	}
	roles := e.roleKeyIDs(ctx)
	var keptS []*host.Signer
	var keptIDs []string
	for i, s := range refs.signers {
		if roles[refs.ids[i]] {
			continue
		}
		keptS, keptIDs = append(keptS, s), append(keptIDs, refs.ids[i])
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

// ownerSigners opens the signers named by -k (a -k reference also given as
// --signer is the run's signer of it, not a second one); without -k, the
// --signer signers that hold no role key of the mirror (see
// ownerSignersFromRefs), and when there are none of those either, the
// default key. release stops the signers this call started; the --signer
// ones stay up for the rest of the run, until Env.Close.
func (e *Env) ownerSigners(ctx context.Context, refs []string) (signers []*host.Signer, ids []string, release func(), err error) {
	if len(refs) == 0 && len(e.Signers) > 0 {
		signers, ids, err := e.ownerSignersFromRefs(ctx)
		if err != nil || len(signers) > 0 {
			return signers, ids, func() {}, err
		}
	}
	if len(refs) == 0 {
		refs = []string{e.DefaultKey()}
	}
	var started []*host.Signer
	release = func() { closeSigners(started) }
	for _, ref := range refs {
		if i := slices.Index(e.Signers, ref); i >= 0 {
			opened, err := e.openSignerRefs(ctx)
			if err != nil {
				release()
				return nil, nil, nil, err
			}
			id := opened.refIDs[i]
			signers, ids = append(signers, opened.byKey(id)), append(ids, id)
			continue
		}
		s, err := e.openSigner(ctx, ref)
		if err != nil {
			release()
			return nil, nil, nil, err
		}
		started = append(started, s)
		id, err := signerKeyID(ctx, s, ref)
		if err != nil {
			release()
			return nil, nil, nil, err
		}
		signers = append(signers, s)
		ids = append(ids, id)
	}
	return signers, ids, release, nil
}

// closeSigners stops signers.
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
