package ocibackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Retry policy. A registry answering 429 or a 5xx, or not answering at all
// while it restarts, gets the request again after Retry-After when it sent
// one, else after an exponential backoff: 8 attempts span about half a
// minute, which covers a registry restart.
const (
	retryAttempts = 8
	retryBase     = 250 * time.Millisecond
	retryMaxDelay = 8 * time.Second
	// maxRetryAfter bounds how long a Retry-After can make us wait; a
	// registry asking for longer gets an error saying so instead of a
	// process that seems hung.
	maxRetryAfter = 2 * time.Minute
)

// retryTransport retries requests a registry refused for the moment. It
// sits under go-containerregistry's auth transport, so token requests are
// retried too. ggcr's own retry transport (transport.NewRetry) ignores
// Retry-After, hence this one.
//
// A request is retried only when its body can be replayed (GetBody), which
// every request of this package's has: chunks and manifests are held in
// memory. A retried chunk that the registry had in fact partly taken is
// refused by the registry (its offset no longer matches), never stored
// twice, and the upload then fails as a whole with nothing tagged.
type retryTransport struct {
	inner    http.RoundTripper
	attempts int
	sleep    func(ctx context.Context, d time.Duration) error
	// retried counts the retries, for tests and the log.
	onRetry func(req *http.Request, status int, err error, wait time.Duration)
}

// retryableStatus lists what a registry says when a request may succeed
// later: throttled, or the server or a proxy in front of it is unwell.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusRequestTimeout,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfterError reports a Retry-After past maxRetryAfter.
type retryAfterError struct {
	host string
	wait time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("registry %s is throttling: it asks to retry after %v", e.host, e.wait.Round(time.Second))
}

// attemptsKey marks a context whose requests get fewer attempts.
type attemptsKey struct{}

// withAttempts bounds the attempts of the requests made with ctx. The first
// contact with a registry uses it: a registry that is not there at all is
// more likely a wrong address than a restart, and should not cost half a
// minute to report.
func withAttempts(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptsKey{}, n)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	attempts := t.attempts
	if n, ok := ctx.Value(attemptsKey{}).(int); ok {
		attempts = n
	}
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 {
			r = req.Clone(ctx)
			if req.Body != nil && req.Body != http.NoBody {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := t.inner.RoundTrip(r)
		if ctx.Err() != nil {
			if err == nil {
				return resp, nil
			}
			return nil, err
		}
		replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
		var wait time.Duration
		switch {
		case err != nil:
			if !retryableErr(err) {
				return nil, err
			}
			wait = backoff(attempt)
		case retryableStatus(resp.StatusCode):
			wait = backoff(attempt)
			if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				if ra > maxRetryAfter {
					resp.Body.Close()
					return nil, &retryAfterError{host: req.URL.Host, wait: ra}
				}
				wait = ra
			}
		default:
			return resp, nil
		}
		if attempt >= attempts || !replayable {
			return resp, err
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
			// Drain a little so the connection can be reused.
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if t.onRetry != nil {
			t.onRetry(req, status, err, wait)
		}
		if serr := t.sleep(ctx, wait); serr != nil {
			if err == nil {
				err = fmt.Errorf("%s %s: answered %d, gave up: %w", req.Method, req.URL.Host, status, serr)
			}
			return nil, err
		}
	}
}

// retryableErr reports whether a failed round trip may succeed later: the
// registry refused or dropped the connection (it is restarting) or timed out.
// A TLS or certificate error, an unknown host or a refused plain-HTTP request
// will not get better by waiting.
func retryableErr(err error) bool {
	if errors.Is(err, errPlainHTTP) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// backoff is the wait before attempt+1: exponential with jitter, capped.
func backoff(attempt int) time.Duration {
	d := retryBase << (attempt - 1)
	if d > retryMaxDelay || d <= 0 {
		d = retryMaxDelay
	}
	// Jittered, so clients throttled together do not come back together.
	return jitter(d)
}

// jitter moves d by up to 20% either way.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// retryAfter parses a Retry-After header: delta-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// sleepContext waits d or until ctx is done.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
