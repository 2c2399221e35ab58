package cli

import (
	"fmt"
	"io"
	"net"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remoteserver"
)

func (a *app) signerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signer",
		Short: "Run a remote signer that keeps private keys on this machine",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("%w: signer needs a subcommand; see 'mirror signer --help'", mirror.ErrUsage)
		},
	}
	cmd.AddCommand(a.signerServeCommand())
	return cmd
}

// signerServeFlags are the flags of `mirror signer serve`.
type signerServeFlags struct {
	keys                      []string
	addr                      string
	tlsCert, tlsKey, clientCA string
	allow                     []string
	logFile                   string
	opts                      remoteserver.Options
}

func (a *app) signerServeCommand() *cobra.Command {
	var f signerServeFlags
	cmd := &cobra.Command{
		Use:   "serve --key KEYFILE --tls-cert CERT --tls-key KEY --client-ca CA --allow CLIENT=GRANTS",
		Short: "Sign for other machines over HTTPS with mutual TLS; the keys never leave this one",
		Long: `Hold TiUP private keys (--key, repeatable) and sign with them for clients
elsewhere, which use it as --signer remote+https://HOST:PORT or -k with that
reference. Every client must present a certificate issued by --client-ca
(TLS 1.3, checked in the handshake) and is known by its certificate's Common
Name. --allow says what each client may have signed:

  CLIENT=GRANT[,GRANT...]   GRANT is root, index, snapshot, timestamp,
                            component:ID (a pattern: component:* is every
                            component, component:tidb-* some), or raw
                            (bytes that are not a TiUP manifest)

What a payload is comes from parsing it (its "_type", and a component's
"id"), never from the request; a manifest must be canonical JSON. A refusal
is an HTTP 403 naming the client and what it asked for. Each signature is
logged as one line (time, client, role, version, key ID, payload sha256) to
stderr and, with --log, appended to a file. With several keys, clients pick
one with keyid=ID in their reference. SIGINT or SIGTERM stops the signer
after the requests in flight.`,
		Example: `  mirror signer serve --key /secure/ts-key.json --addr 0.0.0.0:8990 \
    --tls-cert signer.pem --tls-key signer-key.pem --client-ca clients-ca.pem \
    --allow ci=timestamp,snapshot --allow alice=component:hello --log /var/log/mirror-signer.log`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			closeLog, err := f.options(a.stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			srv, err := remoteserver.New(f.opts)
			if err != nil {
				return err
			}
			conf, err := remoteserver.TLSConfig(f.tlsCert, f.tlsKey, f.clientCA)
			if err != nil {
				return fmt.Errorf("signer serve: %w", err)
			}
			ln, err := net.Listen("tcp", f.addr)
			if err != nil {
				return fmt.Errorf("signer serve: listen on %s: %w", f.addr, err)
			}
			for _, id := range srv.KeyIDs() {
				fmt.Fprintf(a.stdout, "Holding key %s (%s)\n", id[:16], id)
			}
			fmt.Fprintf(a.stdout, "Allowing %s\n", f.opts.Policy)
			fmt.Fprintf(a.stdout, "Signer listening on https://%s\n", ln.Addr())
			return srv.Serve(cmd.Context(), ln, conf)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.keys, "key", nil, "TiUP private key file to sign with (repeatable)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8990", "address to listen on, host:port (port 0 picks a free one)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM server certificate")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.clientCA, "client-ca", "", "PEM CA bundle that client certificates must chain to")
	fl.StringArrayVar(&f.allow, "allow", nil, "CLIENT=GRANT[,GRANT...]: what a client (certificate Common Name) may have signed (repeatable)")
	fl.StringVar(&f.logFile, "log", "", "append one line per signature to this file too")
	fl.Int64Var(&f.opts.MaxPayload, "max-payload", remoteserver.DefaultMaxPayload, "largest payload signed, in bytes (413 above)")
	fl.DurationVar(&f.opts.RequestTimeout, "request-timeout", remoteserver.DefaultRequestTimeout, "time limit of reading one request and writing its answer")
	return cmd
}

// options checks the flags and fills f.opts: the keys loaded, the policy
// parsed, the loggers opened. The returned function closes the log file.
func (f *signerServeFlags) options(stderr io.Writer) (func(), error) {
	switch {
	case len(f.keys) == 0:
		return nil, fmt.Errorf("%w: signer serve needs --key KEYFILE", mirror.ErrUsage)
	case f.tlsCert == "" || f.tlsKey == "" || f.clientCA == "":
		return nil, fmt.Errorf("%w: signer serve needs --tls-cert, --tls-key and --client-ca: it serves only HTTPS with client certificates", mirror.ErrUsage)
	case len(f.allow) == 0:
		return nil, fmt.Errorf("%w: signer serve needs --allow CLIENT=GRANTS; without it nobody may sign", mirror.ErrUsage)
	case f.opts.MaxPayload <= 0 || f.opts.RequestTimeout <= 0:
		return nil, fmt.Errorf("%w: signer serve: --max-payload and --request-timeout must be positive", mirror.ErrUsage)
	}
	policy, err := remoteserver.ParseAllow(f.allow)
	if err != nil {
		return nil, fmt.Errorf("%w: signer serve: %v", mirror.ErrUsage, err)
	}
	f.opts.Policy = policy
	for _, path := range f.keys {
		k, err := keys.LoadPrivateKey(path)
		if err != nil {
			return nil, fmt.Errorf("signer serve: --key %s: %w", path, err)
		}
		f.opts.Keys = append(f.opts.Keys, k)
	}
	f.opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "mirror signer", Output: stderr, Level: hclog.Info})
	if f.logFile == "" {
		return func() {}, nil
	}
	file, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("signer serve: open --log file: %w", err)
	}
	f.opts.SignatureLog = file
	return func() { file.Close() }, nil
}
