package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

func TestInProcess(t *testing.T) {
	ctx := context.Background()
	b, err := InProcessBackend(ctx, openMemBackend, sdk.Config{Address: "mem", Options: map[string]string{"etag": "sha"}})
	if err != nil {
		t.Fatalf("InProcessBackend: %v", err)
	}
	defer b.Close()
	data := bytes.Repeat([]byte("0123456789"), wire.ChunkSize/4)
	if _, err := b.Put(ctx, "k", bytes.NewReader(data), sdk.PutOptions{SHA256: etag(data)}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	rc, _, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	if _, err := b.Stat(ctx, "errors/conflict"); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("Stat = %v, want ErrConflict", err)
	}

	rc, _, err = b.Get(ctx, "slow/1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, wire.ChunkSize)); err != nil {
		t.Fatal(err)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, ErrExited) {
		t.Fatalf("Read after Kill = %v, want ErrExited", err)
	}
	b.Close()
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Stat after Close = %v, want fs.ErrClosed", err)
	}

	s, err := InProcessSigner(ctx, openMemSigner, sdk.Config{Address: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Sign(ctx, nil); err == nil || !strings.Contains(err.Error(), "empty payload") {
		t.Fatalf("Sign(nil) = %v", err)
	}
}
