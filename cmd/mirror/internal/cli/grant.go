package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) grantCommand() *cobra.Command {
	var opts mirror.GrantOptions
	cmd := &cobra.Command{
		Use:   "grant OWNER",
		Short: "Add a component owner with one key to the mirror's index",
		Long: `Add OWNER to the index with the public half of KEY (threshold 1), so that
OWNER can publish components. Signed by the mirror's index, snapshot and
timestamp keys.`,
		Example: `  mirror grant alice
  mirror grant bob -n 'Bob Builder' -k ./bob-public.json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Owner = args[0]
			v, err := mirror.Grant(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Granted owner %s (index version %d)\n", opts.Owner, v)
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "display name of the owner (default OWNER)")
	cmd.Flags().StringVarP(&opts.Key, "key", "k", "", "the owner's key file, private or public (default $TIUP_HOME/keys/private.json)")
	return cmd
}
