package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mirrorkit/mirror/core/mirror"
)

func (a *app) cloneCommand() *cobra.Command {
	var opts mirror.CloneOptions
	var comps map[string]*[]string
	cmd := &cobra.Command{
		Use:   "clone TARGET [GLOBAL-VERSION...] [--COMPONENT VERSIONS]",
		Short: "Copy a verified selection of a mirror into a mirror with its own keys",
		Long: `Copy components of a mirror (the current one, or --from ADDRESS) into TARGET.
Every manifest and tarball is verified against the source's chain of trust
before it is written; a source that does not verify is refused (exit 3). The
current mirror is trusted from the root saved by 'mirror set'; a --from
mirror is trusted from its own root.json.

A new TARGET becomes a mirror with fresh keys (three root keys, index,
snapshot, timestamp, and the owner key <id>-pingcap.json of owner pingcap) in
TARGET/keys or -k KEYDIR. When TARGET already is a clone and its keys are
found, the clone is refreshed: its root and keys are kept, so clients that
trust it keep working without 'mirror set' again, only changed component
manifests get a new version, and only missing or damaged tarballs are copied
(an interrupted clone resumes the same way). A refresh makes the clone match
the new selection: components no longer selected are yanked.

Selection: --full takes every version; otherwise global versions (for every
component, falling back to its latest on a platform that lacks the version)
and one --COMPONENT v1,v2 flag per component pick versions. The aliases
latest, nightly and all work in both. Versions not selected, and yanked
versions and components, are left out of the clone's manifests rather than
marked yanked. Flags standalone, hidden and nightly are kept; any/any is
always kept. Snapshot and timestamp are valid for 50 years.`,
		Example: `  mirror clone ./offline --full
  mirror clone ./offline --from https://mirror.example.com --hello v1.0.0,latest --greet nightly
  mirror clone ./offline v1.2.0 --os linux --arch amd64,arm64 --jobs 4`,
		// Component flags are known only once the source is read, so the
		// flags are parsed in PersistentPreRunE, where unknown --NAME flags
		// become component selections.
		DisableFlagParsing: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if comps, err = parseCloneFlags(cmd, args); err != nil {
				return err
			}
			return a.setup(cmd, cmd.Flags().Args())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			args := cmd.Flags().Args()
			if len(args) < 1 {
				return fmt.Errorf("%w: clone needs the target; see '%s --help'", mirror.ErrUsage, cmd.CommandPath())
			}
			opts.Target, opts.Versions = args[0], args[1:]
			opts.Components = map[string][]string{}
			for name, vs := range comps {
				opts.Components[name] = *vs
			}
			var p *progressLine
			if isTerminal(a.stderr) {
				p = &progressLine{w: a.stderr}
				opts.Progress = p.update
			}
			res, err := mirror.Clone(cmd.Context(), a.env, opts)
			p.finish()
			if err != nil {
				return err
			}
			verb := "cloned"
			if res.Refreshed {
				verb = "refreshed"
			}
			fmt.Fprintf(a.stdout, "%s %d components, %d tarballs (%d bytes, %d skipped) into %s\n",
				verb, res.Components, res.Tarballs, res.Bytes, res.Skipped, res.Target)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.From, "from", "", "source mirror address, trusted from its own root.json (default the current mirror)")
	f.BoolVarP(&opts.Full, "full", "f", false, "copy every version of every component")
	f.StringSliceVarP(&opts.OS, "os", "o", nil, "operating systems to copy (default linux,darwin; every one with --full)")
	f.StringSliceVarP(&opts.Arch, "arch", "a", nil, "architectures to copy (default amd64,arm64; every one with --full)")
	f.IntVar(&opts.Jobs, "jobs", 0, "tarballs copied at once (default the number of CPUs)")
	f.StringVarP(&opts.KeyDir, "key-dir", "k", "", "directory of the target's keys (default TARGET/keys)")
	return cmd
}

// parseCloneFlags parses the clone command's flags by hand: every long flag
// that is neither the command's nor a global one is registered as a
// --COMPONENT string list before parsing.
func parseCloneFlags(cmd *cobra.Command, args []string) (map[string]*[]string, error) {
	cmd.InheritedFlags() // merges the global flags into cmd.Flags()
	f := cmd.Flags()
	comps := map[string]*[]string{}
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if !strings.HasPrefix(arg, "--") || len(arg) == 2 {
			continue
		}
		name, _, _ := strings.Cut(arg[2:], "=")
		if f.Lookup(name) != nil || comps[name] != nil {
			continue
		}
		comps[name] = f.StringSlice(name, nil, "versions of component "+name)
		f.Lookup(name).Hidden = true
	}
	if err := f.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v; see '%s --help'", mirror.ErrUsage, err, cmd.CommandPath())
	}
	if help, _ := f.GetBool("help"); help {
		return nil, pflag.ErrHelp
	}
	return comps, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine redraws one status line on a terminal, at most ten times a
// second.
type progressLine struct {
	w     io.Writer
	mu    sync.Mutex
	last  time.Time
	shown bool
}

func (p *progressLine) update(pr mirror.CloneProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && pr.Done < pr.Total {
		return
	}
	p.last, p.shown = now, true
	fmt.Fprintf(p.w, "\r%d/%d tarballs, %s of %s   ", pr.Done, pr.Total, humanBytes(pr.Bytes), humanBytes(pr.TotalBytes))
}

// finish ends the progress line so that later output starts on its own.
func (p *progressLine) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
