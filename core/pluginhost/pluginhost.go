// Package pluginhost decides which plugin serves a mirror address or a key
// reference, and starts it: built-in plugins by re-executing the mirror
// binary (`mirror __plugin NAME`), third-party ones as executables named
// mirror-backend-SCHEME or mirror-signer-NAME found in the plugin directory
// or on PATH.
package pluginhost

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// PluginCommand is the hidden argument by which the mirror binary runs one
// of its built-in plugins: Executable PluginCommand NAME.
const PluginCommand = "__plugin"

// builtinSchemes maps the address schemes served by built-in backends to
// the plugin name.
var builtinSchemes = map[string]string{
	"file":     "backend-fs",
	"http":     "backend-http",
	"https":    "backend-http",
	"oci":      "backend-oci",
	"oci+http": "backend-oci",
}

// Host starts plugins. The zero value finds only external plugins on PATH;
// set Executable and Builtins to use the plugins built into the binary.
type Host struct {
	// Executable is the mirror binary, re-executed for built-in plugins.
	Executable string
	// Builtins holds the names of the built-in plugins, e.g. "backend-fs".
	Builtins map[string]bool
	// PluginDir is searched for external plugins before PATH; empty skips it.
	PluginDir string
	// Logger receives the plugins' logs; nil discards them.
	Logger hclog.Logger
	// Pins maps an external plugin's executable name ("mirror-backend-s3")
	// to the digest it must have ("sha256:" and 64 hex digits); see
	// ReadPins and CheckPin. Nil pins nothing.
	Pins map[string]string
	// PinsFile is where Pins came from, named in a mismatch's advice.
	PinsFile string
}

// Plan is a decision about which plugin to start and what to open it with.
type Plan struct {
	// Name is the plugin's name: "backend-fs" for a built-in one, the
	// executable's name ("mirror-backend-s3") for an external one.
	Name string
	// Builtin says the plugin is served by Executable.
	Builtin bool
	// Path is the executable to run.
	Path string
	// Address is the Config.Address the plugin is opened with.
	Address string
}

// Command returns the command that starts the plugin.
func (p Plan) Command() *exec.Cmd {
	if p.Builtin {
		return exec.Command(p.Path, PluginCommand, p.Name)
	}
	return exec.Command(p.Path)
}

// ResolveBackend picks the backend plugin for address. backendName, if not
// empty, forces the plugin: built-in backend-NAME when there is one, else
// the external mirror-backend-NAME, with the address passed unchanged.
// Otherwise a path or file:// URL goes to backend-fs with an absolute path,
// http(s):// to backend-http, oci:// and oci+http:// to backend-oci, and
// any other SCHEME:// to mirror-backend-SCHEME. An address without a plugin
// fails with an error wrapping fs.ErrNotExist.
func (h *Host) ResolveBackend(address, backendName string) (Plan, error) {
	if backendName != "" {
		return h.resolve("backend", backendName, address)
	}
	scheme, rest, ok := splitScheme(address)
	if !ok {
		scheme, rest = "file", address
	}
	if scheme == "file" {
		abs, err := filepath.Abs(rest)
		if err != nil {
			return Plan{}, fmt.Errorf("resolve backend %s: %w", address, err)
		}
		address = abs
	}
	if name, ok := builtinSchemes[scheme]; ok && h.Builtins[name] {
		return Plan{Name: name, Builtin: true, Path: h.Executable, Address: address}, nil
	}
	return h.external("backend", scheme, address)
}

// ResolveSigner picks the signer plugin for a key reference: a plain path
// (or file://PATH) goes to signer-local with an absolute path; NAME://...
// and NAME+SCHEME://... go to built-in signer-NAME when there is one, else
// to the external mirror-signer-NAME, with the reference unchanged.
func (h *Host) ResolveSigner(ref string) (Plan, error) {
	scheme, rest, ok := splitScheme(ref)
	if !ok || scheme == "file" {
		if !ok {
			rest = ref
		}
		abs, err := filepath.Abs(rest)
		if err != nil {
			return Plan{}, fmt.Errorf("resolve signer %s: %w", ref, err)
		}
		return h.resolve("signer", "local", abs)
	}
	name, _, _ := strings.Cut(scheme, "+")
	return h.resolve("signer", name, ref)
}

// resolve picks built-in KIND-NAME if registered, else external
// mirror-KIND-NAME.
func (h *Host) resolve(kind, name, address string) (Plan, error) {
	if builtin := kind + "-" + name; h.Builtins[builtin] {
		return Plan{Name: builtin, Builtin: true, Path: h.Executable, Address: address}, nil
	}
	return h.external(kind, name, address)
}

// external finds mirror-KIND-NAME in PluginDir, then on PATH.
func (h *Host) external(kind, name, address string) (Plan, error) {
	exe := "mirror-" + kind + "-" + name
	if !validName(name) {
		return Plan{}, fmt.Errorf("resolve %s plugin %q: %w", kind, name, fs.ErrInvalid)
	}
	if h.PluginDir != "" {
		p := filepath.Join(h.PluginDir, exe)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return Plan{Name: exe, Path: p, Address: address}, nil
		}
	}
	if p, err := exec.LookPath(exe); err == nil {
		return Plan{Name: exe, Path: p, Address: address}, nil
	}
	what := "scheme"
	if kind == "signer" {
		what = "name"
	}
	dir := h.PluginDir
	if dir == "" {
		dir = "the plugin directory"
	}
	return Plan{}, fmt.Errorf("no %s plugin for %s %s: install %s in %s or on PATH: %w", kind, what, name, exe, dir, fs.ErrNotExist)
}

// splitScheme splits "scheme://rest"; ok is false when s has no scheme.
// The scheme is lowercased, as URL schemes are case-insensitive.
func splitScheme(s string) (scheme, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return "", "", false
	}
	return strings.ToLower(scheme), rest, true
}

// validScheme applies RFC 3986: a letter, then letters, digits, + - and .
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

// validName keeps a plugin name to one harmless path element, since it
// becomes part of an executable's name.
func validName(s string) bool {
	return s != "" && validScheme(s) && !strings.Contains(s, "..")
}

// OpenBackend starts the backend plugin for address (see ResolveBackend),
// once its executable passes CheckPin, and opens it with the options of
// opts that are meant for it (see OptionsFor). The caller closes the
// returned backend.
func (h *Host) OpenBackend(ctx context.Context, address, backendName string, opts map[string]string) (*host.Backend, error) {
	p, err := h.ResolveBackend(address, backendName)
	if err != nil {
		return nil, err
	}
	if err := h.CheckPin(p); err != nil {
		return nil, err
	}
	return host.StartBackend(ctx, p.Command(), sdk.Config{Address: p.Address, Options: OptionsFor(p.Name, opts)}, h.logger(p))
}

// OptionsFor picks the options meant for the plugin name: a key written
// NAME:KEY goes to plugin NAME only, as KEY; a plain KEY goes to every
// plugin. A command that opens two backends (clone from http:// to oci://)
// can so give one of them options the other would refuse as unknown. nil
// when none are left.
func OptionsFor(name string, opts map[string]string) map[string]string {
	var out map[string]string
	for k, v := range opts {
		if scope, key, ok := strings.Cut(k, ":"); ok {
			if scope != name {
				continue
			}
			k = key
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// OpenSigner starts the signer plugin for ref (see ResolveSigner), once its
// executable passes CheckPin, and opens it with opts. The caller closes the
// returned signer.
func (h *Host) OpenSigner(ctx context.Context, ref string, opts map[string]string) (*host.Signer, error) {
	p, err := h.ResolveSigner(ref)
	if err != nil {
		return nil, err
	}
	if err := h.CheckPin(p); err != nil {
		return nil, err
	}
	return host.StartSigner(ctx, p.Command(), sdk.Config{Address: p.Address, Options: opts}, h.logger(p))
}

func (h *Host) logger(p Plan) hclog.Logger {
	if h.Logger == nil {
		return hclog.NewNullLogger()
	}
	return h.Logger.Named(p.Name)
}
