package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) packageCommand() *cobra.Command {
	var opts mirror.PackageOptions
	cmd := &cobra.Command{
		Use:   "package PATHS...",
		Short: "Pack files into a component tarball, package/NAME-RELEASE-OS-ARCH.tar.gz",
		Long: `Pack files and directories into package/NAME-RELEASE-OS-ARCH.tar.gz, as
'tiup package' does (tar -czf, compressed on all cores).`,
		Example: `  mirror package hello.sh --name hello --release v0.0.1
  mirror package bin lib -C ./build --name tool --release v1.2.0 --os linux --arch arm64`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			out, err := mirror.Package(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "component name (required)")
	f.StringVar(&opts.Release, "release", "", "component version, e.g. v1.0.0 (required)")
	f.StringVar(&opts.OS, "os", "", "target OS (default this machine's)")
	f.StringVar(&opts.Arch, "arch", "", "target architecture (default this machine's)")
	f.StringVarP(&opts.Dir, "", "C", "", "change to this directory before packing")
	f.StringVar(&opts.OutDir, "out", "package", "directory for the tarball")
	return cmd
}
