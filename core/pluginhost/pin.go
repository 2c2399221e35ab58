package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/mirrorkit/mirror/core/trust"
)

// Checksum pinning. A user who installs a third-party plugin can record its
// digest in $TIUP_HOME/mirrorkit.toml:
//
//	[plugins]
//	"mirror-backend-memdir" = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//
// The key is the executable's name, the value "sha256:" and 64 hex digits.
// Before starting a pinned external plugin the host hashes the executable
// it resolved and refuses a mismatch. Built-in plugins are never pinned:
// they are the running binary itself. An unpinned external plugin runs as
// before. The check reads the file just before it is started; it catches a
// plugin replaced or corrupted on disk, not a writer racing the start, who
// could as well replace the mirror binary.

// pinAlgorithm prefixes every pin, so that another digest can be added
// without reinterpreting existing pins.
const pinAlgorithm = "sha256:"

// ChecksumError reports an external plugin whose executable does not match
// its pin. It wraps trust.ErrUntrusted: the CLI exits with its "untrusted"
// code, as for a bad signature.
type ChecksumError struct {
	Plugin string // the executable's name, the key of the pin
	Path   string // the executable that was hashed
	Want   string // the pin, "sha256:..."
	Got    string // the executable's digest, "sha256:..."
	Source string // where the pin came from, for the advice; may be empty
}

func (e *ChecksumError) Error() string {
	src := e.Source
	if src == "" {
		src = "the plugin pins"
	}
	return fmt.Sprintf("start plugin %s: checksum mismatch: %s is %s but %s pins %s; if you trust this build, set %q = %q under [plugins] there",
		e.Plugin, e.Path, e.Got, src, e.Want, e.Plugin, e.Got)
}

// Unwrap returns trust.ErrUntrusted.
func (e *ChecksumError) Unwrap() error { return trust.ErrUntrusted }

// ReadPins reads the [plugins] table of the TOML file at path (mirrorkit.toml)
// and checks every pin's form. A missing file, or one without the table,
// holds no pins. A key that is not an external plugin's executable name
// (mirror-backend-NAME, mirror-signer-NAME) or a value that is not
// "sha256:" and 64 hex digits fails with an error wrapping fs.ErrInvalid,
// since a pin that silently never applies would be worse than none.
func ReadPins(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin pins: %w", err)
	}
	var c struct {
		Plugins map[string]string `toml:"plugins"`
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read plugin pins %s: %w", path, err)
	}
	pins := make(map[string]string, len(c.Plugins))
	for name, pin := range c.Plugins {
		if err := checkPinName(name); err != nil {
			return nil, fmt.Errorf("read plugin pins %s: %w", path, err)
		}
		norm, err := normalizePin(pin)
		if err != nil {
			return nil, fmt.Errorf("read plugin pins %s: plugin %s: %w", path, name, err)
		}
		pins[name] = norm
	}
	return pins, nil
}

func checkPinName(name string) error {
	for _, kind := range []string{"mirror-backend-", "mirror-signer-"} {
		if rest, ok := strings.CutPrefix(name, kind); ok && validName(rest) {
			return nil
		}
	}
	return fmt.Errorf("pin key %q is not a plugin executable name (mirror-backend-NAME or mirror-signer-NAME): %w", name, fs.ErrInvalid)
}

// normalizePin checks a pin's form and lowercases its digest, so that a
// digest pasted in capitals still compares equal.
func normalizePin(pin string) (string, error) {
	hexDigits, ok := strings.CutPrefix(pin, pinAlgorithm)
	if d, err := hex.DecodeString(hexDigits); !ok || err != nil || len(d) != sha256.Size {
		return "", fmt.Errorf("pin %q is not %s followed by 64 hex digits: %w", pin, pinAlgorithm, fs.ErrInvalid)
	}
	return pinAlgorithm + strings.ToLower(hexDigits), nil
}

// FileDigest returns the pin form, "sha256:" and 64 lowercase hex digits,
// of the file at path; it is what a user writes into [plugins].
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return pinAlgorithm + hex.EncodeToString(h.Sum(nil)), nil
}

// CheckPin verifies p's executable against its pin in h.Pins. Built-in
// plugins and unpinned ones pass. A mismatch is a *ChecksumError.
func (h *Host) CheckPin(p Plan) error {
	if p.Builtin {
		return nil
	}
	want, ok := h.Pins[p.Name]
	if !ok {
		return nil
	}
	want, err := normalizePin(want)
	if err != nil {
		return fmt.Errorf("start plugin %s: %w", p.Name, err)
	}
	got, err := FileDigest(p.Path)
	if err != nil {
		return fmt.Errorf("start plugin %s: %w", p.Name, err)
	}
	if got != want {
		return &ChecksumError{Plugin: p.Name, Path: p.Path, Want: want, Got: got, Source: h.PinsFile}
	}
	return nil
}
