package host

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// claimsStage reports Capabilities.Stage without implementing sdk.Stager,
// as a plugin written before staging could not but a careless one might.
type claimsStage struct{ *sdktest.MemBackend }

func (claimsStage) Capabilities(context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{Write: true, Stage: true}, nil
}

// Stage is hidden: the embedded MemBackend's would otherwise be promoted.
func (claimsStage) Stage() {}

// TestStageNeedsTheCapability: serve clears a Stage flag the type cannot
// honour, and the host then refuses both Stage and a Staged Put itself,
// since a plugin that predates Staged would store the empty body.
func TestStageNeedsTheCapability(t *testing.T) {
	ctx := t.Context()
	b, err := InProcessBackend(ctx, func(context.Context, sdk.Config) (sdk.Backend, error) {
		return claimsStage{sdktest.NewMemBackend()}, nil
	}, sdk.Config{Address: "claims"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Caps().Stage {
		t.Fatalf("Caps() = %+v: Stage set for a type that is no sdk.Stager", b.Caps())
	}
	if sum, err := b.Stage(ctx, strings.NewReader("x"), sdk.PutOptions{}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Stage = %q, %v; want sdk.ErrUnsupported", sum, err)
	}
	opts := sdk.PutOptions{Staged: true, Size: 0, SizeKnown: true, SHA256: strings.Repeat("0", 64)}
	if _, err := b.Put(ctx, "k", strings.NewReader(""), opts); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put with Staged = %v; want sdk.ErrUnsupported", err)
	}
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Stat after a refused Staged Put: %v; want sdk.ErrNotFound", err)
	}
}

// lyingStager answers every Stage with a sha256 of its choosing.
type lyingStager struct {
	*sdktest.MemBackend
	answer string
}

func (l lyingStager) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	if _, err := l.MemBackend.Stage(ctx, r, opts); err != nil {
		return "", err
	}
	return l.answer, nil
}

// TestStageAnswerChecked: a plugin's sha256 is untrusted input; one that
// is not a sha256, or not the one asked for, is refused.
func TestStageAnswerChecked(t *testing.T) {
	other := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name   string
		answer string
		opts   sdk.PutOptions
	}{
		{"not hex", "sha256:" + strings.Repeat("0", 57), sdk.PutOptions{}},
		{"upper case", strings.Repeat("AB", 32), sdk.PutOptions{}},
		{"another digest than asked", other, sdk.PutOptions{SHA256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := InProcessBackend(t.Context(), func(context.Context, sdk.Config) (sdk.Backend, error) {
				return lyingStager{sdktest.NewMemBackend(), tt.answer}, nil
			}, sdk.Config{Address: "lying"})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			sum, err := b.Stage(t.Context(), strings.NewReader("hello"), tt.opts)
			if err == nil || !strings.Contains(err.Error(), "sha256") {
				t.Fatalf("Stage answered %q = %q, %v; want an error about the sha256", tt.answer, sum, err)
			}
		})
	}
}

// stuckStager never finishes a Stage, whatever the context says.
type stuckStager struct {
	*sdktest.MemBackend
	release chan struct{}
}

func (s stuckStager) Stage(context.Context, io.Reader, sdk.PutOptions) (string, error) {
	<-s.release
	return "", errors.New("released")
}

// TestStuckStageTimesOut: Stage waits on the plugin under the same
// watchdog as Put.
func TestStuckStageTimesOut(t *testing.T) {
	t.Setenv(EnvTimeout, "200ms")
	release := make(chan struct{})
	defer close(release)
	b, err := InProcessBackend(t.Context(), func(context.Context, sdk.Config) (sdk.Backend, error) {
		return stuckStager{sdktest.NewMemBackend(), release}, nil
	}, sdk.Config{Address: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill()
	start := time.Now()
	_, err = b.Stage(t.Context(), strings.NewReader("x"), sdk.PutOptions{})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "stage") {
		t.Fatalf("Stage of a stuck plugin: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stage gave up after %v", took)
	}
}

// TestPutFileRefusesStaged: staged content is stored by Put; a PutFile with
// Staged would hand a plugin a path to copy and a flag it may not know.
func TestPutFileRefusesStaged(t *testing.T) {
	b := startBackend(t)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := b.PutFile(t.Context(), "k", path, sdk.PutOptions{Staged: true, Size: 1, SizeKnown: true, SHA256: strings.Repeat("0", 64)})
	if !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("PutFile with Staged = %v, want fs.ErrInvalid", err)
	}
	if _, err := b.Stat(t.Context(), "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("after the refused PutFile, Stat = %v, want ErrNotFound", err)
	}
}
