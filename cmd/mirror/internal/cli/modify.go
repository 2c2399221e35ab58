package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) modifyCommand() *cobra.Command {
	var opts mirror.ModifyOptions
	var yank, hide, standalone bool
	var desc string
	cmd := &cobra.Command{
		Use:   "modify COMPONENT[:VERSION]",
		Short: "Yank, hide or describe a component, or yank one of its versions",
		Long: `Change a component and re-sign its manifest with the owner's key (-k,
repeatable for owners with a threshold above one). Only the flags given
change anything: --yank, --hide and --standalone set the component's entry in
the index (--yank=false undoes a yank), --desc its description. With a
VERSION only --yank applies: it marks that version yanked on every platform.
Yanked versions and components are not installed and are left out of 'list'
(a yanked version shows with 'list COMPONENT --all'). Nightly versions cannot
be yanked.`,
		Example: `  mirror modify hello:v0.0.1 --yank
  mirror modify hello --hide
  mirror modify hello --desc 'says hello, politely'
  mirror modify hello --yank=false -k ~/.tiup/keys/bob.json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Spec = args[0]
			f := cmd.Flags()
			if f.Changed("yank") {
				opts.Yank = &yank
			}
			if f.Changed("hide") {
				opts.Hide = &hide
			}
			if f.Changed("standalone") {
				opts.Standalone = &standalone
			}
			if f.Changed("desc") {
				opts.Desc = &desc
			}
			res, err := mirror.Modify(cmd.Context(), a.env, opts)
			if err != nil {
				return err
			}
			what := res.Component
			if res.Version != "" {
				what += " " + res.Version
			}
			fmt.Fprintf(a.stdout, "Modified %s (component manifest version %d", what, res.ComponentVersion)
			if res.IndexVersion > 0 {
				fmt.Fprintf(a.stdout, ", index version %d", res.IndexVersion)
			}
			fmt.Fprintln(a.stdout, ")")
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&yank, "yank", false, "yank the component, or the VERSION given")
	f.BoolVar(&hide, "hide", false, "hide the component from 'list' (it stays installable)")
	f.BoolVar(&standalone, "standalone", false, "mark the component standalone")
	f.StringVar(&desc, "desc", "", "set the component description")
	f.StringSliceVarP(&opts.Keys, "key", "k", nil, "owner key file or signer URL (default $TIUP_HOME/keys/private.json)")
	return cmd
}
