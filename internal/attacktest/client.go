package attacktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Binary is the mirror binary the cases run; TestMain sets it with Build.
var Binary string

// RunTimeout bounds one run of the binary. A run that takes longer hangs:
// it is killed and the case fails.
const RunTimeout = 2 * time.Minute

// Build builds the mirror binary with -tags testclock (the only build
// that honours MIRROR_TEST_NOW) into dir and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "mirror")
	cmd := exec.Command("go", "build", "-tags", "testclock", "-o", bin, "github.com/mirrorkit/mirror/cmd/mirror")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build mirror: %v\n%s", err, stderr.Bytes())
	}
	return bin, nil
}

// Client is one user's sandbox: a directory holding the home
// (TIUP_HOME), a working directory, and two canary directories beside the
// home that no run may touch. Nothing is shared between clients.
type Client struct {
	t testing.TB
	// Root is the sandbox, a t.TempDir.
	Root string
	// Home is $TIUP_HOME.
	Home string
	// Work is the working directory of every run.
	Work string
	// Now is MIRROR_TEST_NOW for the runs.
	Now time.Time
	// Env holds extra environment variables for the runs (KEY=VALUE).
	Env []string
}

// Canaries are the directories beside the home that a run must leave
// alone; a path escape from the home or the install directory lands there.
var Canaries = []string{"canary-a", "canary-b"}

// NewClient makes a sandbox whose runs see the time now.
func NewClient(t testing.TB, now time.Time) *Client {
	root := t.TempDir()
	c := &Client{t: t, Root: root, Home: filepath.Join(root, "home"), Work: filepath.Join(root, "work"), Now: now}
	for _, d := range []string{c.Home, c.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range Canaries {
		p := filepath.Join(root, d)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Result is what one run did.
type Result struct {
	Args     []string
	Code     int
	Stdout   string
	Stderr   string
	Panicked bool  // stderr shows a Go panic or a goroutine dump
	TimedOut bool  // killed after RunTimeout
	MaxRSS   int64 // peak resident set of the mirror process, KiB (0 if unknown)
}

// LastLine is the last line of stderr: the one-line error.
func (r Result) LastLine() string {
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	return lines[len(lines)-1]
}

func (r Result) String() string {
	return fmt.Sprintf("mirror %s: exit %d; stderr: %s", strings.Join(r.Args, " "), r.Code, strings.TrimSpace(r.Stderr))
}

// environ is the environment of a run: the test's own, without anything
// that would point the binary elsewhere, plus the sandbox's.
func (c *Client) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TIUP_") || strings.HasPrefix(kv, "MIRROR") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"TIUP_HOME="+c.Home,
		"HOME="+c.Work,
		"MIRROR_TEST_NOW="+c.Now.UTC().Format(time.RFC3339),
		// Short transport limits keep the timeout cases to seconds; they
		// are the knobs a user on a slow link would turn the other way.
		"MIRROR_HTTP_IDLE_TIMEOUT=2s",
		"MIRROR_HTTP_HEADER_TIMEOUT=2s",
		"MIRROR_HTTP_ATTEMPTS=3",
		// The OCI backend reads Docker's configuration: an empty one, so
		// no credentials of the developer's are ever offered.
		"DOCKER_CONFIG="+filepath.Join(c.Root, "docker"),
	)
	return append(env, c.Env...)
}

// Command returns the command for one run, for cases that start and kill
// it themselves.
func (c *Client) Command(ctx context.Context, args ...string) *exec.Cmd {
	if Binary == "" {
		c.t.Fatal("attacktest: Binary is not built; call Build in TestMain")
	}
	cmd := exec.CommandContext(ctx, Binary, args...)
	cmd.Dir = c.Work
	cmd.Env = c.environ()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs the binary with args and returns what it did. It never fails
// the test itself, except when the binary cannot be started.
func (c *Client) Run(args ...string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := c.Command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Args: args, Stdout: out.String(), Stderr: errb.String()}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
		r.MaxRSS = maxRSS(cmd.ProcessState)
	}
	if ctx.Err() != nil {
		r.TimedOut = true
	} else if _, ok := err.(*exec.ExitError); err != nil && !ok {
		c.t.Fatalf("run mirror %v: %v", args, err)
	}
	r.Panicked = strings.Contains(r.Stderr, "panic:") || strings.Contains(r.Stderr, "goroutine ")
	return r
}

// Must runs the binary and fails the test unless it exits 0.
func (c *Client) Must(args ...string) Result {
	c.t.Helper()
	r := c.Run(args...)
	if r.Code != 0 || r.Panicked || r.TimedOut {
		c.t.Fatalf("%v", r)
	}
	return r
}

// Tree describes every entry under dir by its slash path: its type, its
// permission bits, and a file's sha256 or a link's target. Entries below
// any of skip (slash paths relative to dir) are left out.
func Tree(dir string, skip ...string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if slices.Contains(skip, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + target
		case d.IsDir():
			out[rel] = fmt.Sprintf("dir %o", info.Mode().Perm())
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out[rel] = fmt.Sprintf("file %o %s", info.Mode().Perm(), hex.EncodeToString(sum[:8]))
		default:
			out[rel] = "special " + info.Mode().String()
		}
		return nil
	})
	return out, err
}

// diffTrees lists what differs between two trees, except paths for which
// allowed returns true.
func diffTrees(before, after map[string]string, allowed func(string) bool) []string {
	var out []string
	for p, a := range after {
		if allowed(p) {
			continue
		}
		if b, ok := before[p]; !ok {
			out = append(out, "new "+p+" ("+a+")")
		} else if a != b {
			out = append(out, "changed "+p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok && !allowed(p) {
			out = append(out, "removed "+p)
		}
	}
	slices.Sort(out)
	return out
}
