package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/core/server"
	"github.com/mirrorkit/mirror/plugins/backend-fs/fsbackend"
	"github.com/mirrorkit/mirror/sdk"
)

var files = map[string]string{
	"root.json":                        `{"signed":{}}`,
	"hello-v1-linux-amd64.tar.gz":      "0123456789abcdefghij",
	"keys/private.json":                "secret",
	".tmp-123":                         "partial",
	"dir/.hidden/x":                    "hidden",
	"dir/plain.bin":                    "plain",
	"dir/sub/file.json":                "{}",
	"weird name.json":                  "[]",
	"component-v1.0.0-darwin.sha256":   "abc",
	"nested/keys/not-the-key-dir.json": "{}",
}

// streamOnly hides the fs backend's local files, so the server takes the
// streaming path a remote backend gives it.
type streamOnly struct{ sdk.Backend }

func (b streamOnly) Capabilities(ctx context.Context) (sdk.Capabilities, error) {
	c, err := b.Backend.Capabilities(ctx)
	c.LocalFiles = false
	return c, err
}

// noTag strips ETags, so the server makes its own from size and time.
type noTag struct{ streamOnly }

func (b noTag) Stat(ctx context.Context, key string) (sdk.ObjectInfo, error) {
	info, err := b.streamOnly.Stat(ctx, key)
	info.ETag = ""
	return info, err
}

func (b noTag) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	rc, info, err := b.streamOnly.Get(ctx, key)
	info.ETag = ""
	return rc, info, err
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newMirrorDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type response struct {
	code int
	hdr  http.Header
	body string
}

// rawGet sends a request line as is, so paths reach the server uncleaned.
func rawGet(t *testing.T, addr, method, target string, hdr map[string]string) response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: mirror\r\nConnection: close\r\n", method, target)
	for k, v := range hdr {
		fmt.Fprintf(conn, "%s: %s\r\n", k, v)
	}
	fmt.Fprint(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return response{code: resp.StatusCode, hdr: resp.Header, body: string(b)}
}

func TestServe(t *testing.T) {
	dir := newMirrorDir(t)
	fsb := fsbackend.New(dir)
	t.Cleanup(func() { fsb.Close() })
	backends := []struct {
		name string
		b    sdk.Backend
	}{
		{"local files", fsb},
		{"stream", streamOnly{fsb}},
		{"stream without backend tags", noTag{streamOnly{fsb}}},
	}
	tarball := files["hello-v1-linux-amd64.tar.gz"]
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			var logs syncBuffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
			s, err := server.New(context.Background(), bk.b, server.Options{Logger: logger, Clock: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(s)
			defer srv.Close()
			addr := srv.Listener.Addr().String()
			etag := rawGet(t, addr, "HEAD", "/hello-v1-linux-amd64.tar.gz", nil).hdr.Get("ETag")
			if etag == "" || !strings.HasPrefix(etag, `"`) {
				t.Fatalf("ETag %q is not a strong entity tag", etag)
			}
			tests := []struct {
				name     string
				method   string
				target   string
				hdr      map[string]string
				wantCode int
				wantBody string // checked unless "-"
				wantHdr  map[string]string
			}{
				{name: "json", method: "GET", target: "/root.json", wantCode: 200, wantBody: files["root.json"],
					wantHdr: map[string]string{"Content-Type": "application/json", "Content-Length": fmt.Sprint(len(files["root.json"])), "Cache-Control": "no-cache"}},
				{name: "tarball", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", wantCode: 200, wantBody: tarball,
					wantHdr: map[string]string{"Content-Type": "application/gzip", "ETag": etag, "Accept-Ranges": "bytes"}},
				{name: "head", method: "HEAD", target: "/hello-v1-linux-amd64.tar.gz", wantCode: 200, wantBody: "",
					wantHdr: map[string]string{"Content-Length": fmt.Sprint(len(tarball)), "Content-Type": "application/gzip", "ETag": etag}},
				{name: "nested", method: "GET", target: "/dir/sub/file.json", wantCode: 200, wantBody: "{}"},
				{name: "escaped name", method: "GET", target: "/weird%20name.json", wantCode: 200, wantBody: "[]"},
				{name: "keys below the top are ordinary", method: "GET", target: "/nested/keys/not-the-key-dir.json", wantCode: 200, wantBody: "{}"},
				{name: "other type", method: "GET", target: "/dir/plain.bin", wantCode: 200, wantBody: "plain",
					wantHdr: map[string]string{"Content-Type": "application/octet-stream"}},
				{name: "if-none-match", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"If-None-Match": etag},
					wantCode: 304, wantBody: ""},
				{name: "if-none-match list", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"If-None-Match": `"x", W/` + etag},
					wantCode: 304, wantBody: ""},
				{name: "if-none-match other", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"If-None-Match": `"other"`},
					wantCode: 200, wantBody: tarball},
				{name: "range", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=3-7"},
					wantCode: 206, wantBody: tarball[3:8], wantHdr: map[string]string{"Content-Range": fmt.Sprintf("bytes 3-7/%d", len(tarball)), "Content-Length": "5"}},
				{name: "open range", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=15-"},
					wantCode: 206, wantBody: tarball[15:]},
				{name: "suffix range", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=-4"},
					wantCode: 206, wantBody: tarball[len(tarball)-4:]},
				{name: "range past end", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=100-"},
					wantCode: 416, wantBody: "-", wantHdr: map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", len(tarball))}},
				{name: "if-range match", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=10-", "If-Range": etag},
					wantCode: 206, wantBody: tarball[10:]},
				{name: "if-range other version", method: "GET", target: "/hello-v1-linux-amd64.tar.gz", hdr: map[string]string{"Range": "bytes=10-", "If-Range": `"old"`},
					wantCode: 200, wantBody: tarball},
				{name: "keys dir", method: "GET", target: "/keys/private.json", wantCode: 404, wantBody: "-"},
				{name: "keys dir head", method: "HEAD", target: "/keys/private.json", wantCode: 404, wantBody: ""},
				{name: "keys itself", method: "GET", target: "/keys", wantCode: 404, wantBody: "-"},
				{name: "keys missing", method: "GET", target: "/keys/nothing", wantCode: 404, wantBody: "-"},
				{name: "keys dir listing", method: "GET", target: "/keys/", wantCode: 404, wantBody: "-"},
				{name: "keys malformed", method: "GET", target: "/keys//../x", wantCode: 404, wantBody: "-"},
				{name: "dot file", method: "GET", target: "/.tmp-123", wantCode: 404, wantBody: "-"},
				{name: "under dot dir", method: "GET", target: "/dir/.hidden/x", wantCode: 404, wantBody: "-"},
				{name: "missing", method: "GET", target: "/nothere.json", wantCode: 404, wantBody: "-"},
				{name: "directory", method: "GET", target: "/dir", wantCode: 404, wantBody: "-"},
				{name: "root listing", method: "GET", target: "/", wantCode: 404, wantBody: "-"},
				{name: "dotdot", method: "GET", target: "/../x", wantCode: 400, wantBody: "-"},
				{name: "inner dotdot", method: "GET", target: "/dir/../keys/private.json", wantCode: 400, wantBody: "-"},
				{name: "escaped dotdot", method: "GET", target: "/%2e%2e/x", wantCode: 400, wantBody: "-"},
				{name: "double slash", method: "GET", target: "/dir//plain.bin", wantCode: 400, wantBody: "-"},
				{name: "trailing slash", method: "GET", target: "/dir/", wantCode: 400, wantBody: "-"},
				{name: "post", method: "POST", target: "/root.json", wantCode: 405, wantBody: "-", wantHdr: map[string]string{"Allow": "GET, HEAD"}},
				{name: "put", method: "PUT", target: "/root.json", wantCode: 405, wantBody: "-"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := rawGet(t, addr, tt.method, tt.target, tt.hdr)
					if r.code != tt.wantCode {
						t.Fatalf("%s %s: status %d, want %d (%s)", tt.method, tt.target, r.code, tt.wantCode, r.body)
					}
					if tt.wantBody != "-" && r.body != tt.wantBody {
						t.Errorf("body %q, want %q", r.body, tt.wantBody)
					}
					if tt.wantCode >= 400 && (strings.Contains(r.body, "secret") || strings.Contains(r.body, dir)) {
						t.Errorf("error body reveals too much: %q", r.body)
					}
					for k, v := range tt.wantHdr {
						if got := r.hdr.Get(k); got != v {
							t.Errorf("header %s = %q, want %q", k, got, v)
						}
					}
				})
			}
			log := logs.String()
			for _, want := range []string{"method=GET", "path=/keys/private.json", "status=404", "status=206", "bytes=5", "duration="} {
				if !strings.Contains(log, want) {
					t.Errorf("access log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}

// TestServeShutdown runs the whole lifecycle: listen on a free port,
// answer, stop when the context ends, with a request still in flight
// finishing first.
func TestServeShutdown(t *testing.T) {
	fsb := fsbackend.New(newMirrorDir(t))
	defer fsb.Close()
	slow := &slowBackend{Backend: streamOnly{fsb}, started: make(chan struct{}), release: make(chan struct{})}
	s, err := server.New(context.Background(), slow, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen("127.0.0.1:0", "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/root.json")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-slow.started
	cancel()
	// The listener closes at once; the request in flight may finish.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(slow.release)
	if b := <-got; b != files["root.json"] {
		t.Errorf("request in flight got %q", b)
	}
	if err := <-done; err != nil {
		t.Errorf("serve returned %v, want nil", err)
	}
}

// slowBackend holds Get until released.
type slowBackend struct {
	sdk.Backend
	started, release chan struct{}
	once             sync.Once
}

func (b *slowBackend) Get(ctx context.Context, key string) (io.ReadCloser, sdk.ObjectInfo, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return b.Backend.Get(ctx, key)
}

func TestListenTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	tests := []struct {
		name      string
		cert, key string
		wantErr   error
	}{
		{"cert without key", certFile, "", fs.ErrInvalid},
		{"key without cert", "", keyFile, fs.ErrInvalid},
		{"missing files", filepath.Join(dir, "no.pem"), filepath.Join(dir, "no.key"), fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := server.Listen("127.0.0.1:0", tt.cert, tt.key)
			if err == nil {
				ln.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("listen error %v, want %v", err, tt.wantErr)
			}
		})
	}

	fsb := fsbackend.New(newMirrorDir(t))
	defer fsb.Close()
	s, err := server.New(context.Background(), fsb, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pemBytes)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/root.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != files["root.json"] {
		t.Fatalf("https get: %d %q", resp.StatusCode, b)
	}
}

// writeCert makes a self-signed certificate for 127.0.0.1.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mirror test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
