// Package host starts mirror plugins and hands back clients that implement
// the sdk interfaces over go-plugin's gRPC protocol: Backend (sdk.Backend,
// sdk.LocalFiler and sdk.Stager) and Signer (sdk.Signer). Errors keep the
// plugin's message and wrap the sdk sentinel they stand for, so errors.Is
// works as it would in-process.
package host

import (
	"context"
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

// DefaultTimeout bounds how long the host waits for a plugin: for the
// answer to one call, or for the next message of a stream (a transfer that
// keeps moving may take as long as it needs). A plugin stuck in a system
// call or a dead network must not hang the command forever. Waiting for a
// backend's lock is bounded by the caller's context instead: a writer holds
// it as long as its commit takes.
const DefaultTimeout = 5 * time.Minute

// EnvTimeout names the environment variable that replaces DefaultTimeout:
// a Go duration such as "30s"; "0" waits forever.
const EnvTimeout = "MIRROR_PLUGIN_TIMEOUT"

// Caps on one message from a plugin. go-plugin lifts gRPC's own cap to
// 2 GiB, and a plugin is untrusted input like the network: an answer that
// can only be small (object info, a path, a public key, a signature) gets
// a small cap, a Get chunk one chunk and its framing.
const (
	maxSmallAnswer = 64 << 10
	maxChunkAnswer = wire.ChunkSize + 64<<10
)

var (
	smallAnswer = grpc.MaxCallRecvMsgSize(maxSmallAnswer)
	chunkAnswer = grpc.MaxCallRecvMsgSize(maxChunkAnswer)
)

// ErrTimeout reports a plugin that did not answer within the timeout. It
// wraps context.DeadlineExceeded.
var ErrTimeout = fmt.Errorf("plugin did not answer in time: %w", context.DeadlineExceeded)

// timeoutFromEnv is DefaultTimeout, or what EnvTimeout says.
func timeoutFromEnv() time.Duration {
	if s := os.Getenv(EnvTimeout); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return d
		}
	}
	return DefaultTimeout
}

// conn is what Backend and Signer share: the plugin process and the rules
// for turning its gRPC errors into host errors.
type conn struct {
	kind    string // "backend" or "signer"
	name    string // the command, for messages
	proc    process
	closed  atomic.Bool
	timeout time.Duration // see DefaultTimeout; 0 waits forever
}

// process is the far end of a conn: a plugin subprocess, or a server in
// this process for in-process tests.
type process interface {
	exited() bool
	stop()       // graceful
	kill() error // abrupt, as a crash
}

// subprocess is a plugin run by go-plugin.
type subprocess struct {
	client *plugin.Client
	// sockDir holds the plugin's Unix socket; see start.
	sockDir string
}

func (p subprocess) exited() bool { return p.client.Exited() }

// stop asks the plugin to exit and kills it if it has not within two
// seconds (go-plugin's grace period).
func (p subprocess) stop() {
	p.client.Kill()
	os.RemoveAll(p.sockDir)
}

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
	// The plugin listens on a Unix socket in a directory only this user
	// can enter (os.MkdirTemp makes it 0700), whatever the umask: no other
	// user can connect, and a process of this user could read the keys
	// and the mirror directly anyway. So go-plugin's automatic mutual TLS
	// guards nothing here, and it cost a tenth of a clone's CPU time.
	sockDir, err := os.MkdirTemp("", "mirror-plugin-")
	if err != nil {
		return nil, nil, fmt.Errorf("start %s plugin: %w", kind, err)
	}
	cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+sockDir)
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
		Logger:           logger,
		GRPCDialOptions:  wire.DialOptions(),
	})
	c := &conn{kind: kind, name: commandName(cmd), proc: subprocess{client, sockDir}, timeout: timeoutFromEnv()}
	cp, err := client.Client()
	if err != nil {
		c.proc.stop()
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
	if s.Code() == codes.ResourceExhausted {
		// The host's own cap on an answer's size (maxSmallAnswer,
		// maxChunkAnswer): the plugin sent more than the call can hold.
		return fmt.Errorf("%s plugin %s: the answer is over the size limit: %s", c.kind, c.name, s.Message())
	}
	// The transport's own failures arrive as Unavailable or Internal: the
	// connection broke. Any other code is the plugin's: one of the error
	// table, Unknown, or one a newer sdk added to the table, which this
	// host takes as a plain error rather than as a dead plugin.
	if s.Code() == codes.Unavailable || s.Code() == codes.Internal {
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

// call bounds one unary call by the timeout, plus extra for a call whose
// work grows with its size. The bound is a timer that cancels the call,
// not a deadline: a deadline would travel to the plugin, whose gRPC server
// could then cut the call first, and the host could not tell that reset
// from any other.
func (c *conn) call(ctx context.Context, extra time.Duration) (context.Context, *callGuard) {
	cctx, cancel := context.WithCancel(ctx)
	g := &callGuard{c: c, cancel: cancel, wd: c.watchFor(cancel, c.timeout+extra)}
	g.wd.arm()
	return cctx, g
}

// callGuard is one bounded call: a watchdog armed once, for the whole call.
type callGuard struct {
	c      *conn
	cancel context.CancelFunc
	wd     *watchdog
}

// end releases the call and returns its error in the host's form (see
// wrap), or one saying the plugin did not answer in time.
func (g *callGuard) end(what string, err error) error {
	g.wd.disarm()
	g.cancel()
	return g.wd.check(g.c, what, g.c.wrap(err))
}

func (c *conn) timeoutError(what string) error {
	return fmt.Errorf("%s plugin %s: %s: no answer within %v; the plugin is stuck (set %s to wait longer): %w", c.kind, c.name, what, c.timeout, EnvTimeout, ErrTimeout)
}

// watchdog cancels a stream whose plugin goes quiet: armed while the host
// waits on the plugin, disarmed as soon as it answers, so a slow reader
// on the host's side never trips it.
type watchdog struct {
	timeout time.Duration
	t       *time.Timer
	fired   atomic.Bool
}

// watch returns a watchdog that calls cancel when the plugin stays quiet
// for the timeout; nil when the timeout is off. A nil watchdog's methods
// do nothing.
func (c *conn) watch(cancel context.CancelFunc) *watchdog {
	return c.watchFor(cancel, c.timeout)
}

// watchFor is watch with a timeout of its own (a call whose work grows with
// its size gets longer); nil when the conn's timeout is off.
func (c *conn) watchFor(cancel context.CancelFunc, timeout time.Duration) *watchdog {
	if c.timeout <= 0 {
		return nil
	}
	w := &watchdog{timeout: timeout}
	w.t = time.AfterFunc(time.Hour, func() {
		w.fired.Store(true)
		cancel()
	})
	w.t.Stop()
	return w
}

func (w *watchdog) arm() {
	if w != nil {
		w.t.Reset(w.timeout)
	}
}

func (w *watchdog) disarm() {
	if w != nil {
		w.t.Stop()
	}
}

// check turns err into a timeout error when the watchdog cut the stream.
func (w *watchdog) check(c *conn, what string, err error) error {
	if err != nil && w != nil && w.fired.Load() {
		return c.timeoutError(what)
	}
	return err
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
