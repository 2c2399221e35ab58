package cli

import (
	"fmt"
	"net/url"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/core/server"
)

func (a *app) serveCommand() *cobra.Command {
	var listen, certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "serve [ADDRESS]",
		Short: "Serve a mirror over HTTP for tiup and mirror clients",
		Long: `Serve a mirror (default: the current one), kept on any backend, over HTTP:
GET and HEAD of its files, with ETags, conditional requests and byte ranges.
keys/ and dot-files are never served, and there are no directory listings.
One access-log line per request goes to stderr. SIGINT or SIGTERM stops the
server after the requests in flight finish.`,
		Example: `  mirror serve ./m
  mirror serve ./m --addr 0.0.0.0:8989 --tls-cert cert.pem --tls-key key.pem
  tiup mirror set http://127.0.0.1:8989`,
		Args: usageArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (certFile == "") != (keyFile == "") {
				return fmt.Errorf("%w: serve needs both --tls-cert and --tls-key, or neither", mirror.ErrUsage)
			}
			addr := a.env.Address()
			if len(args) == 1 {
				addr = args[0]
			}
			ctx := cmd.Context()
			b, err := a.env.Plugins.OpenBackend(ctx, addr, a.env.Backend, nil)
			if err != nil {
				return fmt.Errorf("serve %s: %w", redactAddress(addr), err)
			}
			defer b.Close()
			logger := hclog.New(&hclog.LoggerOptions{Name: "mirror serve", Output: a.stderr, Level: hclog.Info})
			srv, err := server.New(ctx, b, server.Options{Logger: logger, Clock: time.Now})
			if err != nil {
				return err
			}
			ln, err := server.Listen(listen, certFile, keyFile)
			if err != nil {
				return err
			}
			scheme := "http"
			if certFile != "" {
				scheme = "https"
			}
			fmt.Fprintf(a.stdout, "Serving %s on %s://%s\n", redactAddress(addr), scheme, ln.Addr())
			return srv.Serve(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "addr", "127.0.0.1:8989", "address to listen on, host:port (port 0 picks a free one)")
	f.StringVar(&certFile, "tls-cert", "", "PEM certificate file; serves HTTPS together with --tls-key")
	f.StringVar(&keyFile, "tls-key", "", "PEM private key file of --tls-cert")
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
