package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
)

// srCA is a certificate authority made by the test: ECDSA P-256, so that
// making one costs milliseconds.
type srCA struct {
	t    *testing.T
	dir  string
	file string // the CA certificate, PEM
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newSRCA(t *testing.T, dir, name string) *srCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &srCA{t: t, dir: dir, file: filepath.Join(dir, name+".pem"), cert: cert, key: key}
	srWritePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate for cn and returns its file and key file; a
// server certificate is valid for 127.0.0.1.
func (ca *srCA) issue(cn string, server bool) (certFile, keyFile string) {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, cn+"-"+filepath.Base(ca.file))
	keyFile = strings.TrimSuffix(certFile, ".pem") + "-key.pem"
	srWritePEM(t, certFile, "CERTIFICATE", der)
	srWritePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func srWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var signerLine = regexp.MustCompile(`^Signer listening on https://(127\.0\.0\.1:\d+)$`)

// remoteSigner is a `mirror signer serve` subprocess on the "signer host".
type remoteSigner struct {
	bg   *background
	addr string
	log  string // its --log file
}

// startSigner runs `mirror signer serve` with the key files and --allow
// specifications, its certificates from ca.
func startSigner(t *testing.T, s *sandbox, ca *srCA, name string, keyFiles []string, allow ...string) *remoteSigner {
	t.Helper()
	cert, key := ca.issue(name, true)
	rs := &remoteSigner{log: s.path(name + "-signatures.log")}
	args := []string{"signer", "serve", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--client-ca", ca.file, "--log", rs.log}
	for _, k := range keyFiles {
		args = append(args, "--key", k)
	}
	for _, a := range allow {
		args = append(args, "--allow", a)
	}
	rs.bg = s.start(nil, args...)
	rs.addr = rs.bg.waitFor(t, signerLine)[1]
	return rs
}

// ref is the --signer reference of a client with the given certificate
// ("" for none); extra are more query parameters, name then value.
func (rs *remoteSigner) ref(ca, cert, key string, extra ...string) string {
	q := url.Values{"ca": {ca}}
	if cert != "" {
		q.Set("cert", cert)
		q.Set("key", key)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return "remote+https://" + rs.addr + "?" + q.Encode()
}

// signatures returns the lines of the signer's signature log.
func (rs *remoteSigner) signatures(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(rs.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (rs *remoteSigner) stop(t *testing.T) {
	t.Helper()
	if err := rs.bg.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rs.bg.wait(t)
}

// moveFile moves a key file from the mirror's machine to the signer's.
func moveFile(t *testing.T, from, to string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
	return to
}

// privateBody is a stretch of a key file's private key text, to look for
// in logs and answers.
func privateBody(t *testing.T, keyFile string) string {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The PEM sits in a JSON string; take base64 from its middle.
	text := string(data)
	i := strings.Index(text, "KEY-----")
	if i < 0 || len(text) < i+200 {
		t.Fatalf("%s does not look like a private key file", keyFile)
	}
	return text[i+100 : i+160]
}

// TestRemoteSignerOwner: the owner's key lives only on a signer host; a
// publish signs through `mirror signer serve` over mutual TLS and installs.
// Clients without a certificate, with one from another CA, or asking to
// sign a component outside their allow-list are refused with one line and
// exit 77 (access denied), nothing is signed and the mirror is unchanged. The private key shows in
// none of the signer's output, logs or answers.
func TestRemoteSignerOwner(t *testing.T) {
	s := newMirror(t)
	ownerKey := moveFile(t, filepath.Join(s.home, "keys", "private.json"), s.path("signer-host", "alice.json"))
	ca := newSRCA(t, t.TempDir(), "clients-ca")
	aliceCert, aliceKey := ca.issue("alice", false)
	malloryCert, malloryKey := ca.issue("mallory", false)
	other := newSRCA(t, t.TempDir(), "other-ca")
	strangerCert, strangerKey := other.issue("alice", false)
	rs := startSigner(t, s, ca, "owner-signer", []string{ownerKey}, "alice=component:hello", "mallory=component:other")

	s.write("src/hello", "#!/bin/sh\necho hello signed far away\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	tarball := "package/hello-v0.0.2-" + platform + ".tar.gz"
	before := treeDigest(t, s.path("m"))
	refusals := []struct {
		name, ref, want string
	}{
		{"no certificate", rs.ref(ca.file, "", ""), "signer " + rs.addr + " refused the connection: it requires a client certificate and none was given"},
		{"certificate from another CA", rs.ref(ca.file, strangerCert, strangerKey), "signer " + rs.addr + " refused client certificate " + strangerCert + ": it is not issued by a CA the signer trusts"},
		{"component not allowed", rs.ref(ca.file, malloryCert, malloryKey), "signer " + rs.addr + " refused client mallory to sign component:hello: not in its allow-list"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			s.fail(77, r.want, "publish", "hello", "v0.0.2", tarball, "hello", "--signer", r.ref)
			if treeDigest(t, s.path("m")) != before {
				t.Error("a refused publish changed the mirror")
			}
			if data, _ := os.ReadFile(rs.log); len(data) != 0 {
				t.Errorf("a refused client got a signature:\n%s", data)
			}
		})
	}

	out := s.must("publish", "hello", "v0.0.2", tarball, "hello", "--signer", rs.ref(ca.file, aliceCert, aliceKey)).stdout
	if !strings.Contains(out, "Published hello v0.0.2") {
		t.Errorf("publish printed %q", out)
	}
	lines := rs.signatures(t)
	if len(lines) != 1 || !regexp.MustCompile(`^\S+Z client=alice role=component:hello version=2 key=[0-9a-f]{16} sha256=[0-9a-f]{64}$`).MatchString(lines[0]) {
		t.Errorf("signature log = %q, want one line for alice's hello version 2", lines)
	}
	entry := strings.TrimSpace(s.must("install", "hello:v0.0.2").stdout)
	run, err := exec.Command(entry).CombinedOutput()
	if err != nil || !strings.Contains(string(run), "hello signed far away") {
		t.Fatalf("run %s: %v: %s", entry, err, run)
	}
	s.must("verify", "m")

	// -k takes the same reference.
	s.must("renew", "hello", "-k", rs.ref(ca.file, aliceCert, aliceKey))
	if n := len(rs.signatures(t)); n != 2 {
		t.Errorf("after renew -k REF the signature log has %d lines, want 2", n)
	}

	// What the signer answers a client directly.
	answers := srAnswers(t, rs.addr, ca.file, aliceCert, aliceKey)
	rs.stop(t)
	secret := privateBody(t, ownerKey)
	log, _ := os.ReadFile(rs.log)
	for name, text := range map[string]string{"stdout": rs.bg.out.String(), "stderr": rs.bg.errb.String(), "signature log": string(log), "answers": answers} {
		if strings.Contains(text, secret) || strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("the signer's %s shows the private key", name)
		}
	}
	if errs := rs.bg.errb.String(); !strings.Contains(errs, "refused: not in the allow-list: client=mallory request=component:hello") || !strings.Contains(errs, "TLS handshake error") {
		t.Errorf("the signer's stderr does not show the refusals:\n%s", errs)
	}
}

// srAnswers asks the signer for its public key and to sign a payload it
// refuses, as a client, and returns both answers.
func srAnswers(t *testing.T, addr, caFile, certFile, keyFile string) string {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	var all bytes.Buffer
	env, err := manifest.NewEnvelope(manifest.NewTimestamp(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct {
		method, path string
		body         []byte
		code         int
	}{
		{http.MethodGet, "/v1/public-key", nil, http.StatusOK},
		{http.MethodPost, "/v1/sign", env.Signed, http.StatusForbidden},
	} {
		r, err := http.NewRequest(req.method, "https://"+addr+req.path, bytes.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != req.code {
			t.Errorf("%s %s = %s %s, want %d", req.method, req.path, resp.Status, body, req.code)
		}
		all.Write(body)
	}
	return all.String()
}

// TestRemoteSignerRoles: the mirror's snapshot and timestamp keys live only
// on a signer host. `mirror serve --signer` signs with them for a publish
// through the write API (whose owner signs remotely too), and a plain
// publish given every key as --signer tells the owner's key from the role
// keys by the mirror's root.
func TestRemoteSignerRoles(t *testing.T) {
	s := newMirror(t)
	ca := newSRCA(t, t.TempDir(), "clients-ca")
	ciCert, ciKey := ca.issue("ci", false)
	aliceCert, aliceKey := ca.issue("alice", false)
	var roleKeys, roleIDs []string
	for _, role := range []string{"snapshot", "timestamp"} {
		files, err := filepath.Glob(s.path("m", "keys", "*-"+role+".json"))
		if err != nil || len(files) != 1 {
			t.Fatalf("%s key: %v %v", role, files, err)
		}
		roleIDs = append(roleIDs, keyID(t, files[0]))
		roleKeys = append(roleKeys, moveFile(t, files[0], s.path("signer-host", filepath.Base(files[0]))))
	}
	ownerKey := moveFile(t, filepath.Join(s.home, "keys", "private.json"), s.path("signer-host", "alice.json"))
	roles := startSigner(t, s, ca, "role-signer", roleKeys, "ci=snapshot,timestamp")
	owner := startSigner(t, s, ca, "owner-signer", []string{ownerKey}, "alice=component:hello")
	roleRefs := []string{
		roles.ref(ca.file, ciCert, ciKey, "keyid", roleIDs[0][:16]),
		roles.ref(ca.file, ciCert, ciKey, "keyid", roleIDs[1][:16]),
	}
	ownerRef := owner.ref(ca.file, aliceCert, aliceKey)

	// Without the role signer the mirror cannot be signed any more: the
	// commit stops before its commit point (timestamp.json), so clients
	// see the mirror as it was.
	s.write("src/hello", "#!/bin/sh\necho hello v0.0.9\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.9")
	ts, snap := fileDigest(t, s.path("m", "timestamp.json")), fileDigest(t, s.path("m", "snapshot.json"))
	s.fail(1, "private key is missing", "publish", "hello", "v0.0.9", "package/hello-v0.0.9-"+platform+".tar.gz", "hello", "--signer", ownerRef)
	if fileDigest(t, s.path("m", "timestamp.json")) != ts || fileDigest(t, s.path("m", "snapshot.json")) != snap {
		t.Error("a publish without the role keys changed timestamp.json or snapshot.json")
	}
	s.must("verify", "m")

	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0", "--signer", roleRefs[0], "--signer", roleRefs[1])
	base := srv.waitFor(t, servingLine)[2]
	where := srv.waitFor(t, writeAPILine)[1]
	if !strings.Contains(where, "--signer keys") || !strings.Contains(where, roleIDs[0][:16]) || !strings.Contains(where, roleIDs[1][:16]) {
		t.Errorf("serve says the role keys are in %q, want the --signer keys named", where)
	}
	c := newSandbox(t)
	c.write("src/hello", "#!/bin/sh\necho hello v0.0.2 signed by two signers\n", 0o755)
	c.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	c.must("--mirror", base, "publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello", "--signer", ownerRef)
	entry := strings.TrimSpace(c.must("--mirror", base, "install", "hello:v0.0.2").stdout)
	run, err := exec.Command(entry).CombinedOutput()
	if err != nil || !strings.Contains(string(run), "signed by two signers") {
		t.Fatalf("run %s: %v: %s", entry, err, run)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	srv.wait(t)
	wantRoles := func(n int) {
		t.Helper()
		lines := roles.signatures(t)
		if len(lines) != n {
			t.Fatalf("role signer log has %d lines, want %d:\n%s", len(lines), n, strings.Join(lines, "\n"))
		}
		for i, line := range lines {
			want := []string{"role=snapshot", "role=timestamp"}[i%2]
			if !strings.Contains(line, " client=ci "+want+" ") {
				t.Errorf("role signer log line %q, want client ci signing %s", line, want)
			}
		}
	}
	wantRoles(2)

	// A plain publish with every key remote: the owner's key is told from
	// the role keys by the mirror's root.
	s.write("src/hello", "#!/bin/sh\necho hello v0.0.3\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.3")
	s.must("publish", "hello", "v0.0.3", "package/hello-v0.0.3-"+platform+".tar.gz", "hello",
		"--signer", roleRefs[0], "--signer", ownerRef, "--signer", roleRefs[1])
	wantRoles(4)
	// v0.0.9's component manifest was signed before its commit failed.
	if n := len(owner.signatures(t)); n != 3 {
		t.Errorf("owner signer log has %d lines, want 3", n)
	}
	s.must("verify", "m")
	entry = strings.TrimSpace(s.must("install", "hello:v0.0.3").stdout)
	if run, err := exec.Command(entry).CombinedOutput(); err != nil || !strings.Contains(string(run), "hello v0.0.3") {
		t.Fatalf("run %s: %v: %s", entry, err, run)
	}
	roles.stop(t)
	owner.stop(t)
}
