// Package remotesigner is the client of a remote signer (`mirror signer
// serve`, package remoteserver): an sdk.Signer whose private key stays on
// another machine, reached over HTTPS with mutual TLS.
//
// # Reference
//
// A signer is opened from a reference
//
//	remote+https://HOST:PORT[?cert=PATH&key=PATH&ca=PATH&keyid=ID]
//
// cert and key are the client certificate and its private key (PEM), ca
// the CA bundle that the signer's server certificate must chain to (the
// system roots when absent), and keyid picks one key of a signer that holds
// several (a key ID or a prefix of at least 8 hex digits). When cert, key
// or ca are absent from the reference they come from the environment
// variables MIRROR_SIGNER_CERT, MIRROR_SIGNER_KEY and MIRROR_SIGNER_CA.
// The query holds only file paths, never secrets, so the reference may be
// shown in messages as it is.
//
// # Errors
//
// Every error is one line that names the signer's host: a refusal by the
// allow-list reads "signer HOST refused client CN to sign ROLE: not in its
// allow-list" and wraps fs.ErrPermission; a failed TLS handshake names the
// certificate problem (none given, not trusted by the signer, or the
// signer's own certificate not trusted here).
package remotesigner

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remoteserver"
	"github.com/mirrorkit/mirror/sdk"
)

// Scheme is the reference scheme of the remote signer.
const Scheme = "remote+https"

// Environment variables that stand in for absent query parameters.
const (
	EnvCert = "MIRROR_SIGNER_CERT"
	EnvKey  = "MIRROR_SIGNER_KEY"
	EnvCA   = "MIRROR_SIGNER_CA"
)

// Timeouts and caps of the client.
const (
	// ConnectTimeout bounds the TCP connect and the TLS handshake.
	ConnectTimeout = 10 * time.Second
	// RequestTimeout bounds one request, answer included.
	RequestTimeout = time.Minute
	// maxResponse caps an answer: a signature or a public key is a few
	// hundred bytes, an error a line.
	maxResponse = 64 << 10
)

// Signer is a remote signer. It is safe for concurrent use.
type Signer struct {
	host    string // HOST:PORT, for messages
	base    string // https://HOST:PORT
	keyID   string // the keyid selector, "" for the server's only key
	cert    string // the client certificate file, "" for none
	ca      string // the CA file, "" for the system roots
	client  *http.Client
	pub     *keys.PublicKey
	pubSDK  sdk.PublicKey
	fullKey string // the public key's ID
}

var _ sdk.Signer = (*Signer)(nil)

// Open is the sdk.SignerFactory of the remote signer: cfg.Address is a
// remote+https reference (see the package documentation). It reads the
// certificates, then fetches the signer's public key, so a signer that
// cannot be reached or refuses this client fails here.
func Open(ctx context.Context, cfg sdk.Config) (sdk.Signer, error) {
	return New(ctx, cfg.Address, os.Getenv)
}

// New opens the signer at ref; getenv supplies the MIRROR_SIGNER_*
// variables (os.Getenv in the plugin).
func New(ctx context.Context, ref string, getenv func(string) string) (*Signer, error) {
	s, err := parse(ref, getenv)
	if err != nil {
		return nil, err
	}
	var pk remoteserver.PublicKeyResponse
	if err := s.call(ctx, http.MethodGet, remoteserver.PathPublicKey, nil, "", &pk); err != nil {
		return nil, err
	}
	pub, err := keys.FromSDK(sdk.PublicKey{KeyType: pk.KeyType, Scheme: pk.Scheme, PEM: pk.PEM})
	if err != nil {
		return nil, fmt.Errorf("signer %s: its public key: %w", s.host, err)
	}
	id := pub.ID()
	if id != pk.KeyID {
		return nil, fmt.Errorf("signer %s: it names its key %s, but the key's ID is %s", s.host, short(pk.KeyID), short(id))
	}
	if s.keyID != "" && !strings.HasPrefix(id, s.keyID) {
		return nil, fmt.Errorf("signer %s: asked for key %s, got key %s", s.host, s.keyID, short(id))
	}
	s.pub, s.pubSDK, s.fullKey = pub, pub.SDK(), id
	return s, nil
}

// parse reads a reference and loads the files it names.
func parse(ref string, getenv func(string) string) (*Signer, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("remote signer %q: not a URL: %w", ref, fs.ErrInvalid)
	}
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("remote signer %s: the scheme must be %s: %w", u.Redacted(), Scheme, fs.ErrInvalid)
	}
	if u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("remote signer %s: name the signer as %s://HOST:PORT: %w", u.Redacted(), Scheme, fs.ErrInvalid)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, fmt.Errorf("remote signer %s: only %s://HOST:PORT and a query are allowed: %w", u.Redacted(), Scheme, fs.ErrInvalid)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("remote signer %s: bad query: %w", u.Host, fs.ErrInvalid)
	}
	for name, vals := range q {
		switch name {
		case "cert", "key", "ca", "keyid":
		default:
			return nil, fmt.Errorf("remote signer %s: unknown parameter %q; the parameters are cert, key, ca and keyid: %w", u.Host, name, fs.ErrInvalid)
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("remote signer %s: parameter %s given twice: %w", u.Host, name, fs.ErrInvalid)
		}
	}
	param := func(name, env string) string {
		if v := q.Get(name); v != "" {
			return v
		}
		return getenv(env)
	}
	s := &Signer{
		host:  u.Host,
		base:  "https://" + u.Host,
		keyID: strings.ToLower(q.Get("keyid")),
		cert:  param("cert", EnvCert),
		ca:    param("ca", EnvCA),
	}
	keyFile := param("key", EnvKey)
	conf := &tls.Config{MinVersion: tls.VersionTLS13}
	switch {
	case s.cert != "" && keyFile != "":
		c, err := tls.LoadX509KeyPair(s.cert, keyFile)
		if err != nil {
			return nil, fmt.Errorf("remote signer %s: load client certificate %s and key %s: %w", u.Host, s.cert, keyFile, oneLine(err))
		}
		conf.Certificates = []tls.Certificate{c}
	case s.cert != "":
		return nil, fmt.Errorf("remote signer %s: client certificate %s given without its key; pass key=PATH or set %s: %w", u.Host, s.cert, EnvKey, fs.ErrInvalid)
	case keyFile != "":
		return nil, fmt.Errorf("remote signer %s: client key %s given without its certificate; pass cert=PATH or set %s: %w", u.Host, keyFile, EnvCert, fs.ErrInvalid)
	}
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, fmt.Errorf("remote signer %s: read CA %s: %w", u.Host, s.ca, oneLine(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("remote signer %s: CA %s holds no PEM certificate: %w", u.Host, s.ca, fs.ErrInvalid)
		}
		conf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	s.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       conf,
			TLSHandshakeTimeout:   ConnectTimeout,
			ResponseHeaderTimeout: RequestTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		// A signer never redirects; following one would send payloads
		// somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s, nil
}

// PublicKey returns the public half of the signer's key, fetched at Open.
func (s *Signer) PublicKey(ctx context.Context) (sdk.PublicKey, error) {
	return s.pubSDK, nil
}

// ID returns the key ID of the signer's key.
func (s *Signer) ID() string { return s.fullKey }

// Sign has the remote signer sign payload and checks the signature before
// returning it, so a signer answering with another key or garbage is
// caught here.
func (s *Signer) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer %s: %w", s.host, err)
	}
	var resp remoteserver.SignResponse
	if err := s.call(ctx, http.MethodPost, remoteserver.PathSign, payload, "application/octet-stream", &resp); err != nil {
		return nil, err
	}
	sig, err := base64.StdEncoding.DecodeString(resp.Signature)
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("signer %s: the answer holds no valid base64 signature", s.host)
	}
	if resp.KeyID != s.fullKey {
		return nil, fmt.Errorf("signer %s: it signed with key %s, not %s", s.host, short(resp.KeyID), short(s.fullKey))
	}
	if err := s.pub.Verify(payload, sig); err != nil {
		return nil, fmt.Errorf("signer %s: it returned a signature that does not verify with key %s", s.host, short(s.fullKey))
	}
	return sig, nil
}

// call sends one request and decodes a 200 answer into out.
func (s *Signer) call(ctx context.Context, method, path string, body []byte, ctype string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	u := s.base + path
	if s.keyID != "" {
		u += "?keyid=" + url.QueryEscape(s.keyID)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("signer %s: %w", s.host, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return s.transportError(ctx, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("signer %s: the answer is larger than %d bytes", s.host, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return s.statusError(resp, data, len(body))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("signer %s: unreadable answer to %s: %v", s.host, path, err)
	}
	return nil
}

// statusError turns a refusal into its one-line error.
func (s *Signer) statusError(resp *http.Response, data []byte, size int) error {
	var e remoteserver.ErrorResponse
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
		if len(e.Error) > 200 {
			e.Error = e.Error[:200] + "..."
		}
	}
	switch resp.StatusCode {
	case http.StatusForbidden:
		if e.Request != "" {
			return &refusal{fmt.Sprintf("signer %s refused client %s to sign %s: not in its allow-list", s.host, e.Client, e.Request)}
		}
		return &refusal{fmt.Sprintf("signer %s refused client %s: %s", s.host, e.Client, oneLineString(e.Error))}
	case http.StatusRequestEntityTooLarge:
		return fmt.Errorf("signer %s refused a payload of %d bytes: its limit is %d bytes", s.host, size, e.Limit)
	case http.StatusNotFound:
		return fmt.Errorf("signer %s: %s: %w", s.host, oneLineString(e.Error), sdk.ErrNotFound)
	case http.StatusBadRequest:
		return fmt.Errorf("signer %s refused the request: %s: %w", s.host, oneLineString(e.Error), fs.ErrInvalid)
	}
	return fmt.Errorf("signer %s answered %s: %s", s.host, resp.Status, oneLineString(e.Error))
}

// certAlerts are the texts of the TLS alerts a server sends when it
// refuses the client's certificate (RFC 8446 §6.2), as crypto/tls spells
// them; the alert type itself is not exported for remote alerts.
var certAlerts = []string{
	"tls: bad certificate",
	"tls: unsupported certificate",
	"tls: revoked certificate",
	"tls: expired certificate",
	"tls: unknown certificate",
	"tls: unknown certificate authority",
}

// transportError names what went wrong below HTTP, the certificate
// problem first.
func (s *Signer) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("signer %s: %w", s.host, ctx.Err())
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		alert := op.Err.Error()
		switch {
		case alert == "tls: certificate required" && s.cert == "":
			return &refusal{fmt.Sprintf("signer %s refused the connection: it requires a client certificate and none was given; pass cert=PATH&key=PATH in the reference or set %s and %s", s.host, EnvCert, EnvKey)}
		case alert == "tls: certificate required":
			// crypto/tls sends no certificate when the server's list of
			// acceptable CAs does not include the one that issued it.
			return &refusal{fmt.Sprintf("signer %s refused client certificate %s: it is not issued by a CA the signer trusts, so it was not sent", s.host, s.cert)}
		case slices.Contains(certAlerts, alert):
			return &refusal{fmt.Sprintf("signer %s refused client certificate %s (%s): it must be issued by a CA the signer trusts and be valid now", s.host, s.cert, alert)}
		}
		return fmt.Errorf("signer %s: TLS handshake: %v", s.host, alert)
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		var invalid x509.CertificateInvalidError
		trusted := "the system roots"
		if s.ca != "" {
			trusted = "CA " + s.ca
		}
		switch {
		case errors.As(verr.Err, &unknown):
			return fmt.Errorf("signer %s: its server certificate is not signed by %s; pass ca=PATH or set %s", s.host, trusted, EnvCA)
		case errors.As(verr.Err, &host):
			return fmt.Errorf("signer %s: its server certificate is not valid for that address: %v", s.host, host)
		case errors.As(verr.Err, &invalid):
			return fmt.Errorf("signer %s: its server certificate is not valid: %v", s.host, invalid)
		}
		return fmt.Errorf("signer %s: its server certificate: %v", s.host, verr.Err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("signer %s: connection refused; is `mirror signer serve` running there?", s.host)
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// TLS 1.3 servers judge the client certificate after the client
		// considers the handshake done; a reset instead of an alert is
		// what a refusal can look like then.
		return fmt.Errorf("signer %s closed the connection (did it refuse client certificate %q?): %v", s.host, s.cert, oneLine(err))
	}
	return fmt.Errorf("signer %s: %v", s.host, oneLine(err))
}

// refusal is the signer refusing this client: a certificate it does not
// accept, or a payload outside the client's allow-list. Its message is
// complete as it stands; it wraps fs.ErrPermission for callers that branch.
type refusal struct{ msg string }

func (e *refusal) Error() string { return e.msg }

func (e *refusal) Unwrap() error { return fs.ErrPermission }

// short is a key ID's first 16 hex digits, as TiUP names key files.
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// oneLine keeps a wrapped error's text on the message's single line.
func oneLine(err error) error {
	msg := oneLineString(err.Error())
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

func oneLineString(s string) string { return strings.Join(strings.Fields(s), " ") }
