package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// RotateOptions configure Rotate. The new root is made either by Edit or by
// the flag fields (Expires, AddKeys, RemoveKeys, Threshold), not both.
type RotateOptions struct {
	SessionOptions
	// Expires is the new root's expiry: RFC 3339, or a lifetime from now
	// such as 365d or 8760h. Default: now+365 days, or the current root's
	// expiry when that is later. An expiry before the current root's is
	// refused, since clients refuse such a root.
	Expires string
	// AddKeys are key files (private or public) whose public keys join the
	// root role.
	AddKeys []string
	// RemoveKeys are root key IDs (full, or the first 16 hex digits) that
	// leave the root role.
	RemoveKeys []string
	// Threshold is the new root role threshold; 0 keeps the current one.
	Threshold uint64
	// Edit, when set, lets the user change the new root by hand: it is
	// given a file holding the root, indented, already at the next version,
	// and returns once the file is saved.
	Edit func(ctx context.Context, path string) error
	// SignWith are root key files (or signer URLs) to sign with in this
	// run; a signing session collects what they leave missing.
	SignWith []string
}

// RotateResult says what Rotate committed.
type RotateResult struct {
	Version   uint64
	Expires   string
	Keys      int    // keys of the new root role
	Threshold uint64 // threshold of the new root role
	// Signers are the IDs of the keys that signed the new root.
	Signers []string
	// URL is the signing session's address, "" when none was started.
	URL string
}

// Rotate replaces the mirror's root with version N+1: N+1.root.json signed
// by enough keys of the current root (its threshold, counting only keys
// that stay in the new root, as stock tiup's server checks) and of the new
// root (its own threshold), then snapshot and timestamp re-signed. root.json
// stays as it is: clients follow the chain of N.root.json from it.
func Rotate(ctx context.Context, env *Env, opts RotateOptions) (*RotateResult, error) {
	flags := opts.Expires != "" || len(opts.AddKeys) > 0 || len(opts.RemoveKeys) > 0 || opts.Threshold > 0
	if flags && opts.Edit != nil {
		return nil, fmt.Errorf("%w: rotate: edit the root or pass --expires, --add-key, --remove-key and --threshold, not both", ErrUsage)
	}
	if err := env.finishInterrupted(ctx); err != nil {
		return nil, err
	}
	oldBytes, old, err := latestRoot(ctx, env)
	if err != nil {
		return nil, err
	}
	now := env.Clock().UTC().Truncate(time.Second)
	oldExp, err := old.ExpiresAt()
	if err != nil {
		return nil, fmt.Errorf("rotate: current root: %w", err)
	}
	next := cloneRoot(old)
	next.Version = old.Version + 1
	exp := now.Add(manifest.LifetimeRoot)
	if exp.Before(oldExp) {
		exp = oldExp
	}
	next.Expires = manifest.FormatTime(exp)
	if opts.Edit != nil {
		if next, err = editRoot(ctx, next, opts.Edit); err != nil {
			return nil, err
		}
	} else if err := applyRootFlags(ctx, env, next, opts, now); err != nil {
		return nil, err
	}
	if err := checkNewRoot(old, next, now); err != nil {
		return nil, err
	}
	envl, err := manifest.NewEnvelope(next)
	if err != nil {
		return nil, err
	}
	pol, err := rotatePolicy(old, next)
	if err != nil {
		return nil, err
	}
	url, err := collectSignatures(ctx, env, opts.SessionOptions, opts.SignWith, envl, pol, "rotate")
	if err != nil {
		return nil, err
	}
	body, err := envl.Bytes()
	if err != nil {
		return nil, err
	}
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		if !bytes.Equal(tx.State().RootBytes, oldBytes) {
			return fmt.Errorf("rotate: the mirror's root changed to version %d while signatures were collected: %w; run the rotation again", tx.Root().Version, sdk.ErrConflict)
		}
		// The same checks a client makes when it follows the chain.
		st, err := trust.New(oldBytes, env.Clock)
		if err != nil {
			return err
		}
		if err := st.UpdateRoot(body); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		tx.PutRoot(envl)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := next.Roles[manifest.RoleRoot]
	res := &RotateResult{Version: next.Version, Expires: next.Expires, Keys: len(r.Keys), Threshold: r.Threshold, URL: url}
	for _, s := range envl.Signatures {
		res.Signers = append(res.Signers, s.KeyID)
	}
	return res, nil
}

// latestRoot reads the mirror's newest root, following the chain from
// root.json, each step verified.
func latestRoot(ctx context.Context, env *Env) ([]byte, *manifest.Root, error) {
	addr := env.Address()
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	anchor, err := readSmall(ctx, b, "root.json", manifest.MaxRootSize)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate %s: read root: %w", displayAddress(addr), err)
	}
	st, err := trust.New(anchor, env.Clock)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate %s: %w", displayAddress(addr), err)
	}
	st.AllowExpired = true
	if _, err := repo.FollowRootChain(ctx, b, st, nil); err != nil {
		return nil, nil, fmt.Errorf("rotate %s: %w", displayAddress(addr), err)
	}
	return st.RootBytes, st.Root, nil
}

// finishInterrupted commits what an interrupted write left half done (a
// new root the snapshot does not name yet, a snapshot the timestamp does
// not pin) and writes nothing otherwise. A rotation reads the newest root
// before its transaction, so without this a re-run after a crash would be
// measured against a root the mirror never committed, refuse ("already a
// root key"), and leave the commit unfinished. An HTTP mirror's server
// finishes its own commits.
func (e *Env) finishInterrupted(ctx context.Context) error {
	if isHTTP(e.Address()) {
		return nil
	}
	err := e.update(ctx, func(context.Context, *publish.Txn) error { return errUnchanged })
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// cloneRoot deep-copies a root through its JSON form.
func cloneRoot(r *manifest.Root) *manifest.Root {
	b, _ := json.Marshal(r)
	var c manifest.Root
	json.Unmarshal(b, &c)
	return &c
}

// applyRootFlags changes next as the flag fields of opts say.
func applyRootFlags(ctx context.Context, env *Env, next *manifest.Root, opts RotateOptions, now time.Time) error {
	role := next.Roles[manifest.RoleRoot]
	if opts.Expires != "" {
		t, err := parseExpires(opts.Expires, now)
		if err != nil {
			return fmt.Errorf("%w: rotate: --expires: %v", ErrUsage, err)
		}
		next.Expires = manifest.FormatTime(t)
	}
	for _, ref := range opts.RemoveKeys {
		id, err := findKeyID(role.Keys, ref)
		if err != nil {
			return fmt.Errorf("rotate: --remove-key %s: %w", ref, err)
		}
		delete(role.Keys, id)
	}
	for _, path := range opts.AddKeys {
		pub, err := publicKeyOf(ctx, env, path)
		if err != nil {
			return err
		}
		if _, ok := role.Keys[pub.ID()]; ok {
			return fmt.Errorf("%w: rotate: --add-key %s: key %s is already a root key", ErrUsage, path, pub.ID()[:16])
		}
		role.Keys[pub.ID()] = pub.KeyInfo()
	}
	if opts.Threshold > 0 {
		role.Threshold = opts.Threshold
	}
	return nil
}

// parseExpires reads an RFC 3339 time or a lifetime from now: Nd for days,
// or a Go duration such as 8760h.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > maxRenewDays {
			return time.Time{}, fmt.Errorf("%q is not a number of days in 1..%d", s, maxRenewDays)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a lifetime such as 365d", s)
		}
	}
	return now.Add(d), nil
}

// findKeyID finds a key of a role by full ID or by its first 16 hex digits.
func findKeyID(ks map[string]*manifest.KeyInfo, ref string) (string, error) {
	ref = strings.ToLower(ref)
	if _, ok := ks[ref]; ok {
		return ref, nil
	}
	if len(ref) == 16 {
		for id := range ks {
			if strings.HasPrefix(id, ref) {
				return id, nil
			}
		}
	}
	return "", fmt.Errorf("no root key has that ID: %w", fs.ErrNotExist)
}

// editRoot hands the root to the user's editor and reads back the result.
func editRoot(ctx context.Context, next *manifest.Root, edit func(context.Context, string) error) (*manifest.Root, error) {
	f, err := os.CreateTemp("", "mirror-rotate-*.root.json")
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	b, err := json.MarshalIndent(next, "", "    ")
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("rotate: write %s: %w", path, err)
	}
	if err := edit(ctx, path); err != nil {
		return nil, fmt.Errorf("rotate: edit %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("rotate: read the edited root: %w", err)
	}
	if st.Size() > manifest.MaxRootSize {
		return nil, fmt.Errorf("rotate: the edited root is %d bytes, over the limit of %d", st.Size(), manifest.MaxRootSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rotate: read the edited root: %w", err)
	}
	// An envelope pasted in whole is accepted as well as the bare root.
	if envl, err := manifest.ParseEnvelope(data); err == nil {
		data = envl.Signed
	}
	canon, err := canonical(data)
	if err != nil {
		return nil, fmt.Errorf("%w: rotate: the edited root is not JSON: %v", ErrUsage, err)
	}
	var edited manifest.Root
	if err := (&manifest.Envelope{Signed: canon}).Decode(&edited); err != nil {
		return nil, fmt.Errorf("%w: rotate: the edited root: %v", ErrUsage, err)
	}
	return &edited, nil
}

// checkNewRoot refuses a new root that clients would refuse, or that this
// tool could not commit.
func checkNewRoot(old, next *manifest.Root, now time.Time) error {
	if next.Version != old.Version+1 {
		return fmt.Errorf("%w: rotate: the new root has version %d; it must be %d, the next after the current %d", ErrUsage, next.Version, old.Version+1, old.Version)
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("%w: rotate: %v", ErrUsage, err)
	}
	if err := keys.ValidateRootKeyIDs(next); err != nil {
		return fmt.Errorf("%w: rotate: %v", ErrUsage, err)
	}
	oldExp, _ := old.ExpiresAt()
	exp, err := next.ExpiresAt()
	if err != nil {
		return fmt.Errorf("%w: rotate: %v", ErrUsage, err)
	}
	if exp.Before(oldExp) {
		return fmt.Errorf("%w: rotate: the new root expires %s, before the current root's %s; clients refuse a root that shortens the expiry", ErrUsage, manifest.FormatTime(exp), old.Expires)
	}
	if !exp.After(now) {
		return fmt.Errorf("%w: rotate: the new root expires %s, which is not in the future", ErrUsage, manifest.FormatTime(exp))
	}
	// The commit signs snapshot and timestamp with the current root's keys
	// of those roles; a new root naming other keys for them would make the
	// mirror unreadable to clients that follow it.
	for _, name := range []string{manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp} {
		a, _ := manifest.Encode(old.Roles[name])
		b, _ := manifest.Encode(next.Roles[name])
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%w: rotate: the %s role changed; a rotation changes the root role only", ErrUsage, name)
		}
	}
	if len(next.Roles) != len(old.Roles) {
		return fmt.Errorf("%w: rotate: the new root has roles other than root, index, snapshot and timestamp", ErrUsage)
	}
	oldRole, newRole := old.Roles[manifest.RoleRoot], next.Roles[manifest.RoleRoot]
	kept := 0
	for id := range oldRole.Keys {
		if _, ok := newRole.Keys[id]; ok {
			kept++
		}
	}
	if uint64(kept) < oldRole.Threshold {
		return fmt.Errorf("%w: rotate: the new root keeps %d of the current root keys, fewer than the current threshold %d; the current keys that sign must stay in the new root (replace keys over several rotations)", ErrUsage, kept, oldRole.Threshold)
	}
	return nil
}

// rotatePolicy accepts signatures by keys of the current or the new root
// role. The root is complete when the current keys that stay in the new
// root meet the current threshold (stock tiup's server check, stricter than
// the client's) and the new keys meet the new threshold.
func rotatePolicy(old, next *manifest.Root) (*sessionPolicy, error) {
	oldRole, newRole := old.Roles[manifest.RoleRoot], next.Roles[manifest.RoleRoot]
	keptKeys := map[string]*manifest.KeyInfo{}
	all := map[string]*manifest.KeyInfo{}
	for id, ki := range oldRole.Keys {
		all[id] = ki
		if _, ok := newRole.Keys[id]; ok {
			keptKeys[id] = ki
		}
	}
	for id, ki := range newRole.Keys {
		all[id] = ki
	}
	kept, err := trust.NewKeySet("root", keptKeys, 1)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	newSet, err := trust.NewKeySet("root", newRole.Keys, newRole.Threshold)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	accepted := map[string]*keys.PublicKey{}
	for id, ki := range all {
		pk, err := keys.ParseKeyInfo(ki)
		if err != nil {
			return nil, fmt.Errorf("rotate: key %s: %w", id[:16], err)
		}
		accepted[id] = pk
	}
	label := func(id string) string {
		_, inOld := oldRole.Keys[id]
		_, inNew := newRole.Keys[id]
		switch {
		case inOld && inNew:
			return "old+new root key"
		case inOld:
			return "old root key, removed"
		default:
			return "new root key"
		}
	}
	progress := func(env *manifest.Envelope) (string, bool) {
		file := manifest.VersionedName(next.Version, "root")
		nOld, err1 := kept.Count(file, env)
		nNew, err2 := newSet.Count(file, env)
		summary := fmt.Sprintf("old %d/%d, new %d/%d", nOld, oldRole.Threshold, nNew, newRole.Threshold)
		return summary, err1 == nil && err2 == nil && uint64(nOld) >= oldRole.Threshold && uint64(nNew) >= newRole.Threshold
	}
	return &sessionPolicy{accepted: accepted, label: label, progress: progress}, nil
}
