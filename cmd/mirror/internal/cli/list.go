package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) listCommand() *cobra.Command {
	var opts mirror.ListOptions
	cmd := &cobra.Command{
		Use:   "list [COMPONENT]",
		Short: "List the components of the mirror, or the versions of one",
		Long: `List what the mirror offers, after verifying its chain of trust. Without a
component: every visible component with its owner, latest stable version for
this platform, and description. With one: its versions and platforms.`,
		Example: `  mirror list
  mirror list --all
  mirror list hello`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Component = args[0]
			}
			res, err := mirror.List(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			if opts.Component == "" {
				fmt.Fprintln(tw, "Name\tOwner\tLatest\tDescription")
				fmt.Fprintln(tw, "----\t-----\t------\t-----------")
				for _, c := range res.Components {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Owner, c.Latest, c.Description)
				}
			} else {
				fmt.Fprintln(tw, "Version\tReleased\tPlatforms")
				fmt.Fprintln(tw, "-------\t--------\t---------")
				for _, v := range res.Versions {
					name := v.Version
					if v.Yanked {
						name += " (yanked)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", name, v.Released, strings.Join(v.Platforms, ","))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&opts.All, "all", false, "include hidden components and yanked versions")
	cmd.Flags().StringVar(&opts.OS, "os", "", "platform OS for the latest version (default this machine's)")
	cmd.Flags().StringVar(&opts.Arch, "arch", "", "platform architecture (default this machine's)")
	return cmd
}
