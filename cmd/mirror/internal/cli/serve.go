package cli

import (
	"fmt"
	"net/url"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/server"
)

func (a *app) serveCommand() *cobra.Command {
	var listen, certFile, keyFile, keyDir string
	var readOnly bool
	api := server.APIOptions{}
	cmd := &cobra.Command{
		Use:   "serve [ADDRESS]",
		Short: "Serve a mirror over HTTP for tiup and mirror clients",
		Long: `Serve a mirror (default: the current one), kept on any backend, over HTTP:
GET and HEAD of its files, with ETags, conditional requests and byte ranges.
keys/ and dot-files are never served, and there are no directory listings.
One access-log line per request goes to stderr. SIGINT or SIGTERM stops the
server after the requests in flight finish.

When the mirror's role keys are at hand (--signer, used first, then -k,
what init recorded, or ADDRESS/keys) and the backend is writable, it also answers tiup-server's
write API, so that 'tiup mirror publish' and 'mirror --mirror http://...
publish|modify|renew' work against it:
  POST /api/v1/tarball/{sid}           a tarball (multipart field "file")
  POST /api/v1/component/{sid}/{name}  a component manifest signed by its owner
  POST /api/v1/rotate                  a root N+1 signed by old and new root keys
The owner's threshold of signatures is enforced. --read-only turns it off.`,
		Example: `  mirror serve ./m
  mirror serve ./m --addr 0.0.0.0:8989 --tls-cert cert.pem --tls-key key.pem
  mirror serve s3://bucket/m -k /secure/m-keys --max-upload 536870912
  tiup mirror set http://127.0.0.1:8989`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (certFile == "") != (keyFile == "") {
				return fmt.Errorf("%w: serve needs both --tls-cert and --tls-key, or neither", mirror.ErrUsage)
			}
			if api.MaxUpload < 0 || api.MaxSessions < 0 || api.RequestTimeout < 0 {
				return fmt.Errorf("%w: serve: --max-upload, --max-sessions and --request-timeout must not be negative", mirror.ErrUsage)
			}
			addr := a.env.Address()
			if len(args) == 1 {
				addr = args[0]
			}
			if keyDir != "" {
				a.env.KeyDir = keyDir
			}
			ctx := cmd.Context()
			b, err := a.env.OpenBackend(ctx, addr)
			if err != nil {
				return fmt.Errorf("serve %s: %w", redactAddress(addr), err)
			}
			defer b.Close()
			logOut := server.NewLogBuffer(a.stderr)
			defer logOut.Close()
			logger := hclog.New(&hclog.LoggerOptions{Name: "mirror serve", Output: logOut, Level: hclog.Info})
			opts := server.Options{Logger: logger, Clock: time.Now}
			var writes string
			if !readOnly {
				ks, dir, closeKeys, err := a.env.ServeKeys(ctx, addr)
				if err != nil {
					return err
				}
				defer closeKeys()
				switch {
				case ks == nil && keyDir != "":
					return fmt.Errorf("%w: serve: key directory %s does not exist", mirror.ErrUsage, keyDir)
				case ks != nil && b.Caps().Write:
					api.Writer = &publish.Writer{Backend: b, Keys: ks, Clock: time.Now}
					opts.API = &api
					writes = "Write API on /api/v1/ with the role keys in " + dir
				}
			}
			srv, err := server.New(ctx, b, opts)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := server.Listen(listen, certFile, keyFile)
			if err != nil {
				return err
			}
			scheme := "http"
			if certFile != "" {
				scheme = "https"
			}
			fmt.Fprintf(a.stdout, "Serving %s on %s://%s\n", redactAddress(addr), scheme, ln.Addr())
			if writes != "" {
				fmt.Fprintln(a.stdout, writes)
			}
			return srv.Serve(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "addr", "127.0.0.1:8989", "address to listen on, host:port (port 0 picks a free one)")
	f.StringVar(&certFile, "tls-cert", "", "PEM certificate file; serves HTTPS together with --tls-key")
	f.StringVar(&keyFile, "tls-key", "", "PEM private key file of --tls-cert")
	f.StringVarP(&keyDir, "keys", "k", "", "directory of the mirror's role keys, for the write API (default: what init recorded, else ADDRESS/keys)")
	f.BoolVar(&readOnly, "read-only", false, "serve GET and HEAD only, even with the role keys at hand")
	f.Int64Var(&api.MaxUpload, "max-upload", server.DefaultMaxUpload, "largest tarball accepted, in bytes (413 above)")
	f.IntVar(&api.MaxSessions, "max-sessions", server.DefaultMaxSessions, "uploads held at once while waiting for their manifests (429 above)")
	f.DurationVar(&api.RequestTimeout, "request-timeout", server.DefaultRequestTimeout, "time limit of one write request, upload included")
	return cmd
}

// redactAddress hides a password in a mirror address before it is printed.
func redactAddress(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.User == nil {
		return addr
	}
	return u.Redacted()
}
