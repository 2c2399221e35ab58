package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) initCommand() *cobra.Command {
	var opts mirror.InitOptions
	cmd := &cobra.Command{
		Use:   "init ADDRESS",
		Short: "Create an empty mirror with new root, index, snapshot and timestamp keys",
		Long: `Create an empty mirror: root.json (version 1, three root keys, threshold 3),
1.index.json with no owners, snapshot.json and timestamp.json, and six new
private keys. The keys go to ADDRESS/keys unless -k names another directory;
keeping them outside the mirror keeps them off anything that serves or copies it.`,
		Example: `  mirror init ./m
  mirror init ./m -k ~/secure/m-keys`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Address = args[0]
			res, err := mirror.Init(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Created mirror %s\nPrivate keys are in %s; keep them safe.\n", res.Address, res.KeyDir)
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.KeyDir, "key-dir", "k", "", "directory for the mirror's private keys (default ADDRESS/keys)")
	return cmd
}
