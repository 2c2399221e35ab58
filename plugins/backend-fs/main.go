// Command backend-fs is the mirror plugin that stores a mirror in a local
// directory (addresses "/path" and "file:///path"). The mirror binary starts
// it; it is not meant to be run by hand.
package main

import (
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Backend(fsbackend.Open)
}
