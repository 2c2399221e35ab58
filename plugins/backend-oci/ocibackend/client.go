package ocibackend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mirrorkit/mirror/sdk"
)

// errPlainHTTP refuses a plain-HTTP request to a registry addressed as
// oci://: credentials and mirror files go over TLS unless the user said
// oci+http:// (or insecure=true).
var errPlainHTTP = errors.New("plain HTTP refused for an oci:// address")

// httpsGuard refuses plain-HTTP requests. go-containerregistry falls back to
// http:// for loopback and private addresses on its own; an oci:// address
// means TLS, so that fallback is closed here.
type httpsGuard struct{ inner http.RoundTripper }

func (g httpsGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Host, errPlainHTTP)
	}
	return g.inner.RoundTrip(req)
}

// client talks to one repository of one registry.
type client struct {
	repo     name.Repository
	host     string // the registry, as in messages: 127.0.0.1:5000
	insecure bool
	keychain authn.Keychain
	// mountFrom are repositories of the same registry that blobs may be
	// mounted from; the token asks to pull from them too.
	mountFrom []name.Repository
	retry     *retryTransport
	// pool is the transport at the bottom of every client this one makes;
	// the wrappers above it (auth, retries) cannot close idle connections.
	pool *http.Transport

	mu        sync.Mutex
	http      *http.Client
	anonymous bool
}

// firstContactAttempts bounds the attempts of the handshake, about a second
// of waiting; every later request gets retryAttempts.
const firstContactAttempts = 3

// connect returns the authenticated HTTP client, doing the registry's auth
// handshake on first use (and again after a failed one).
func (c *client) connect(ctx context.Context) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http != nil {
		return c.http, nil
	}
	auth, err := authn.Resolve(ctx, c.keychain, c.repo)
	if err != nil {
		return nil, fmt.Errorf("registry %s: read credentials: %v; check ~/.docker/config.json or DOCKER_CONFIG", c.host, err)
	}
	c.anonymous = auth == authn.Anonymous
	scopes := []string{c.repo.Scope(transport.PushScope)}
	for _, m := range c.mountFrom {
		scopes = append(scopes, m.Scope(transport.PullScope))
	}
	rt, err := transport.NewWithContext(withAttempts(ctx, firstContactAttempts), c.repo.Registry, auth, c.retry, scopes)
	if err != nil {
		return nil, c.connectError(ctx, err)
	}
	c.http = &http.Client{Transport: rt}
	return c.http, nil
}

// connectError explains a failed handshake.
func (c *client) connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("registry %s: %w", c.host, ctx.Err())
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return c.authError()
		case retryableStatus(te.StatusCode):
			return fmt.Errorf("registry %s kept answering %d %s; try again later", c.host, te.StatusCode, http.StatusText(te.StatusCode))
		}
		return fmt.Errorf("registry %s: %v", c.host, te)
	}
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra
	}
	if !c.insecure && (errors.Is(err, errPlainHTTP) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")) {
		return fmt.Errorf("registry %s does not answer over HTTPS; for a plain-HTTP registry use oci+http://%s: %w", c.host, c.repo.Name(), fs.ErrInvalid)
	}
	return fmt.Errorf("registry %s is not reachable: %v", c.host, netCause(err))
}

// netCause is the gist of a failed connection: go-containerregistry's ping
// joins the errors of its https and http attempts, each with its URL.
func netCause(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is it running, on that port?)"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "no such host " + dnsErr.Name
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	return unwrapURLError(err).Error()
}

// authError is the one-line answer to a refused request: what to run.
func (c *client) authError() error {
	if c.anonymous {
		return fmt.Errorf("registry %s needs credentials: run `docker login %s` or set DOCKER_CONFIG: %w", c.host, c.host, fs.ErrPermission)
	}
	return fmt.Errorf("registry %s refused the credentials: run `docker login %s` or set DOCKER_CONFIG: %w", c.host, c.host, fs.ErrPermission)
}

// url returns the URL of path under the repository: "manifests/TAG",
// "blobs/DIGEST", "blobs/uploads/", "tags/list".
func (c *client) url(path string) string { return c.repoURL(c.repo, path) }

// repoURL is url for another repository of the registry.
func (c *client) repoURL(repo name.Repository, path string) string {
	scheme := "https"
	if c.insecure {
		scheme = "http"
	}
	return fmt.Sprintf("%s://%s/v2/%s/%s", scheme, repo.RegistryStr(), repo.RepositoryStr(), path)
}

// request is one registry call.
type request struct {
	method string
	url    string
	header http.Header
	body   []byte // replayable, so a retry can send it again
	// stream, when set instead of body, is sent as it is read and never
	// retried; length is its size, or -1 when unknown.
	stream io.Reader
	length int64
}

// do sends r and returns the response whatever its status; callers check it
// with expect.
func (c *client) do(ctx context.Context, r request) (*http.Response, error) {
	hc, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.stream != nil {
		// Not a bytes.Reader: net/http must not see a GetBody, so the
		// retry transport knows it cannot send this again.
		body = io.NopCloser(r.stream)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	switch {
	case r.body != nil:
		req.ContentLength = int64(len(r.body))
	case r.stream != nil:
		req.ContentLength = r.length
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			// A bearer token refresh was refused.
			return nil, c.authError()
		}
		var ra *retryAfterError
		if errors.As(err, &ra) {
			return nil, ra
		}
		return nil, fmt.Errorf("registry %s: %v", c.host, unwrapURLError(err))
	}
	return resp, nil
}

// unwrapURLError drops net/http's "Method URL:" prefix, which repeats what
// the caller's message already says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// expect returns nil when resp has one of the codes, and otherwise the
// registry's answer as an error mapped to the sdk sentinels; it closes the
// body then.
func (c *client) expect(resp *http.Response, codes ...int) error {
	for _, code := range codes {
		if resp.StatusCode == code {
			return nil
		}
	}
	defer resp.Body.Close()
	err := transport.CheckError(resp, codes...)
	var te *transport.Error
	errors.As(err, &te)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return c.authError()
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("registry %s: %s: %w", c.host, describe(te, resp), sdk.ErrNotFound)
	case resp.StatusCode == http.StatusMethodNotAllowed || hasCode(te, transport.UnsupportedErrorCode):
		return fmt.Errorf("registry %s does not allow it: %s: %w", c.host, describe(te, resp), sdk.ErrUnsupported)
	case retryableStatus(resp.StatusCode):
		return fmt.Errorf("registry %s kept answering %s; try again later", c.host, describe(te, resp))
	}
	return fmt.Errorf("registry %s: %s", c.host, describe(te, resp))
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	if te == nil {
		return false
	}
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// describe is the registry's answer in a few words: the status and its
// error codes and messages.
func describe(te *transport.Error, resp *http.Response) string {
	s := resp.Status
	if te != nil {
		for _, d := range te.Errors {
			s += fmt.Sprintf(": %s", d.Code)
			if d.Message != "" {
				s += " " + d.Message
			}
		}
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// location resolves an upload's Location header against the request.
func location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("the registry started an upload without a Location")
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("the registry gave upload location %q: %v", loc, err)
	}
	return u.String(), nil
}

// withQuery adds key=value to a URL that may already have a query (an
// upload location carries its state).
func withQuery(rawURL, key, value string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// closeIdle drops kept-alive connections.
func (c *client) closeIdle() {
	c.pool.CloseIdleConnections()
}
