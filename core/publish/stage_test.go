package publish_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// stagingBackend is a MemBackend that stages, watched: it counts Stage
// calls and the Puts of tarballKey with and without Staged, can make
// Stage fail or forget what it staged, and holds Lock until release is
// closed, noting whether a Stage had finished by then.
type stagingBackend struct {
	*sdktest.MemBackend
	failStage   bool          // Stage reads everything, then fails
	forget      bool          // Stage answers without keeping the content
	blockStage  bool          // Stage waits for its context to end
	release     chan struct{} // nil: Lock does not wait
	stageCalled chan struct{} // closed when Stage starts

	mu              sync.Mutex
	stages          int
	stagesDone      int
	stagedBeforeLck bool // a Stage had returned when Lock was granted
	stagedPuts      int  // Puts of tarballKey with Staged that stored it
	stagedMisses    int  // ... that found nothing staged
	plainPuts       int  // Puts of tarballKey that sent the bytes
}

const tarballKey = "big-v1.0.0-any-any.tar.gz"

func newStagingBackend() *stagingBackend {
	return &stagingBackend{MemBackend: sdktest.NewMemBackend(), stageCalled: make(chan struct{})}
}

func (s *stagingBackend) Stage(ctx context.Context, r io.Reader, opts sdk.PutOptions) (string, error) {
	s.mu.Lock()
	s.stages++
	if s.stages == 1 {
		close(s.stageCalled)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stagesDone++
		s.mu.Unlock()
	}()
	switch {
	case s.blockStage:
		<-ctx.Done()
		return "", ctx.Err()
	case s.failStage:
		io.Copy(io.Discard, r)
		return "", errors.New("stage: the registry said no")
	case s.forget:
		h := sha256.New()
		io.Copy(h, r)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	return s.MemBackend.Stage(ctx, r, opts)
}

// holdLockUntilStaged makes Lock wait until a Stage has finished, or 10
// seconds have passed (a test then sees stagedBeforeLck false).
func (s *stagingBackend) holdLockUntilStaged() {
	s.release = make(chan struct{})
	go func() {
		defer close(s.release)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			done := s.stagesDone > 0
			s.mu.Unlock()
			if done {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
}

func (s *stagingBackend) Lock(ctx context.Context, name string) (func() error, error) {
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	s.stagedBeforeLck = s.stagesDone > 0
	s.mu.Unlock()
	return s.MemBackend.Lock(ctx, name)
}

func (s *stagingBackend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	info, err := s.MemBackend.Put(ctx, key, r, opts)
	if key == tarballKey {
		s.mu.Lock()
		switch {
		case opts.Staged && errors.Is(err, sdk.ErrNotFound):
			s.stagedMisses++
		case opts.Staged && err == nil:
			s.stagedPuts++
		case !opts.Staged && err == nil:
			s.plainPuts++
		}
		s.mu.Unlock()
	}
	return info, err
}

// writeTarball writes n random bytes to a file and returns its path and
// sha256.
func writeTarball(t *testing.T, n int) (string, string) {
	t.Helper()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{3}).Read(data)
	path := filepath.Join(t.TempDir(), tarballKey)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return path, hex.EncodeToString(sum[:])
}

// publishTarball is a publish transaction: the tarball at path, under
// tarballKey, in a new version of component big.
func (f *fixture) publishTarball(path, sum string) func(ctx context.Context, tx *publish.Txn) error {
	return func(ctx context.Context, tx *publish.Txn) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		c := manifest.NewComponent("big", "", tx.Now())
		tx.Index.Components["big"] = manifest.ComponentItem{Owner: "alice", URL: manifest.ManifestURL("big")}
		tx.IndexChanged()
		c.Platforms["any/any"] = map[string]manifest.VersionItem{"v1.0.0": {URL: "/" + tarballKey, Entry: "big",
			Hashes: map[string]string{"sha256": sum}, Length: uint64(fi.Size()), Released: manifest.FormatTime(tx.Now())}}
		env, err := manifest.NewEnvelope(c)
		if err != nil {
			return err
		}
		if err := publish.SignWith(ctx, env, f.owner.Signer()); err != nil {
			return err
		}
		if err := tx.PutComponent(env); err != nil {
			return err
		}
		tx.AddFile(tarballKey, path, fi.Size(), sum)
		return nil
	}
}

// wantTarball checks that the backend holds the tarball's bytes.
func wantTarball(t *testing.T, b sdk.Backend, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Get(context.Background(), tarballKey)
	if err != nil {
		t.Fatalf("Get(%s) after the publish: %v", tarballKey, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes, %v; want the tarball's %d", tarballKey, len(got), err, len(want))
	}
}

// TestUploadAheadOfLock: with Ahead, the tarball is staged while Lock is
// still waiting (here Lock waits until a Stage has finished, and fails the
// test if none comes), and the commit stores it with a Staged Put, never
// sending its bytes again.
func TestUploadAheadOfLock(t *testing.T) {
	b := newStagingBackend()
	f := mirrorOn(t, b)
	path, sum := writeTarball(t, 3<<20+11)
	b.holdLockUntilStaged()
	w := &publish.Writer{Backend: b, Keys: f.ring, Clock: clock, Ahead: []string{path}}
	if err := w.Update(context.Background(), f.publishTarball(path, sum)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stagedBeforeLck {
		t.Errorf("Lock was granted before any Stage finished: the tarball was not uploaded ahead")
	}
	if b.stages != 1 || b.stagedPuts != 1 || b.plainPuts != 0 || b.stagedMisses != 0 {
		t.Errorf("%d Stage, %d Staged Put, %d missed Staged Put, %d plain Put of the tarball; want 1, 1, 0, 0",
			b.stages, b.stagedPuts, b.stagedMisses, b.plainPuts)
	}
	wantTarball(t, b, path)
}

// TestUploadAheadFallsBack: staging is an optimization. When it fails,
// when the backend has lost what it staged, or when the tarball changed
// after staging, the commit uploads the tarball as it would without Ahead.
func TestUploadAheadFallsBack(t *testing.T) {
	tests := []struct {
		name                 string
		setup                func(b *stagingBackend)
		changed              bool // the tarball is rewritten after staging
		stagedPuts, misses   int
		wantPlain, wantStage int
	}{
		{name: "Stage fails", setup: func(b *stagingBackend) { b.failStage = true }, wantPlain: 1, wantStage: 1},
		{name: "staged content lost", setup: func(b *stagingBackend) { b.forget = true }, misses: 1, wantPlain: 1, wantStage: 1},
		{name: "tarball changed since", setup: func(*stagingBackend) {}, changed: true, wantPlain: 1, wantStage: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newStagingBackend()
			f := mirrorOn(t, b)
			tt.setup(b)
			path, sum := writeTarball(t, 100<<10)
			fn := f.publishTarball(path, sum)
			if tt.changed {
				// Staging reads the old bytes to the end before Lock
				// returns and fn rewrites the file.
				b.holdLockUntilStaged()
				fn = func(ctx context.Context, tx *publish.Txn) error {
					if err := os.WriteFile(path, []byte("another tarball"), 0o644); err != nil {
						return err
					}
					h := sha256.Sum256([]byte("another tarball"))
					return f.publishTarball(path, hex.EncodeToString(h[:]))(ctx, tx)
				}
			}
			w := &publish.Writer{Backend: b, Keys: f.ring, Clock: clock, Ahead: []string{path}}
			if err := w.Update(context.Background(), fn); err != nil {
				t.Fatalf("Update: %v", err)
			}
			b.mu.Lock()
			if b.stages != tt.wantStage || b.stagedPuts != tt.stagedPuts || b.stagedMisses != tt.misses || b.plainPuts != tt.wantPlain {
				t.Errorf("%d Stage, %d Staged Put, %d missed Staged Put, %d plain Put of the tarball; want %d, %d, %d, %d",
					b.stages, b.stagedPuts, b.stagedMisses, b.plainPuts, tt.wantStage, tt.stagedPuts, tt.misses, tt.wantPlain)
			}
			b.mu.Unlock()
			wantTarball(t, b, path)
		})
	}
}

// TestUploadAheadCancelled: staging errors are forgiven, the caller's
// cancellation is not; and no Stage outlives Update.
func TestUploadAheadCancelled(t *testing.T) {
	b := newStagingBackend()
	f := mirrorOn(t, b)
	b.blockStage = true
	path, sum := writeTarball(t, 1<<10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.stageCalled
		cancel()
	}()
	before, _ := b.Stat(context.Background(), "timestamp.json")
	w := &publish.Writer{Backend: b, Keys: f.ring, Clock: clock, Ahead: []string{path}}
	err := w.Update(ctx, f.publishTarball(path, sum))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update cancelled while staging = %v; want context.Canceled", err)
	}
	b.mu.Lock()
	if b.stagesDone != b.stages {
		t.Errorf("%d of %d Stage calls still running after Update returned", b.stages-b.stagesDone, b.stages)
	}
	b.mu.Unlock()
	if after, _ := b.Stat(context.Background(), "timestamp.json"); after.ETag != before.ETag {
		t.Error("a cancelled publish moved the timestamp")
	}
}

// TestNoAheadWithoutStage: a backend that does not report Capabilities.Stage
// is never asked to stage, even if its type has the method.
func TestNoAheadWithoutStage(t *testing.T) {
	b := &noStageCaps{newStagingBackend()}
	f := mirrorOn(t, b)
	path, sum := writeTarball(t, 1<<10)
	w := &publish.Writer{Backend: b, Keys: f.ring, Clock: clock, Ahead: []string{path}}
	if err := w.Update(context.Background(), f.publishTarball(path, sum)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if b.stages != 0 || b.plainPuts != 1 {
		t.Errorf("%d Stage calls and %d plain Puts of the tarball, want 0 and 1", b.stages, b.plainPuts)
	}
}

type noStageCaps struct{ *stagingBackend }

func (n *noStageCaps) Capabilities(ctx context.Context) (sdk.Capabilities, error) {
	c, err := n.stagingBackend.Capabilities(ctx)
	c.Stage = false
	return c, err
}
