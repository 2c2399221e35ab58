// Command signer-local is the mirror plugin that signs with a TiUP private
// key file. The key stays inside this process; the host sees only the public
// key and signatures. The mirror binary starts it; it is not meant to be run
// by hand.
package main

import (
	"github.com/mirrorkit/mirror/plugins/signer-local/localsigner"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Signer(localsigner.Open)
}
