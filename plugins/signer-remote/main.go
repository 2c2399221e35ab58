// Command signer-remote is the mirror plugin that signs through a remote
// signer (`mirror signer serve`) over HTTPS with mutual TLS: the private key
// stays on the signer's machine, this process holds only a client
// certificate. The mirror binary starts it for remote+https:// references;
// it is not meant to be run by hand.
package main

import (
	"github.com/mirrorkit/mirror/plugins/signer-remote/remotesigner"
	"github.com/mirrorkit/mirror/sdk/serve"
)

func main() {
	serve.Signer(remotesigner.Open)
}
