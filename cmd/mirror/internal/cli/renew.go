package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) renewCommand() *cobra.Command {
	var opts mirror.RenewOptions
	cmd := &cobra.Command{
		Use:   "renew {COMPONENT | --role timestamp|snapshot|index}",
		Short: "Extend the expiry of a component manifest or of the mirror's own manifests",
		Long: `Renew a component manifest: bump its version and extend its expiry to
--days from now (default 5 years), signed by the owner's key (-k). Expired
manifests can be renewed.

With --role, renew one of the mirror's own manifests instead, signed by the
mirror's keys (--key-dir): timestamp and snapshot (default 30 days) or index
(default 365 days). A mirror nobody publishes to goes stale once its
timestamp and snapshot expire; renewing both with a long --days keeps it
usable. The root is changed with 'mirror rotate' instead.

An expiry is never shortened: when --days asks for an earlier one, the later
expiry is kept and a note says so.`,
		Example: `  mirror renew hello
  mirror renew hello --days 30 -k ~/.tiup/keys/bob.json
  mirror renew --role timestamp --days 400 && mirror renew --role snapshot --days 400
  mirror renew --role index`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Component = args[0]
			}
			res, err := mirror.Renew(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.KeptLater {
				fmt.Fprintf(a.stderr, "note: %s expires at %s, later than the %s asked for; renewing never shortens an expiry\n", res.Name, res.Expires, res.Requested)
			}
			fmt.Fprintf(a.stdout, "Renewed %s (version %d, expires %s)\n", res.Name, res.Version, res.Expires)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Role, "role", "", "renew a mirror role instead of a component: timestamp, snapshot or index")
	f.IntVar(&opts.Days, "days", 0, "days from now until the manifest expires (0: the default lifetime)")
	f.StringSliceVarP(&opts.Keys, "key", "k", nil, "owner key file or signer URL for a component (default $TIUP_HOME/keys/private.json)")
	return cmd
}
