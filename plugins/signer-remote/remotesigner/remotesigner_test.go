package remotesigner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/plugins/signer-remote/internal/testpki"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remoteserver"
	"github.com/mirrorkit/mirror/plugins/signer-remote/remotesigner"
	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/host"
	"github.com/mirrorkit/mirror/sdk/plugintest"
	"github.com/mirrorkit/mirror/sdk/sdktest"
)

// The test binary doubles as the plugin (see sdk/plugintest), so the
// plugin side is this package's code built like the test, -race included.
func TestMain(m *testing.M) {
	plugintest.Serve(nil, remotesigner.Open)
	os.Exit(m.Run())
}

// sharedKeys are RSA keys generated once for the whole test binary: RSA
// generation is slow under -race, and the tests need working keys, not
// fresh ones each time.
var sharedKeys = sync.OnceValues(func() ([]*keys.PrivateKey, error) {
	var ks []*keys.PrivateKey
	for range 2 {
		k, err := keys.Generate()
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	return ks, nil
})

func testKeys(t *testing.T) []*keys.PrivateKey {
	t.Helper()
	ks, err := sharedKeys()
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	return ks
}

// world is a signer server on 127.0.0.1 and the certificates around it.
type world struct {
	addr    string
	ca      *testpki.CA
	clients map[string]testpki.Pair // by Common Name
	log     *syncBuffer             // the signature log
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
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

// startWorld serves ks with the policy given as --allow specifications; a
// client certificate is issued for every client the policy names.
func startWorld(t *testing.T, ks []*keys.PrivateKey, allow ...string) *world {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA(dir, "signer")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("server")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := remoteserver.ParseAllow(allow)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ca: ca, clients: map[string]testpki.Pair{}, log: &syncBuffer{}}
	for client := range policy {
		if w.clients[client], err = ca.Client(client); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := remoteserver.New(remoteserver.Options{Keys: ks, Policy: policy, SignatureLog: w.log, MaxPayload: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := remoteserver.TLSConfig(srvPair.CertFile, srvPair.KeyFile, ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, conf) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return w
}

// ref is the reference by which client reaches the signer; extra adds
// query parameters.
func (w *world) ref(client string, extra ...string) string {
	p := w.clients[client]
	q := url.Values{"cert": {p.CertFile}, "key": {p.KeyFile}, "ca": {w.ca.CertFile}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return remotesigner.Scheme + "://" + w.addr + "?" + q.Encode()
}

// noEnv is a getenv with no MIRROR_SIGNER_* variables.
func noEnv(string) string { return "" }

// verify checks a signature the way the host checks a manifest's.
func verify(pub sdk.PublicKey, payload, sig []byte) error {
	p, err := keys.FromSDK(pub)
	if err != nil {
		return err
	}
	return p.Verify(payload, sig)
}

func openContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConformance runs the sdk.Signer suite against a real remoteserver
// over loopback mutual TLS: in-process, over the protocol in memory and
// across the real plugin boundary. The suite signs arbitrary bytes, which
// only the raw grant allows.
func TestConformance(t *testing.T) {
	w := startWorld(t, testKeys(t)[:1], "suite=raw")
	ref := w.ref("suite")
	t.Run("in-process", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			s, err := remotesigner.Open(openContext(t), sdk.Config{Address: ref})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}, verify)
	})
	t.Run("protocol in memory", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			s, err := host.InProcessSigner(openContext(t), remotesigner.Open, sdk.Config{Address: ref})
			if err != nil {
				t.Fatalf("InProcessSigner: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, verify)
	})
	t.Run("plugin process", func(t *testing.T) {
		sdktest.TestSigner(t, func(t *testing.T) sdk.Signer {
			return plugintest.Signer(t, sdk.Config{Address: ref})
		}, verify)
	})
	if n := strings.Count(w.log.String(), "role=raw"); n == 0 {
		t.Errorf("the signature log has no raw signatures after the suite:\n%s", w.log)
	}
}

// componentPayload is the canonical signed part of a component manifest.
func componentPayload(t *testing.T, id string) []byte {
	t.Helper()
	env, err := manifest.NewEnvelope(manifest.NewComponent(id, "a component", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return env.Signed
}

func timestampPayload(t *testing.T) []byte {
	t.Helper()
	env, err := manifest.NewEnvelope(manifest.NewTimestamp(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return env.Signed
}

// TestAllowList: what a client may sign is decided from the payload, and a
// refusal is one line naming the host, the client and what it asked for.
func TestAllowList(t *testing.T) {
	w := startWorld(t, testKeys(t)[:1], "ci=timestamp,snapshot", "alice=component:hello,component:tool-*")
	ctx := openContext(t)
	ci, err := remotesigner.New(ctx, w.ref("ci"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := remotesigner.New(ctx, w.ref("alice"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		s       *remotesigner.Signer
		client  string
		payload []byte
		refused string // what the refusal names; "" when allowed
	}{
		{"ci signs a timestamp", ci, "ci", timestampPayload(t), ""},
		{"ci may not sign a component", ci, "ci", componentPayload(t, "hello"), "component:hello"},
		{"alice signs hello", alice, "alice", componentPayload(t, "hello"), ""},
		{"alice signs a matching pattern", alice, "alice", componentPayload(t, "tool-x"), ""},
		{"alice may not sign another component", alice, "alice", componentPayload(t, "tidb"), "component:tidb"},
		{"alice may not sign a timestamp", alice, "alice", timestampPayload(t), "timestamp"},
		{"raw bytes are not granted", alice, "alice", []byte("not a manifest"), "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.log.String()
			sig, err := tt.s.Sign(ctx, tt.payload)
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if err := verify(mustPub(t, tt.s), tt.payload, sig); err != nil {
					t.Errorf("signature: %v", err)
				}
				if got := strings.TrimPrefix(w.log.String(), before); strings.Count(got, "\n") != 1 || !strings.Contains(got, "client="+tt.client) {
					t.Errorf("signature log gained %q, want one line naming client %s", got, tt.client)
				}
				return
			}
			want := fmt.Sprintf("signer %s refused client %s to sign %s: not in its allow-list", w.addr, tt.client, tt.refused)
			if err == nil || err.Error() != want {
				t.Fatalf("Sign = %v, want %q", err, want)
			}
			if !errors.Is(err, fs.ErrPermission) {
				t.Errorf("Sign = %v, want it to wrap fs.ErrPermission", err)
			}
			if w.log.String() != before {
				t.Errorf("a refused request reached the signature log: %q", strings.TrimPrefix(w.log.String(), before))
			}
		})
	}
}

func mustPub(t *testing.T, s sdk.Signer) sdk.PublicKey {
	t.Helper()
	pub, err := s.PublicKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestKeyChoice: a signer holding several keys signs with the one keyid
// names, and asks for a keyid when none is given.
func TestKeyChoice(t *testing.T) {
	ks := testKeys(t)
	w := startWorld(t, ks, "ci=raw")
	ctx := openContext(t)
	for _, k := range ks {
		s, err := remotesigner.New(ctx, w.ref("ci", "keyid", k.ID()[:16]), noEnv)
		if err != nil {
			t.Fatalf("New with keyid %s: %v", k.ID()[:16], err)
		}
		if s.ID() != k.ID() {
			t.Errorf("keyid %s opened key %s", k.ID()[:16], s.ID()[:16])
		}
		sig, err := s.Sign(ctx, []byte("payload"))
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().Verify([]byte("payload"), sig); err != nil {
			t.Errorf("keyid %s: signature by another key: %v", k.ID()[:16], err)
		}
	}
	_, err := remotesigner.New(ctx, w.ref("ci"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "holds 2 keys") || !strings.Contains(err.Error(), ks[0].ID()[:16]) {
		t.Errorf("New without keyid on a two-key signer = %v, want a refusal listing the keys", err)
	}
	_, err = remotesigner.New(ctx, w.ref("ci", "keyid", "00000000"), noEnv)
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("New with an unknown keyid = %v, want sdk.ErrNotFound", err)
	}
}

// TestTLSRefusals: clients without a valid certificate are refused during
// the handshake, each with a message that names the certificate problem,
// and nothing is signed.
func TestTLSRefusals(t *testing.T) {
	w := startWorld(t, testKeys(t)[:1], "ci=raw")
	other, err := testpki.NewCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Client("ci")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := w.ca.ExpiredClient("ci")
	if err != nil {
		t.Fatal(err)
	}
	base := remotesigner.Scheme + "://" + w.addr
	tests := []struct {
		name string
		ref  string
		want []string
	}{
		{"no client certificate", base + "?ca=" + w.ca.CertFile,
			[]string{"signer " + w.addr + " refused the connection: it requires a client certificate and none was given", "MIRROR_SIGNER_CERT"}},
		{"certificate from another CA", base + "?" + url.Values{"cert": {stranger.CertFile}, "key": {stranger.KeyFile}, "ca": {w.ca.CertFile}}.Encode(),
			[]string{"signer " + w.addr + " refused client certificate " + stranger.CertFile, "issued by a CA the signer trusts"}},
		{"expired certificate", base + "?" + url.Values{"cert": {expired.CertFile}, "key": {expired.KeyFile}, "ca": {w.ca.CertFile}}.Encode(),
			[]string{"signer " + w.addr + " refused client certificate " + expired.CertFile}},
		{"server certificate not trusted", base + "?" + url.Values{"cert": {w.clients["ci"].CertFile}, "key": {w.clients["ci"].KeyFile}, "ca": {other.CertFile}}.Encode(),
			[]string{"signer " + w.addr + ": its server certificate is not signed by CA " + other.CertFile}},
		{"nothing listens", remotesigner.Scheme + "://" + closedAddr(t) + "?ca=" + w.ca.CertFile,
			[]string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := remotesigner.New(openContext(t), tt.ref, noEnv)
			if err == nil {
				t.Fatal("New succeeded")
			}
			msg := err.Error()
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("New = %q, want it to contain %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("New = %q, want one line", msg)
			}
		})
	}
	if got := w.log.String(); got != "" {
		t.Errorf("refused clients got signatures:\n%s", got)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestEnvironment: certificate paths absent from the reference come from
// MIRROR_SIGNER_*, and the reference's own win over them.
func TestEnvironment(t *testing.T) {
	w := startWorld(t, testKeys(t)[:1], "ci=raw", "other=raw")
	ci, other := w.clients["ci"], w.clients["other"]
	env := map[string]string{remotesigner.EnvCert: ci.CertFile, remotesigner.EnvKey: ci.KeyFile, remotesigner.EnvCA: w.ca.CertFile}
	getenv := func(k string) string { return env[k] }
	ctx := openContext(t)
	s, err := remotesigner.New(ctx, remotesigner.Scheme+"://"+w.addr, getenv)
	if err != nil {
		t.Fatalf("New from the environment: %v", err)
	}
	if _, err := s.Sign(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	q := url.Values{"cert": {other.CertFile}, "key": {other.KeyFile}}
	s, err = remotesigner.New(ctx, remotesigner.Scheme+"://"+w.addr+"?"+q.Encode(), getenv)
	if err != nil {
		t.Fatalf("New with the reference's certificate: %v", err)
	}
	if _, err := s.Sign(ctx, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if log := w.log.String(); !strings.Contains(log, "client=ci ") || !strings.Contains(log, "client=other ") {
		t.Errorf("signature log does not show both clients:\n%s", log)
	}
}

// TestBadReferences: references that cannot work are refused before any
// connection, with one line naming what is wrong.
func TestBadReferences(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref, want string
	}{
		{"other scheme", "https://127.0.0.1:1", "the scheme must be remote+https"},
		{"no port", "remote+https://127.0.0.1", "HOST:PORT"},
		{"a path", "remote+https://127.0.0.1:1/sign", "only remote+https://HOST:PORT"},
		{"credentials", "remote+https://u:p@127.0.0.1:1", "only remote+https://HOST:PORT"},
		{"unknown parameter", "remote+https://127.0.0.1:1?crt=x", `unknown parameter "crt"`},
		{"cert without key", "remote+https://127.0.0.1:1?cert=" + notPEM, "given without its key"},
		{"key without cert", "remote+https://127.0.0.1:1?key=" + notPEM, "given without its certificate"},
		{"missing certificate file", "remote+https://127.0.0.1:1?cert=" + missing + "&key=" + missing, "load client certificate " + missing},
		{"missing CA", "remote+https://127.0.0.1:1?ca=" + missing, "read CA " + missing},
		{"CA not PEM", "remote+https://127.0.0.1:1?ca=" + notPEM, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := remotesigner.New(t.Context(), tt.ref, noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("New(%q) = %v, want one line containing %q", tt.ref, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "u:p@") {
				t.Errorf("New(%q) = %v, which shows the credentials", tt.ref, err)
			}
		})
	}
}

// TestPayloadLimit: a payload over the server's limit is refused with the
// limit named, and nothing is signed.
func TestPayloadLimit(t *testing.T) {
	w := startWorld(t, testKeys(t)[:1], "ci=raw")
	s, err := remotesigner.New(openContext(t), w.ref("ci"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(openContext(t), bytes.Repeat([]byte{'x'}, 2<<20+1))
	want := fmt.Sprintf("signer %s refused a payload of %d bytes: its limit is %d bytes", w.addr, 2<<20+1, 2<<20)
	if err == nil || err.Error() != want {
		t.Errorf("Sign over the limit = %v, want %q", err, want)
	}
	if got := w.log.String(); got != "" {
		t.Errorf("an oversized payload was signed:\n%s", got)
	}
}
