package attacktest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultKind is what a fault does to a response.
type FaultKind int

// The faults SRV can inject. N is the parameter each one names.
const (
	// Truncate serves the first N bytes, with a matching Content-Length.
	Truncate FaultKind = iota + 1
	// Append serves the file followed by N junk bytes.
	Append
	// Endless serves the file's first bytes and then zeros forever,
	// without a Content-Length, until the client goes away.
	Endless
	// Flip serves the file with the byte at offset N inverted.
	Flip
	// Drip sends the file one byte every N milliseconds.
	Drip
	// Stall sends the headers and then nothing, until the client goes.
	Stall
	// StallHeaders accepts the request and never answers it.
	StallHeaders
	// Status answers with status code N and a short body.
	Status
	// HTML answers 200 with an HTML page (a captive portal).
	HTML
	// Redirect answers 302 to To; with N > 1 it chains N hops of
	// redirects on this server before To (a loop when N is large).
	Redirect
	// Replay serves Body instead of the file (an old version, another
	// file's bytes).
	Replay
	// LieLength sends a raw response whose Content-Length is N while the
	// body is the whole file (or, with N above the file's length, a short
	// body under a long header).
	LieLength
	// ResetMidBody sends the headers of the whole file, the first half of
	// the body, and closes the connection.
	ResetMidBody
	// RangeIgnored answers a Range request with 200 and the whole file.
	RangeIgnored
	// RangeWrong answers a Range request with 206 and a Content-Range
	// that starts elsewhere.
	RangeWrong
	// GzipEncoded serves the file gzip-compressed, labelled
	// Content-Encoding: gzip.
	GzipEncoded
)

var faultNames = map[FaultKind]string{
	Truncate: "truncate", Append: "append", Endless: "endless", Flip: "flip", Drip: "drip",
	Stall: "stall", StallHeaders: "stall-headers", Status: "status", HTML: "html", Redirect: "redirect",
	Replay: "replay", LieLength: "lie-content-length", ResetMidBody: "reset-mid-body",
	RangeIgnored: "range-ignored", RangeWrong: "range-wrong", GzipEncoded: "gzip-encoded",
}

func (k FaultKind) String() string { return faultNames[k] }

// Fault is one entry of a fault plan: what to do to which requests of a
// path. The requests of the path are counted from 1 from the time the
// fault is added; it applies to requests Skip+1 to Skip+Times (every later
// one when Times is 0).
type Fault struct {
	Kind  FaultKind
	N     int64
	To    string
	Body  []byte
	Skip  int
	Times int

	seen int
}

// Request is one request SRV saw and what it sent back.
type Request struct {
	Method string
	Path   string
	Range  string
	Status int
	Sent   int64 // body bytes written
}

// Server is SRV: an httptest server on 127.0.0.1 that serves a mirror's
// files by their TiUP names with a fault plan, and records every request.
// Files come from a lookup function (a Case's served view of its Sim).
type Server struct {
	*httptest.Server
	lookup func(name string) ([]byte, bool)

	mu     sync.Mutex
	faults map[string][]*Fault
	count  map[string]int
	log    []Request
	done   chan struct{}
}

// NewServer starts a server answering from lookup. Close it when done.
func NewServer(lookup func(name string) ([]byte, bool)) *Server {
	s := &Server{lookup: lookup, faults: map[string][]*Fault{}, count: map[string]int{}, done: make(chan struct{})}
	s.Server = httptest.NewServer(s)
	return s
}

// Close stops the server, ending every stalled or endless response first.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.Server.CloseClientConnections()
	s.Server.Close()
}

// Fault adds a fault for path (a file name such as "timestamp.json", or
// "*" for every path).
func (s *Server) Fault(path string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], &f)
}

// Heal removes every fault; request counts and the log stay.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]*Fault{}
}

// Requests returns the log of requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ResetLog empties the request log.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// Paths returns the paths requested since the log was last reset, in order.
func (s *Server) Paths() []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Path)
	}
	return out
}

func (s *Server) plan(path string) (*Fault, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count[path]++
	n := s.count[path]
	var chosen *Fault
	for _, key := range []string{path, "*"} {
		for _, f := range s.faults[key] {
			f.seen++
			if chosen == nil && f.seen > f.Skip && (f.Times == 0 || f.seen <= f.Skip+f.Times) {
				c := *f
				chosen = &c
			}
		}
	}
	return chosen, n
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, r)
}

// countingWriter counts body bytes and remembers the status.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	f, _ := s.plan(path)
	w := &countingWriter{ResponseWriter: rw}
	req := Request{Method: r.Method, Path: path, Range: r.Header.Get("Range")}
	defer func() {
		req.Status, req.Sent = w.status, w.n
		s.record(req)
	}()
	body, ok := s.lookup(path)
	if f == nil {
		if !ok {
			http.NotFound(w, r)
			return
		}
		serveContent(w, r, body)
		return
	}
	switch f.Kind {
	case Status:
		w.WriteHeader(int(f.N))
		fmt.Fprintf(w, "status %d from the fault plan\n", f.N)
		return
	case HTML:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in to the network.</body></html>\n")
		return
	case Redirect:
		to := f.To
		if f.N > 1 {
			hop, _ := strconv.Atoi(r.URL.Query().Get("hop"))
			if int64(hop+1) < f.N {
				to = fmt.Sprintf("/%s?hop=%d", path, hop+1)
			}
		}
		http.Redirect(w, r, to, http.StatusFound)
		return
	case StallHeaders:
		hj, ok := rw.(http.Hijacker)
		if !ok {
			panic("attacktest: server cannot hijack")
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// A hijacked connection no longer cancels the request's context;
		// reading it until EOF notices the client going away.
		gone := make(chan struct{})
		go func() {
			io.Copy(io.Discard, conn)
			close(gone)
		}()
		select {
		case <-gone:
		case <-s.done:
		}
		return
	case Replay:
		serveContent(w, r, f.Body)
		return
	case Endless:
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		chunk := make([]byte, 64<<10)
		// A safety bound, far above any cap the client has, so a broken
		// client fails its test instead of filling memory forever.
		for sent := int64(0); sent < 4<<30; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-s.done:
				return
			default:
			}
		}
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch f.Kind {
	case Truncate:
		serveContent(w, r, body[:min(int64(len(body)), f.N)])
	case Append:
		serveContent(w, r, append(append([]byte(nil), body...), bytes.Repeat([]byte{'x'}, int(f.N))...))
	case Flip:
		b := append([]byte(nil), body...)
		if f.N < int64(len(b)) {
			b[f.N] ^= 0xff
		}
		serveContent(w, r, b)
	case Drip:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		for i := range body {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			w.Flush()
			if !s.sleep(r, time.Duration(f.N)*time.Millisecond) {
				return
			}
		}
	case Stall:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Flush()
		s.wait(r)
	case LieLength:
		s.raw(rw, r, w, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", f.N), body)
	case ResetMidBody:
		s.raw(rw, r, w, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: %s\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n", len(body), etag(body)), body[:len(body)/2])
	case RangeIgnored:
		w.Header().Set("ETag", etag(body))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	case RangeWrong:
		if r.Header.Get("Range") == "" {
			serveContent(w, r, body)
			return
		}
		w.Header().Set("ETag", etag(body))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body)
	case GzipEncoded:
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(body)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(zb.Len()))
		w.WriteHeader(http.StatusOK)
		w.Write(zb.Bytes())
	default:
		panic(fmt.Sprintf("attacktest: fault %v not handled", f.Kind))
	}
}

// raw hijacks the connection and writes head and body as given: net/http
// refuses to send a body that disagrees with its Content-Length.
func (s *Server) raw(rw http.ResponseWriter, r *http.Request, w *countingWriter, head string, body []byte) {
	hj, ok := rw.(http.Hijacker)
	if !ok {
		panic("attacktest: server cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	w.status = http.StatusOK
	bw := bufio.NewWriter(conn)
	bw.WriteString(head)
	n, _ := bw.Write(body)
	bw.Flush()
	w.n = int64(n)
}

// wait blocks until the client goes away or the server closes.
func (s *Server) wait(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

// sleep waits d; false when the client went away or the server closed.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}

func etag(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

// serveContent serves b with an ETag, answering Range and If-Range the way
// a static web server (and mirror serve) does.
func serveContent(w http.ResponseWriter, r *http.Request, b []byte) {
	w.Header().Set("ETag", etag(b))
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}
