package httpbackend_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// TestOpenRefusesOptions: the http backend's settings are environment
// variables, so any option is refused, named, rather than ignored; none at
// all opens.
func TestOpenRefusesOptions(t *testing.T) {
	_, err := httpbackend.Open(context.Background(), sdk.Config{Address: "https://mirror.example", Options: map[string]string{"chunk-size": "1024"}})
	if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "unknown option chunk-size") || !strings.Contains(err.Error(), "MIRROR_HTTP_") {
		t.Fatalf("Open with an option = %v, want an fs.ErrInvalid naming chunk-size and the MIRROR_HTTP_ variables", err)
	}
	if _, err := httpbackend.Open(context.Background(), sdk.Config{Address: "https://mirror.example"}); err != nil {
		t.Fatalf("Open without options: %v", err)
	}
}
