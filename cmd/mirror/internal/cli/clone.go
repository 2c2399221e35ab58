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
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

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
latest, nightly and all work in both. With --prefix every version is a
prefix that selects all versions under it (v1 selects v1.0.0 and v1.4.2,
not v10.0.0). Versions not selected, and yanked
versions and components, are left out of the clone's manifests rather than
marked yanked. Flags standalone, hidden and nightly are kept; any/any is
always kept. Snapshot and timestamp are valid for 50 years.`,
		Example: `  mirror clone ./offline --full
  mirror clone ./offline --from https://mirror.example.com --hello v1.0.0,latest --greet nightly
  mirror clone ./offline v1.2.0 --os linux --arch amd64,arm64 --jobs 4
  mirror clone ./offline --prefix --hello v1 --greet v2.1`,
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
			p := &cloneProgress{w: a.stderr, bars: isTerminal(a.stderr), start: time.Now()}
			opts.Progress = p.update
			res, err := mirror.Clone(cmd.Context(), a.env, opts)
			p.finish(err == nil)
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
	f.BoolVar(&opts.Prefix, "prefix", false, "treat every version as a prefix: v1 selects all v1.x versions")
	f.StringSliceVarP(&opts.OS, "os", "o", nil, "operating systems to copy (default linux,darwin; every one with --full)")
	f.StringSliceVarP(&opts.Arch, "arch", "a", nil, "architectures to copy (default amd64,arm64; every one with --full)")
	f.IntVar(&opts.Jobs, "jobs", 0, "tarballs copied at once (default four per CPU, at most 16)")
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

// cloneProgress shows how the tarball copy goes: on a terminal, one bar
// for files and one for bytes; elsewhere (a log, a pipe) a single summary
// line at the end, since redrawn bars would only clutter it.
type cloneProgress struct {
	w     io.Writer
	bars  bool
	start time.Time

	mu           sync.Mutex
	last         mirror.CloneProgress
	p            *mpb.Progress
	files, bytes *mpb.Bar
}

func (c *cloneProgress) update(pr mirror.CloneProgress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = pr
	if !c.bars {
		return
	}
	if c.p == nil {
		// The totals are known only once the plan is made, which is when
		// the first report comes.
		c.p = mpb.New(mpb.WithOutput(c.w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		c.files = c.p.AddBar(int64(pr.Total),
			mpb.PrependDecorators(decor.Name("files ", decor.WC{W: 6}), decor.CountersNoUnit("%d / %d", decor.WCSyncWidth)),
			mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5})))
		c.bytes = c.p.AddBar(pr.TotalBytes,
			mpb.PrependDecorators(decor.Name("bytes ", decor.WC{W: 6}), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncWidth)),
			mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5}), decor.AverageSpeed(decor.SizeB1000(0), "  % .1f")))
	}
	c.files.SetCurrent(int64(pr.Done))
	c.bytes.SetCurrent(pr.Bytes)
}

// finish completes or abandons the bars, and without a terminal prints the
// summary line when the copy worked.
func (c *cloneProgress) finish(ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		for _, b := range []*mpb.Bar{c.files, c.bytes} {
			if ok {
				// Skipped tarballs add no bytes, so the byte bar is
				// completed at whatever it reached.
				b.SetTotal(-1, true)
			} else {
				b.Abort(false)
			}
		}
		c.p.Wait()
	}
	if c.bars || !ok || c.last.Total == 0 {
		return
	}
	secs := time.Since(c.start).Seconds()
	fmt.Fprintf(c.w, "copied %d/%d tarballs, %s of %s in %.1f s (%.1f MB/s)\n",
		c.last.Done, c.last.Total, humanBytes(c.last.Bytes), humanBytes(c.last.TotalBytes), secs, float64(c.last.Bytes)/1e6/max(secs, 1e-3))
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
