package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) showCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "show",
		Short:   "Print the address of the mirror in use",
		Example: "  mirror show\n  TIUP_MIRRORS=/tmp/m mirror show",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, a.env.Address())
			return nil
		},
	}
}
