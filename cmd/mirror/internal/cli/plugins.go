package cli

import (
	"fmt"
	"io"

	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/plugins/signer-local/localsigner"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remotesigner"
	"github.com/mirrorkit/mirror/sdk/serve"
)

// pluginCommand is the hidden command by which the binary re-executes
// itself as one of its built-in plugins, as Waypoint and Nomad do: one
// binary to ship, and every plugin still a separate process.
const pluginCommand = "__plugin"

// builtins are the plugins compiled into this binary, by name.
var builtins = map[string]func(){
	"backend-fs":    func() { serve.Backend(fsbackend.Open) },
	"backend-http":  func() { serve.Backend(httpbackend.Open) },
	"backend-oci":   func() { serve.Backend(ocibackend.Open) },
	"signer-local":  func() { serve.Signer(localsigner.Open) },
	"signer-remote": func() { serve.Signer(remotesigner.Open) },
}

func builtinNames() map[string]bool {
	names := map[string]bool{}
	for n := range builtins {
		names[n] = true
	}
	return names
}

// runPlugin serves a built-in plugin; it returns only when the host is done
// with it.
func runPlugin(name string, stderr io.Writer) int {
	main, ok := builtins[name]
	if !ok {
		fmt.Fprintf(stderr, "mirror: no built-in plugin %q\n", name)
		return ExitUsage
	}
	main()
	return ExitOK
}
