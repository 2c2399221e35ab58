// Package testregistry runs a real OCI registry for tests: Debian's
// docker-registry package (CNCF distribution 2.8), started on 127.0.0.1 on a
// free port with its storage in a temporary directory, and stopped when the
// test ends. go-containerregistry's in-memory registry is fine for unit
// tests, but a mirror kept in a registry has to be proven against the
// server real registries run, with its real quirks (upload sessions,
// manifest validation, auth challenges, restarts).
//
// The binary is /usr/bin/docker-registry, or docker-registry on PATH. Tests
// never install it themselves, not even when they run as root: an apt-get
// inside `go test` would be slow, needs the network, and changes the machine
// behind the developer's back. `make deps` installs it (see the Makefile).
// When it is missing, Start skips the test with a message naming `make
// deps`, unless MIRROR_REQUIRE_REGISTRY=1 is set (as `make test`, and so CI,
// sets it): then a missing registry fails the test instead of passing
// silently.
//
// The Debian package may also start a system service on port 5000; nothing
// here uses or depends on it, since every registry gets its own port and
// storage.
package testregistry

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DefaultBinary is where Debian's docker-registry package puts the server.
const DefaultBinary = "/usr/bin/docker-registry"

// RequireEnv names the environment variable that, set to 1, turns a missing
// registry binary from a skipped test into a failed one.
const RequireEnv = "MIRROR_REQUIRE_REGISTRY"

// startTimeout bounds how long a registry may take to answer /v2/ after it
// is started; distribution starts in well under a second.
const startTimeout = 30 * time.Second

// Option configures a registry before it starts.
type Option func(*Registry)

// WithAuth makes the registry require HTTP basic auth (distribution's
// htpasswd backend) for user with password.
func WithAuth(user, password string) Option {
	return func(r *Registry) { r.user, r.password = user, password }
}

// Registry is one running docker-registry process. Its methods are meant
// for the test goroutine that started it (they call t.Fatal).
type Registry struct {
	t        testing.TB
	bin      string
	dir      string // config.yml, htpasswd, registry.log
	storage  string
	host     string // 127.0.0.1:PORT, kept across restarts
	user     string
	password string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// binaryPath is DefaultBinary, a variable so that the package's own test can
// play a machine without it.
var binaryPath = DefaultBinary

// Binary returns the docker-registry executable, or "" if there is none.
func Binary() string {
	if fi, err := os.Stat(binaryPath); err == nil && fi.Mode().IsRegular() {
		return binaryPath
	}
	if p, err := exec.LookPath("docker-registry"); err == nil {
		return p
	}
	return ""
}

// Start starts a registry on 127.0.0.1 with a fresh storage directory,
// waits until it answers /v2/, and stops it when t ends. Without the
// docker-registry binary it skips t, or fails it under
// MIRROR_REQUIRE_REGISTRY=1.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "docker-registry is not installed (Debian package docker-registry); run `make deps` to install it"
		if os.Geteuid() != 0 {
			msg = "docker-registry is not installed (Debian package docker-registry); run `sudo make deps` to install it"
		}
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s (%s=1 makes this a failure)", msg, RequireEnv)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	r := &Registry{t: t, bin: bin, dir: dir, storage: filepath.Join(dir, "storage")}
	for _, o := range opts {
		o(r)
	}
	if err := r.writeConfig(); err != nil {
		t.Fatalf("testregistry: %v", err)
	}
	t.Cleanup(func() { r.stop() })
	// Another process can take the free port between our probe and the
	// registry's bind; a fresh port is picked then, a few times.
	var err error
	for range 3 {
		if r.host, err = freeHost(); err != nil {
			t.Fatalf("testregistry: %v", err)
		}
		if err = r.start(); err == nil {
			return r
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("testregistry: %v", err)
	return nil
}

// Host returns the registry's address, 127.0.0.1:PORT; it stays the same
// across Restart.
func (r *Registry) Host() string { return r.host }

// Storage returns the registry's storage root directory (distribution's
// filesystem driver layout under docker/registry/v2).
func (r *Registry) Storage() string { return r.storage }

// User returns the htpasswd user and password, empty without WithAuth.
func (r *Registry) User() (user, password string) { return r.user, r.password }

// Stop kills the registry (SIGKILL, as a crash or an OOM kill would: an
// upload in flight is cut off; what it had committed to storage stays) and
// waits for it to exit. Stopping a stopped registry does nothing.
func (r *Registry) Stop() {
	r.t.Helper()
	r.stop()
}

// Start starts a stopped registry again on the same port and storage.
func (r *Registry) Start() {
	r.t.Helper()
	r.mu.Lock()
	running := r.cmd != nil
	r.mu.Unlock()
	if running {
		r.t.Fatal("testregistry: Start of a registry that is running")
	}
	// The old process's listening socket is gone once it has exited, but a
	// client could briefly hold the port; try for a few seconds.
	var err error
	for range 10 {
		if err = r.start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("testregistry: restart: %v", err)
	}
}

// Restart stops the registry and starts it again on the same port with
// the same storage, as an operator's restart or a crash and recovery would.
func (r *Registry) Restart() {
	r.t.Helper()
	r.Stop()
	r.Start()
}

// WriteDockerConfig writes dir/config.json in the Docker CLI's format with
// the registry's credentials under "auths", as `docker login` would; point
// DOCKER_CONFIG at dir to use it.
func (r *Registry) WriteDockerConfig(dir string) error {
	if r.user == "" {
		return errors.New("testregistry: the registry has no auth; start it WithAuth")
	}
	auth := base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.password))
	b, err := json.MarshalIndent(map[string]any{
		"auths": map[string]any{r.host: map[string]string{"auth": auth}},
	}, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o600)
}

// Log returns what the registry has logged so far, for a failing test's
// message.
func (r *Registry) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	return string(b)
}

// writeConfig writes config.yml, and htpasswd with auth.
func (r *Registry) writeConfig() error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	var auth string
	if r.user != "" {
		// distribution's htpasswd backend accepts bcrypt entries only.
		hash, err := bcrypt.GenerateFromPassword([]byte(r.password), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("htpasswd: %w", err)
		}
		path := filepath.Join(r.dir, "htpasswd")
		if err := os.WriteFile(path, []byte(r.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: mirror-test\n    path: %s\n", path)
	}
	// http.addr is a placeholder: REGISTRY_HTTP_ADDR sets the real one at
	// each start, so that one file serves every restart.
	// Deleting is enabled because a mirror's writer removes its lease and
	// superseded tags; upload purging is off so a restart never removes an
	// upload a client is about to resume; the access log stays on, in the
	// log file, for failing tests to show.
	conf := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:0
  secret: %s
%s`, r.storage, hex.EncodeToString(secret), auth)
	return os.WriteFile(filepath.Join(r.dir, "config.yml"), []byte(conf), 0o600)
}

// start runs the registry on r.host and waits until /v2/ answers.
func (r *Registry) start() error {
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, 2)
	cmd := exec.Command(r.bin, "serve", filepath.Join(r.dir, "config.yml"))
	// A clean environment: distribution reads REGISTRY_* variables as
	// config overrides, and the developer's must not leak in.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir, "REGISTRY_HTTP_ADDR=" + r.host}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			r.mu.Lock()
			r.cmd = nil
			r.mu.Unlock()
			return fmt.Errorf("docker-registry on %s exited at start: %s", r.host, r.logSince(offset))
		default:
		}
		// 200 without auth, 401 with: either way the server is up.
		if resp, err := client.Get("http://" + r.host + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			r.stop()
			return fmt.Errorf("docker-registry on %s did not answer /v2/ within %v: %s", r.host, startTimeout, r.logSince(offset))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills the process, if any, and waits for it.
func (r *Registry) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// logSince returns the log written after offset, trimmed to its last lines.
func (r *Registry) logSince(offset int64) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	if int64(len(b)) >= offset {
		b = b[offset:]
	}
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freeHost returns 127.0.0.1:PORT for a port that was free a moment ago.
func freeHost() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
