package fsbackend

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
)

// TestOpenRefusesOptions: the fs backend has no options, so any option is
// refused, named, rather than ignored; none at all opens.
func TestOpenRefusesOptions(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(context.Background(), sdk.Config{Address: dir, Options: map[string]string{"lease-ttl": "1m", "chunk-size": "1024"}})
	if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "unknown option chunk-size, lease-ttl") {
		t.Fatalf("Open with options = %v, want an fs.ErrInvalid naming chunk-size, lease-ttl", err)
	}
	b, err := Open(context.Background(), sdk.Config{Address: dir, Options: map[string]string{}})
	if err != nil {
		t.Fatalf("Open with an empty option map: %v", err)
	}
	b.(*Backend).Close()
}
