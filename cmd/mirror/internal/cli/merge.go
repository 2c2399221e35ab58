package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) mergeCommand() *cobra.Command {
	var opts mirror.MergeOptions
	cmd := &cobra.Command{
		Use:   "merge ADDRESS...",
		Short: "Merge the components of other mirrors into the current one",
		Long: `Copy into the current mirror every version of every component of the mirrors
at ADDRESS... that the current mirror lacks, with its tarball. Yanked
components and versions are left out.

Each source is verified first, from its own root.json or the --root file given
for it (one --root per source, in order), and every tarball as it streams; a
source that does not verify is refused (exit 3) and nothing changes. Entry,
hashes, length and release time of each version are kept. A version both
mirrors have with other hashes refuses the whole merge (exit 1).

A component new to the current mirror keeps the source's description and its
standalone and hidden flags, and belongs to --owner (an owner of the current
mirror), else to the owner of the first -k key. An existing component keeps
its owner and description (the source's fills an empty one). The -k keys
(repeatable; default $TIUP_HOME/keys/private.json) must meet the threshold of
the owner of every component that changes.

A source's nightly is merged only when it is the source's current nightly and
the current mirror's is not newer; it then becomes the current nightly.

The whole merge is one transaction: one new manifest per changed component,
at most one new index, one snapshot and one timestamp.`,
		Example: `  mirror merge ../other-mirror
  mirror merge ./a ./b --root ./a-root.json --root ./b-root.json -k ~/.tiup/keys/private.json
  mirror merge ./offline --owner alice`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Sources = args
			res, err := mirror.Merge(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			for _, s := range res.Sources {
				fmt.Fprintf(a.stdout, "merged %d versions of %d components from %s\n", s.Versions, s.Components, s.Address)
			}
			if res.Unchanged {
				fmt.Fprintln(a.stdout, "the current mirror already has everything; nothing to do")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Owner, "owner", "", "owner of the components new to the current mirror (default the owner of the first -k key)")
	f.StringSliceVarP(&opts.Keys, "key", "k", nil, "owner key file or signer URL (default $TIUP_HOME/keys/private.json)")
	f.StringArrayVar(&opts.Roots, "root", nil, "root.json to trust for a source, one per source in order (default each source's own)")
	return cmd
}
