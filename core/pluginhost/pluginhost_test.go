package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// TestMain lets the test binary stand in for plugins: run as
// "BIN __plugin NAME" it is a built-in plugin, and run under the name
// mirror-backend-test or mirror-signer-test it is an external one.
func TestMain(m *testing.M) {
	base := filepath.Base(os.Args[0])
	switch {
	case len(os.Args) == 3 && os.Args[1] == PluginCommand && strings.HasPrefix(os.Args[2], "backend-"):
		serve.Backend(echoBackend(os.Args[2]))
	case len(os.Args) == 3 && os.Args[1] == PluginCommand && strings.HasPrefix(os.Args[2], "signer-"):
		serve.Signer(echoSigner(os.Args[2]))
	case base == "mirror-backend-test":
		serve.Backend(echoBackend(base))
	case base == "mirror-signer-test":
		serve.Signer(echoSigner(base))
	default:
		os.Exit(m.Run())
	}
	os.Exit(0)
}

// echo reports which plugin answered and what it was opened with: Stat
// returns the plugin's name as Key and the config as ETag.
type echo struct {
	name string
	cfg  sdk.Config
}

func echoBackend(name string) sdk.BackendFactory {
	return func(_ context.Context, cfg sdk.Config) (sdk.Backend, error) {
		return &echo{name: name, cfg: cfg}, nil
	}
}

func echoSigner(name string) sdk.SignerFactory {
	return func(_ context.Context, cfg sdk.Config) (sdk.Signer, error) {
		return &echo{name: name, cfg: cfg}, nil
	}
}

func (e *echo) describe() string {
	return fmt.Sprintf("%s %s %v", e.name, e.cfg.Address, e.cfg.Options)
}

func (e *echo) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{}, nil
}

func (e *echo) Stat(context.Context, string) (sdk.ObjectInfo, error) {
	return sdk.ObjectInfo{Key: e.name, ETag: e.describe()}, nil
}

func (e *echo) Get(context.Context, string) (io.ReadCloser, sdk.ObjectInfo, error) {
	return nil, sdk.ObjectInfo{}, sdk.ErrNotFound
}

func (e *echo) Put(context.Context, string, io.Reader, sdk.PutOptions) (sdk.ObjectInfo, error) {
	return sdk.ObjectInfo{}, sdk.ErrUnsupported
}

func (e *echo) List(context.Context, string, func(sdk.ObjectInfo) error) error {
	return sdk.ErrUnsupported
}

func (e *echo) Delete(context.Context, string) error { return sdk.ErrUnsupported }

func (e *echo) Lock(context.Context, string) (func() error, error) {
	return nil, sdk.ErrUnsupported
}

func (e *echo) PublicKey(context.Context) (sdk.PublicKey, error) {
	return sdk.PublicKey{KeyType: "rsa", Scheme: "rsassa-pss-sha256", PEM: e.describe()}, nil
}

func (e *echo) Sign(context.Context, []byte) ([]byte, error) { return []byte(e.name), nil }

// writeExe creates an executable file (its content never runs).
func writeExe(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolve(t *testing.T) {
	pluginDir, pathDir := t.TempDir(), t.TempDir()
	s3 := writeExe(t, pluginDir, "mirror-backend-s3", 0o755)
	writeExe(t, pluginDir, "mirror-backend-noexec", 0o644)
	gcs := writeExe(t, pathDir, "mirror-backend-gcs", 0o755)
	shadowed := writeExe(t, pathDir, "mirror-backend-s3", 0o755)
	kms := writeExe(t, pathDir, "mirror-signer-kms", 0o755)
	httpExt := writeExe(t, pathDir, "mirror-backend-http", 0o755)
	t.Setenv("PATH", pathDir)
	if shadowed == s3 {
		t.Fatal("test setup: the plugin dir and PATH must differ")
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	full := &Host{
		Executable: "/bin/mirror",
		Builtins:   map[string]bool{"backend-fs": true, "backend-http": true, "backend-oci": true, "signer-local": true, "signer-vault": true},
		PluginDir:  pluginDir,
	}
	bare := &Host{Executable: "/bin/mirror", Builtins: map[string]bool{"backend-fs": true}, PluginDir: pluginDir}

	backends := []struct {
		name    string
		h       *Host
		address string
		force   string
		want    Plan
		wantErr string
	}{
		{"absolute path", full, "/srv/mirror", "", Plan{Name: "backend-fs", Builtin: true, Path: "/bin/mirror", Address: "/srv/mirror"}, ""},
		{"relative path", full, "data/mirror", "", Plan{Name: "backend-fs", Builtin: true, Path: "/bin/mirror", Address: filepath.Join(cwd, "data/mirror")}, ""},
		{"file URL", full, "file:///srv/m", "", Plan{Name: "backend-fs", Builtin: true, Path: "/bin/mirror", Address: "/srv/m"}, ""},
		{"file URL relative", full, "file://m", "", Plan{Name: "backend-fs", Builtin: true, Path: "/bin/mirror", Address: filepath.Join(cwd, "m")}, ""},
		{"http", full, "http://example.com/m", "", Plan{Name: "backend-http", Builtin: true, Path: "/bin/mirror", Address: "http://example.com/m"}, ""},
		{"https", full, "https://example.com/m", "", Plan{Name: "backend-http", Builtin: true, Path: "/bin/mirror", Address: "https://example.com/m"}, ""},
		{"uppercase scheme", full, "HTTPS://example.com", "", Plan{Name: "backend-http", Builtin: true, Path: "/bin/mirror", Address: "HTTPS://example.com"}, ""},
		{"oci", full, "oci://reg.io/m", "", Plan{Name: "backend-oci", Builtin: true, Path: "/bin/mirror", Address: "oci://reg.io/m"}, ""},
		{"oci over http", full, "oci+http://localhost:5000/m", "", Plan{Name: "backend-oci", Builtin: true, Path: "/bin/mirror", Address: "oci+http://localhost:5000/m"}, ""},
		{"external in plugin dir first", full, "s3://bucket/m", "", Plan{Name: "mirror-backend-s3", Path: s3, Address: "s3://bucket/m"}, ""},
		{"external on PATH", full, "gcs://bucket", "", Plan{Name: "mirror-backend-gcs", Path: gcs, Address: "gcs://bucket"}, ""},
		{"unregistered builtin falls back to external", bare, "http://x", "", Plan{Name: "mirror-backend-http", Path: httpExt, Address: "http://x"}, ""},
		{"unregistered builtin, none installed", bare, "oci://x", "", Plan{}, "no backend plugin for scheme oci: install mirror-backend-oci in " + pluginDir + " or on PATH"},
		{"unknown scheme", full, "ftp://x", "", Plan{}, "no backend plugin for scheme ftp: install mirror-backend-ftp in " + pluginDir + " or on PATH"},
		{"not executable", full, "noexec://x", "", Plan{}, "no backend plugin for scheme noexec"},
		{"forced builtin", full, "https://x", "oci", Plan{Name: "backend-oci", Builtin: true, Path: "/bin/mirror", Address: "https://x"}, ""},
		{"forced external", full, "https://x", "s3", Plan{Name: "mirror-backend-s3", Path: s3, Address: "https://x"}, ""},
		{"forced missing", full, "/m", "nope", Plan{}, "no backend plugin for scheme nope"},
		{"forced name with a slash", full, "/m", "../x", Plan{}, "invalid argument"},
	}
	for _, tt := range backends {
		t.Run("backend/"+tt.name, func(t *testing.T) {
			got, err := tt.h.ResolveBackend(tt.address, tt.force)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveBackend(%q, %q) error = %v, want %q", tt.address, tt.force, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ResolveBackend(%q, %q) = %+v, %v, want %+v", tt.address, tt.force, got, err, tt.want)
			}
		})
	}

	signers := []struct {
		name    string
		ref     string
		want    Plan
		wantErr string
	}{
		{"key file", "/keys/k.json", Plan{Name: "signer-local", Builtin: true, Path: "/bin/mirror", Address: "/keys/k.json"}, ""},
		{"relative key file", "k.json", Plan{Name: "signer-local", Builtin: true, Path: "/bin/mirror", Address: filepath.Join(cwd, "k.json")}, ""},
		{"file URL", "file:///keys/k.json", Plan{Name: "signer-local", Builtin: true, Path: "/bin/mirror", Address: "/keys/k.json"}, ""},
		{"builtin by name", "vault://secret/k", Plan{Name: "signer-vault", Builtin: true, Path: "/bin/mirror", Address: "vault://secret/k"}, ""},
		{"builtin with sub-scheme", "vault+https://v.example/k", Plan{Name: "signer-vault", Builtin: true, Path: "/bin/mirror", Address: "vault+https://v.example/k"}, ""},
		{"external", "kms://projects/p/k", Plan{Name: "mirror-signer-kms", Path: kms, Address: "kms://projects/p/k"}, ""},
		{"external with sub-scheme", "kms+grpc://host/k", Plan{Name: "mirror-signer-kms", Path: kms, Address: "kms+grpc://host/k"}, ""},
		{"missing", "hsm://slot/1", Plan{}, "no signer plugin for name hsm: install mirror-signer-hsm in " + pluginDir + " or on PATH"},
	}
	for _, tt := range signers {
		t.Run("signer/"+tt.name, func(t *testing.T) {
			got, err := full.ResolveSigner(tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("ResolveSigner(%q) error = %v, want %q", tt.ref, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ResolveSigner(%q) = %+v, %v, want %+v", tt.ref, got, err, tt.want)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		name string
		plan Plan
		want []string
	}{
		{"builtin", Plan{Name: "backend-fs", Builtin: true, Path: "/bin/mirror"}, []string{"/bin/mirror", "__plugin", "backend-fs"}},
		{"external", Plan{Name: "mirror-backend-s3", Path: "/p/mirror-backend-s3"}, []string{"/p/mirror-backend-s3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.plan.Command().Args; strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Command().Args = %q, want %q", got, tt.want)
			}
		})
	}
}

// linkSelf puts this test binary in dir under name, so that running it
// by that name makes it the plugin TestMain serves.
func linkSelf(t *testing.T, dir, name string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenPlugins(t *testing.T) {
	ctx := context.Background()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir()
	linkSelf(t, pathDir, "mirror-backend-test")
	linkSelf(t, pathDir, "mirror-signer-test")
	t.Setenv("PATH", pathDir)
	h := &Host{Executable: exe, Builtins: map[string]bool{"backend-fs": true, "signer-local": true}, PluginDir: t.TempDir()}
	opts := map[string]string{"k": "v"}

	backends := []struct {
		name, address, want string
	}{
		{"external on PATH", "test://somewhere", "mirror-backend-test test://somewhere map[k:v]"},
		{"builtin", "/srv/m", "backend-fs /srv/m map[k:v]"},
	}
	for _, tt := range backends {
		t.Run(tt.name, func(t *testing.T) {
			b, err := h.OpenBackend(ctx, tt.address, "", opts)
			if err != nil {
				t.Fatalf("OpenBackend: %v", err)
			}
			defer b.Close()
			info, err := b.Stat(ctx, "any")
			if err != nil {
				t.Fatal(err)
			}
			if info.ETag != tt.want {
				t.Errorf("plugin reports %q, want %q", info.ETag, tt.want)
			}
		})
	}
	signers := []struct {
		name, ref, want string
	}{
		{"external signer on PATH", "test://key", "mirror-signer-test test://key map[k:v]"},
		{"builtin signer", "/keys/k.json", "signer-local /keys/k.json map[k:v]"},
	}
	for _, tt := range signers {
		t.Run(tt.name, func(t *testing.T) {
			s, err := h.OpenSigner(ctx, tt.ref, opts)
			if err != nil {
				t.Fatalf("OpenSigner: %v", err)
			}
			defer s.Close()
			k, err := s.PublicKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if k.PEM != tt.want {
				t.Errorf("plugin reports %q, want %q", k.PEM, tt.want)
			}
		})
	}
	t.Run("missing external", func(t *testing.T) {
		if _, err := h.OpenBackend(ctx, "absent://x", "", nil); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("OpenBackend(absent://x) = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestOptionsFor(t *testing.T) {
	opts := map[string]string{"chunk-size": "1048576", "oci:lease-settle": "2s", "http:x": "1"}
	got := OptionsFor("oci", opts)
	want := map[string]string{"chunk-size": "1048576", "lease-settle": "2s"}
	if !maps.Equal(got, want) {
		t.Errorf("oci: got %v, want %v", got, want)
	}
	if got := OptionsFor("fs", map[string]string{"oci:chunk-size": "1"}); got != nil {
		t.Errorf("fs: got %v, want none", got)
	}
	if got := OptionsFor("fs", nil); got != nil {
		t.Errorf("no options: got %v", got)
	}
}
