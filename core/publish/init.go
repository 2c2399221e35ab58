package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/sdk"
)

// Init writes a new mirror's first manifests, as stock `tiup mirror init`
// does: root.json (version 1, the keys of every role, thresholds root =
// len(root signers), others 1), 1.index.json with no owners, snapshot.json
// (version 0) and timestamp.json (version 1, sha256 and sha512 of the
// snapshot). Every file is created only if absent, timestamp.json last, so
// a half-initialized mirror is never taken for a mirror.
func Init(ctx context.Context, b sdk.Backend, roles map[string][]sdk.Signer, now time.Time) error {
	return initMirror(ctx, b, roles, now, false)
}

// ResumeInit finishes an Init that stopped before its timestamp.json: the
// mirror is made again with the same role keys, replacing whatever root,
// index and snapshot the interrupted run left (nothing was committed, since
// no timestamp pins them), and timestamp.json is still created only if
// absent. roles must be the keys the interrupted Init was given, or clients
// that read the earlier root.json would not trust the result.
func ResumeInit(ctx context.Context, b sdk.Backend, roles map[string][]sdk.Signer, now time.Time) error {
	return initMirror(ctx, b, roles, now, true)
}

func initMirror(ctx context.Context, b sdk.Backend, roles map[string][]sdk.Signer, now time.Time, resume bool) error {
	now = now.UTC().Truncate(time.Second)
	root := manifest.NewRoot(now)
	for role, signers := range roles {
		r, ok := root.Roles[role]
		if !ok {
			return fmt.Errorf("init: unknown role %s", role)
		}
		for _, s := range signers {
			pub, err := s.PublicKey(ctx)
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			pk, err := keys.FromSDK(pub)
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			r.Keys[pk.ID()] = pk.KeyInfo()
		}
	}
	root.Roles[manifest.RoleRoot].Threshold = uint64(len(roles[manifest.RoleRoot]))
	if err := root.Validate(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	rootBody, err := signAll(ctx, root, roles[manifest.RoleRoot])
	if err != nil {
		return err
	}
	indexBody, err := signAll(ctx, manifest.NewIndex(now), roles[manifest.RoleIndex])
	if err != nil {
		return err
	}
	snap := manifest.NewSnapshot(now)
	snap.Meta["/root.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(rootBody))}
	snap.Meta["/index.json"] = manifest.FileVersion{Version: 1, Length: uint64(len(indexBody))}
	snapBody, err := signAll(ctx, snap, roles[manifest.RoleSnapshot])
	if err != nil {
		return err
	}
	s256, s512 := sha256.Sum256(snapBody), sha512.Sum512(snapBody)
	ts := manifest.NewTimestamp(now)
	ts.Meta["/snapshot.json"] = manifest.FileHash{
		Hashes: map[string]string{"sha256": hex.EncodeToString(s256[:]), "sha512": hex.EncodeToString(s512[:])},
		Length: uint64(len(snapBody)),
	}
	tsBody, err := signAll(ctx, ts, roles[manifest.RoleTimestamp])
	if err != nil {
		return err
	}
	for _, f := range []struct {
		key  string
		body []byte
	}{{"root.json", rootBody}, {"1.index.json", indexBody}, {"snapshot.json", snapBody}, {"timestamp.json", tsBody}} {
		create := !resume || f.key == "timestamp.json"
		if _, err := b.Put(ctx, f.key, bytes.NewReader(f.body), sdk.PutOptions{IfNoneMatch: create}); err != nil {
			return fmt.Errorf("init: write %s: %w", f.key, err)
		}
	}
	return nil
}

// signAll signs v with every signer and returns the file bytes.
func signAll(ctx context.Context, v manifest.Signed, signers []sdk.Signer) ([]byte, error) {
	env, err := manifest.NewEnvelope(v)
	if err != nil {
		return nil, err
	}
	for _, s := range signers {
		if err := SignWith(ctx, env, s); err != nil {
			return nil, err
		}
	}
	return env.Bytes()
}
