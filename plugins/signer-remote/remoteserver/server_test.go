package remoteserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/plugins/signer-remote/internal/testpki"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remoteserver"
)

var sharedKey = sync.OnceValues(keys.Generate)

func testKey(t *testing.T) *keys.PrivateKey {
	t.Helper()
	k, err := sharedKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed returns the canonical signed part of v, as the host sends it.
func signed(t *testing.T, v manifest.Signed) []byte {
	t.Helper()
	env, err := manifest.NewEnvelope(v)
	if err != nil {
		t.Fatal(err)
	}
	return env.Signed
}

func TestClassify(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	comp := manifest.NewComponent("hello", "says hello", now)
	comp.Version = 7
	ts := manifest.NewTimestamp(now)
	ts.Version = 42
	canonTS := signed(t, ts)
	tests := []struct {
		name    string
		payload []byte
		want    string // Request.String(); "" for an error
		version uint64
	}{
		{"root", signed(t, manifest.NewRoot(now)), "root", 1},
		{"index", signed(t, manifest.NewIndex(now)), "index", 1},
		{"snapshot", signed(t, manifest.NewSnapshot(now)), "snapshot", 0},
		{"timestamp", canonTS, "timestamp", 42},
		{"component", signed(t, comp), "component:hello", 7},
		{"empty", nil, "raw", 0},
		{"text", []byte("release notes"), "raw", 0},
		{"json array", []byte(`[1,2]`), "raw", 0},
		{"object without _type", []byte(`{"a":1}`), "raw", 0},
		{"_type only nested", []byte(`{"signed":{"_type":"root","version":1}}`), "raw", 0},
		{"not canonical: whitespace", append([]byte(" "), canonTS...), "", 0},
		{"not canonical: duplicate _type", bytes.Replace(canonTS, []byte(`{"_type":"timestamp",`), []byte(`{"_type":"component","_type":"timestamp",`), 1), "", 0},
		{"not canonical: members out of order", []byte(`{"version":1,"_type":"root"}`), "", 0},
		{"unknown _type", []byte(`{"_type":"tarball","version":1}`), "", 0},
		{"_type not a string", []byte(`{"_type":1,"version":1}`), "", 0},
		{"component without id", []byte(`{"_type":"component","version":1}`), "", 0},
		{"component with a role name", []byte(`{"_type":"component","id":"root","version":1}`), "", 0},
		{"no version", []byte(`{"_type":"root"}`), "", 0},
		{"negative version", []byte(`{"_type":"root","version":-1}`), "", 0},
		{"invalid JSON naming _type", []byte(`{"_type":"root",}`), "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := remoteserver.Classify(tt.payload)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Classify = %v, want an error", r)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q is not one line", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if r.String() != tt.want || r.Version != tt.version {
				t.Errorf("Classify = %s version %d, want %s version %d", r, r.Version, tt.want, tt.version)
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	p, err := remoteserver.ParseAllow([]string{"ci=timestamp,snapshot", "alice=component:hello,component:tool-*", "ci=index"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "alice=component:hello,component:tool-*; ci=timestamp,snapshot,index"; got != want {
		t.Errorf("policy = %q, want %q", got, want)
	}
	allowed := []struct {
		client string
		req    remoteserver.Request
		want   bool
	}{
		{"ci", remoteserver.Request{Role: "timestamp"}, true},
		{"ci", remoteserver.Request{Role: "index"}, true},
		{"ci", remoteserver.Request{Role: "root"}, false},
		{"ci", remoteserver.Request{Role: "component", Component: "hello"}, false},
		{"alice", remoteserver.Request{Role: "component", Component: "hello"}, true},
		{"alice", remoteserver.Request{Role: "component", Component: "tool-x"}, true},
		{"alice", remoteserver.Request{Role: "component", Component: "hello2"}, false},
		{"alice", remoteserver.Request{Role: "raw"}, false},
		{"mallory", remoteserver.Request{Role: "timestamp"}, false},
	}
	for _, a := range allowed {
		if got := p.Allows(a.client, a.req); got != a.want {
			t.Errorf("Allows(%s, %s) = %v, want %v", a.client, a.req, got, a.want)
		}
	}
	for _, bad := range []string{"ci", "=timestamp", "ci=", "ci=component", "ci=component:", "ci=owner", "ci=root:x", "ci=component:[", "ci=component:a/b"} {
		if _, err := remoteserver.ParseAllow([]string{bad}); err == nil {
			t.Errorf("ParseAllow(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("ParseAllow(%q) = %v, which does not name the spec", bad, err)
		}
	}
}

// testServer is a Server on 127.0.0.1 with mutual TLS, and clients for it.
type testServer struct {
	addr    string
	ca      *testpki.CA
	sigLog  *bytes.Buffer
	logs    *bytes.Buffer // the hclog output
	mu      *sync.Mutex   // guards both buffers
	cancel  context.CancelFunc
	done    chan error
	clients map[string]*http.Client
}

// lockedWriter serializes writes into a buffer shared with the test.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func startServer(t *testing.T, opts remoteserver.Options, clients ...string) *testServer {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA(dir, "signer")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ca.Server("server")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ca: ca, sigLog: &bytes.Buffer{}, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1), clients: map[string]*http.Client{}}
	opts.SignatureLog = lockedWriter{ts.mu, ts.sigLog}
	opts.Logger = hclog.New(&hclog.LoggerOptions{Output: lockedWriter{ts.mu, ts.logs}, Level: hclog.Debug})
	srv, err := remoteserver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := remoteserver.TLSConfig(sp.CertFile, sp.KeyFile, ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln, conf) }()
	t.Cleanup(func() { ts.stop(t) })
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("read CA: %v", err)
	}
	for _, cn := range clients {
		p, err := ca.Client(cn)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		ts.clients[cn] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	}
	return ts
}

// stop shuts the server down and checks that Serve returned cleanly.
func (ts *testServer) stop(t *testing.T) {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("Serve did not return within 30s of its context ending")
	}
}

func (ts *testServer) do(t *testing.T, client, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+ts.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.clients[client].Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func (ts *testServer) logText() (sig, logs string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.sigLog.String(), ts.logs.String()
}

var sigLine = regexp.MustCompile(`^(\S+) client=(\S+) role=(\S+) version=(\d+) key=([0-9a-f]{16}) sha256=([0-9a-f]{64})$`)

// TestServer drives the endpoints over mutual TLS the way any client
// would, and checks the answers, the refusals and both logs.
func TestServer(t *testing.T) {
	k := testKey(t)
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	policy, err := remoteserver.ParseAllow([]string{"ci=timestamp"})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, remoteserver.Options{Keys: []*keys.PrivateKey{k}, Policy: policy, MaxPayload: 4096, Clock: func() time.Time { return now }}, "ci", "stranger")

	code, body := ts.do(t, "ci", http.MethodGet, remoteserver.PathPublicKey, nil)
	var pk remoteserver.PublicKeyResponse
	if code != http.StatusOK || json.Unmarshal(body, &pk) != nil {
		t.Fatalf("GET public key = %d %s", code, body)
	}
	if pk.KeyID != k.ID() || pk.PEM != k.Public().PEM() || pk.KeyType != "rsa" || pk.Scheme != "rsassa-pss-sha256" {
		t.Errorf("public key answer %+v does not describe the key", pk)
	}

	tsm := manifest.NewTimestamp(now)
	tsm.Version = 9
	payload := signed(t, tsm)
	code, body = ts.do(t, "ci", http.MethodPost, remoteserver.PathSign, payload)
	var sr remoteserver.SignResponse
	if code != http.StatusOK || json.Unmarshal(body, &sr) != nil {
		t.Fatalf("POST sign = %d %s", code, body)
	}
	sig, err := base64.StdEncoding.DecodeString(sr.Signature)
	if err != nil || sr.KeyID != k.ID() {
		t.Fatalf("sign answer %s", body)
	}
	if err := k.Public().Verify(payload, sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}

	refusals := []struct {
		name, client, method, path string
		body                       []byte
		code                       int
		want                       string
	}{
		{"not allowed", "stranger", http.MethodPost, remoteserver.PathSign, payload, http.StatusForbidden, `{"error":"client stranger may not sign timestamp: not in its allow-list","client":"stranger","request":"timestamp"}`},
		{"role not granted", "ci", http.MethodPost, remoteserver.PathSign, signed(t, manifest.NewSnapshot(now)), http.StatusForbidden, `"request":"snapshot"`},
		{"not canonical", "ci", http.MethodPost, remoteserver.PathSign, append(payload, ' '), http.StatusBadRequest, "not canonical"},
		{"too large", "ci", http.MethodPost, remoteserver.PathSign, bytes.Repeat([]byte{'x'}, 4097), http.StatusRequestEntityTooLarge, `"limit":4096`},
		{"GET sign", "ci", http.MethodGet, remoteserver.PathSign, nil, http.StatusMethodNotAllowed, "takes POST"},
		{"POST public key", "ci", http.MethodPost, remoteserver.PathPublicKey, nil, http.StatusMethodNotAllowed, "takes GET"},
		{"other path", "ci", http.MethodGet, "/v1/keys", nil, http.StatusNotFound, "no such endpoint"},
		{"unknown keyid", "ci", http.MethodPost, remoteserver.PathSign + "?keyid=00000000", payload, http.StatusNotFound, "no such key"},
		{"short keyid", "ci", http.MethodPost, remoteserver.PathSign + "?keyid=" + k.ID()[:4], payload, http.StatusBadRequest, "at least 8 hex digits"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			code, body := ts.do(t, r.client, r.method, r.path, r.body)
			if code != r.code || !strings.Contains(string(body), r.want) {
				t.Errorf("%s %s = %d %s, want %d with %s", r.method, r.path, code, body, r.code, r.want)
			}
		})
	}
	code, _ = ts.do(t, "ci", http.MethodPost, remoteserver.PathSign+"?keyid="+k.ID()[:12], payload)
	if code != http.StatusOK {
		t.Errorf("sign with a keyid prefix = %d", code)
	}

	ts.stop(t)
	sigLog, logs := ts.logText()
	lines := strings.Split(strings.TrimSpace(sigLog), "\n")
	if len(lines) != 2 {
		t.Fatalf("signature log has %d lines, want 2 (one per signature):\n%s", len(lines), sigLog)
	}
	sum := sha256.Sum256(payload)
	m := sigLine.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("signature log line %q is not in the documented form", lines[0])
	}
	if want := []string{"2026-05-06T07:08:09Z", "ci", "timestamp", "9", k.ID()[:16], hex.EncodeToString(sum[:])}; strings.Join(m[1:], " ") != strings.Join(want, " ") {
		t.Errorf("signature log line %q, want fields %q", lines[0], want)
	}
	if !strings.Contains(logs, "signed:") || !strings.Contains(logs, "refused: not in the allow-list: client=stranger request=timestamp") {
		t.Errorf("server log lacks the signature or the refusal:\n%s", logs)
	}
	private := string(k.KeyInfo().Value["private"])
	body64 := strings.Split(private, "\n")[1]
	for name, text := range map[string]string{"signature log": sigLog, "server log": logs} {
		if strings.Contains(text, body64) || strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("the %s shows the private key", name)
		}
	}
}

// TestServerTLS: connections without a certificate from the client CA, or
// below TLS 1.3, fail in the handshake, and the failure is logged.
func TestServerTLS(t *testing.T) {
	ts := startServer(t, remoteserver.Options{Keys: []*keys.PrivateKey{testKey(t)}, Policy: remoteserver.Policy{}})
	pem, err := os.ReadFile(ts.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	other, err := testpki.NewCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	op, err := other.Client("ci")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := tls.LoadX509KeyPair(op.CertFile, op.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	confs := map[string]*tls.Config{
		"no certificate": {RootCAs: roots},
		// Offer the foreign certificate whatever the server asks for.
		"another CA": {RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &otherCert, nil }},
		"TLS 1.2":    {RootCAs: roots, MaxVersion: tls.VersionTLS12},
	}
	for name, conf := range confs {
		t.Run(name, func(t *testing.T) {
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
			resp, err := c.Get("https://" + ts.addr + remoteserver.PathPublicKey)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET without a valid client certificate answered %s", resp.Status)
			}
		})
	}
	ts.stop(t)
	if _, logs := ts.logText(); strings.Count(logs, "TLS handshake error") < len(confs) {
		t.Errorf("server log does not show each refused handshake:\n%s", logs)
	}
}

// TestNew checks the options New refuses.
func TestNew(t *testing.T) {
	k := testKey(t)
	if _, err := remoteserver.New(remoteserver.Options{}); err == nil {
		t.Error("New without keys succeeded")
	}
	if _, err := remoteserver.New(remoteserver.Options{Keys: []*keys.PrivateKey{k, k}}); err == nil || !strings.Contains(err.Error(), k.ID()[:16]) {
		t.Errorf("New with a key twice = %v, want an error naming it", err)
	}
	dir := t.TempDir()
	if _, err := remoteserver.TLSConfig(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")); err == nil || !strings.Contains(err.Error(), "c.pem") {
		t.Errorf("TLSConfig with missing files = %v, want an error naming the certificate", err)
	}
}
