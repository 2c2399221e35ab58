package sdktest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// A plugin checks its backend with one call in an ordinary test function,
// here TestConformance. The factory opens a fresh, empty backend for each
// subtest; a directory-based backend would use t.TempDir(). Calling the
// suite a second time with a factory that starts the plugin through
// sdk/host checks the same contract across the process boundary.
func ExampleTestBackend() {
	TestConformance := func(t *testing.T) {
		sdktest.TestBackend(t, func(t *testing.T) sdk.Backend {
			return sdktest.NewMemBackend()
		})
	}
	_ = TestConformance
}

// MemBackend serves as a fixture wherever code needs a backend that keeps
// every promise of the contract.
func ExampleMemBackend() {
	ctx := context.Background()
	b := sdktest.NewMemBackend()

	v1, _ := b.Put(ctx, "root.json", strings.NewReader("v1"), sdk.PutOptions{IfNoneMatch: true})
	_, err := b.Put(ctx, "root.json", strings.NewReader("v1 again"), sdk.PutOptions{IfNoneMatch: true})
	fmt.Println("create twice:", errors.Is(err, sdk.ErrExist))

	_, err = b.Put(ctx, "root.json", strings.NewReader("v2"), sdk.PutOptions{IfMatch: v1.ETag})
	fmt.Println("swap on the current tag:", err)
	_, err = b.Put(ctx, "root.json", strings.NewReader("v3"), sdk.PutOptions{IfMatch: v1.ETag})
	fmt.Println("swap on a stale tag:", errors.Is(err, sdk.ErrConflict))

	_, err = b.Put(ctx, "snapshot.json", strings.NewReader("data"), sdk.PutOptions{Size: 5, SizeKnown: true})
	fmt.Println("short stream:", errors.Is(err, sdk.ErrIntegrity))

	rc, info, _ := b.Get(ctx, "root.json")
	data, _ := io.ReadAll(rc)
	rc.Close()
	fmt.Printf("%s: %q, %d bytes\n", info.Key, data, info.Size)

	_, err = b.Stat(ctx, "snapshot.json")
	fmt.Println("nothing stored:", errors.Is(err, sdk.ErrNotFound))
	// Output:
	// create twice: true
	// swap on the current tag: <nil>
	// swap on a stale tag: true
	// short stream: true
	// root.json: "v2", 2 bytes
	// nothing stored: true
}
