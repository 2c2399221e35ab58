package httpbackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-http/httpbackend"
	"github.com/mirrorkit/mirror/sdk"
)

// content is large enough to be cut in several places.
var content = func() []byte {
	b := make([]byte, 100_000)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fast keeps retries quick; only Retry-After makes a test wait.
var fast = httpbackend.Options{BaseDelay: time.Millisecond}

// recorder notes the requests a test server saw.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rec *recorder) add(r *http.Request) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, r.Clone(context.Background()))
	return len(rec.reqs)
}

func (rec *recorder) all() []*http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*http.Request(nil), rec.reqs...)
}

// serveFile answers like a good static server: ETag, Range, If-Range.
func serveFile(w http.ResponseWriter, r *http.Request, etag string, data []byte) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "", modTime, bytes.NewReader(data))
}

// cut sends the headers of a full answer and the first n bytes of data,
// then drops the connection.
func cut(t *testing.T, w http.ResponseWriter, etag string, data []byte, n int) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:n])
	w.(http.Flusher).Flush()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func open(t *testing.T, url string, opts httpbackend.Options) *httpbackend.Backend {
	t.Helper()
	b, err := httpbackend.New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func getAll(ctx context.Context, b sdk.Backend, key string) ([]byte, sdk.ObjectInfo, error) {
	rc, info, err := b.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	// A small buffer makes the reader cross every cut in the middle of a
	// Read, not only at its edges.
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := rc.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), info, nil
		}
		if err != nil {
			return out.Bytes(), info, err
		}
	}
}

func TestGetRetriesAndResumes(t *testing.T) {
	tests := []struct {
		name string
		// handle answers the n-th request (from 1).
		handle    func(t *testing.T, n int, w http.ResponseWriter, r *http.Request)
		wantReqs  int
		wantRange []string // Range header of each request
		wantIfRng []string // If-Range header of each request
		minTime   time.Duration
	}{
		{
			name: "two 503 then success",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n <= 2 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				serveFile(w, r, `"v1"`, content)
			},
			wantReqs:  3,
			wantRange: []string{"", "", ""},
			wantIfRng: []string{"", "", ""},
		},
		{
			name: "429 with Retry-After",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return
				}
				serveFile(w, r, `"v1"`, content)
			},
			wantReqs:  2,
			wantRange: []string{"", ""},
			wantIfRng: []string{"", ""},
			minTime:   time.Second,
		},
		{
			name: "body cut midway is resumed with Range",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cut(t, w, `"v1"`, content, 12345)
					return
				}
				serveFile(w, r, `"v1"`, content)
			},
			wantReqs:  2,
			wantRange: []string{"", "bytes=12345-"},
			wantIfRng: []string{"", `"v1"`},
		},
		{
			name: "body cut on every answer still completes",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				// Each answer carries 30000 more bytes than the last one
				// started from, then breaks.
				start := (n - 1) * 30000
				if n == 1 {
					cut(t, w, `"v1"`, content, 30000)
					return
				}
				if start+30000 >= len(content) {
					serveFile(w, r, `"v1"`, content)
					return
				}
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(content)-1, len(content)))
				w.Header().Set("Content-Length", fmt.Sprint(len(content)-start))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[start : start+30000])
				w.(http.Flusher).Flush()
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
			},
			wantReqs:  4,
			wantRange: []string{"", "bytes=30000-", "bytes=60000-", "bytes=90000-"},
			wantIfRng: []string{"", `"v1"`, `"v1"`, `"v1"`},
		},
		{
			name: "server ignoring Range sends it all again",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cut(t, w, `"v1"`, content, 54321)
					return
				}
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Length", fmt.Sprint(len(content)))
				w.Write(content)
			},
			wantReqs:  2,
			wantRange: []string{"", "bytes=54321-"},
			wantIfRng: []string{"", `"v1"`},
		},
		{
			name: "no ETag resumes on Last-Modified",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
					cut(t, w, "", content, 999)
					return
				}
				serveFile(w, r, "", content)
			},
			wantReqs:  2,
			wantRange: []string{"", "bytes=999-"},
			wantIfRng: []string{"", modTime.Format(http.TimeFormat)},
		},
		{
			name: "a 503 while resuming is retried",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				switch n {
				case 1:
					cut(t, w, `"v1"`, content, 500)
				case 2:
					http.Error(w, "busy", http.StatusBadGateway)
				default:
					serveFile(w, r, `"v1"`, content)
				}
			},
			wantReqs:  3,
			wantRange: []string{"", "bytes=500-", "bytes=500-"},
			wantIfRng: []string{"", `"v1"`, `"v1"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tt.handle(t, rec.add(r), w, r)
			}))
			defer srv.Close()
			b := open(t, srv.URL+"/mirror/", fast)
			start := time.Now()
			got, info, err := getAll(context.Background(), b, "dir/file.tar.gz")
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("got %d bytes, not the content (%d bytes)", len(got), len(content))
			}
			if info.Size != int64(len(content)) {
				t.Errorf("info.Size = %d, want %d", info.Size, len(content))
			}
			if el := time.Since(start); el < tt.minTime {
				t.Errorf("took %v, want at least %v", el, tt.minTime)
			}
			reqs := rec.all()
			if len(reqs) != tt.wantReqs {
				t.Fatalf("server saw %d requests, want %d", len(reqs), tt.wantReqs)
			}
			for i, r := range reqs {
				if r.URL.Path != "/mirror/dir/file.tar.gz" {
					t.Errorf("request %d path %q", i+1, r.URL.Path)
				}
				if ua := r.Header.Get("User-Agent"); ua != httpbackend.UserAgent {
					t.Errorf("request %d User-Agent %q", i+1, ua)
				}
				if got := r.Header.Get("Range"); got != tt.wantRange[i] {
					t.Errorf("request %d Range %q, want %q", i+1, got, tt.wantRange[i])
				}
				if got := r.Header.Get("If-Range"); got != tt.wantIfRng[i] {
					t.Errorf("request %d If-Range %q, want %q", i+1, got, tt.wantIfRng[i])
				}
			}
		})
	}
}

func TestGetFails(t *testing.T) {
	tests := []struct {
		name    string
		handle  func(t *testing.T, n int, w http.ResponseWriter, r *http.Request)
		wantIs  error
		wantMsg string
		// atGet says the error comes from Get itself, not from reading.
		atGet bool
	}{
		{
			name: "404",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				http.NotFound(w, r)
			},
			wantIs: sdk.ErrNotFound,
			atGet:  true,
		},
		{
			name: "always 500",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				http.Error(w, "broken", http.StatusInternalServerError)
			},
			wantMsg: "gave up after 5 attempts",
			atGet:   true,
		},
		{
			name: "403 is not retried",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n > 1 {
					t.Errorf("403 retried")
				}
				http.Error(w, "no", http.StatusForbidden)
			},
			wantMsg: "403 Forbidden",
			atGet:   true,
		},
		{
			name: "object changed between attempts",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cut(t, w, `"v1"`, content, 100)
					return
				}
				serveFile(w, r, `"v2"`, content)
			},
			wantIs: sdk.ErrConflict,
		},
		{
			name: "cut every time without progress",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cut(t, w, `"v1"`, content, 100)
					return
				}
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 100-%d/%d", len(content)-1, len(content)))
				w.Header().Set("Content-Length", fmt.Sprint(len(content)-100))
				w.WriteHeader(http.StatusPartialContent)
				w.(http.Flusher).Flush()
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
			},
			wantIs:  io.ErrUnexpectedEOF,
			wantMsg: "without progress at byte 100",
		},
		{
			name: "wrong Content-Range",
			handle: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cut(t, w, `"v1"`, content, 100)
					return
				}
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(content)-1, len(content)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content)
			},
			wantMsg: "Content-Range",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tt.handle(t, rec.add(r), w, r)
			}))
			defer srv.Close()
			b := open(t, srv.URL, fast)
			rc, _, err := b.Get(context.Background(), "f")
			if tt.atGet {
				if err == nil {
					rc.Close()
					t.Fatal("get succeeded")
				}
			} else {
				if err != nil {
					t.Fatalf("get: %v", err)
				}
				_, err = io.ReadAll(rc)
				rc.Close()
				if err == nil {
					t.Fatal("read succeeded")
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q lacks %q", err, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "get "+srv.URL+"/f: ") {
				t.Errorf("error %q does not name op and URL", err)
			}
		})
	}
}

// TestIdleTimeout has a server stall mid-body; the reader gives up on it
// after the idle timeout and resumes.
func TestIdleTimeout(t *testing.T) {
	rec := &recorder{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.add(r) == 1 {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(content)))
			w.Write(content[:777])
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		serveFile(w, r, `"v1"`, content)
	}))
	defer srv.Close()
	defer close(release)
	b := open(t, srv.URL, httpbackend.Options{BaseDelay: time.Millisecond, IdleTimeout: 100 * time.Millisecond})
	got, _, err := getAll(context.Background(), b, "f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("got %d bytes, not the content", len(got))
	}
	if reqs := rec.all(); len(reqs) != 2 || reqs[1].Header.Get("Range") != "bytes=777-" {
		t.Fatalf("requests: %d, second Range %q", len(reqs), reqs[len(reqs)-1].Header.Get("Range"))
	}
}

// TestCancel checks that a context ending stops the retries at once.
func TestCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "later", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	b := open(t, srv.URL, fast)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Stat(ctx, "f")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stat error %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stat took %v after its context ended", el)
	}
}

func TestStat(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			t.Errorf("stat sent %s", r.Method)
		}
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, `"abc"`, content)
	}))
	defer srv.Close()
	b := open(t, srv.URL+"/", fast)
	info, err := b.Stat(context.Background(), "a/b.json")
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.ObjectInfo{Key: "a/b.json", Size: int64(len(content)), ETag: `"abc"`, ModTime: modTime}
	if info.Key != want.Key || info.Size != want.Size || info.ETag != want.ETag || !info.ModTime.Equal(want.ModTime) {
		t.Errorf("stat = %+v, want %+v", info, want)
	}
	if _, err := b.Stat(context.Background(), "missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("stat missing: %v, want ErrNotFound", err)
	}
}

func TestCredentials(t *testing.T) {
	const user, pass = "deploy", "s3cr3t-pa55"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="m"`)
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/ok":
			serveFile(w, r, `"1"`, []byte("fine"))
		case "/cut":
			cut(t, w, `"1"`, content, 10)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	withCreds := strings.Replace(srv.URL, "http://", "http://"+user+":"+pass+"@", 1)
	b := open(t, withCreds, fast)
	got, _, err := getAll(context.Background(), b, "ok")
	if err != nil || string(got) != "fine" {
		t.Fatalf("authenticated get = %q, %v", got, err)
	}

	var errs []error
	_, err = b.Stat(context.Background(), "broken")
	errs = append(errs, err)
	_, _, err = getAll(context.Background(), b, "cut")
	errs = append(errs, err)
	errs = append(errs, b.Delete(context.Background(), "x"))
	_, err = httpbackend.New("ftp://"+user+":"+pass+"@host/", fast)
	errs = append(errs, err)
	_, err = httpbackend.New("http://"+user+":"+pass+"@host/%zz", fast)
	errs = append(errs, err)
	// A closed port: the connection error names the URL.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	db := open(t, strings.Replace(deadURL, "http://", "http://"+user+":"+pass+"@", 1), fast)
	_, err = db.Stat(context.Background(), "x")
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		if strings.Contains(err.Error(), pass) || strings.Contains(err.Error(), user) {
			t.Errorf("case %d: error reveals credentials: %v", i, err)
		}
	}
}

func TestReadOnly(t *testing.T) {
	b := open(t, "https://mirror.example/m", fast)
	ctx := context.Background()
	caps, err := b.Capabilities(ctx)
	if err != nil || caps != (sdk.Capabilities{}) {
		t.Errorf("capabilities = %+v, %v; want none", caps, err)
	}
	_, putErr := b.Put(ctx, "k", strings.NewReader("x"), sdk.PutOptions{})
	_, lockErr := b.Lock(ctx, "writer")
	tests := []struct {
		name string
		err  error
	}{
		{"put", putErr},
		{"list", b.List(ctx, "", func(sdk.ObjectInfo) error { return nil })},
		{"delete", b.Delete(ctx, "k")},
		{"lock", lockErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, sdk.ErrUnsupported) {
				t.Errorf("%s error %v, want ErrUnsupported", tt.name, tt.err)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	addrs := []struct {
		name, addr string
	}{
		{"no scheme", "mirror.example/m"},
		{"other scheme", "ftp://mirror.example/m"},
		{"no host", "http:///m"},
		{"query", "http://mirror.example/m?token=1"},
	}
	for _, tt := range addrs {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := httpbackend.New(tt.addr, fast); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("New(%q) error %v, want fs.ErrInvalid", tt.addr, err)
			}
		})
	}
	b := open(t, "http://127.0.0.1:1", fast)
	for _, key := range []string{"", ".", "../x", "/abs", "a//b", "a/"} {
		if _, err := b.Stat(context.Background(), key); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("stat %q error %v, want fs.ErrInvalid", key, err)
		}
		if _, _, err := b.Get(context.Background(), key); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("get %q error %v, want fs.ErrInvalid", key, err)
		}
	}
}

func TestURL(t *testing.T) {
	tests := []struct {
		name, base, key, want string
	}{
		{"trailing slash", "http://h/m/", "root.json", "http://h/m/root.json"},
		{"no path", "https://h", "a/b.json", "https://h/a/b.json"},
		{"escaped", "http://h/m", "a b/c?d#e", "http://h/m/a%20b/c%3Fd%23e"},
		{"credentials dropped", "http://u:p@h/m", "k", "http://h/m/k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := open(t, tt.base, fast).URL(tt.key); got != tt.want {
				t.Errorf("URL = %q, want %q", got, tt.want)
			}
		})
	}
}
