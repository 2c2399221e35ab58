// Package mirror implements the verbs of the `mirror` tool as functions with
// XxxOptions structs: init, genkey, set, show, grant, package, publish,
// modify, renew, sign, rotate, transfer-owner, merge, clone, list, install
// and verify. The CLI maps flags onto the options and prints
// the results; everything a verb needs from outside (the home directory, the
// clock, the plugin host) comes in through an Env.
package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/mirrorkit/mirror/core/pluginhost"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk/host"
)

// DefaultMirror is the stock client's default mirror.
const DefaultMirror = "https://tiup-mirrors.pingcap.com"

// ErrUsage marks errors in the user's arguments (exit code 64).
var ErrUsage = errors.New("usage")

// Env is what the verbs run in.
type Env struct {
	// Home is $TIUP_HOME (default ~/.tiup), shared with the stock client.
	Home string
	// Mirror is the address given by --mirror, if any.
	Mirror string
	// EnvMirror is $TIUP_MIRRORS, honoured for one run and never saved.
	EnvMirror string
	// Backend forces a backend plugin by name (--backend).
	Backend string
	// BackendOptions are the settings every backend plugin is opened with
	// (--backend-option KEY=VALUE, sdk.Config.Options); nil for none. A
	// plugin refuses a key it does not know.
	BackendOptions map[string]string
	// KeyDir is where the mirror's own role keys are (--key-dir).
	KeyDir string
	// Signers are signer references (--signer, e.g. a remote signer's
	// remote+https://HOST:PORT), each holding one key. A signature by one
	// of their keys, role key or owner key, is made by that signer before
	// the key directory or the default key is looked at; see dirKeys and
	// ownerSigners.
	Signers []string
	// Plugins starts backend and signer plugins.
	Plugins *pluginhost.Host
	// Clock tells the time.
	Clock trust.Clock

	// signerRefs are the Signers, opened once per run; see signerRefSet.
	signerRefs signerRefSet
}

// Close stops the plugins the Env keeps for the whole run (the --signer
// signers). Whoever made the Env closes it once the run's verbs are done.
func (e *Env) Close() error {
	e.closeSignerRefs()
	return nil
}

// Address returns the mirror to use: --mirror, else TIUP_MIRRORS, else what
// `mirror set` saved in tiup.toml, else the stock default.
func (e *Env) Address() string {
	switch {
	case e.Mirror != "":
		return normalizeAddress(e.Mirror)
	case e.EnvMirror != "":
		return normalizeAddress(e.EnvMirror)
	}
	if saved := e.savedMirror(); saved != "" {
		return saved
	}
	return DefaultMirror
}

// normalizeAddress makes a local path absolute, as stock `tiup mirror set`
// does, and leaves URLs alone.
func normalizeAddress(addr string) string {
	if strings.Contains(addr, "://") {
		if strings.HasPrefix(addr, "file://") {
			return normalizeAddress(strings.TrimPrefix(addr, "file://"))
		}
		return strings.TrimRight(addr, "/")
	}
	if abs, err := filepath.Abs(addr); err == nil {
		return abs
	}
	return addr
}

// isLocal reports whether an address is a local directory.
func isLocal(addr string) bool { return !strings.Contains(addr, "://") }

type tiupConfig struct {
	Mirror string `toml:"mirror"`
}

func (e *Env) savedMirror() string {
	b, err := os.ReadFile(filepath.Join(e.Home, "tiup.toml"))
	if err != nil {
		return ""
	}
	var c tiupConfig
	if toml.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Mirror
}

// toolConfig is mirrorkit's own settings, beside the stock client's
// tiup.toml: where each mirror's role keys live when they are outside it.
type toolConfig struct {
	Mirrors map[string]mirrorConfig `toml:"mirrors"`
	// Plugins holds the plugin checksum pins that pluginhost.ReadPins reads;
	// it is here so that rewriting the file keeps them.
	Plugins map[string]string `toml:"plugins,omitempty"`
}

type mirrorConfig struct {
	KeyDir string `toml:"key_dir"`
}

func (e *Env) toolConfigPath() string { return filepath.Join(e.Home, "mirrorkit.toml") }

func (e *Env) loadToolConfig() (toolConfig, error) {
	var c toolConfig
	b, err := os.ReadFile(e.toolConfigPath())
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read %s: %w", e.toolConfigPath(), err)
	}
	return c, nil
}

func (e *Env) rememberKeyDir(addr, dir string) error {
	c, err := e.loadToolConfig()
	if err != nil {
		return err
	}
	if c.Mirrors == nil {
		c.Mirrors = map[string]mirrorConfig{}
	}
	c.Mirrors[addr] = mirrorConfig{KeyDir: dir}
	b, err := toml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.Home, 0o755); err != nil {
		return err
	}
	return os.WriteFile(e.toolConfigPath(), b, 0o644)
}

// keyDir returns where the role keys of the mirror at addr are: --key-dir,
// else what `mirror init -k` recorded, else <mirror>/keys for a local mirror.
func (e *Env) keyDir(addr string) string {
	if e.KeyDir != "" {
		return e.KeyDir
	}
	if c, err := e.loadToolConfig(); err == nil {
		if m, ok := c.Mirrors[addr]; ok && m.KeyDir != "" {
			return m.KeyDir
		}
	}
	if isLocal(addr) {
		return filepath.Join(addr, "keys")
	}
	return ""
}

// DefaultKey is the stock client's default signing key.
func (e *Env) DefaultKey() string { return filepath.Join(e.Home, "keys", "private.json") }

// OpenBackend starts the backend plugin for addr, with --backend and the
// --backend-option settings. A plugin judges only what the user gave when
// it opens (the address and the options: it opens without contacting its
// store), so its refusal, an error wrapping fs.ErrInvalid, is a usage error.
func (e *Env) OpenBackend(ctx context.Context, addr string) (*host.Backend, error) {
	b, err := e.Plugins.OpenBackend(ctx, addr, e.Backend, e.BackendOptions)
	if errors.Is(err, fs.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return b, err
}

// openSigner starts a signer plugin for a key reference (a key file path or
// a signer URL).
func (e *Env) openSigner(ctx context.Context, ref string) (*host.Signer, error) {
	if !strings.Contains(ref, "://") {
		if _, err := os.Stat(ref); err != nil {
			return nil, fmt.Errorf("open key %s: %w; make one with `mirror genkey` or pass -k KEYFILE", ref, fs.ErrNotExist)
		}
		abs, err := filepath.Abs(ref)
		if err == nil {
			ref = abs
		}
	}
	return e.Plugins.OpenSigner(ctx, ref, nil)
}

// addrID is the stock client's per-address tag: the first 16 hex digits of
// sha256(address).
func addrID(addr string) string {
	sum := sha256.Sum256([]byte(addr))
	return hex.EncodeToString(sum[:])[:16]
}

// displayAddress hides credentials in an address before it is printed.
func displayAddress(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.User == nil {
		return addr
	}
	u.User = url.User(u.User.Username())
	return u.String()
}
