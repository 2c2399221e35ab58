// Package host starts mirror plugins and hands back clients that implement
// the sdk interfaces over go-plugin's gRPC protocol: Backend (sdk.Backend and
// sdk.LocalFiler) and Signer (sdk.Signer). Errors keep the plugin's message
// and wrap the sdk sentinel they stand for, so errors.Is works as it would
// in-process.
package host

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// ErrExited reports that a plugin process died or closed its connection
// while the host still needed it. Errors wrapping it read
// "backend plugin exited: ..." or "signer plugin exited: ...".
var ErrExited = errors.New("plugin exited")

// exitWait bounds how long an error waits for go-plugin to notice that the
// process is gone, so that a crash is reported as one; the connection
// usually breaks a moment before the exit is reaped.
const exitWait = time.Second

// conn is what Backend and Signer share: the plugin process and the rules
// for turning its gRPC errors into host errors.
type conn struct {
	kind   string // "backend" or "signer"
	name   string // the command, for messages
	proc   process
	closed atomic.Bool
}

// process is the far end of a conn: a plugin subprocess, or a server in
// this process for in-process tests.
type process interface {
	exited() bool
	stop()       // graceful
	kill() error // abrupt, as a crash
}

// subprocess is a plugin run by go-plugin.
type subprocess struct{ client *plugin.Client }

func (p subprocess) exited() bool { return p.client.Exited() }

// stop asks the plugin to exit and kills it if it has not within two
// seconds (go-plugin's grace period).
func (p subprocess) stop() { p.client.Kill() }

// kill sends SIGKILL to the plugin process.
func (p subprocess) kill() error {
	rc := p.client.ReattachConfig()
	if rc == nil || rc.Pid == 0 {
		return errors.New("not running")
	}
	proc, err := os.FindProcess(rc.Pid)
	if err != nil {
		return err
	}
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// start launches cmd, checks the handshake and dispenses kind's client.
func start(cmd *exec.Cmd, kind string, newClient func(*grpc.ClientConn) any, logger hclog.Logger) (*conn, any, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: wire.Handshake(sdk.ProtocolVersion),
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {kind: &wire.GRPCPlugin{NewClient: newClient}},
		},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          false,
		SyncStdout:       io.Discard,
		SyncStderr:       io.Discard,
		AutoMTLS:         true,
		Logger:           logger,
	})
	c := &conn{kind: kind, name: commandName(cmd), proc: subprocess{client}}
	cp, err := client.Client()
	if err != nil {
		client.Kill()
		if strings.Contains(err.Error(), "incompatible API version") {
			return nil, nil, fmt.Errorf("start %s plugin %s: protocol version mismatch, host speaks %d: %w", kind, c.name, sdk.ProtocolVersion, err)
		}
		return nil, nil, fmt.Errorf("start %s plugin %s: %w", kind, c.name, err)
	}
	raw, err := cp.Dispense(kind)
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("dispense %s plugin %s: %w", kind, c.name, err)
	}
	return c, raw, nil
}

// commandName is the command line shown in messages: the program's base
// name and its arguments (a builtin plugin's name is an argument).
func commandName(cmd *exec.Cmd) string {
	args := append([]string{filepath.Base(cmd.Path)}, cmd.Args[min(1, len(cmd.Args)):]...)
	return strings.Join(args, " ")
}

// check refuses calls on a closed client up front, so they fail with a
// plain message instead of gRPC's "the client connection is closing".
func (c *conn) check() error {
	if c.closed.Load() {
		return fmt.Errorf("%s plugin %s: %w", c.kind, c.name, fs.ErrClosed)
	}
	return nil
}

// wrap turns an error from a gRPC call into the host's form: a sentinel
// error with the plugin's message, or ErrExited when the process is gone.
func (c *conn) wrap(err error) error {
	if err == nil {
		return nil
	}
	if c.closed.Load() {
		return fmt.Errorf("%s plugin %s: %w", c.kind, c.name, fs.ErrClosed)
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	// Plugins only ever send the codes of the error table and Unknown; any
	// other code came from the transport, which means the connection broke.
	if s.Code() != codes.Unknown && wire.SentinelFor(s.Code()) == nil {
		if c.waitExited() {
			return fmt.Errorf("%s %w: %s", c.kind, ErrExited, s.Message())
		}
		return fmt.Errorf("%s plugin %s: connection lost: %s", c.kind, c.name, s.Message())
	}
	return wire.FromStatus(err)
}

func (c *conn) waitExited() bool {
	timeout := time.NewTimer(exitWait)
	defer timeout.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !c.proc.exited() {
		select {
		case <-timeout.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// close stops the plugin gracefully.
func (c *conn) close() error {
	c.closed.Store(true)
	c.proc.stop()
	return nil
}

// kill ends the plugin abruptly, as a crash would.
func (c *conn) kill() error {
	if err := c.proc.kill(); err != nil {
		return fmt.Errorf("kill %s plugin %s: %w", c.kind, c.name, err)
	}
	return nil
}
