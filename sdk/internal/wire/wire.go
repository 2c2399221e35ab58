// Package wire is the plugin protocol shared by sdk/serve and sdk/host: the
// generated gRPC code for mirror.proto, the go-plugin handshake, the
// conversions between sdk types and messages, and the table that carries
// sentinel errors across the process boundary.
package wire

//go:generate ./gen.sh

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mirrorkit/mirror/sdk"
)

// ChunkSize is the largest data payload of one Get or Put message. It stays
// well under gRPC's default 4 MiB message limit.
const ChunkSize = 1 << 20

// Plugin names in the go-plugin plugin set.
const (
	// BackendPluginName dispenses the Backend service.
	BackendPluginName = "backend"
	// SignerPluginName dispenses the Signer service.
	SignerPluginName = "signer"
)

// Handshake returns the go-plugin handshake both sides must agree on for
// protocol version v. The cookie only keeps a plugin from being run by hand
// by mistake; it is not a security measure.
func Handshake(v int) plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  uint(v),
		MagicCookieKey:   "MIRRORKIT_PLUGIN",
		MagicCookieValue: "b5c1e0f0-mirrorkit",
	}
}

// GRPCPlugin adapts one gRPC service to go-plugin. The plugin side sets
// Register, the host side sets NewClient; go-plugin calls only the half it needs.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Register adds the service to the plugin's gRPC server.
	Register func(s *grpc.Server)
	// NewClient wraps the host's connection to the plugin.
	NewClient func(cc *grpc.ClientConn) any
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the service on the plugin side.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Register == nil {
		return errors.New("serve plugin: no service to register on the host side")
	}
	p.Register(s)
	return nil
}

// GRPCClient wraps the connection on the host side.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	if p.NewClient == nil {
		return nil, errors.New("dispense plugin: no client on the plugin side")
	}
	return p.NewClient(cc), nil
}

// ConfigToProto converts an sdk.Config.
func ConfigToProto(c sdk.Config) *Config {
	return &Config{Address: c.Address, Options: c.Options}
}

// ConfigFromProto converts a Config message.
func ConfigFromProto(c *Config) sdk.Config {
	return sdk.Config{Address: c.GetAddress(), Options: c.GetOptions()}
}

// CapsToProto converts sdk.Capabilities.
func CapsToProto(c sdk.Capabilities) *Capabilities {
	return &Capabilities{
		Write:          c.Write,
		List:           c.List,
		Delete:         c.Delete,
		ConditionalPut: c.ConditionalPut,
		Lock:           c.Lock,
		LocalFiles:     c.LocalFiles,
		Stage:          c.Stage,
	}
}

// CapsFromProto converts a Capabilities message.
func CapsFromProto(c *Capabilities) sdk.Capabilities {
	return sdk.Capabilities{
		Write:          c.GetWrite(),
		List:           c.GetList(),
		Delete:         c.GetDelete(),
		ConditionalPut: c.GetConditionalPut(),
		Lock:           c.GetLock(),
		LocalFiles:     c.GetLocalFiles(),
		Stage:          c.GetStage(),
	}
}

// InfoToProto converts sdk.ObjectInfo; a zero ModTime stays unset so it
// comes back as the zero time rather than the Unix epoch.
func InfoToProto(i sdk.ObjectInfo) *ObjectInfo {
	m := &ObjectInfo{Key: i.Key, Size: i.Size, Etag: i.ETag}
	if !i.ModTime.IsZero() {
		m.ModTime = timestamppb.New(i.ModTime)
	}
	return m
}

// InfoFromProto converts an ObjectInfo message.
func InfoFromProto(m *ObjectInfo) sdk.ObjectInfo {
	i := sdk.ObjectInfo{Key: m.GetKey(), Size: m.GetSize(), ETag: m.GetEtag()}
	if m.GetModTime() != nil {
		i.ModTime = m.GetModTime().AsTime()
	}
	return i
}

// PutOptionsToProto converts sdk.PutOptions.
func PutOptionsToProto(o sdk.PutOptions) *PutOptions {
	return &PutOptions{
		Size:        o.Size,
		SizeKnown:   o.SizeKnown,
		Sha256:      o.SHA256,
		IfMatch:     o.IfMatch,
		IfNoneMatch: o.IfNoneMatch,
		Staged:      o.Staged,
	}
}

// PutOptionsFromProto converts a PutOptions message.
func PutOptionsFromProto(m *PutOptions) sdk.PutOptions {
	return sdk.PutOptions{
		Size:        m.GetSize(),
		SizeKnown:   m.GetSizeKnown(),
		SHA256:      m.GetSha256(),
		IfMatch:     m.GetIfMatch(),
		IfNoneMatch: m.GetIfNoneMatch(),
		Staged:      m.GetStaged(),
	}
}

// PublicKeyToProto converts an sdk.PublicKey.
func PublicKeyToProto(k sdk.PublicKey) *PublicKey {
	return &PublicKey{KeyType: k.KeyType, Scheme: k.Scheme, Pem: k.PEM}
}

// PublicKeyFromProto converts a PublicKey message.
func PublicKeyFromProto(m *PublicKey) sdk.PublicKey {
	return sdk.PublicKey{KeyType: m.GetKeyType(), Scheme: m.GetScheme(), PEM: m.GetPem()}
}

// CallerVerifiesHeader is the gRPC metadata key that carries
// sdk.WithCallerVerifies on a Get.
const CallerVerifiesHeader = "mirror-caller-verifies"
