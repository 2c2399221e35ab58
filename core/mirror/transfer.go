package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// TransferOptions configure TransferOwner (`tiup mirror transfer-owner`).
type TransferOptions struct {
	SessionOptions
	Component string
	NewOwner  string
	// SignWith are key files (or signer URLs) of the new owner to sign
	// with in this run; a signing session collects what they leave
	// missing.
	SignWith []string
}

// TransferResult says what TransferOwner committed.
type TransferResult struct {
	Component string
	From, To  string // the previous and the new owner
	Version   uint64 // the component manifest's new version
	// Signers are the IDs of the new owner's keys that signed.
	Signers []string
	// URL is the signing session's address, "" when none was started.
	URL string
}

// errPrepared ends a transaction that only read what a change needs.
var errPrepared = errors.New("prepared")

// TransferOwner gives a component to another owner of the index: its
// manifest is renewed (version+1) and signed by the new owner's keys up to
// their threshold, and its index item names the new owner. The mirror's
// index key is what authorises the change, as in stock tiup, so the old
// owner does not sign.
func TransferOwner(ctx context.Context, env *Env, opts TransferOptions) (*TransferResult, error) {
	if err := manifest.ValidComponentID(opts.Component); err != nil {
		return nil, fmt.Errorf("%w: component: %v", ErrUsage, err)
	}
	if err := manifest.ValidComponentID(opts.NewOwner); err != nil {
		return nil, fmt.Errorf("%w: owner ID: %v", ErrUsage, err)
	}
	what := "transfer " + opts.Component
	res := &TransferResult{Component: opts.Component, To: opts.NewOwner}
	var envl *manifest.Envelope
	var owner manifest.Owner
	err := env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		item, ok := tx.Index.Components[opts.Component]
		if !ok {
			return fmt.Errorf("%s: no such component: %w; see `mirror list --all`", what, fs.ErrNotExist)
		}
		if owner, ok = tx.Index.Owners[opts.NewOwner]; !ok {
			return fmt.Errorf("%s: owner %s is not in the index: %w; add it with `mirror grant`", what, opts.NewOwner, fs.ErrNotExist)
		}
		if item.Owner == opts.NewOwner {
			return fmt.Errorf("%w: %s: the component already belongs to %s", ErrUsage, what, opts.NewOwner)
		}
		c, err := tx.Component(ctx, opts.Component)
		if err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("%s: no manifest for the component: %w", what, fs.ErrNotExist)
		}
		c.Renew(tx.Now(), manifest.LifetimeComponent)
		if envl, err = manifest.NewEnvelope(c); err != nil {
			return err
		}
		res.From, res.Version = item.Owner, c.Version
		return errPrepared
	})
	if !errors.Is(err, errPrepared) {
		return nil, err
	}
	pol, err := ownerPolicy(opts.NewOwner, owner, manifest.VersionedName(res.Version, opts.Component))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if res.URL, err = collectSignatures(ctx, env, opts.SessionOptions, opts.SignWith, envl, pol, what); err != nil {
		return nil, err
	}
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		item, ok := tx.Index.Components[opts.Component]
		if !ok {
			return fmt.Errorf("%s: the component left the index: %w", what, fs.ErrNotExist)
		}
		if item.Owner != res.From {
			return fmt.Errorf("%s: the owner changed to %s meanwhile: %w", what, item.Owner, sdk.ErrConflict)
		}
		item.Owner = opts.NewOwner
		tx.Index.Components[opts.Component] = item
		tx.IndexChanged()
		// PutComponent refuses the manifest if another change took its
		// version meanwhile; the commit checks the new owner's threshold
		// against the index as committed.
		return tx.PutComponent(envl)
	})
	if err != nil {
		return nil, err
	}
	for _, s := range envl.Signatures {
		res.Signers = append(res.Signers, s.KeyID)
	}
	return res, nil
}

// ownerPolicy accepts signatures by an owner's keys until its threshold.
func ownerPolicy(id string, o manifest.Owner, file string) (*sessionPolicy, error) {
	ks, err := trust.NewKeySet("owner "+id, o.Keys, o.Threshold)
	if err != nil {
		return nil, err
	}
	accepted := map[string]*keys.PublicKey{}
	for kid, ki := range o.Keys {
		pk, err := keys.ParseKeyInfo(ki)
		if err != nil {
			return nil, fmt.Errorf("owner %s key %s: %w", id, kid[:16], err)
		}
		accepted[kid] = pk
	}
	return &sessionPolicy{
		accepted: accepted,
		label:    func(string) string { return "key of owner " + id },
		progress: func(env *manifest.Envelope) (string, bool) {
			n, err := ks.Count(file, env)
			return fmt.Sprintf("owner %s %d/%d", id, n, o.Threshold), err == nil && uint64(n) >= o.Threshold
		},
	}, nil
}
