package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) setCommand() *cobra.Command {
	var opts mirror.SetOptions
	var reset, silent bool
	cmd := &cobra.Command{
		Use:   "set ADDRESS",
		Short: "Make ADDRESS the mirror of this home, for mirror and the stock tiup client",
		Long: `Make ADDRESS the mirror of $TIUP_HOME: its root becomes the trust anchor
(bin/root.json), tiup.toml names it, and the cached manifests are cleared. The
stock tiup client then uses it too. Works on an empty home.`,
		Example: `  mirror set ./m
  mirror set https://mirror.example.com --root ./root.json
  mirror set --reset`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case reset:
				opts.Address = mirror.DefaultMirror
			case len(args) == 1:
				opts.Address = args[0]
			default:
				return fmt.Errorf("%w: set needs ADDRESS or --reset", mirror.ErrUsage)
			}
			res, err := mirror.Set(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.Insecure {
				fmt.Fprintf(a.stderr, "Warning: the root of %s came over plain http; check it with 'mirror verify'.\n", res.Address)
			}
			if !silent {
				fmt.Fprintf(a.stdout, "Mirror set to %s (root version %d)\n", res.Address, res.RootVersion)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.Root, "root", "r", "", "root.json to trust (path or URL; default: the mirror's own)")
	cmd.Flags().BoolVar(&reset, "reset", false, "go back to the default mirror")
	cmd.Flags().BoolVar(&silent, "silent", false, "print nothing on success")
	return cmd
}
