package httpbackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

var errClosed = errors.New("read after close")

// body is the reader Get returns. It streams the current response and,
// when that breaks off, asks for the rest with a Range request and goes on
// where it stopped. It is not safe for concurrent use, like any io.Reader.
type body struct {
	b    *Backend
	ctx  context.Context
	key  string
	etag string // validators of the first response, to detect a change
	// lastMod is the fallback validator when there is no strong ETag.
	lastMod string
	size    int64 // -1 when unknown
	off     int64 // bytes delivered so far

	// failures counts attempts in a row that delivered nothing.
	failures int
	// waited is the time spent inside reads of the server's bodies that
	// delivered, and got what they delivered: the rate the minimum applies
	// to. Time the caller spends between reads does not count, nor does a
	// read that failed (a stall is the idle timeout's business, and is
	// retried).
	waited time.Duration
	got    int64

	cur    io.ReadCloser   // the current response body; nil between attempts
	curCtx context.Context // its request's context, to read the abort cause
	cancel context.CancelCauseFunc
	timer  *time.Timer // aborts cur when a Read stalls
	err    error       // sticky: once set, every Read returns it
}

// attach makes resp the current response.
func (r *body) attach(resp *http.Response, cancel context.CancelCauseFunc) {
	r.cur, r.curCtx, r.cancel = resp.Body, resp.Request.Context(), cancel
	r.timer = time.AfterFunc(r.b.idle, func() { cancel(errIdle) })
	r.timer.Stop()
}

// detach drops the current response.
func (r *body) detach() {
	if r.cur == nil {
		return
	}
	r.timer.Stop()
	r.cur.Close()
	r.cancel(nil)
	r.cur = nil
}

// readCur reads the current body under the idle timer. The timer runs only
// inside Read, so a slow consumer never counts as a stalled server.
func (r *body) readCur(p []byte) (int, error) {
	r.timer.Reset(r.b.idle)
	start := time.Now()
	n, err := r.cur.Read(p)
	if err == nil || err == io.EOF {
		r.waited += time.Since(start)
		r.got += int64(n)
	}
	r.timer.Stop()
	if err != nil && err != io.EOF && errors.Is(context.Cause(r.curCtx), errIdle) {
		err = errIdle
	}
	return n, err
}

// tooSlow reports, once the grace period (the idle timeout) of waiting has
// passed, a body arriving slower than the minimum rate. It is final: a
// server that drips would only drip again on a resumed request.
func (r *body) tooSlow() error {
	if r.b.minRate <= 0 || r.waited <= r.b.idle {
		return nil
	}
	rate := float64(r.got) / r.waited.Seconds()
	if rate >= float64(r.b.minRate) {
		return nil
	}
	return fmt.Errorf("get %s: %w", r.b.URL(r.key), &timeoutError{msg: fmt.Sprintf(
		"the body arrived at %.0f bytes/s over %s, below the minimum of %d bytes/s", rate, r.waited.Round(time.Millisecond), r.b.minRate)})
}

// Read implements io.Reader.
func (r *body) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if r.cur == nil {
			if err := r.reopen(); err != nil {
				r.err = err
				return 0, err
			}
			if r.cur == nil {
				continue
			}
		}
		n, err := r.readCur(p)
		r.off += int64(n)
		if n > 0 {
			r.failures = 0
		}
		if err == nil {
			if serr := r.tooSlow(); serr != nil {
				r.detach()
				r.err = serr
				return n, serr
			}
			return n, nil
		}
		if err == io.EOF {
			if r.size < 0 || r.off >= r.size {
				r.detach()
				r.err = io.EOF
				return n, io.EOF
			}
			err = io.ErrUnexpectedEOF
		}
		r.detach()
		if r.ctx.Err() != nil {
			r.err = fmt.Errorf("get %s: %w", r.b.URL(r.key), context.Cause(r.ctx))
			return n, r.err
		}
		if ferr := r.failed(err, 0); ferr != nil {
			r.err = ferr
			return n, ferr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close implements io.Closer.
func (r *body) Close() error {
	r.detach()
	if r.err == nil {
		r.err = fmt.Errorf("get %s: %w", r.b.URL(r.key), errClosed)
	}
	return nil
}

// failed counts a failed attempt and waits before the next one. It
// returns an error when the attempts are spent or ctx ends.
func (r *body) failed(err error, wait time.Duration) error {
	r.failures++
	if r.failures >= r.b.attempts {
		return fmt.Errorf("get %s: %w (gave up after %d attempts without progress at byte %d)", r.b.URL(r.key), err, r.failures, r.off)
	}
	if serr := sleep(r.ctx, max(wait, r.b.backoff(r.failures))); serr != nil {
		return fmt.Errorf("get %s: %w", r.b.URL(r.key), serr)
	}
	return nil
}

// reopen asks for the rest of the object. It returns an error only when
// going on is pointless; after a failure worth retrying it returns nil with
// no current body, and Read calls it again.
func (r *body) reopen() error {
	url := r.b.URL(r.key)
	hdr := http.Header{}
	hdr.Set("Range", "bytes="+strconv.FormatInt(r.off, 10)+"-")
	if v := r.validator(); v != "" {
		hdr.Set("If-Range", v)
	}
	resp, cancel, err := r.b.send(r.ctx, http.MethodGet, r.key, hdr)
	if err != nil {
		if r.ctx.Err() != nil {
			return fmt.Errorf("get %s: %w", url, context.Cause(r.ctx))
		}
		return r.failed(err, 0)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != r.off {
			discard(resp)
			cancel(nil)
			return fmt.Errorf("get %s: resuming at byte %d, the server sent Content-Range %q", url, r.off, resp.Header.Get("Content-Range"))
		}
		if r.changed(resp.Header, total) {
			discard(resp)
			cancel(nil)
			return fmt.Errorf("get %s: the object changed during the download: %w", url, sdk.ErrConflict)
		}
		r.attach(resp, cancel)
		return nil
	case code == http.StatusOK:
		// The server ignored Range, or If-Range found another version.
		if r.changed(resp.Header, resp.ContentLength) {
			discard(resp)
			cancel(nil)
			return fmt.Errorf("get %s: the object changed during the download: %w", url, sdk.ErrConflict)
		}
		r.attach(resp, cancel)
		return r.skip()
	case retryable(code):
		wait := retryAfter(resp.Header.Get("Retry-After"))
		serr := statusErr(resp)
		discard(resp)
		cancel(nil)
		return r.failed(serr, wait)
	default:
		discard(resp)
		cancel(nil)
		if code == http.StatusNotFound || code == http.StatusGone {
			return fmt.Errorf("get %s: the object disappeared during the download: %w", url, sdk.ErrNotFound)
		}
		return fmt.Errorf("get %s: resuming at byte %d: %w", url, r.off, statusErr(resp))
	}
}

// skip discards the first r.off bytes of a full response, which the caller
// has already had.
func (r *body) skip() error {
	buf := make([]byte, 32<<10)
	for left := r.off; left > 0; {
		n, err := r.readCur(buf[:min(left, int64(len(buf)))])
		left -= int64(n)
		if err == nil {
			continue
		}
		r.detach()
		if err == io.EOF {
			return fmt.Errorf("get %s: the object changed during the download (now shorter than %d bytes): %w", r.b.URL(r.key), r.off, sdk.ErrConflict)
		}
		if r.ctx.Err() != nil {
			return fmt.Errorf("get %s: %w", r.b.URL(r.key), context.Cause(r.ctx))
		}
		return r.failed(err, 0)
	}
	return nil
}

// validator is the If-Range value: the ETag when it is strong (RFC 9110
// forbids weak ones there), else Last-Modified.
func (r *body) validator() string {
	if r.etag != "" && !strings.HasPrefix(r.etag, "W/") {
		return r.etag
	}
	return r.lastMod
}

// changed reports whether a later response describes another version of
// the object than the first one did. total is its full length, -1 if
// unknown.
func (r *body) changed(h http.Header, total int64) bool {
	if e := h.Get("ETag"); r.etag != "" && e != "" && e != r.etag {
		return true
	}
	if m := h.Get("Last-Modified"); r.lastMod != "" && m != "" && m != r.lastMod {
		return true
	}
	return r.size >= 0 && total >= 0 && total != r.size
}

// parseContentRange parses "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, total, true
}
