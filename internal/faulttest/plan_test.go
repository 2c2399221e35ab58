package faulttest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/internal/faulttest"
	"github.com/mirrorkit/mirror/sdk"
)

// TestParsePlan: a plan is JSON text or a file; a misspelt fault or a
// numbered fault without a state directory is refused rather than
// silently doing nothing.
func TestParsePlan(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(file, []byte(`{"state":"/s","backend":{"error_at":2}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in      string
		wantErr string
	}{
		{"", ""},
		{`{"log":"/l","state":"/s","backend":{"crash_after_mutations":3,"corrupt_read":["a"]},"signer":{"fault":"huge","at":1}}`, ""},
		{file, ""},
		{`{"backend":{"crash_after":1}}`, "unknown field"},
		{`{"backend":{"error_at":1}}`, "state directory"},
		{`{"state":"/s","backend":{"volatile":"sometimes"}}`, "volatile"},
		{`{"state":"/s","signer":{"fault":"explode"}}`, "signer fault"},
		{`{"state":"/s","backend":{"hang_at":-1}}`, "hang_at"},
		{filepath.Join(t.TempDir(), "missing.json"), "read fault plan"},
	} {
		p, err := faulttest.ParsePlan(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParsePlan(%q): %v", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParsePlan(%q) = %v, want an error about %q", tc.in, err, tc.wantErr)
		case err == nil:
			if back, err := faulttest.ParsePlan(p.Encode()); err != nil || back.Encode() != p.Encode() {
				t.Errorf("plan %q does not round-trip: %v", tc.in, err)
			}
		}
	}
}

// TestPowerLossModel pins the durability rules of journal.go on the real fs
// backend: a Put that returned survives the cut; a Delete survives only
// once a later Put syncs its directory; with "nosync" nothing survives but
// what the cut's survives picks.
func TestPowerLossModel(t *testing.T) {
	ctx := context.Background()
	put := func(t *testing.T, b *faulttest.Backend, key, body string) {
		t.Helper()
		if _, err := b.Put(ctx, key, strings.NewReader(body), sdk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir, key string) string {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil {
			return "<missing>"
		}
		return string(b)
	}
	newBackend := func(t *testing.T, mode string) (*faulttest.Backend, string, string) {
		dir, state := t.TempDir(), t.TempDir()
		b, err := faulttest.NewBackend(faulttest.Scheme+"://"+dir, &faulttest.Plan{State: state, Backend: faulttest.BackendPlan{Volatile: mode}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b, dir, state
	}

	t.Run("fsync", func(t *testing.T) {
		b, dir, state := newBackend(t, faulttest.VolatileFsync)
		put(t, b, "a", "a1")
		put(t, b, "a", "a2")
		put(t, b, "gone", "g")
		if err := b.Delete(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		put(t, b, "sub/c", "c") // syncs sub/, not the top directory
		put(t, b, "late", "l")  // syncs the top directory: the delete is durable now
		put(t, b, "kept", "k")
		if err := b.Delete(ctx, "kept"); err != nil {
			t.Fatal(err)
		}
		undone, err := faulttest.PowerLoss(dir, state, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"a": "a2", "gone": "<missing>", "sub/c": "c", "late": "l", "kept": "k"}
		for key, body := range want {
			if got := read(dir, key); got != body {
				t.Errorf("%s after the cut: %q, want %q", key, got, body)
			}
		}
		if len(undone) != 1 || undone[0].Key != "kept" {
			t.Errorf("undone %v, want the unsynced delete of kept", undone)
		}
		if again, err := faulttest.PowerLoss(dir, state, nil); err != nil || len(again) != 0 {
			t.Errorf("a second cut undid %v (%v)", again, err)
		}
	})
	t.Run("nosync", func(t *testing.T) {
		b, dir, state := newBackend(t, faulttest.VolatileNoSync)
		put(t, b, "old", "o")
		os.Rename(filepath.Join(state, "journal.jsonl"), filepath.Join(state, "before.jsonl")) // "old" was on disk before
		put(t, b, "old", "o2")
		put(t, b, "new", "n")
		put(t, b, "last", "l")
		if _, err := faulttest.PowerLoss(dir, state, func(e faulttest.JournalEntry) bool { return e.Key == "last" }); err != nil {
			t.Fatal(err)
		}
		for key, body := range map[string]string{"old": "o", "new": "<missing>", "last": "l"} {
			if got := read(dir, key); got != body {
				t.Errorf("%s after the cut: %q, want %q", key, got, body)
			}
		}
	})
}
