package mirror

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/sdk/host"
)

// ModifyOptions configure Modify; the fields follow `tiup mirror modify`.
// A nil pointer means the flag was not given, so only what the user asked
// for changes.
type ModifyOptions struct {
	// Spec is COMPONENT or COMPONENT:VERSION.
	Spec string
	// Yank marks the component (without a version) or that version on
	// every platform (with one) as yanked, or clears the mark when false.
	Yank *bool
	// Hide, Standalone and Desc apply to the whole component only.
	Hide       *bool
	Standalone *bool
	Desc       *string
	// Keys are the owner key files (or signer URLs); default
	// $TIUP_HOME/keys/private.json.
	Keys []string
}

// ModifyResult says what Modify committed.
type ModifyResult struct {
	Component        string
	Version          string // the version yanked or un-yanked, if any
	ComponentVersion uint64
	IndexVersion     uint64 // the new index version, 0 when the index kept its version
}

// Modify changes a component's index item or description, or yanks one of
// its versions, and re-signs its manifest with the owner's keys (version+1,
// expiry never shortened). Yanked components can be modified, so that a
// yank can be undone.
func Modify(ctx context.Context, env *Env, opts ModifyOptions) (*ModifyResult, error) {
	id, version, _ := strings.Cut(opts.Spec, ":")
	if err := manifest.ValidComponentID(id); err != nil {
		return nil, fmt.Errorf("%w: component: %v", ErrUsage, err)
	}
	if version != "" {
		// Stock tiup silently ignores these with a version; an ignored
		// flag hides a mistake, so refuse it.
		if opts.Hide != nil || opts.Standalone != nil || opts.Desc != nil {
			return nil, fmt.Errorf("%w: modify %s: only --yank applies to a version; --hide, --standalone and --desc apply to the whole component", ErrUsage, opts.Spec)
		}
		if opts.Yank == nil {
			return nil, fmt.Errorf("%w: modify %s: nothing to change; pass --yank", ErrUsage, opts.Spec)
		}
		if manifest.IsNightly(version) {
			return nil, fmt.Errorf("modify %s: a nightly version cannot be yanked; the next nightly publish replaces it", opts.Spec)
		}
		if err := manifest.ValidVersion(version); err != nil {
			return nil, fmt.Errorf("%w: version: %v", ErrUsage, err)
		}
	}
	signers, ids, release, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer release()

	res := &ModifyResult{Component: id, Version: version}
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		res.IndexVersion = 0
		c, item, err := ownedComponent(ctx, tx, id, ids)
		if err != nil {
			return fmt.Errorf("modify %s: %w", opts.Spec, err)
		}
		if version != "" {
			found := false
			for _, versions := range c.Platforms {
				if vi, ok := versions[version]; ok {
					vi.Yanked = *opts.Yank
					versions[version] = vi
					found = true
				}
			}
			if !found {
				return fmt.Errorf("modify %s: no such version: %w; see `mirror list %s --all`", opts.Spec, fs.ErrNotExist, id)
			}
		} else {
			next := item
			setIf(&next.Yanked, opts.Yank)
			setIf(&next.Hidden, opts.Hide)
			setIf(&next.Standalone, opts.Standalone)
			if next != item {
				tx.Index.Components[id] = next
				tx.IndexChanged()
				res.IndexVersion = tx.Index.Version + 1
			}
			if opts.Desc != nil {
				c.Description = *opts.Desc
			}
		}
		c.Renew(tx.Now(), manifest.LifetimeComponent)
		if err := putSignedComponent(ctx, tx, c, signers); err != nil {
			return err
		}
		res.ComponentVersion = c.Version
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ownedComponent returns a component manifest and its index item, after
// checking that the keys meet its owner's threshold, before anything is
// signed or written.
func ownedComponent(ctx context.Context, tx *publish.Txn, id string, keyIDs []string) (*manifest.Component, manifest.ComponentItem, error) {
	item, ok := tx.Index.Components[id]
	if !ok {
		return nil, item, fmt.Errorf("no such component: %w; see `mirror list --all`", fs.ErrNotExist)
	}
	if err := checkOwnerKeys(tx.Index, item.Owner, keyIDs); err != nil {
		return nil, item, err
	}
	c, err := tx.Component(ctx, id)
	if err != nil {
		return nil, item, err
	}
	if c == nil {
		return nil, item, fmt.Errorf("no manifest for the component: %w", fs.ErrNotExist)
	}
	return c, item, nil
}

// putSignedComponent signs c with every owner signer and stages it.
func putSignedComponent(ctx context.Context, tx *publish.Txn, c *manifest.Component, signers []*host.Signer) error {
	envl, err := manifest.NewEnvelope(c)
	if err != nil {
		return err
	}
	for _, s := range signers {
		if err := publish.SignWith(ctx, envl, s); err != nil {
			return err
		}
	}
	return tx.PutComponent(envl)
}

// setIf copies *v into *dst when the flag was given.
func setIf(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}
