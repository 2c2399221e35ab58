package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) publishCommand() *cobra.Command {
	var opts mirror.PublishOptions
	cmd := &cobra.Command{
		Use:   "publish COMPONENT VERSION TARBALL ENTRY",
		Short: "Publish a version of a component for one platform",
		Long: `Publish TARBALL as VERSION of COMPONENT for one platform. ENTRY is the file
to run, relative to the unpacked tarball. The component manifest is signed by
the owner's key (-k, repeatable for owners with a threshold above one); index,
snapshot and timestamp by the mirror's keys. A new component belongs to the
owner of the signing key. Re-running a publish that completed is a no-op.`,
		Example: `  mirror publish hello v0.0.1 package/hello-v0.0.1-linux-amd64.tar.gz hello.sh
  mirror publish tool v1.2.0 tool.tar.gz bin/tool --os linux --arch arm64 -k ~/.tiup/keys/bob.json`,
		Args: usageArgs(cobra.ExactArgs(4)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Component, opts.Version, opts.Tarball, opts.Entry = args[0], args[1], args[2], args[3]
			res, err := mirror.Publish(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			if res.Unchanged {
				fmt.Fprintf(a.stdout, "%s %s is already published as %s; nothing to do\n", opts.Component, opts.Version, res.URL)
				return nil
			}
			fmt.Fprintf(a.stdout, "Published %s %s as %s (component manifest version %d)\n", opts.Component, opts.Version, res.URL, res.ComponentVersion)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.OS, "os", "", "target OS: linux, darwin or any (default this machine's)")
	f.StringVar(&opts.Arch, "arch", "", "target architecture: amd64, arm64 or any (default this machine's)")
	f.StringVar(&opts.Desc, "desc", "", "component description")
	f.BoolVar(&opts.Standalone, "standalone", false, "mark a new component standalone")
	f.BoolVar(&opts.Hide, "hide", false, "hide a new component from 'list'")
	f.StringSliceVarP(&opts.Keys, "key", "k", nil, "owner key file or signer URL (default $TIUP_HOME/keys/private.json)")
	return cmd
}
