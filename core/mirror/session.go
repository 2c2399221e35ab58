package mirror

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
)

// DefaultSessionAddr is where a signing session listens without --addr.
// Stock tiup listens on 0.0.0.0:8080; loopback is the safer default, and
// --addr opens it to other machines on purpose.
const DefaultSessionAddr = "127.0.0.1:8080"

// Limits of the signing session server. A root of many keys is well under
// a MiB (the stock client's cap on root.json).
const (
	sessionBodyLimit     = manifest.MaxRootSize
	sessionReadTimeout   = 30 * time.Second
	sessionWriteTimeout  = 30 * time.Second
	sessionShutdownGrace = 5 * time.Second
)

// Bodies of the session's refusals, bare JSON strings as stock tiup sends.
const (
	msgKeyNotValid       = "the key is not valid"
	msgSignatureNotValid = "the signature is not valid"
	msgBadRequest        = "make sure your request is valid"
)

// SessionOptions configure the signing session of rotate and
// transfer-owner: a temporary HTTP server that collects signatures from
// `mirror sign URL` run by the key holders, wherever they are.
type SessionOptions struct {
	// Addr is the host:port to listen on; default DefaultSessionAddr. Port 0
	// picks a free port, and the URL given to OnListen has the real one.
	Addr string
	// NoSession fails instead of starting the server when the SignWith keys
	// alone do not complete the signatures.
	NoSession bool
	// OnListen, when set, is given the session URL once it accepts
	// requests.
	OnListen func(url string)
	// OnStatus, when set, is given one line for each key's state when the
	// session starts and one for each signature it accepts.
	OnStatus func(line string)
}

// sessionPolicy says which keys may sign a manifest and when it has enough
// signatures.
type sessionPolicy struct {
	// accepted are the keys whose signatures are taken, by ID.
	accepted map[string]*keys.PublicKey
	// label describes a key's part ("old+new root key").
	label func(id string) string
	// progress summarises the signatures so far and says whether they
	// complete the manifest.
	progress func(env *manifest.Envelope) (string, bool)
}

// statusLines describes every accepted key (signed or waiting) and the
// progress, as a session shows them when it starts.
func (p *sessionPolicy) statusLines(env *manifest.Envelope) []string {
	signed := map[string]bool{}
	for _, s := range env.Signatures {
		signed[s.KeyID] = true
	}
	ids := make([]string, 0, len(p.accepted))
	for id := range p.accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	lines := make([]string, 0, len(ids)+1)
	for _, id := range ids {
		state := "waiting"
		if signed[id] {
			state = "signed"
		}
		lines = append(lines, fmt.Sprintf("key %s (%s): %s", id[:16], p.label(id), state))
	}
	summary, _ := p.progress(env)
	return append(lines, "waiting for signatures: "+summary)
}

// session is the state of one signing session server.
type session struct {
	path   string
	pol    *sessionPolicy
	status func(string)

	mu   sync.Mutex
	env  *manifest.Envelope
	done chan struct{}
	fin  bool
}

// runSession serves env at /rotate/<base62 of start time in ms> until its
// signatures are complete or ctx ends, adding each accepted signature to
// env. It returns the session URL.
func runSession(ctx context.Context, opts SessionOptions, start time.Time, env *manifest.Envelope, pol *sessionPolicy) (string, error) {
	addr := opts.Addr
	if addr == "" {
		addr = DefaultSessionAddr
	}
	status := opts.OnStatus
	if status == nil {
		status = func(string) {}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("start signing session on %s: %w", addr, err)
	}
	s := &session{path: "/rotate/" + base62(uint64(start.UnixMilli())), pol: pol, status: status, env: env, done: make(chan struct{})}
	url := "http://" + ln.Addr().String() + s.path
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: sessionReadTimeout,
		ReadTimeout:       sessionReadTimeout,
		WriteTimeout:      sessionWriteTimeout,
		IdleTimeout:       sessionReadTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if opts.OnListen != nil {
		opts.OnListen(url)
	}
	for _, line := range pol.statusLines(env) {
		status(line)
	}
	var serveErr error
	select {
	case <-s.done:
	case <-ctx.Done():
	case serveErr = <-served:
	}
	// The request that completed the signatures still gets its answer.
	sctx, cancel := context.WithTimeout(context.Background(), sessionShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if serveErr == nil {
		serveErr = <-served
	}
	s.mu.Lock()
	fin := s.fin
	s.mu.Unlock()
	switch {
	case fin:
		return url, nil
	case ctx.Err() != nil:
		return url, fmt.Errorf("signing session %s: stopped before the signatures were complete: %w", url, ctx.Err())
	case serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed):
		return url, fmt.Errorf("signing session %s: %w", url, serveErr)
	default:
		return url, fmt.Errorf("signing session %s: stopped before the signatures were complete", url)
	}
}

// ServeHTTP implements the stock temp server's protocol: GET the envelope,
// POST it back with more signatures.
func (s *session) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.path {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		body, err := s.env.Bytes()
		s.mu.Unlock()
		if err != nil {
			replyString(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, sessionBodyLimit)
		data, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				replyString(w, http.StatusRequestEntityTooLarge, "the request is too large")
				return
			}
			replyString(w, http.StatusBadRequest, msgBadRequest)
			return
		}
		var in struct {
			Signatures []manifest.Signature `json:"signatures"`
		}
		if err := json.Unmarshal(data, &in); err != nil {
			replyString(w, http.StatusBadRequest, msgBadRequest)
			return
		}
		if code, msg := s.add(in.Signatures); code != http.StatusNoContent {
			replyString(w, code, msg)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		replyString(w, http.StatusMethodNotAllowed, "the session takes GET and POST")
	}
}

// add checks every signature of a request over the canonical signed bytes
// before taking any, so a request is taken whole or not at all. Signatures
// the session already has are ignored.
func (s *session) add(sigs []manifest.Signature) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type good struct {
		id  string
		raw []byte
	}
	var fresh []good
	seen := map[string]bool{}
	for _, sig := range s.env.Signatures {
		seen[sig.KeyID] = true
	}
	for _, sig := range sigs {
		pk, ok := s.pol.accepted[sig.KeyID]
		if !ok {
			return http.StatusNotAcceptable, msgKeyNotValid
		}
		raw, err := base64.StdEncoding.DecodeString(sig.Sig)
		if err != nil || pk.Verify(s.env.Signed, raw) != nil {
			return http.StatusNotAcceptable, msgSignatureNotValid
		}
		if !seen[sig.KeyID] {
			seen[sig.KeyID] = true
			fresh = append(fresh, good{sig.KeyID, raw})
		}
	}
	for _, g := range fresh {
		if err := s.env.AddSignature(g.id, g.raw); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		summary, done := s.pol.progress(s.env)
		s.status(fmt.Sprintf("signed by %s (%s): %s", g.id[:16], s.pol.label(g.id), summary))
		if done && !s.fin {
			s.fin = true
			close(s.done)
		}
	}
	return http.StatusNoContent, ""
}

// replyString sends msg as a bare JSON string, as the stock server does.
func replyString(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62 writes n in the stock session ID alphabet.
func base62(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 62 {
		b = append(b, base62Digits[n%62])
	}
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// collectSignatures signs env with the signWith keys and, unless that
// completes it, runs a signing session for the rest. It returns the session
// URL, or "" when none was needed.
func collectSignatures(ctx context.Context, env *Env, opts SessionOptions, signWith []string, envl *manifest.Envelope, pol *sessionPolicy, what string) (string, error) {
	if len(signWith) > 0 {
		signers, ids, release, err := env.ownerSigners(ctx, signWith)
		if err != nil {
			return "", err
		}
		defer release()
		for i, s := range signers {
			if _, ok := pol.accepted[ids[i]]; !ok {
				return "", fmt.Errorf("%w: %s: --sign-with key %s is not one of the keys that sign it", ErrUsage, what, ids[i][:16])
			}
			if hasSignature(envl, ids[i]) {
				return "", fmt.Errorf("%w: %s: key %s is given twice", ErrUsage, what, ids[i][:16])
			}
			if err := publish.SignWith(ctx, envl, s); err != nil {
				return "", fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	if err := signWithSignerRefs(ctx, env, envl, pol, what); err != nil {
		return "", err
	}
	summary, done := pol.progress(envl)
	if done {
		return "", nil
	}
	if opts.NoSession {
		return "", fmt.Errorf("%s: the signatures are not complete (%s) and --no-session forbids collecting more", what, summary)
	}
	return runSession(ctx, opts, env.Clock(), envl, pol)
}

// signWithSignerRefs adds the signatures of the --signer keys that sign
// envl and have not signed it yet; the other --signer keys are left alone,
// since they are there for other roles. The signers stay up: the run's
// snapshot and timestamp may need them next.
func signWithSignerRefs(ctx context.Context, env *Env, envl *manifest.Envelope, pol *sessionPolicy, what string) error {
	if len(env.Signers) == 0 {
		return nil
	}
	refs, err := env.openSignerRefs(ctx)
	if err != nil {
		return err
	}
	for i, s := range refs.signers {
		if _, ok := pol.accepted[refs.ids[i]]; !ok || hasSignature(envl, refs.ids[i]) {
			continue
		}
		if err := publish.SignWith(ctx, envl, s); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// hasSignature reports whether env carries a signature by keyID.
func hasSignature(env *manifest.Envelope, keyID string) bool {
	for _, s := range env.Signatures {
		if s.KeyID == keyID {
			return true
		}
	}
	return false
}
