// Command backend-http is the mirror plugin that reads a mirror served over
// HTTP or HTTPS (addresses "http://..." and "https://..."). The mirror binary
// starts it; it is not meant to be run by hand.
package main

import (
	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Backend(httpbackend.Open)
}
