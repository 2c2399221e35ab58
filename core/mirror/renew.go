package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
)

// maxRenewDays bounds --days well below where a time.Duration overflows.
const maxRenewDays = 100 * 365

// RenewOptions configure Renew: either Component or Role.
type RenewOptions struct {
	// Component is the component whose manifest to renew.
	Component string
	// Role is a mirror role to renew instead: timestamp, snapshot or index.
	// Root is refused: a new root needs the old and the new root keys.
	Role string
	// Days is the new lifetime from now; 0 means the role's default (5
	// years for a component, 365 days for the index, 30 for snapshot and
	// timestamp).
	Days int
	// Keys are the owner key files (or signer URLs) for a component;
	// default $TIUP_HOME/keys/private.json.
	Keys []string
}

// RenewResult says what Renew committed.
type RenewResult struct {
	Name    string // the component ID or the role
	Version uint64 // the manifest's new version (a snapshot's stays 0)
	Expires string
	// KeptLater says the manifest already expired later than Days asked
	// for, or the role's minimum lifetime is longer; the later expiry was
	// kept, since renewing never shortens one.
	KeptLater bool
	Requested string // now + Days
}

// Renew extends the expiry of a component manifest (signed by its owner)
// or of one of the mirror's own role manifests (signed by the mirror's role
// keys), bumping its version. Expired manifests can be renewed. Renewing
// timestamp and snapshot with a long lifetime keeps a mirror that nobody
// publishes to from going stale, which stock tiup cannot do (tiup #2399).
func Renew(ctx context.Context, env *Env, opts RenewOptions) (*RenewResult, error) {
	if (opts.Component == "") == (opts.Role == "") {
		return nil, fmt.Errorf("%w: renew needs a component or --role, not both", ErrUsage)
	}
	if opts.Days < 0 || opts.Days > maxRenewDays {
		return nil, fmt.Errorf("%w: renew: --days %d is out of range 0..%d", ErrUsage, opts.Days, maxRenewDays)
	}
	if opts.Role != "" {
		return renewRole(ctx, env, opts)
	}
	if err := manifest.ValidComponentID(opts.Component); err != nil {
		return nil, fmt.Errorf("%w: component: %v", ErrUsage, err)
	}
	lifetime := lifetimeDays(opts.Days, manifest.LifetimeComponent)
	signers, ids, release, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer release()
	res := &RenewResult{Name: opts.Component}
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		c, _, err := ownedComponent(ctx, tx, opts.Component, ids)
		if err != nil {
			return fmt.Errorf("renew %s: %w", opts.Component, err)
		}
		c.Renew(tx.Now(), lifetime)
		if err := putSignedComponent(ctx, tx, c, signers); err != nil {
			return err
		}
		res.Version, res.Expires = c.Version, c.Expires
		res.Requested = manifest.FormatTime(tx.Now().Add(lifetime))
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.KeptLater = later(res.Expires, res.Requested)
	return res, nil
}

// renewRole commits a transaction whose only change is the role's longer
// lifetime; the commit re-signs it with the mirror's role keys.
func renewRole(ctx context.Context, env *Env, opts RenewOptions) (*RenewResult, error) {
	if len(opts.Keys) > 0 {
		return nil, fmt.Errorf("%w: renew --role: -k is for component owners; role manifests are signed with the mirror's keys (--key-dir)", ErrUsage)
	}
	var lifetime time.Duration
	switch opts.Role {
	case manifest.RoleTimestamp:
		lifetime = lifetimeDays(opts.Days, manifest.LifetimeTimestamp)
	case manifest.RoleSnapshot:
		lifetime = lifetimeDays(opts.Days, manifest.LifetimeSnapshot)
	case manifest.RoleIndex:
		lifetime = lifetimeDays(opts.Days, manifest.LifetimeIndex)
	case manifest.RoleRoot:
		return nil, fmt.Errorf("%w: renew --role root: a root change needs a new N.root.json signed by the old and the new root keys; use `mirror rotate`", ErrUsage)
	default:
		return nil, fmt.Errorf("%w: renew --role %q: the role is one of timestamp, snapshot, index or root", ErrUsage, opts.Role)
	}
	res := &RenewResult{Name: opts.Role}
	var last *publish.Txn
	err := env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		last = tx
		requested := tx.Now().Add(lifetime)
		res.Requested = manifest.FormatTime(requested)
		// The commit renews every role it writes with max(current,
		// now+lifetime); these predict what it will write.
		switch opts.Role {
		case manifest.RoleTimestamp:
			tx.TimestampLifetime = lifetime
			ts := *tx.State().Timestamp
			ts.Renew(tx.Now(), lifetime)
			res.Version, res.Expires = ts.Version, ts.Expires
		case manifest.RoleSnapshot:
			tx.SnapshotLifetime = lifetime
			snap := *tx.State().Snapshot
			snap.Renew(tx.Now(), lifetime)
			res.Version, res.Expires = snap.Version, snap.Expires
		case manifest.RoleIndex:
			// The commit renews a changed index by the default lifetime,
			// which keeps a later expiry set here.
			if cur, err := tx.Index.ExpiresAt(); err != nil || cur.Before(requested) {
				tx.Index.Expires = manifest.FormatTime(requested)
			}
			tx.IndexChanged()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if opts.Role == manifest.RoleIndex {
		res.Version, res.Expires = last.Index.Version, last.Index.Expires
	}
	res.KeptLater = later(res.Expires, res.Requested)
	return res, nil
}

// lifetimeDays turns --days into a lifetime, def when zero.
func lifetimeDays(days int, def time.Duration) time.Duration {
	if days == 0 {
		return def
	}
	return time.Duration(days) * 24 * time.Hour
}

// later reports whether expiry a is after b; stock tiup writes expiries in
// the signer's zone, so they are compared as times, not as strings.
func later(a, b string) bool {
	ta, erra := time.Parse(time.RFC3339, a)
	tb, errb := time.Parse(time.RFC3339, b)
	return erra == nil && errb == nil && ta.After(tb)
}
