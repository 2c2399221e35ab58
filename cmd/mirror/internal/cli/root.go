// Package cli wires the mirror verbs to cobra commands. Each RunE maps flags
// onto a core/mirror options struct and prints the result; exit codes are
// mapped once, in Run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/archive"
	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/core/pluginhost"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// Exit codes, documented in README.md. 2 is left to the Go runtime (a
// panic), so it never means anything of ours.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitUntrusted = 3
	ExitConflict  = 4
	ExitNotFound  = 5
	ExitUsage     = 64
	// ExitDenied is sysexits' EX_NOPERM, as ExitUsage is its EX_USAGE: a
	// registry or a signer refused the credentials (or asked for some),
	// or the system refused access to a file.
	ExitDenied = 77
)

// ExitCode maps an error to the documented exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, mirror.ErrUsage):
		return ExitUsage
	case errors.Is(err, trust.ErrUntrusted), errors.Is(err, sdk.ErrIntegrity),
		errors.Is(err, archive.ErrUnsafePath), errors.Is(err, archive.ErrTooLarge):
		return ExitUntrusted
	case errors.Is(err, sdk.ErrConflict):
		return ExitConflict
	case errors.Is(err, fs.ErrNotExist):
		return ExitNotFound
	case errors.Is(err, fs.ErrPermission):
		return ExitDenied
	default:
		return ExitError
	}
}

type app struct {
	env            *mirror.Env
	stdout, stderr io.Writer
	verbose        bool
	// backendOptions are the --backend-option flags, merged with
	// MIRROR_BACKEND_OPTIONS into env.BackendOptions by setup.
	backendOptions []string
}

// Run runs the tool with args and returns the exit code. Errors are printed
// as one line on stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == pluginCommand {
		return runPlugin(args[1], stderr)
	}
	a := &app{stdout: stdout, stderr: stderr, env: &mirror.Env{Clock: clock()}}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	// The plugins the Env keeps for the whole run (the --signer signers)
	// stop once the command is done, a serve included.
	a.env.Close()
	// cobra reports an unknown command with an untyped error; it is a usage
	// error all the same.
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = fmt.Errorf("%w: %v; see 'mirror --help'", mirror.ErrUsage, err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mirror: %s%s\n", errorToken(err), oneLine(err.Error()))
		return ExitCode(err)
	}
	return ExitOK
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mirror",
		Short: "Create and run private component mirrors in the TiUP v1 format",
		Long: `mirror creates, changes, serves and consumes private component mirrors in the
TiUP v1 format, so that the stock tiup client installs from them unchanged.

Every command finds its mirror in --mirror, else $TIUP_MIRRORS (for this run
only, never saved), else the mirror saved by 'mirror set'. An address is a
directory, a file:// URL, or another backend's URL; --backend picks a backend
plugin by name.

Exit codes: 0 done; 1 error; 3 untrusted (a signature, threshold, expiry,
version, length or hash check failed, or an archive entry tried to escape);
4 conflict (a concurrent change won; run again); 5 not found; 64 usage;
77 access denied (log in to the registry, or check the signer's allow-list).`,
		Example: `  mirror init ./m && mirror set ./m
  mirror genkey && mirror grant alice
  mirror package hello.sh --name hello --release v0.0.1
  mirror publish hello v0.0.1 package/hello-v0.0.1-linux-amd64.tar.gz hello.sh
  mirror install hello`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v; see '%s --help'", mirror.ErrUsage, err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.env.Mirror, "mirror", "", "mirror address (path, file://, http(s)://, oci://)")
	pf.StringVar(&a.env.Backend, "backend", "", "backend plugin to use, by name (fs, http, oci, or a third-party NAME for mirror-backend-NAME)")
	pf.StringArrayVar(&a.backendOptions, "backend-option", nil, "KEY=VALUE setting for every backend plugin opened, or NAME:KEY=VALUE for backend NAME only (repeatable; oci: chunk-size, mount-from, insecure, lease-ttl, lease-settle); wins over "+backendOptionsEnv)
	pf.StringVar(&a.env.KeyDir, "key-dir", "", "directory holding the mirror's role keys (default: what init recorded, else MIRROR/keys)")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log plugin activity to stderr")
	pf.StringArrayVar(&a.env.Signers, "signer", nil, "signer reference (e.g. remote+https://HOST:PORT?cert=..&key=..&ca=..) that signs for its key, role or owner, before the key directory (repeatable)")
	root.AddCommand(a.signerCommand())
	root.AddCommand(a.initCommand(), a.genkeyCommand(), a.setCommand(), a.showCommand(), a.grantCommand(),
		a.packageCommand(), a.publishCommand(), a.listCommand(), a.installCommand(), a.verifyCommand(),
		a.modifyCommand(), a.renewCommand(), a.signCommand(), a.cloneCommand(), a.mergeCommand(),
		a.rotateCommand(), a.transferCommand(), a.serveCommand())
	return root
}

// setup builds the environment once the flags are parsed.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	home := os.Getenv("TIUP_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("find home directory: %w; set TIUP_HOME", err)
		}
		home = filepath.Join(h, ".tiup")
	}
	a.env.Home = home
	a.env.EnvMirror = os.Getenv("TIUP_MIRRORS")
	opts, err := backendOptions(os.Getenv(backendOptionsEnv), a.backendOptions)
	if err != nil {
		return err
	}
	a.env.BackendOptions = opts
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	logger := hclog.NewNullLogger()
	if a.verbose {
		logger = hclog.New(&hclog.LoggerOptions{Name: "mirror", Output: a.stderr, Level: hclog.Debug})
	}
	pluginDir := os.Getenv("MIRROR_PLUGIN_DIR")
	if pluginDir == "" {
		pluginDir = filepath.Join(home, "mirrorkit", "plugins")
	}
	// A pin that cannot be read must stop the run: starting the plugin
	// unchecked would defeat the pin.
	pinsFile := filepath.Join(home, "mirrorkit.toml")
	pins, err := pluginhost.ReadPins(pinsFile)
	if err != nil {
		return err
	}
	a.env.Plugins = &pluginhost.Host{Executable: exe, Builtins: builtinNames(), PluginDir: pluginDir, Logger: logger, Pins: pins, PinsFile: pinsFile}
	return nil
}

// usageArgs wraps cobra's argument validators so that their errors carry
// ErrUsage and say where help is.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return fmt.Errorf("%w: %s %v; see '%s --help'", mirror.ErrUsage, cmd.Name(), err, cmd.CommandPath())
		}
		return nil
	}
}
