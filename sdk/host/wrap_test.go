package host

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mirrorkit/mirror/sdk"
)

// deadProcess is a plugin process that has already exited.
type deadProcess struct{}

func (deadProcess) exited() bool { return true }
func (deadProcess) stop()        {}
func (deadProcess) kill() error  { return nil }

// TestWrapTellsPluginErrorsFromBrokenConnections: only the transport's own
// codes mean the plugin is gone. A code outside the error table that a
// newer plugin sends (as PermissionDenied was added) stays the plugin's
// plain error, with its message, so older hosts degrade to exit 1 with the
// plugin's words instead of reporting a dead plugin.
func TestWrapTellsPluginErrorsFromBrokenConnections(t *testing.T) {
	c := &conn{kind: "backend", name: "test", proc: deadProcess{}}
	err := c.wrap(status.Error(codes.FailedPrecondition, "the registry wants a newer token"))
	if err == nil || err.Error() != "the registry wants a newer token" || errors.Is(err, ErrExited) {
		t.Errorf("a code outside the table = %v, want the plugin's plain message", err)
	}
	err = c.wrap(status.Error(codes.NotFound, "stat x: not found"))
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("NotFound = %v, want sdk.ErrNotFound", err)
	}
	for _, code := range []codes.Code{codes.Unavailable, codes.Internal} {
		err := c.wrap(status.Error(code, "transport is closing"))
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "transport is closing") {
			t.Errorf("%v from a dead plugin = %v, want ErrExited with the transport's message", code, err)
		}
	}
}
