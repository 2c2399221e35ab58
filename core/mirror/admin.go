package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/repo"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// InitOptions configure Init.
type InitOptions struct {
	// Address is where to create the mirror; a local directory must be
	// empty or absent.
	Address string
	// KeyDir receives the mirror's private role keys; default
	// <Address>/keys for a local mirror. A key directory outside the mirror
	// keeps the keys off anything that serves or copies it.
	KeyDir string
}

// InitResult says what Init made.
type InitResult struct {
	Address string
	KeyDir  string
	RootIDs []string
}

// Init creates a mirror: root v1 with 3 root keys (threshold 3), one key
// each for index, snapshot and timestamp, 1.index.json with no owners, and
// the first snapshot and timestamp, byte for byte as stock tiup writes them.
func Init(ctx context.Context, env *Env, opts InitOptions) (*InitResult, error) {
	if opts.Address == "" {
		return nil, fmt.Errorf("%w: init needs the mirror address, e.g. `mirror init ./mirror`", ErrUsage)
	}
	addr := normalizeAddress(opts.Address)
	keyDir := opts.KeyDir
	if keyDir == "" {
		if !isLocal(addr) {
			return nil, fmt.Errorf("%w: a remote mirror needs -k KEYDIR for its private keys", ErrUsage)
		}
		keyDir = filepath.Join(addr, "keys")
	}
	keyDir, _ = filepath.Abs(keyDir)
	if isLocal(addr) {
		if empty, err := isDirEmpty(addr); err != nil || !empty {
			return nil, fmt.Errorf("init %s: the directory is not empty: %w; choose a new or empty directory", addr, fs.ErrExist)
		}
	}
	if empty, err := isDirEmpty(keyDir); err != nil || !empty {
		return nil, fmt.Errorf("init %s: key directory %s is not empty: %w; choose a new one", addr, keyDir, fs.ErrExist)
	}
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := b.List(ctx, "", func(o sdk.ObjectInfo) error { return fs.ErrExist }); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("init %s: the mirror is not empty: %w", displayAddress(addr), fs.ErrExist)
		}
		if !errors.Is(err, sdk.ErrUnsupported) {
			return nil, fmt.Errorf("init %s: %w", displayAddress(addr), err)
		}
	}

	roles := []string{manifest.RoleRoot, manifest.RoleRoot, manifest.RoleRoot, manifest.RoleIndex, manifest.RoleSnapshot, manifest.RoleTimestamp}
	generated, err := generateKeys(len(roles))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	byRole := map[string][]*keys.PrivateKey{}
	for i, k := range generated {
		if err := writeRoleKey(keyDir, k, roles[i]); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		byRole[roles[i]] = append(byRole[roles[i]], k)
	}

	signers := map[string][]sdk.Signer{}
	for role, ks := range byRole {
		for _, k := range ks {
			signers[role] = append(signers[role], k.Signer())
		}
	}
	if err := publish.Init(ctx, b, signers, env.Clock()); err != nil {
		return nil, err
	}
	if !isLocal(addr) || !within(keyDir, addr) {
		if err := env.rememberKeyDir(addr, keyDir); err != nil {
			return nil, fmt.Errorf("init: record key directory: %w", err)
		}
	}
	res := &InitResult{Address: addr, KeyDir: keyDir}
	for _, k := range byRole[manifest.RoleRoot] {
		res.RootIDs = append(res.RootIDs, k.ID())
	}
	return res, nil
}

// generateKeys makes n RSA-2048 keys on all cores; each takes tens of
// milliseconds.
func generateKeys(n int) ([]*keys.PrivateKey, error) {
	out := make([]*keys.PrivateKey, n)
	errs := make(chan error, n)
	for i := range out {
		go func() {
			k, err := keys.Generate()
			out[i] = k
			errs <- err
		}()
	}
	var first error
	for range out {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, fmt.Errorf("generate key: %w", first)
	}
	return out, nil
}

// GenkeyOptions configure Genkey.
type GenkeyOptions struct {
	// Name of the key file in $TIUP_HOME/keys; default "private".
	Name string
	// SaveDir, when set, also receives <id16>-public.json (--save).
	SaveDir string
}

// GenkeyResult describes the key.
type GenkeyResult struct {
	Path    string
	KeyID   string
	Public  []byte // the public KeyInfo, indented with tabs as tiup prints it
	Existed bool   // the key was there already and was left alone
	Saved   string // path of the public key file written by SaveDir
}

// Genkey makes an owner key in $TIUP_HOME/keys/NAME.json (mode 0600), or
// describes the one already there.
func Genkey(ctx context.Context, env *Env, opts GenkeyOptions) (*GenkeyResult, error) {
	name := opts.Name
	if name == "" {
		name = "private"
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("%w: key name %q must be a plain file name", ErrUsage, name)
	}
	path := filepath.Join(env.Home, "keys", name+".json")
	res := &GenkeyResult{Path: path}
	var pub *keys.PublicKey
	if _, err := os.Stat(path); err == nil {
		res.Existed = true
		s, err := env.openSigner(ctx, path)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		p, err := s.PublicKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		if pub, err = keys.FromSDK(p); err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
	} else {
		k, err := keys.Generate()
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("genkey: %w", err)
		}
		if err := k.WriteFile(path); err != nil {
			return nil, fmt.Errorf("genkey: %w", err)
		}
		pub = k.Public()
	}
	res.KeyID = pub.ID()
	out, err := json.MarshalIndent(pub.KeyInfo(), "", "\t")
	if err != nil {
		return nil, err
	}
	res.Public = out
	if opts.SaveDir != "" {
		res.Saved = filepath.Join(opts.SaveDir, res.KeyID[:16]+"-public.json")
		if err := keys.WritePublicKeyFile(pub, res.Saved); err != nil {
			return nil, fmt.Errorf("genkey: %w", err)
		}
	}
	return res, nil
}

// SetOptions configure Set.
type SetOptions struct {
	Address string
	// Root is a path or URL of the root to trust; default: the cached root
	// of this address, else the mirror's own root.json (trust on first use).
	Root string
}

// SetResult says what Set configured.
type SetResult struct {
	Address     string
	RootVersion uint64
	Insecure    bool // the root came over plain http
}

// Set makes addr the mirror of this home, for mirrorkit and the stock
// client alike: bin/root.json, tiup.toml, and a cleared manifests/.
// Unlike stock tiup it works on an empty home.
func Set(ctx context.Context, env *Env, opts SetOptions) (*SetResult, error) {
	if opts.Address == "" {
		return nil, fmt.Errorf("%w: set needs the mirror address", ErrUsage)
	}
	addr := normalizeAddress(opts.Address)
	binDir := filepath.Join(env.Home, "bin")
	cached := filepath.Join(binDir, addrID(addr)+".root.json")
	var root []byte
	var err error
	switch {
	case opts.Root != "" && strings.Contains(opts.Root, "://"):
		root, err = readRemoteFile(ctx, env, opts.Root)
	case opts.Root != "":
		root, err = os.ReadFile(opts.Root)
	default:
		if root, err = os.ReadFile(cached); err != nil {
			root, err = readRootOf(ctx, env, addr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("set %s: read root: %w", displayAddress(addr), err)
	}
	st, err := trust.New(root, env.Clock)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", displayAddress(addr), err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("set: %w", err)
	}
	if err := writeFile(filepath.Join(binDir, "root.json"), root); err != nil {
		return nil, err
	}
	if !isLocal(addr) {
		if err := writeFile(cached, root); err != nil {
			return nil, err
		}
	}
	if err := os.RemoveAll(filepath.Join(env.Home, "manifests")); err != nil {
		return nil, fmt.Errorf("set: %w", err)
	}
	conf := fmt.Sprintf("mirror = %q\n", addr)
	if err := writeFile(filepath.Join(env.Home, "tiup.toml"), []byte(conf)); err != nil {
		return nil, err
	}
	return &SetResult{Address: addr, RootVersion: st.Root.Version, Insecure: strings.HasPrefix(addr, "http://")}, nil
}

// readRootOf reads root.json of a mirror through its backend.
func readRootOf(ctx context.Context, env *Env, addr string) ([]byte, error) {
	b, err := env.OpenBackend(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return readSmall(ctx, b, "root.json", manifest.MaxRootSize)
}

// readRemoteFile reads a file named by URL: its directory is opened as a
// mirror and the file read from it.
func readRemoteFile(ctx context.Context, env *Env, u string) ([]byte, error) {
	i := strings.LastIndex(u, "/")
	b, err := env.OpenBackend(ctx, u[:i])
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return readSmall(ctx, b, u[i+1:], manifest.MaxRootSize)
}

func readSmall(ctx context.Context, b sdk.Backend, key string, max uint64) ([]byte, error) {
	data, _, err := repo.ReadCapped(ctx, b, key, max)
	return data, err
}

func writeFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// GrantOptions configure Grant.
type GrantOptions struct {
	Owner string // the owner ID
	Name  string // display name; default the ID
	Key   string // a private or public key file; default $TIUP_HOME/keys/private.json
}

// Grant adds an owner with one key (threshold 1) to the index.
func Grant(ctx context.Context, env *Env, opts GrantOptions) (uint64, error) {
	if err := manifest.ValidComponentID(opts.Owner); err != nil {
		return 0, fmt.Errorf("%w: owner ID: %v", ErrUsage, err)
	}
	name := opts.Name
	if name == "" {
		name = opts.Owner
	}
	keyPath := opts.Key
	if keyPath == "" {
		keyPath = env.DefaultKey()
	}
	pub, err := publicKeyOf(ctx, env, keyPath)
	if err != nil {
		return 0, err
	}
	var version uint64
	err = env.update(ctx, func(ctx context.Context, tx *publish.Txn) error {
		if _, ok := tx.Index.Owners[opts.Owner]; ok {
			return fmt.Errorf("grant %s: the owner already exists: %w", opts.Owner, fs.ErrExist)
		}
		for id, o := range tx.Index.Owners {
			if _, ok := o.Keys[pub.ID()]; ok {
				return fmt.Errorf("grant %s: key %s already belongs to owner %s: %w", opts.Owner, pub.ID()[:16], id, fs.ErrExist)
			}
		}
		tx.Index.Owners[opts.Owner] = manifest.Owner{Name: name, Keys: map[string]*manifest.KeyInfo{pub.ID(): pub.KeyInfo()}, Threshold: 1}
		tx.IndexChanged()
		version = tx.Index.Version + 1
		return nil
	})
	return version, err
}

// publicKeyOf reads the public half of a key file. A private key is read by
// a signer plugin, so its bytes never enter this process; a public key file
// is read directly.
func publicKeyOf(ctx context.Context, env *Env, path string) (*keys.PublicKey, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open key %s: %w; make one with `mirror genkey` or pass -k KEYFILE", path, fs.ErrNotExist)
	}
	s, err := env.openSigner(ctx, path)
	if err == nil {
		defer s.Close()
		p, err := s.PublicKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		return keys.FromSDK(p)
	}
	// The signer refuses a public key file; read it as one.
	ki, rerr := keys.ReadKeyFile(path)
	if rerr != nil || ki.Value["public"] == "" {
		return nil, err
	}
	return keys.ParseKeyInfo(ki)
}

// update runs a write transaction on the current mirror with its role keys;
// an http(s) mirror gets the owner-signed part through its server's API.
func (e *Env) update(ctx context.Context, fn func(ctx context.Context, tx *publish.Txn) error) error {
	return e.updateAhead(ctx, nil, fn)
}

// updateAhead is update for a transaction that will add the local files
// ahead (publish's tarball): a backend that stages content, as an OCI
// registry does, uploads them while the writer lock is being taken.
func (e *Env) updateAhead(ctx context.Context, ahead []string, fn func(ctx context.Context, tx *publish.Txn) error) error {
	addr := e.Address()
	if isHTTP(addr) {
		return e.updateRemote(ctx, addr, fn)
	}
	b, err := e.OpenBackend(ctx, addr)
	if err != nil {
		return err
	}
	defer b.Close()
	return e.updateOn(ctx, b, addr, ahead, fn)
}

func (e *Env) updateOn(ctx context.Context, b *host.Backend, addr string, ahead []string, fn func(ctx context.Context, tx *publish.Txn) error) error {
	if !b.Caps().Write {
		return fmt.Errorf("write %s: %w: the backend is read-only", displayAddress(addr), sdk.ErrUnsupported)
	}
	ks := newDirKeys(e, e.keyDir(addr))
	defer ks.Close()
	w := &publish.Writer{Backend: b, Keys: ks, Clock: e.Clock, Ahead: ahead}
	return w.Update(ctx, fn)
}
