package pluginhost

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/trust"
)

const (
	zeroPin  = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	upperPin = "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000"
)

func TestReadPins(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" writes no file
		want    map[string]string
		fails   bool
		wantErr error // when fails, the sentinel the error wraps, if any
	}{
		{name: "no file", want: nil},
		{name: "no table", content: "[mirrors]\n", want: map[string]string{}},
		{name: "pins", content: "[plugins]\n\"mirror-backend-memdir\" = \"" + zeroPin + "\"\nmirror-signer-kms = \"" + upperPin + "\"\n",
			want: map[string]string{"mirror-backend-memdir": zeroPin, "mirror-signer-kms": strings.ToLower(upperPin)}},
		{name: "bare plugin name", content: "[plugins]\nbackend-memdir = \"" + zeroPin + "\"\n", fails: true, wantErr: fs.ErrInvalid},
		{name: "unknown algorithm", content: "[plugins]\nmirror-backend-memdir = \"md5:00\"\n", fails: true, wantErr: fs.ErrInvalid},
		{name: "short digest", content: "[plugins]\nmirror-backend-memdir = \"sha256:00\"\n", fails: true, wantErr: fs.ErrInvalid},
		{name: "not toml", content: "[plugins\n", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mirrorkit.toml")
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadPins(path)
			if tt.fails {
				if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadPins = %v, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadPins: %v", err)
			}
			if len(got) != len(tt.want) || (got == nil) != (tt.want == nil) {
				t.Fatalf("ReadPins = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("pin %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestCheckPin(t *testing.T) {
	dir := t.TempDir()
	exe := writeExe(t, dir, "mirror-backend-x", 0o755)
	digest, err := FileDigest(exe)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan{Name: "mirror-backend-x", Path: exe}
	tests := []struct {
		name    string
		plan    Plan
		pins    map[string]string
		wantErr error
	}{
		{name: "unpinned", plan: plan},
		{name: "right pin", plan: plan, pins: map[string]string{"mirror-backend-x": digest}},
		{name: "right pin in capitals", plan: plan, pins: map[string]string{"mirror-backend-x": "sha256:" + strings.ToUpper(strings.TrimPrefix(digest, "sha256:"))}},
		{name: "wrong pin", plan: plan, pins: map[string]string{"mirror-backend-x": zeroPin}, wantErr: trust.ErrUntrusted},
		{name: "malformed pin", plan: plan, pins: map[string]string{"mirror-backend-x": "sha256:xyz"}, wantErr: fs.ErrInvalid},
		{name: "pinned executable gone", plan: Plan{Name: "mirror-backend-x", Path: filepath.Join(dir, "gone")}, pins: map[string]string{"mirror-backend-x": digest}, wantErr: fs.ErrNotExist},
		{name: "builtin never pinned", plan: Plan{Name: "backend-fs", Builtin: true, Path: exe}, pins: map[string]string{"backend-fs": zeroPin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Host{Pins: tt.pins, PinsFile: "/home/u/.tiup/mirrorkit.toml"}
			err := h.CheckPin(tt.plan)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckPin: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckPin = %v, want an error wrapping %v", err, tt.wantErr)
			}
		})
	}
}

// TestChecksumErrorMessage: the refusal is one line that names the plugin,
// both digests, and what to change where.
func TestChecksumErrorMessage(t *testing.T) {
	dir := t.TempDir()
	exe := writeExe(t, dir, "mirror-signer-x", 0o755)
	digest, err := FileDigest(exe)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{Pins: map[string]string{"mirror-signer-x": zeroPin}, PinsFile: "/home/u/.tiup/mirrorkit.toml"}
	err = h.CheckPin(Plan{Name: "mirror-signer-x", Path: exe})
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("CheckPin = %v, want a *ChecksumError", err)
	}
	msg := err.Error()
	for _, want := range []string{"mirror-signer-x", zeroPin, digest, "/home/u/.tiup/mirrorkit.toml", "[plugins]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
}

// TestOpenRefusesMismatch: a wrong pin stops the plugin from starting at
// all, and a right one lets it run.
func TestOpenRefusesMismatch(t *testing.T) {
	ctx := context.Background()
	pathDir := t.TempDir()
	linkSelf(t, pathDir, "mirror-backend-test")
	linkSelf(t, pathDir, "mirror-signer-test")
	t.Setenv("PATH", pathDir)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := FileDigest(self)
	if err != nil {
		t.Fatal(err)
	}
	wrong := &Host{Pins: map[string]string{"mirror-backend-test": zeroPin, "mirror-signer-test": zeroPin}}
	if b, err := wrong.OpenBackend(ctx, "test://x", "", nil); !errors.Is(err, trust.ErrUntrusted) {
		if b != nil {
			b.Close()
		}
		t.Errorf("OpenBackend with a wrong pin = %v, want an error wrapping trust.ErrUntrusted", err)
	}
	if s, err := wrong.OpenSigner(ctx, "test://k", nil); !errors.Is(err, trust.ErrUntrusted) {
		if s != nil {
			s.Close()
		}
		t.Errorf("OpenSigner with a wrong pin = %v, want an error wrapping trust.ErrUntrusted", err)
	}
	right := &Host{Pins: map[string]string{"mirror-backend-test": digest}}
	b, err := right.OpenBackend(ctx, "test://x", "", nil)
	if err != nil {
		t.Fatalf("OpenBackend with the right pin: %v", err)
	}
	b.Close()
}
