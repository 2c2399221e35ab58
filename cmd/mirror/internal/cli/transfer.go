package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) transferCommand() *cobra.Command {
	var opts mirror.TransferOptions
	cmd := &cobra.Command{
		Use:   "transfer-owner COMPONENT NEW-OWNER",
		Short: "Give a component to another owner of the index",
		Long: `Give COMPONENT to NEW-OWNER, an owner already in the index ('mirror grant'):
the component manifest is renewed (version+1) and signed by NEW-OWNER's keys
up to its threshold, and the index names NEW-OWNER, signed by the mirror's
keys (--key-dir). From then on only NEW-OWNER's keys publish the component.

Keys held here sign with --sign-with; otherwise a signing session listens on
--addr and prints its URL, and the new owner runs 'mirror sign URL -k KEY'.`,
		Example: `  mirror transfer-owner hello bob --sign-with ~/.tiup/keys/bob.json
  mirror transfer-owner hello bob --addr 0.0.0.0:8080`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Component, opts.NewOwner = args[0], args[1]
			opts.OnListen = a.printSessionURL
			opts.OnStatus = func(line string) { fmt.Fprintln(a.stdout, line) }
			res, err := mirror.TransferOwner(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Transferred %s from %s to %s (component manifest version %d)\n", res.Component, res.From, res.To, res.Version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Addr, "addr", mirror.DefaultSessionAddr, "host:port of the signing session (port 0 picks a free one)")
	f.StringSliceVar(&opts.SignWith, "sign-with", nil, "key file or signer URL of the new owner to sign with in this run")
	f.BoolVar(&opts.NoSession, "no-session", false, "fail instead of starting a signing session when --sign-with does not complete the signatures")
	return cmd
}
