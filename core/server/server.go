// Package server implements `mirror serve`: it serves a mirror kept on any
// backend over HTTP, so that the stock tiup client (which reads a mirror
// with plain GETs) and mirrorkit's http backend can use it.
//
// Only GET and HEAD are answered, except under /api/v1/ when the write API
// is enabled (APIOptions): there POSTs publish components and rotate the
// root as tiup-server's API does (spec §8). keys/ and anything under a path segment
// starting with '.' are never served (404, so their existence is not
// revealed): a mirror's directory may hold private keys or a backend's own
// files. There are no directory listings.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/sdk"
)

// ShutdownTimeout bounds how long Serve waits for requests in flight once
// its context ends; requests still running then are cut.
const ShutdownTimeout = 10 * time.Second

// Options configure a Server.
type Options struct {
	// Logger receives one access-log line per request and server errors;
	// nil discards them.
	Logger hclog.Logger
	// Clock tells the time, for request durations in the access log; nil
	// leaves durations out.
	Clock func() time.Time
	// API, when set, enables the write API under /api/v1/.
	API *APIOptions
}

// Server serves the files of a mirror. It is an http.Handler and safe for
// concurrent use.
type Server struct {
	backend    sdk.Backend
	localFiles sdk.LocalFiler // nil unless the backend has local files
	// dir is the mirror's directory when the backend keeps each object as
	// the file named by its key (backend-fs): requests are then served
	// with no call into the plugin at all, through an os.Root, so a link
	// planted in the mirror cannot lead outside it.
	dir   *os.Root
	small smallCache // small files of dir, in memory
	watch *dirWatch  // changes in dir; nil when not watched
	// snapshot is the last snapshot.json that matched the timestamp, for
	// a streaming backend; see serveSnapshot.
	snapshot snapshotMemory
	log      hclog.Logger
	now      func() time.Time
	api      *api // nil: read-only
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for the mirror in b. It asks b for its capabilities
// once, to learn whether objects can be served straight from local files.
func New(ctx context.Context, b sdk.Backend, opts Options) (*Server, error) {
	caps, err := b.Capabilities(ctx)
	if err != nil {
		return nil, fmt.Errorf("serve: read backend capabilities: %w", err)
	}
	s := &Server{backend: b, log: opts.Logger, now: opts.Clock}
	if lf, ok := b.(sdk.LocalFiler); ok && caps.LocalFiles {
		s.localFiles = lf
		var path string
		if s.dir, path = mirrorDir(ctx, lf); s.dir != nil {
			s.watch = watchDir(path, &s.small)
		}
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if opts.API != nil {
		if s.api, err = newAPI(opts.API, opts.Clock, s.log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close stops watching the mirror's directory and removes the uploads
// still waiting for their manifests. The server must not be used
// afterwards.
func (s *Server) Close() error {
	s.watch.close()
	if s.api == nil {
		return nil
	}
	return s.api.close()
}

// Listen opens a TCP listener on addr ("host:port"; port 0 picks a free
// one). With certFile and keyFile it serves TLS; both or neither must be
// given.
func Listen(addr, certFile, keyFile string) (net.Listener, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("listen %s: TLS needs both a certificate and a key: %w", addr, fs.ErrInvalid)
	}
	var conf *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("listen %s: load TLS certificate: %w", addr, err)
		}
		conf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if conf != nil {
		return tls.NewListener(ln, conf), nil
	}
	return ln, nil
}

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting, lets requests in flight finish for up to
// ShutdownTimeout, and returns nil. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.api != nil {
		// A context does not interrupt a body read; this bounds uploads.
		// A GET has no body, so it is not affected.
		srv.ReadTimeout = s.api.timeout
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("shutdown timed out; cutting requests in flight")
		err = srv.Close()
	}
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), serr)
	}
	if err != nil {
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	return nil
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var start time.Time
	if s.now != nil {
		start = s.now()
	}
	lw := &logWriter{ResponseWriter: w}
	s.serve(lw, r)
	fields := []any{"method", r.Method, "path", r.URL.EscapedPath(), "status", lw.status(), "bytes", lw.n}
	if s.now != nil {
		fields = append(fields, "duration", s.now().Sub(start))
	}
	s.log.Info("request", fields...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if s.api != nil && isAPIPath(r.URL.Path) {
		s.api.serve(w, r)
		// A client told its publish is done reads it back at once: the
		// cache must already have let go of what the publish replaced.
		s.watch.drain()
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed)
		return
	}
	key, code := keyOf(r.URL.Path)
	if code != http.StatusOK {
		httpError(w, code)
		return
	}
	if s.localFiles != nil {
		if ok := s.serveLocal(w, r, key); ok {
			return
		}
	}
	if key == snapshotKey {
		s.serveSnapshot(w, r)
		return
	}
	s.serveStream(w, r, key)
}

// keyOf maps a request path to a key, or to the status that refuses it.
func keyOf(p string) (string, int) {
	key, ok := strings.CutPrefix(p, "/")
	if ok && key == "" {
		// The root: there is no listing to give.
		return "", http.StatusNotFound
	}
	if ok && (key == "keys" || strings.HasPrefix(key, "keys/")) {
		// Whatever follows, even a malformed rest: keys/ holds private
		// keys, and no answer may tell what is in it.
		return "", http.StatusNotFound
	}
	if !ok || !fs.ValidPath(key) || key == "." {
		return "", http.StatusBadRequest
	}
	if hidden(key) {
		return "", http.StatusNotFound
	}
	return key, http.StatusOK
}

// hidden reports whether key has a segment starting with '.': backends'
// own files (temporaries, locks) and others not meant for clients.
func hidden(key string) bool {
	for seg := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// serveLocal serves key from the backend's local file, with full Range and
// conditional support from http.ServeContent. It returns false when the
// stream path should be taken instead.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, key string) bool {
	// The ETag comes from the backend and the bytes from the open file; a
	// few tries make them describe the same version even when the key is
	// replaced meanwhile.
	if s.dir != nil {
		s.serveDir(w, r, key)
		return true
	}
	for range 3 {
		f, info, err := s.openLocal(r.Context(), key)
		if errors.Is(err, sdk.ErrUnsupported) {
			return false
		}
		if errors.Is(err, errChanged) {
			continue
		}
		s.serveFile(w, r, key, f, info, err)
		return true
	}
	// The key kept changing: stream whatever version Get opens.
	return false
}

// mirrorDir opens the directory that holds the mirror's files when the
// backend maps keys to same-named files under one directory, or returns nil.
func mirrorDir(ctx context.Context, lf sdk.LocalFiler) (*os.Root, string) {
	const probe = "root.json"
	p, err := lf.LocalPath(ctx, probe)
	if err != nil || !strings.HasSuffix(p, string(os.PathSeparator)+probe) {
		return nil, ""
	}
	path := strings.TrimSuffix(p, string(os.PathSeparator)+probe)
	dir, err := os.OpenRoot(path)
	if err != nil {
		return nil, ""
	}
	return dir, path
}

// openDir opens key in the mirror's directory and stats the open file, so
// that what describes the answer is always the bytes sent.
func (s *Server) openDir(key string) (*os.File, fs.FileInfo, error) {
	f, err := s.dir.Open(key)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("read %s: %w", key, sdk.ErrNotFound)
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("read %s: %w", key, sdk.ErrNotFound)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// serveFile answers with an opened local file (or the error opening it),
// with Range and conditional requests handled by http.ServeContent.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, key string, f *os.File, info sdk.ObjectInfo, err error) {
	if err != nil {
		s.backendError(w, key, err)
		return
	}
	defer f.Close()
	setHeaders(w, key, info)
	http.ServeContent(w, r, "", info.ModTime, f)
}

// errChanged reports that a key was replaced between Stat and open.
var errChanged = errors.New("object changed while opening it")

// openLocal opens the local file of key and checks that it is the version
// the backend's info describes.
func (s *Server) openLocal(ctx context.Context, key string) (*os.File, sdk.ObjectInfo, error) {
	info, err := s.backend.Stat(ctx, key)
	if err != nil {
		return nil, info, err
	}
	p, err := s.localFiles.LocalPath(ctx, key)
	if err != nil {
		return nil, info, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, info, errChanged
	}
	if err != nil {
		return nil, info, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, info, err
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, info, sdk.ErrNotFound
	case fi.Size() != info.Size || !info.ModTime.IsZero() && !fi.ModTime().Equal(info.ModTime):
		f.Close()
		return nil, info, errChanged
	}
	return f, info, nil
}

// serveStream serves key through the backend's Get: conditional requests
// by ETag, and a single range by skipping bytes.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, key string) {
	ctx := r.Context()
	var (
		info sdk.ObjectInfo
		rc   io.ReadCloser
		err  error
	)
	if r.Method == http.MethodHead {
		info, err = s.backend.Stat(ctx, key)
	} else {
		rc, info, err = s.backend.Get(ctx, key)
	}
	if err != nil {
		s.backendError(w, key, err)
		return
	}
	if rc != nil {
		defer rc.Close()
	}
	tag := setHeaders(w, key, info)
	h := w.Header()
	if !info.ModTime.IsZero() {
		h.Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	}
	if tag != "" && etagMatch(r.Header.Get("If-None-Match"), tag) {
		h.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if info.Size < 0 {
		// Unknown length: no ranges, no Content-Length.
		w.WriteHeader(http.StatusOK)
		if rc != nil {
			io.Copy(w, rc)
		}
		return
	}
	h.Set("Accept-Ranges", "bytes")
	start, length, code := rangeOf(r, tag, info.Size)
	switch code {
	case http.StatusRequestedRangeNotSatisfiable:
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(info.Size, 10))
		httpError(w, code)
		return
	case http.StatusPartialContent:
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, info.Size))
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if rc != nil && start > 0 {
		if _, err := io.CopyN(io.Discard, rc, start); err != nil {
			s.log.Error("skip to range start", "key", key, "error", err)
			httpError(w, http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(code)
	if rc == nil {
		return
	}
	if _, err := io.CopyN(w, rc, length); err != nil {
		// The status is out; all that is left is to cut the response, which
		// the short body makes the client see.
		s.log.Warn("stream cut short", "key", key, "error", err)
	}
}

// setHeaders sets the headers every successful answer carries and returns
// the ETag used.
func setHeaders(w http.ResponseWriter, key string, info sdk.ObjectInfo) string {
	h := w.Header()
	h.Set("Content-Type", contentType(key))
	tag := entityTag(info)
	if tag != "" {
		h.Set("ETag", tag)
	}
	if strings.Count(key, "/") == 0 && (key == "timestamp.json" || key == "snapshot.json" || key == "root.json") {
		// The unversioned manifests change in place; caches must ask.
		h.Set("Cache-Control", "no-cache")
	}
	return tag
}

// contentType is the media type served for key.
func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".tar.gz"), strings.HasSuffix(key, ".tgz"):
		return "application/gzip"
	case path.Ext(key) == ".sha256":
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// entityTag is the quoted HTTP ETag for info: the backend's tag, or a
// strong tag from size and modification time. Empty when neither exists.
func entityTag(info sdk.ObjectInfo) string {
	t := info.ETag
	if t != "" {
		if strings.HasPrefix(t, `"`) || strings.HasPrefix(t, `W/"`) {
			// Already an HTTP entity tag (the http backend passes its
			// server's tags through).
			return t
		}
		return `"` + strings.ReplaceAll(t, `"`, "") + `"`
	}
	if info.ModTime.IsZero() || info.Size < 0 {
		return ""
	}
	return fmt.Sprintf(`"%x-%x"`, info.Size, info.ModTime.UnixNano())
}

// etagMatch applies If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, tag string) bool {
	if header == "" {
		return false
	}
	if strings.TrimSpace(header) == "*" {
		return true
	}
	want := strings.TrimPrefix(tag, "W/")
	for c := range strings.SplitSeq(header, ",") {
		if strings.TrimPrefix(strings.TrimSpace(c), "W/") == want {
			return true
		}
	}
	return false
}

// rangeOf reads one byte range from the request. It returns the whole
// object (200) when there is no Range, when If-Range names another version,
// or when several ranges are asked for (RFC 9110 lets a server ignore
// Range; multipart answers are not worth their complexity here).
func rangeOf(r *http.Request, tag string, size int64) (start, length int64, code int) {
	v := r.Header.Get("Range")
	if v == "" || r.Method != http.MethodGet {
		return 0, size, http.StatusOK
	}
	if ir := r.Header.Get("If-Range"); ir != "" && (tag == "" || strings.HasPrefix(tag, "W/") || ir != tag) {
		return 0, size, http.StatusOK
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, http.StatusOK
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, http.StatusOK
	}
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, size, http.StatusOK
		}
		if n == 0 || size == 0 {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		n = min(n, size)
		return size - n, n, http.StatusPartialContent
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 {
		return 0, size, http.StatusOK
	}
	if s >= size {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	e := size - 1
	if last != "" {
		e, err = strconv.ParseInt(last, 10, 64)
		if err != nil || e < s {
			return 0, size, http.StatusOK
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, http.StatusPartialContent
}

// backendError answers for a failed backend call.
func (s *Server) backendError(w http.ResponseWriter, key string, err error) {
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		httpError(w, http.StatusNotFound)
	case errors.Is(err, fs.ErrInvalid):
		httpError(w, http.StatusBadRequest)
	default:
		s.log.Error("read object", "key", key, "error", err)
		httpError(w, http.StatusInternalServerError)
	}
}

// httpError answers with code and its status text; the body says no more,
// so a client learns nothing about the backend.
func httpError(w http.ResponseWriter, code int) {
	h := w.Header()
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	h.Del("Cache-Control")
	http.Error(w, http.StatusText(code), code)
}

// logWriter records the status and the body bytes of an answer.
type logWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile path of the underlying writer: without it
// io.Copy would move a tarball through a 32 KiB buffer.
func (w *logWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *logWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
