package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) signCommand() *cobra.Command {
	var opts mirror.SignOptions
	cmd := &cobra.Command{
		Use:   "sign {FILE | URL}",
		Short: "Add a signature to a manifest file or to a signing session",
		Long: `Sign the manifest in FILE with KEY (-k, repeatable) and write the file back in
canonical form, replacing it atomically. A key signs a file only once. Use it
to collect the signatures of several owners or root key holders on one file.
If the signed part is not canonical JSON it is re-encoded first, as stock
tiup does, which invalidates the signatures already on it.

With the URL of a signing session ('mirror rotate', 'mirror transfer-owner',
or stock tiup's), fetch the manifest it serves, sign it and send it back;
each request gives up after --timeout. A refusal is reported with the
session's message.`,
		Example: `  mirror sign 3.hello.json
  mirror sign 2.root.json -k ./keys/4e7a9f2b30c1d5e8-root.json
  mirror sign http://10.0.0.5:8080/rotate/1bXq3kZ -k ./keys/4e7a9f2b30c1d5e8-root.json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			res, err := mirror.Sign(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.Recanonicalized {
				fmt.Fprintf(a.stderr, "note: the signed part of %s was not canonical and was re-encoded; earlier signatures on it no longer verify\n", res.File)
			}
			for _, id := range res.KeyIDs {
				fmt.Fprintf(a.stdout, "Signed %s with key %s\n", res.File, id[:16])
			}
			fmt.Fprintf(a.stdout, "%s now has %d signature(s)\n", res.File, res.Signatures)
			return nil
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", mirror.DefaultSignTimeout, "time each request to a signing session URL may take")
	cmd.Flags().StringSliceVarP(&opts.Keys, "key", "k", nil, "key file or signer URL (default $TIUP_HOME/keys/private.json)")
	return cmd
}
