// Command mirror-signer-faulty is a test-only signer plugin: the local
// signer with the faults of $MIRROR_FAULT_PLAN injected (a crash in the
// middle of Sign, a hang, a signature over other bytes, garbage, 10 MB).
// The attack suite in internal/faulttest builds it into a plugin directory
// and signs with -k faulty:///abs/key.json. Never ship it.
package main

import (
	"github.com/mirrorkit/mirror/internal/faulttest"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Signer(faulttest.OpenSigner)
}
