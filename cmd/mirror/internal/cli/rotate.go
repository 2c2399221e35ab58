package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) rotateCommand() *cobra.Command {
	var opts mirror.RotateOptions
	var noEdit bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the mirror's root with a new version signed by the old and the new root keys",
		Long: `Make root version N+1 and commit it as N+1.root.json; snapshot and timestamp
are re-signed, and clients follow the chain from the root.json they trust.

The new root comes from the flags (--expires, --add-key, --remove-key,
--threshold), or, when none is given and $EDITOR is set, from editing the
current root, already at the next version, in $EDITOR. Only the root role may
change.

It needs signatures by the current root keys that stay in the new root, up to
the current threshold, and by the new root keys, up to the new threshold.
Keys held here sign with --sign-with; for the others a signing session
listens on --addr and prints its URL, the key holders run
'mirror sign URL -k KEY' wherever their keys are, and each signature is
shown as it arrives. The rotation commits once both thresholds are met;
interrupting it writes nothing.`,
		Example: `  mirror rotate --add-key ./carol-public.json --sign-with ./m/keys/3f2a9c7e10b4d5e6-root.json
  mirror rotate --addr 0.0.0.0:8080 --remove-key 3f2a9c7e10b4d5e6 --add-key new.json --threshold 2
  EDITOR=vim mirror rotate`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			edited := flags.Changed("expires") || flags.Changed("add-key") || flags.Changed("remove-key") || flags.Changed("threshold")
			if editor := os.Getenv("EDITOR"); editor != "" && !edited && !noEdit {
				opts.Edit = func(ctx context.Context, path string) error { return runEditor(ctx, editor, path) }
			}
			opts.OnListen = a.printSessionURL
			opts.OnStatus = func(line string) { fmt.Fprintln(a.stdout, line) }
			res, err := mirror.Rotate(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Rotated the root to version %d (%d root keys, threshold %d, expires %s), signed by %d key(s)\n",
				res.Version, res.Keys, res.Threshold, res.Expires, len(res.Signers))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Addr, "addr", mirror.DefaultSessionAddr, "host:port of the signing session (port 0 picks a free one)")
	f.StringVar(&opts.Expires, "expires", "", "expiry of the new root: RFC 3339 or a lifetime such as 365d (default 365d, never before the current root's)")
	f.StringSliceVar(&opts.AddKeys, "add-key", nil, "key file (private or public) to add to the root role")
	f.StringSliceVar(&opts.RemoveKeys, "remove-key", nil, "ID (full or first 16 hex digits) of a root key to remove")
	f.Uint64Var(&opts.Threshold, "threshold", 0, "threshold of the new root role (default the current one)")
	f.StringSliceVar(&opts.SignWith, "sign-with", nil, "root key file or signer URL to sign with in this run")
	f.BoolVar(&noEdit, "no-edit", false, "do not open $EDITOR; make the new root from the flags alone")
	f.BoolVar(&opts.NoSession, "no-session", false, "fail instead of starting a signing session when --sign-with does not complete the signatures")
	return cmd
}

// printSessionURL prints a signing session's URL and how to sign there. It
// is printed whether or not stdout is a terminal (stock tiup prints it only
// on one), so scripts can pick it up.
func (a *app) printSessionURL(url string) {
	fmt.Fprintf(a.stdout, "Signing session at %s\n", url)
	fmt.Fprintf(a.stdout, "Sign with: mirror sign %s -k KEYFILE\n", url)
}

// runEditor opens path in $EDITOR, which may carry arguments ("code -w").
func runEditor(ctx context.Context, editor, path string) error {
	argv := strings.Fields(editor)
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], path)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run $EDITOR %s: %w", editor, err)
	}
	return nil
}
