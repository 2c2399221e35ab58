package main_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
)

// TestPluginKilledMidTransfer starts the fs backend the way the tool does
// (the built binary re-executed as `mirror __plugin backend-fs`), kills it
// while a tarball streams into a real mirror, and checks the error is clear,
// nothing in the mirror changed, and a new plugin completes the same write.
func TestPluginKilledMidTransfer(t *testing.T) {
	s := newMirror(t)
	mirrorDir := s.path("m")
	before := visibleDigest(t, mirrorDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func() *host.Backend {
		b, err := host.StartBackend(ctx, exec.Command(mirrorBin, "__plugin", "backend-fs"), sdk.Config{Address: mirrorDir}, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := b.Put(ctx, "big-v1.0.0-linux-amd64.tar.gz", pr, sdk.PutOptions{Size: int64(len(payload)), SizeKnown: true})
		done <- err
	}()
	// Send the first 2 MiB, then kill the plugin mid-stream.
	if _, err := pw.Write(payload[:2<<20]); err != nil {
		t.Fatal(err)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.Write(payload[2<<20:])
		pw.Close()
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a Put through a killed plugin succeeded")
		}
		if !strings.Contains(err.Error(), "plugin exited") && !errors.Is(err, host.ErrExited) {
			t.Fatalf("unclear error: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Put hung after the plugin died")
	}
	if got := visibleDigest(t, mirrorDir); got != before {
		t.Fatal("the mirror changed after an interrupted write")
	}
	if r := s.run("verify"); r.code != 0 {
		t.Fatalf("mirror no longer verifies: %s%s", r.stdout, r.stderr)
	}
	// A re-run with a new plugin completes the write.
	b2 := start()
	defer b2.Close()
	if _, err := b2.Put(ctx, "big-v1.0.0-linux-amd64.tar.gz", bytes.NewReader(payload), sdk.PutOptions{Size: int64(len(payload)), SizeKnown: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mirrorDir, "big-v1.0.0-linux-amd64.tar.gz"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("re-run write: %v", err)
	}
}

// visibleDigest is treeDigest without the backend's own temp and lock
// files, which no reader ever sees under a final name.
func visibleDigest(t *testing.T, dir string) string {
	var keep []string
	for _, line := range strings.Split(treeDigest(t, dir), "\n") {
		name := filepath.Base(strings.Fields(line)[0])
		if !strings.HasPrefix(name, ".tmp-") && !strings.HasPrefix(name, ".lock-") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
