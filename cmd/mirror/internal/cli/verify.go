package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/core/trust"
)

func (a *app) verifyCommand() *cobra.Command {
	var opts mirror.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify [ADDRESS]",
		Short: "Check every manifest and every tarball of a mirror",
		Long: `Check a whole mirror (default: the current one): the root chain from its
root.json (or --root), timestamp, snapshot, index, every component manifest and
every tarball they name, against signed lengths and hashes. Every problem is
listed, one per line; the exit code is 3 when there is any.`,
		Example: `  mirror verify
  mirror verify ./m --root ./trusted-root.json`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Address = args[0]
			}
			res, err := mirror.Verify(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			for _, p := range res.Problems {
				fmt.Fprintf(a.stdout, "problem: %s: %s\n", p.File, p.Message)
			}
			if len(res.Problems) > 0 {
				return fmt.Errorf("%w: verify %s: %d problem(s) found", trust.ErrUntrusted, res.Address, len(res.Problems))
			}
			fmt.Fprintf(a.stdout, "%s verified: root version %d, %d manifests, %d components, %d tarballs\n",
				res.Address, res.RootVersion, res.Manifests, res.Components, res.Tarballs)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "", "root.json to trust (default the mirror's own)")
	cmd.Flags().IntVar(&opts.Jobs, "jobs", 0, "tarballs checked at once (default the number of CPUs)")
	return cmd
}
