package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) installCommand() *cobra.Command {
	var opts mirror.InstallOptions
	cmd := &cobra.Command{
		Use:   "install COMPONENT[:VERSION]",
		Short: "Download, verify and unpack a component into $TIUP_HOME/components",
		Long: `Install a component version (default: the latest stable one for the platform)
into $TIUP_HOME/components/COMPONENT/VERSION, where the stock tiup client finds
it too. The download is capped by its signed length and checked against its
signed hashes while it streams; archive entries that would land outside the
target (../, absolute paths, links pointing out) are refused; nothing appears
under the target until all of it verified. The entry point is printed last.`,
		Example: `  mirror install hello
  mirror install hello:v0.0.1 --os linux --arch arm64`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Spec = args[0]
			res, err := mirror.Install(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.Already {
				fmt.Fprintf(a.stderr, "%s %s is installed already\n", res.Component, res.Version)
			} else {
				fmt.Fprintf(a.stderr, "Installed %s %s in %s\n", res.Component, res.Version, res.Dir)
			}
			fmt.Fprintln(a.stdout, res.Entry)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.OS, "os", "", "platform OS (default this machine's)")
	cmd.Flags().StringVar(&opts.Arch, "arch", "", "platform architecture (default this machine's)")
	return cmd
}
