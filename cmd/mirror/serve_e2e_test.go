package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

var servingLine = regexp.MustCompile(`^Serving (.+) on (http://127\.0\.0\.1:\d+)$`)

// TestServe publishes a mirror, serves it, and uses it from another home
// over HTTP through the http backend plugin: set, list, install, verify.
// Then it checks the server's answers directly, and that SIGTERM stops it
// cleanly.
func TestServe(t *testing.T) {
	s := newMirror(t)
	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0")
	m := srv.waitFor(t, servingLine)
	if m[1] != "m" {
		t.Errorf("serving line names %q, want m", m[1])
	}
	base := m[2]

	c := newSandbox(t)
	if out := c.must("set", base).stdout; !strings.Contains(out, base) {
		t.Errorf("set printed %q", out)
	}
	if out := c.must("list").stdout; !strings.Contains(out, "hello") || !strings.Contains(out, "v0.0.1") {
		t.Errorf("list over HTTP lacks hello v0.0.1:\n%s", out)
	}
	entry := strings.TrimSpace(c.must("install", "hello").stdout)
	out, err := exec.Command(entry).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from the mirror") {
		t.Fatalf("run %s: %v: %s", entry, err, out)
	}
	if out := c.must("verify", base).stdout; !strings.Contains(out, "verified") {
		t.Errorf("verify over HTTP: %s", out)
	}

	keyFiles, err := os.ReadDir(s.path("m", "keys"))
	if err != nil || len(keyFiles) == 0 {
		t.Fatalf("the mirror has no keys/ to hide: %v", err)
	}
	tarball := "hello-v0.0.1-" + platform + ".tar.gz"
	data, err := os.ReadFile(s.path("m", tarball))
	if err != nil {
		t.Fatal(err)
	}
	head := httpDo(t, "HEAD", base+"/"+tarball, nil)
	etag := head.Header.Get("ETag")
	tests := []struct {
		name     string
		method   string
		target   string // a raw request path, sent uncleaned
		hdr      map[string]string
		wantCode int
		wantBody string // checked unless "-"
		wantHdr  map[string]string
	}{
		{name: "key file hidden", method: "GET", target: "/keys/" + keyFiles[0].Name(), wantCode: 404, wantBody: "-"},
		{name: "keys dir hidden", method: "GET", target: "/keys/", wantCode: 404, wantBody: "-"},
		{name: "dotdot refused", method: "GET", target: "/../x", wantCode: 400, wantBody: "-"},
		{name: "head has length", method: "HEAD", target: "/" + tarball, wantCode: 200, wantBody: "",
			wantHdr: map[string]string{"Content-Length": fmt.Sprint(len(data)), "Content-Type": "application/gzip"}},
		{name: "json type", method: "GET", target: "/timestamp.json", wantCode: 200, wantBody: "-",
			wantHdr: map[string]string{"Content-Type": "application/json"}},
		{name: "if-none-match", method: "GET", target: "/" + tarball, hdr: map[string]string{"If-None-Match": etag}, wantCode: 304, wantBody: ""},
		{name: "range", method: "GET", target: "/" + tarball, hdr: map[string]string{"Range": "bytes=10-29"}, wantCode: 206, wantBody: string(data[10:30]),
			wantHdr: map[string]string{"Content-Range": fmt.Sprintf("bytes 10-29/%d", len(data))}},
		{name: "post refused", method: "POST", target: "/" + tarball, wantCode: 405, wantBody: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := httpDo(t, tt.method, base+tt.target, tt.hdr)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s: %d, want %d", tt.method, tt.target, resp.StatusCode, tt.wantCode)
			}
			if tt.wantBody != "-" && resp.body != tt.wantBody {
				t.Errorf("body %q, want %q", resp.body, tt.wantBody)
			}
			for k, v := range tt.wantHdr {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	srv.wait(t)
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0", code)
	}
	log := srv.errb.String()
	for _, want := range []string{"method=GET", "status=404", "status=206", "path=/timestamp.json"} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %q:\n%s", want, log)
		}
	}
}

// TestServeRefused covers arguments serve rejects before listening.
func TestServeRefused(t *testing.T) {
	s := newMirror(t)
	tests := []struct {
		name    string
		code    int
		wantErr string
		args    []string
	}{
		{"cert without key", 64, "--tls-key", []string{"serve", "m", "--tls-cert", "c.pem"}},
		{"too many arguments", 64, "serve", []string{"serve", "m", "n"}},
		{"bad listen address", 1, "listen", []string{"serve", "m", "--addr", "127.0.0.1:notaport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.fail(tt.code, tt.wantErr, tt.args...)
		})
	}
}

type httpResponse struct {
	*http.Response
	body string
}

// httpDo sends a request with its path exactly as given (net/http's client
// would clean "/../x").
func httpDo(t *testing.T, method, rawURL string, hdr map[string]string) httpResponse {
	t.Helper()
	rest := strings.TrimPrefix(rawURL, "http://")
	host, target, _ := strings.Cut(rest, "/")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, host)
	for k, v := range hdr {
		fmt.Fprintf(conn, "%s: %s\r\n", k, v)
	}
	fmt.Fprint(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, rawURL, err)
	}
	return httpResponse{Response: resp, body: string(b)}
}
