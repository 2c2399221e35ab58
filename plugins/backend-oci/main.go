// Command backend-oci is the mirror plugin that stores a mirror in an OCI
// registry (addresses "oci://REGISTRY/REPO" and, for plain-HTTP registries,
// "oci+http://REGISTRY/REPO"). The mirror binary starts it; it is not meant
// to be run by hand. Built on its own it is mirror-backend-oci.
package main

import (
	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Backend(ocibackend.Open)
}
