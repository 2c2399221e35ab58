// Package remoteserver is the server side of the remote signer: it holds
// TiUP private keys on one machine and signs for clients elsewhere, over
// HTTPS with mutual TLS, so that the keys never leave it. `mirror signer
// serve` runs it; plugins/signer-remote/remotesigner is its client.
//
// # Clients and the allow-list
//
// Every connection must present a client certificate issued by the
// configured CA (tls.RequireAndVerifyClientCert, TLS 1.3 only); a client
// without one is refused during the handshake. A client is identified by
// its certificate's Subject Common Name, and the Policy (--allow
// CLIENT=GRANTS) says what each may have signed. What a payload is comes
// from parsing the payload (see Classify), never from the request.
//
// # Protocol
//
//	GET  /v1/public-key[?keyid=ID]  → 200 PublicKeyResponse
//	POST /v1/sign[?keyid=ID]        body: the payload bytes
//	                                → 200 SignResponse
//
// keyid (a key ID or a prefix of at least 8 hex digits) picks one of the
// server's keys; it may be left out when the server holds just one. Errors
// are an ErrorResponse with 400 (bad request or payload), 403 (not in the
// client's allow-list), 404, 405, 413 (payload over the limit) or 500.
//
// # Signature log
//
// Each signature made is logged, before it is returned, as one line: time,
// client, what was signed (role or component:ID), manifest version, key ID
// prefix and the payload's sha256. Refusals are logged as warnings through
// the logger only, so the signature log lists exactly what was signed.
// Private keys never reach a log, an error or a response.
package remoteserver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/core/keys"
)

// Paths of the protocol.
const (
	PathSign      = "/v1/sign"
	PathPublicKey = "/v1/public-key"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxPayload is the largest payload signed. Official component
	// manifests reach a few MiB; 8 MiB leaves room and still bounds what
	// one request can make the server hash and parse.
	DefaultMaxPayload = 8 << 20
	// DefaultRequestTimeout bounds reading a request and writing its answer.
	DefaultRequestTimeout = 30 * time.Second
)

// minKeyIDPrefix is the shortest keyid prefix accepted, so that a prefix
// cannot silently pick the wrong key as keys are added.
const minKeyIDPrefix = 8

// PublicKeyResponse answers GET /v1/public-key.
type PublicKeyResponse struct {
	KeyID   string `json:"keyid"`
	KeyType string `json:"keytype"`
	Scheme  string `json:"scheme"`
	// PEM is the PKIX public key, the form TiUP hashes into the key ID.
	PEM string `json:"public"`
}

// SignResponse answers POST /v1/sign.
type SignResponse struct {
	KeyID string `json:"keyid"`
	// Signature is the RSASSA-PSS SHA-256 signature, standard base64.
	Signature string `json:"sig"`
}

// ErrorResponse is the body of every refusal.
type ErrorResponse struct {
	// Error is a one-line message for a person.
	Error string `json:"error"`
	// Client is the caller's certificate Common Name, when known.
	Client string `json:"client,omitempty"`
	// Request is what the payload asked to be signed as (403), e.g.
	// "component:hello".
	Request string `json:"request,omitempty"`
	// Limit is the payload limit in bytes (413).
	Limit int64 `json:"limit,omitempty"`
}

// Options configure a Server.
type Options struct {
	// Keys are the private keys the server signs with; at least one.
	Keys []*keys.PrivateKey
	// Policy says what each client may have signed.
	Policy Policy
	// Logger receives one Info line per signature and one Warn line per
	// refusal; nil discards them.
	Logger hclog.Logger
	// SignatureLog, when set, receives one line per signature, written
	// before the signature is returned; a failed write refuses the request
	// (500), so no signature goes out unlogged.
	SignatureLog io.Writer
	// MaxPayload caps a payload, in bytes; zero means DefaultMaxPayload.
	MaxPayload int64
	// RequestTimeout bounds reading a request and writing its answer; zero
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Clock stamps the signature log; nil means time.Now.
	Clock func() time.Time
}

// Server signs for the clients its policy allows. It is an http.Handler
// that expects to be served over mutual TLS (see TLSConfig and Serve).
type Server struct {
	keys    []*keys.PrivateKey
	ids     []string
	policy  Policy
	log     hclog.Logger
	sigLog  io.Writer
	logMu   sync.Mutex
	max     int64
	timeout time.Duration
	clock   func() time.Time
}

// New returns a server for opts.
func New(opts Options) (*Server, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("signer server: no key to sign with")
	}
	s := &Server{
		keys:    opts.Keys,
		policy:  opts.Policy,
		log:     opts.Logger,
		sigLog:  opts.SignatureLog,
		max:     opts.MaxPayload,
		timeout: opts.RequestTimeout,
		clock:   opts.Clock,
	}
	for _, k := range opts.Keys {
		id := k.ID()
		if slices.Contains(s.ids, id) {
			return nil, fmt.Errorf("signer server: key %s given twice", id[:16])
		}
		s.ids = append(s.ids, id)
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.max <= 0 {
		s.max = DefaultMaxPayload
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	return s, nil
}

// KeyIDs returns the IDs of the server's keys, in the order given.
func (s *Server) KeyIDs() []string { return slices.Clone(s.ids) }

// ServeHTTP answers the protocol's two endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, ok := clientName(r)
	if !ok {
		// Unreachable behind TLSConfig, which refuses such connections
		// during the handshake; it guards a misuse of the handler.
		reply(w, http.StatusForbidden, ErrorResponse{Error: "no verified client certificate"})
		return
	}
	switch r.URL.Path {
	case PathSign:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			reply(w, http.StatusMethodNotAllowed, ErrorResponse{Error: PathSign + " takes POST", Client: client})
			return
		}
		s.sign(w, r, client)
	case PathPublicKey:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			reply(w, http.StatusMethodNotAllowed, ErrorResponse{Error: PathPublicKey + " takes GET", Client: client})
			return
		}
		s.publicKey(w, r, client)
	default:
		reply(w, http.StatusNotFound, ErrorResponse{Error: "no such endpoint; this signer answers GET " + PathPublicKey + " and POST " + PathSign, Client: client})
	}
}

// clientName is the Common Name of the verified client certificate.
func clientName(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// keyError is a keyid that picks no key, with the status it answers.
type keyError struct {
	code int
	msg  string
}

func (e *keyError) Error() string { return e.msg }

// key picks the key a request names with keyid.
func (s *Server) key(r *http.Request) (*keys.PrivateKey, string, *keyError) {
	want := strings.ToLower(r.URL.Query().Get("keyid"))
	if want == "" {
		if len(s.keys) == 1 {
			return s.keys[0], s.ids[0], nil
		}
		return nil, "", &keyError{http.StatusBadRequest, fmt.Sprintf("this signer holds %d keys (%s): name one with keyid=ID", len(s.keys), s.prefixes())}
	}
	if len(want) < minKeyIDPrefix {
		return nil, "", &keyError{http.StatusBadRequest, fmt.Sprintf("keyid %q: give at least %d hex digits", truncate(want, 64), minKeyIDPrefix)}
	}
	found := -1
	for i, id := range s.ids {
		if strings.HasPrefix(id, want) {
			if found >= 0 {
				return nil, "", &keyError{http.StatusBadRequest, fmt.Sprintf("keyid %s matches more than one key (%s)", want, s.prefixes())}
			}
			found = i
		}
	}
	if found < 0 {
		return nil, "", &keyError{http.StatusNotFound, fmt.Sprintf("keyid %s: this signer holds no such key (it holds %s)", truncate(want, 64), s.prefixes())}
	}
	return s.keys[found], s.ids[found], nil
}

func (s *Server) prefixes() string {
	ps := make([]string, len(s.ids))
	for i, id := range s.ids {
		ps[i] = id[:16]
	}
	return strings.Join(ps, ", ")
}

func (s *Server) publicKey(w http.ResponseWriter, r *http.Request, client string) {
	k, id, kerr := s.key(r)
	if kerr != nil {
		reply(w, kerr.code, ErrorResponse{Error: kerr.msg, Client: client})
		return
	}
	s.log.Debug("public key", "client", client, "key", id[:16])
	p := k.Public().SDK()
	reply(w, http.StatusOK, PublicKeyResponse{KeyID: id, KeyType: p.KeyType, Scheme: p.Scheme, PEM: p.PEM})
}

func (s *Server) sign(w http.ResponseWriter, r *http.Request, client string) {
	k, id, kerr := s.key(r)
	if kerr != nil {
		reply(w, kerr.code, ErrorResponse{Error: kerr.msg, Client: client})
		return
	}
	if r.ContentLength > s.max {
		s.refuseSize(w, client, r.ContentLength)
		return
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuseSize(w, client, -1)
			return
		}
		reply(w, http.StatusBadRequest, ErrorResponse{Error: "read payload: " + err.Error(), Client: client})
		return
	}
	req, err := Classify(payload)
	if err != nil {
		s.log.Warn("refused: bad payload", "client", client, "error", err)
		reply(w, http.StatusBadRequest, ErrorResponse{Error: err.Error(), Client: client})
		return
	}
	if !s.policy.Allows(client, req) {
		s.log.Warn("refused: not in the allow-list", "client", client, "request", req.String(), "version", req.Version)
		reply(w, http.StatusForbidden, ErrorResponse{
			Error:   fmt.Sprintf("client %s may not sign %s: not in its allow-list", client, req),
			Client:  client,
			Request: req.String(),
		})
		return
	}
	sig, err := k.Sign(payload)
	if err != nil {
		s.log.Error("sign", "client", client, "key", id[:16], "error", err)
		reply(w, http.StatusInternalServerError, ErrorResponse{Error: "sign: " + err.Error(), Client: client})
		return
	}
	sum := sha256.Sum256(payload)
	if err := s.record(client, req, id, hex.EncodeToString(sum[:])); err != nil {
		s.log.Error("signature log", "error", err)
		reply(w, http.StatusInternalServerError, ErrorResponse{Error: "the signer cannot write its signature log", Client: client})
		return
	}
	reply(w, http.StatusOK, SignResponse{KeyID: id, Signature: base64.StdEncoding.EncodeToString(sig)})
}

// record logs a signature through the logger and to the signature log.
func (s *Server) record(client string, req Request, keyID, sum string) error {
	s.log.Info("signed", "client", client, "role", req.String(), "version", req.Version, "key", keyID[:16], "sha256", sum)
	if s.sigLog == nil {
		return nil
	}
	line := fmt.Sprintf("%s client=%s role=%s version=%d key=%s sha256=%s\n",
		s.clock().UTC().Format(time.RFC3339), quoteIfNeeded(client), req, req.Version, keyID[:16], sum)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if _, err := io.WriteString(s.sigLog, line); err != nil {
		return err
	}
	if f, ok := s.sigLog.(*os.File); ok {
		// The line is the audit trail of a signature about to leave.
		return f.Sync()
	}
	return nil
}

// quoteIfNeeded keeps a Common Name with spaces or '=' one field of the
// log line.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " =\"\t\n") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func (s *Server) refuseSize(w http.ResponseWriter, client string, n int64) {
	msg := fmt.Sprintf("payload larger than %d bytes", s.max)
	if n >= 0 {
		msg = fmt.Sprintf("payload of %d bytes is larger than %d bytes", n, s.max)
	}
	s.log.Warn("refused: payload too large", "client", client, "limit", s.max)
	w.Header().Set("Connection", "close")
	reply(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: msg, Client: client, Limit: s.max})
}

// reply writes v as the JSON body of a response with code.
func reply(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// TLSConfig loads the server certificate and the CA that client
// certificates must chain to, and returns a configuration that requires
// and verifies a client certificate on every connection, TLS 1.3 only.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("read client CA %s: %w", clientCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read client CA %s: no PEM certificate in it", clientCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// Serve answers on ln over TLS with tlsConf until ctx ends, then shuts
// down gracefully: it stops accepting, lets the requests in flight finish
// (for up to the request timeout) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: min(s.timeout, 10*time.Second),
		ReadTimeout:       s.timeout,
		WriteTimeout:      s.timeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// Handshake failures (a client without a certificate, or with one
		// from another CA) are refusals worth seeing.
		ErrorLog: s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, tlsConf)) }()
	select {
	case err := <-done:
		return fmt.Errorf("signer server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	if err != nil {
		return fmt.Errorf("signer server: shut down: %w", err)
	}
	return nil
}
