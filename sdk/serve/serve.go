// Package serve turns an sdk.Backend or sdk.Signer implementation into a
// mirror plugin: the whole main of a plugin is one call, serve.Backend or
// serve.Signer, which speaks the go-plugin gRPC protocol on the process's
// stdio until the host lets go.
package serve

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// Backend serves the backend that f opens as this process's plugin. It
// returns when the host closes the plugin, and the process exits soon after
// the host is gone; a plugin's main calls it last.
func Backend(f sdk.BackendFactory) {
	exitWithHost()
	plugin.Serve(BackendConfig(f))
}

// Signer serves the signer that f opens as this process's plugin. It
// returns when the host closes the plugin; a plugin's main calls it last.
func Signer(f sdk.SignerFactory) {
	exitWithHost()
	plugin.Serve(SignerConfig(f))
}

// BackendConfig returns the go-plugin configuration Backend serves with,
// for callers that adjust it before plugin.Serve: tests serving in-process
// (ServeConfig.Test) or pretending to speak another protocol version.
func BackendConfig(f sdk.BackendFactory) *plugin.ServeConfig {
	p := &wire.GRPCPlugin{Register: func(s *grpc.Server) {
		wire.RegisterBackendServer(s, NewBackendServer(f))
	}}
	return config(wire.BackendPluginName, p)
}

// SignerConfig returns the go-plugin configuration Signer serves with; see
// BackendConfig.
func SignerConfig(f sdk.SignerFactory) *plugin.ServeConfig {
	p := &wire.GRPCPlugin{Register: func(s *grpc.Server) {
		wire.RegisterSignerServer(s, NewSignerServer(f))
	}}
	return config(wire.SignerPluginName, p)
}

func config(name string, p plugin.Plugin) *plugin.ServeConfig {
	return &plugin.ServeConfig{
		HandshakeConfig: wire.Handshake(sdk.ProtocolVersion),
		// VersionedPlugins, not Plugins, so a host on another protocol
		// version gets go-plugin's error naming both versions.
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {name: p},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, wire.ServerOptions()...))
		},
		Logger: Logger(name),
	}
}

// Logger returns a logger for plugin code. It writes JSON lines to stderr,
// which go-plugin parses and forwards to the host's logger with their
// levels and fields intact.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}
