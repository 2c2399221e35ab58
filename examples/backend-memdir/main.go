// Command mirror-backend-memdir is an example third-party storage backend
// for the mirror tool, built outside the mirror module against its sdk.
//
// It serves addresses memdir://PATH (or a plain PATH under
// `mirror --backend memdir`): a mirror kept as flat files in the directory
// PATH, one file per object, named "o." followed by the object key with
// every "/" and other special byte URL-escaped, so the directory holds no
// tree at all. That layout is deliberately unlike the built-in fs backend:
// the point of the example is a backend the host knows nothing about.
//
// Install it by building it under that exact name into the plugin
// directory ($TIUP_HOME/mirrorkit/plugins, or $MIRROR_PLUGIN_DIR) or
// anywhere on PATH:
//
//	go build -o ~/.tiup/mirrorkit/plugins/mirror-backend-memdir ./backend-memdir
//
// The mirror binary starts it as a subprocess; it is not meant to be run by
// hand.
package main

import "github.com/mirrorkit/mirror/sdk/serve"

func main() {
	serve.Backend(open)
}
