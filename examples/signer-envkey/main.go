// Command mirror-signer-envkey is an example third-party signer for the
// mirror tool, built outside the mirror module against its sdk.
//
// It signs with a TiUP private key file named in the key reference,
// envkey://PATH, or, when the reference is envkey:// alone, by the
// environment variable MIRROR_ENVKEY_FILE, so a CI job can hand the key's
// location in through its environment:
//
//	mirror publish hello v1.0.0 hello.tar.gz hello -k envkey:///secrets/alice.json
//	MIRROR_ENVKEY_FILE=/secrets/alice.json mirror publish ... -k envkey://
//
// Install it by building it under that exact name into the plugin
// directory ($TIUP_HOME/mirrorkit/plugins, or $MIRROR_PLUGIN_DIR) or
// anywhere on PATH:
//
//	go build -o ~/.tiup/mirrorkit/plugins/mirror-signer-envkey ./signer-envkey
//
// The private key stays in this process: the host receives only the public
// key and signatures.
package main

import "github.com/mirrorkit/mirror/sdk/serve"

func main() {
	serve.Signer(open)
}
