package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) genkeyCommand() *cobra.Command {
	var opts mirror.GenkeyOptions
	var public, save bool
	cmd := &cobra.Command{
		Use:   "genkey",
		Short: "Generate an owner key in $TIUP_HOME/keys",
		Long: `Generate an RSA-2048 key in $TIUP_HOME/keys/NAME.json (mode 0600), in the
format stock tiup reads and writes. An existing key is never overwritten.`,
		Example: `  mirror genkey
  mirror genkey -n bob --public --save`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if save {
				wd, err := os.Getwd()
				if err != nil {
					return err
				}
				opts.SaveDir = wd
			}
			res, err := mirror.Genkey(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.Existed {
				fmt.Fprintf(a.stderr, "Key %s exists already; left as it is.\n", res.Path)
			} else {
				fmt.Fprintf(a.stdout, "Generated key %s\n", res.Path)
			}
			if public {
				fmt.Fprintf(a.stdout, "KeyID: %s\n%s\n", res.KeyID, res.Public)
			}
			if res.Saved != "" {
				fmt.Fprintf(a.stdout, "Public key saved to %s\n", res.Saved)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "private", "name of the key file in $TIUP_HOME/keys")
	cmd.Flags().BoolVarP(&public, "public", "p", false, "print the key ID and the public key")
	cmd.Flags().BoolVar(&save, "save", false, "also write the public key to ./ID16-public.json")
	return cmd
}
