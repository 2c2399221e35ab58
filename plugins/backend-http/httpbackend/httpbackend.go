// Package httpbackend reads a mirror served over HTTP or HTTPS, with plain
// GET and HEAD requests: all that the stock tiup client does, so any static
// web server (or `mirror serve`) can host a mirror. It implements
// sdk.Backend read-only; plugins/backend-http serves it as a plugin.
//
// # Failures
//
// Networks fail midway, so every request is retried with exponential
// backoff on connection errors, 5xx and 429 (honouring Retry-After). A body
// that breaks off is resumed inside the reader Get returns, with a Range
// request guarded by If-Range, so callers see one uninterrupted stream. A
// server that ignores Range answers with the whole object again; the reader
// then skips what it has already delivered. Only a stall without progress
// counts against the attempt limit: a long download over a flaky link keeps
// going as long as each attempt moves it forward.
//
// # Credentials
//
// user:password in the address are sent as basic auth and kept out of every
// URL the package builds, so no error message or log carries them.
package httpbackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// UserAgent is sent with every request.
const UserAgent = "mirrorkit/0.1.0"

// Defaults for Options fields left zero, and for the default client.
const (
	// DefaultAttempts is how many times a request is tried.
	DefaultAttempts = 5
	// DefaultBaseDelay is the wait before the first retry.
	DefaultBaseDelay = 200 * time.Millisecond
	// DefaultIdleTimeout is how long a body may deliver nothing.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultConnectTimeout bounds the TCP connect and the TLS handshake.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultHeaderTimeout bounds the wait for response headers.
	DefaultHeaderTimeout = 30 * time.Second
	// MaxRetryAfter caps how long a Retry-After header can make one wait
	// last, so that a misconfigured server cannot park the client for hours.
	MaxRetryAfter = 2 * time.Minute
	// DefaultMinRate is the slowest average a body may arrive at, in bytes
	// per second of waiting for the server, once the idle timeout has passed
	// as a grace period: a server that drips a byte at a time never trips
	// the idle timeout, and would otherwise hold a client for days (the
	// slow-retrieval attack; rust-tuf enforces a minimum bitrate too).
	DefaultMinRate = 1024
)

// Environment variables that tune the plugin a mirror binary starts, for
// slow links and for tests: a Go duration ("90s") for the timeouts, an
// integer for the others. MIRROR_HTTP_MIN_RATE=0 turns the rule off.
const (
	EnvAttempts      = "MIRROR_HTTP_ATTEMPTS"
	EnvIdleTimeout   = "MIRROR_HTTP_IDLE_TIMEOUT"
	EnvHeaderTimeout = "MIRROR_HTTP_HEADER_TIMEOUT"
	EnvMinRate       = "MIRROR_HTTP_MIN_RATE"
)

// timeoutError is a failure for want of time. It matches
// context.DeadlineExceeded, the sentinel that crosses the plugin boundary,
// so that the host can tell a timeout from other transport failures.
type timeoutError struct {
	msg string
	err error // the cause, if any
}

func (e *timeoutError) Error() string        { return e.msg }
func (e *timeoutError) Unwrap() error        { return e.err }
func (e *timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// errIdle is the cause given to a request whose body made no progress for
// the idle timeout.
var errIdle error = &timeoutError{msg: "no data received within the idle timeout"}

// Options tune a Backend. The zero value gives the defaults.
type Options struct {
	// Client sends the requests. Nil builds one with a 10 s connect
	// timeout, a 30 s response-header timeout, proxies from the environment
	// and no transparent decompression (Range offsets count stored bytes).
	Client *http.Client
	// Attempts is how many times a request is tried before giving up,
	// counting the first; for a body, how many attempts in a row may fail to
	// deliver any byte. Zero means DefaultAttempts.
	Attempts int
	// BaseDelay is the wait before the first retry; each further retry
	// doubles it. Zero means DefaultBaseDelay.
	BaseDelay time.Duration
	// IdleTimeout aborts (and then resumes) a body that delivers nothing
	// for this long while the caller is reading. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers when Client is
	// nil. Zero means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// MinRate fails a body whose average rate, in bytes per second spent
	// waiting for it, is below this once IdleTimeout of waiting has passed.
	// Zero means DefaultMinRate; negative turns the rule off.
	MinRate int64
}

// Backend is a read-only mirror behind an HTTP(S) base URL. It is safe for
// concurrent use.
type Backend struct {
	base      string // scheme://host/path, no userinfo, no trailing slash
	user      *url.Userinfo
	client    *http.Client
	attempts  int
	baseDelay time.Duration
	idle      time.Duration
	minRate   int64 // 0: no minimum
}

var (
	_ sdk.Backend = (*Backend)(nil)
	_ io.Closer   = (*Backend)(nil)
)

// Open is the sdk.BackendFactory of the http backend. cfg.Address is the
// mirror's base URL, http or https, optionally with user:password.
// The EnvXxx variables tune it; it has no options, and refuses any rather
// than ignore a misspelt one or one meant for another backend.
func Open(ctx context.Context, cfg sdk.Config) (sdk.Backend, error) {
	if len(cfg.Options) > 0 {
		return nil, fmt.Errorf("open http backend: unknown option %s; the http backend takes none (its settings are the MIRROR_HTTP_* environment variables): %w", strings.Join(slices.Sorted(maps.Keys(cfg.Options)), ", "), fs.ErrInvalid)
	}
	opts, err := optionsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return New(cfg.Address, opts)
}

// optionsFromEnv reads the EnvXxx variables; an unset one keeps the
// default, a malformed one is an error naming it.
func optionsFromEnv(getenv func(string) string) (Options, error) {
	var o Options
	bad := func(name, v, want string) error {
		return fmt.Errorf("open http backend: %s=%q is not %s: %w", name, v, want, fs.ErrInvalid)
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvIdleTimeout, &o.IdleTimeout}, {EnvHeaderTimeout, &o.HeaderTimeout}} {
		if v := getenv(d.name); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return o, bad(d.name, v, "a positive duration such as 30s")
			}
			*d.dst = t
		}
	}
	if v := getenv(EnvAttempts); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, bad(EnvAttempts, v, "a positive integer")
		}
		o.Attempts = n
	}
	if v := getenv(EnvMinRate); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, bad(EnvMinRate, v, "a number of bytes per second")
		}
		o.MinRate = n
		if n == 0 {
			o.MinRate = -1
		}
	}
	return o, nil
}

// New returns a Backend for the mirror at address. The address must be an
// absolute http or https URL without a query; credentials in it become
// basic auth. Errors wrap fs.ErrInvalid and never repeat the address, which
// may hold a password.
func New(address string, opts Options) (*Backend, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("open http backend: the address is not a valid URL: %w", fs.ErrInvalid)
	}
	user := u.User
	u.User, u.Fragment, u.RawFragment = nil, "", ""
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("open http backend %s: the scheme must be http or https: %w", u.Redacted(), fs.ErrInvalid)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("open http backend %s: the address names no host: %w", u.Redacted(), fs.ErrInvalid)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("open http backend %s: the address may not have a query: %w", u.Redacted(), fs.ErrInvalid)
	}
	b := &Backend{
		base:      strings.TrimRight(u.String(), "/"),
		user:      user,
		client:    opts.Client,
		attempts:  opts.Attempts,
		baseDelay: opts.BaseDelay,
		idle:      opts.IdleTimeout,
	}
	if b.client == nil {
		header := opts.HeaderTimeout
		if header <= 0 {
			header = DefaultHeaderTimeout
		}
		b.client = newClient(header)
	}
	switch {
	case opts.MinRate == 0:
		b.minRate = DefaultMinRate
	case opts.MinRate > 0:
		b.minRate = opts.MinRate
	}
	if b.attempts <= 0 {
		b.attempts = DefaultAttempts
	}
	if b.baseDelay <= 0 {
		b.baseDelay = DefaultBaseDelay
	}
	if b.idle <= 0 {
		b.idle = DefaultIdleTimeout
	}
	return b, nil
}

// maxIdlePerHost keeps a connection for every tarball a clone reads at
// once (16 by default, more with --jobs): a smaller pool closes connections
// as bodies end and dials new ones for the next tarballs.
const maxIdlePerHost = 64

// newClient builds the default client. No total timeout: a tarball may take
// long, and the idle timeout and the minimum rate catch a stalled or
// dripping body instead.
func newClient(headerTimeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: DefaultConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   DefaultConnectTimeout,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
	}}
}

// Close releases idle connections.
func (b *Backend) Close() error {
	b.client.CloseIdleConnections()
	return nil
}

// URL returns the address of key, without credentials.
func (b *Backend) URL(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return b.base + "/" + strings.Join(parts, "/")
}

// Capabilities reports a read-only backend: an HTTP mirror is changed
// through its server's API, not through this backend.
func (b *Backend) Capabilities(ctx context.Context) (sdk.Capabilities, error) {
	return sdk.Capabilities{}, nil
}

// Stat sends HEAD. A 404 or 410 is sdk.ErrNotFound. Size is -1 when the
// server does not say.
func (b *Backend) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	if err := validKey("stat", key); err != nil {
		return sdk.ObjectInfo{}, err
	}
	resp, cancel, err := b.do(ctx, "stat", http.MethodHead, key, nil)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	defer cancel(nil)
	defer resp.Body.Close()
	if err := b.checkStatus("stat", key, resp, http.StatusOK); err != nil {
		return sdk.ObjectInfo{}, err
	}
	return infoOf(key, resp), nil
}

// Get sends GET and returns a reader that streams the body, resuming it
// transparently when it breaks off. A 404 or 410 is sdk.ErrNotFound. The
// reader's errors: sdk.ErrConflict when the object changed between
// attempts, the last failure once the attempts are spent, the context's
// error when ctx ends. Size is -1 when the server does not say.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	if err := validKey("get", key); err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	resp, cancel, err := b.do(ctx, "get", http.MethodGet, key, nil)
	if err != nil {
		return nil, sdk.ObjectInfo{}, err
	}
	if err := b.checkStatus("get", key, resp, http.StatusOK); err != nil {
		discard(resp)
		cancel(nil)
		return nil, sdk.ObjectInfo{}, err
	}
	info := infoOf(key, resp)
	r := &body{
		b:       b,
		ctx:     ctx,
		key:     key,
		etag:    resp.Header.Get("ETag"),
		lastMod: resp.Header.Get("Last-Modified"),
		size:    info.Size,
	}
	r.attach(resp, cancel)
	return r, info, nil
}

// errReadOnly explains why writes fail.
const errReadOnly = "an HTTP mirror is read here with plain GETs; changes to it go through its server's API"

// Put fails with sdk.ErrUnsupported.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	return sdk.ObjectInfo{}, fmt.Errorf("put %s: %s: %w", b.URL(key), errReadOnly, sdk.ErrUnsupported)
}

// List fails with sdk.ErrUnsupported: HTTP has no listing.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sdk.ObjectInfo) error) error {
	return fmt.Errorf("list %s: an HTTP mirror has no listing: %w", b.base, sdk.ErrUnsupported)
}

// Delete fails with sdk.ErrUnsupported.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return fmt.Errorf("delete %s: %s: %w", b.URL(key), errReadOnly, sdk.ErrUnsupported)
}

// Lock fails with sdk.ErrUnsupported.
func (b *Backend) Lock(ctx context.Context, name string) (func() error, error) {
	return nil, fmt.Errorf("lock %s on %s: %s: %w", name, b.base, errReadOnly, sdk.ErrUnsupported)
}

func validKey(op, key string) error {
	if !fs.ValidPath(key) || key == "." {
		return fmt.Errorf("%s %q: invalid key: %w", op, key, fs.ErrInvalid)
	}
	return nil
}

// infoOf reads the object's info from response headers.
func infoOf(key string, resp *http.Response) sdk.ObjectInfo {
	info := sdk.ObjectInfo{Key: key, Size: resp.ContentLength, ETag: resp.Header.Get("ETag")}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		info.ModTime = t
	}
	return info
}

// StatusError is an HTTP answer that is not what the request wanted.
type StatusError struct {
	Code   int    // the status code, e.g. 503
	Status string // the status line's text, e.g. "503 Service Unavailable"
}

// Error implements error.
func (e *StatusError) Error() string { return "server answered " + e.Status }

func statusErr(resp *http.Response) error {
	s := resp.Status
	if s == "" {
		s = strconv.Itoa(resp.StatusCode)
	}
	return &StatusError{Code: resp.StatusCode, Status: s}
}

// checkStatus maps a final response that is not want to an error. An
// answer that a redirect fetched from the key's path plus "/" is a
// directory's (the way static servers answer a directory's name, then list
// it): keys never name directories, so that is sdk.ErrNotFound too.
func (b *Backend) checkStatus(op, key string, resp *http.Response, want int) error {
	if resp.Request != nil && resp.Request.URL != nil && strings.HasSuffix(resp.Request.URL.Path, "/") {
		return fmt.Errorf("%s %s: a directory, not a file: %w", op, b.URL(key), sdk.ErrNotFound)
	}
	switch resp.StatusCode {
	case want:
		return nil
	case http.StatusNotFound, http.StatusGone:
		return fmt.Errorf("%s %s: %w", op, b.URL(key), sdk.ErrNotFound)
	default:
		return fmt.Errorf("%s %s: %w", op, b.URL(key), statusErr(resp))
	}
}

// retryable reports whether a status is worth another attempt.
func retryable(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}

// send makes one attempt. The response's context lives until cancel is
// called, so the caller can abort a stalled body with a cause.
func (b *Backend) send(ctx context.Context, method, key string, hdr http.Header) (*http.Response, context.CancelCauseFunc, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, method, b.URL(key), nil)
	if err != nil {
		cancel(nil)
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", UserAgent)
	if b.user != nil {
		pass, _ := b.user.Password()
		req.SetBasicAuth(b.user.Username(), pass)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		cancel(nil)
		return nil, nil, transportErr(err)
	}
	return resp, cancel, nil
}

// transportErr drops the *url.Error wrapper, whose method and URL the
// callers' messages already carry, and marks a timeout (no headers in
// time, a connect that never completes) as one.
func transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded) {
		return &timeoutError{msg: err.Error(), err: err}
	}
	return err
}

// do sends a request, retrying connection errors, 5xx and 429. It returns
// the first other response; the caller closes its body and calls cancel.
func (b *Backend) do(ctx context.Context, op, method, key string, hdr http.Header) (*http.Response, context.CancelCauseFunc, error) {
	var last error
	for attempt := 1; ; attempt++ {
		resp, cancel, err := b.send(ctx, method, key, hdr)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", op, b.URL(key), context.Cause(ctx))
			}
			last = err
		case retryable(resp.StatusCode):
			last = statusErr(resp)
			wait = retryAfter(resp.Header.Get("Retry-After"))
			discard(resp)
			cancel(nil)
		default:
			return resp, cancel, nil
		}
		if attempt >= b.attempts {
			return nil, nil, fmt.Errorf("%s %s: %w (gave up after %d attempts)", op, b.URL(key), last, attempt)
		}
		if err := sleep(ctx, max(wait, b.backoff(attempt))); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", op, b.URL(key), err)
		}
	}
}

// backoff is the wait after the n-th failed attempt: BaseDelay doubled
// n-1 times, plus up to a quarter of jitter so that many clients do not
// retry in lockstep.
func (b *Backend) backoff(n int) time.Duration {
	d := b.baseDelay << min(n-1, 16)
	return d + rand.N(d/4+1)
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
// Zero when absent or unparsable.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), MaxRetryAfter)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// discard drains a little of an unwanted body so the connection can be
// reused, then closes it.
func discard(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}
