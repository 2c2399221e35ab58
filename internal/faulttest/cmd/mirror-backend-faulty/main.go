// Command mirror-backend-faulty is a test-only storage plugin: the fs
// backend with the faults of $MIRROR_FAULT_PLAN injected (crash, error,
// torn or dropped writes, corrupted reads, hangs, a page-cache model). The
// attack suite in internal/faulttest builds it into a plugin directory and
// points the mirror binary at faulty:///abs/dir. Never ship it.
package main

import (
	"github.com/mirrorkit/mirror/internal/faulttest"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Backend(faulttest.OpenBackend)
}
