package attacktest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/keys"
	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/internal/attackreport"
)

const family = "local state"

// TestLocalState is the catalogue's 1.11 rows that fit the standard
// checks: damaged or unwritable local state.
func TestLocalState(t *testing.T) {
	manifests := func(c *Case, name string) string { return filepath.Join(c.Client.Home, "manifests", name) }
	RunAttacks(t, family, []Attack{
		{ID: "LS-1", Expect: decision(t, "LS-1").Expect, Attack: func(c *Case) {
			for _, name := range []string{"timestamp.json", "snapshot.json"} {
				b := c.Trusted(name)
				if err := os.WriteFile(manifests(c, name), b[:len(b)/2], 0o644); err != nil {
					c.T.Fatal(err)
				}
			}
		}, NoRecovery: true, Detail: "policy: " + decision(t, "LS-1").Decision + "; the rollback reference of those files is lost"},
		{ID: "LS-2", Expect: "threshold", Setup: func(c *Case) {
			// Two rotations replace every root key.
			for _, idx := range [][]int{{0, 1, 2}, {3, 4, 5}} {
				next := []*keys.PrivateKey{c.Sim.Spare(idx[0]), c.Sim.Spare(idx[1]), c.Sim.Spare(idx[2])}
				c.Sim.RotateRoot(func(r *manifest.Root) { c.Sim.SetRoleKeys(r, manifest.RoleRoot, 2, next...) }, next)
			}
		}, Attack: func(c *Case) {
			// The local root.json is gone; whoever holds the retired
			// version-1 root keys forges a version 2 that hands the
			// timestamp role to a key of theirs.
			os.Remove(manifests(c, "root.json"))
			evil := c.Sim.Spare(7)
			c.Serve("2.root.json", c.Sim.NextRoot(func(r *manifest.Root) {
				r.Version = 2
				r.Roles[manifest.RoleRoot].Keys = KeyInfos(c.Sim.Pool(0), c.Sim.Pool(1), c.Sim.Pool(2))
				r.Roles[manifest.RoleTimestamp].Keys = KeyInfos(evil)
			}, c.Sim.Pool(0), c.Sim.Pool(1), c.Sim.Pool(2)))
			t := *c.Sim.Timestamp
			t.Version++
			c.Serve("timestamp.json", c.Sim.Sign(&t, evil))
		}, MayChange: []string{"root.json"}, Verify: func(c *Case, r Result) error {
			// root.json is repaired from the newest N.root.json.
			if want := c.Sim.File("3.root.json"); !bytes.Equal(c.Trusted("root.json"), want) {
				return fmt.Errorf("root.json is not the trusted 3.root.json")
			}
			return nil
		}, Detail: "with root.json lost, the newest N.root.json is the anchor (and root.json is repaired), never the retired bin/root.json"},
		{ID: "LS-5", Expect: NoToken, Attack: func(c *Case) {
			// index.json cannot be replaced (a directory took its name,
			// as root sees a read-only or full disk).
			p := manifests(c, "index.json")
			os.Remove(p)
			if err := os.Mkdir(p, 0o755); err != nil {
				c.T.Fatal(err)
			}
		}, MayChange: []string{"snapshot.json", "timestamp.json"}, Heal: func(c *Case) {
			c.Heal()
			os.Remove(manifests(c, "index.json"))
		}, Detail: "a trusted file that cannot be written: a clean error (exit 1), the state re-verifies"},
	})
}

// record reports a case that runs outside RunAttacks.
func record(t *testing.T, id, backend, expected string, problems []string, recovery, detail string) {
	t.Helper()
	if len(problems) > 0 {
		t.Errorf("%s on %s: %s", id, backend, strings.Join(problems, "; "))
		detail = strings.Join(problems, "; ")
	}
	attackreport.Record(t, attackreport.Result{Family: family, ID: id, Backend: backend, Expected: expected,
		Met: len(problems) == 0, Recovery: recovery, Detail: detail})
}

// startKillable starts a run in its own process group, so that a kill
// takes its plugin processes with it.
func startKillable(c *Case, args ...string) (*exec.Cmd, *bytes.Buffer) {
	c.sync()
	cmd := c.Client.Command(context.Background(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		c.T.Fatal(err)
	}
	return cmd, &errb
}

func killGroup(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// TestKillDuringRefresh is LS-3: kill -9 at random points of refreshes.
// After each kill every trusted file is a whole manifest, the old one or
// the new one (temp file, fsync, rename), and the next run succeeds.
func TestKillDuringRefresh(t *testing.T) {
	t.Parallel()
	const trials = 25
	for _, backend := range []string{FS, HTTP, OCI} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			c := NewCase(t, backend)
			c.Trust()
			// Kill at a random point of a run's duration, measured here
			// on this (loaded) machine.
			start := time.Now()
			c.Run("list")
			span := time.Since(start)
			var problems []string
			midRun := 0
			for i := range trials {
				old := map[string][]byte{}
				for _, n := range []string{"timestamp.json", "snapshot.json", "index.json"} {
					old[n] = c.Trusted(n)
				}
				c.Sim.Commit("index", Comp)
				cmd, _ := startKillable(c, "list")
				time.Sleep(time.Duration(rand.Int64N(int64(span))))
				killGroup(cmd)
				cmd.Wait()
				if !cmd.ProcessState.Success() {
					midRun++
				}
				for n, o := range old {
					got := c.Trusted(n)
					served := map[string][]byte{"timestamp.json": c.Sim.File("timestamp.json"), "snapshot.json": c.Sim.File("snapshot.json"), "index.json": c.Sim.File(c.Sim.IndexFile())}[n]
					if !bytes.Equal(got, o) && !bytes.Equal(got, served) {
						problems = append(problems, fmt.Sprintf("trial %d: %s is neither the old nor the new manifest (%d bytes)", i, n, len(got)))
					}
				}
				if r := c.Run("list"); r.Code != 0 || r.Panicked {
					problems = append(problems, fmt.Sprintf("trial %d: the run after the kill: %v", i, r))
				}
			}
			record(t, "LS-3", backend, "ACCEPT", problems, "ok", fmt.Sprintf("%d kills at random points of a %s run, %d mid-run: every trusted file whole, every next run ok", trials, span.Round(time.Millisecond), midRun))
		})
	}
}

// TestKillDuringInstall is LS-4: a kill while the tarball streams never
// leaves the version looking installed, and the next run installs it.
func TestKillDuringInstall(t *testing.T) {
	t.Parallel()
	c := NewCase(t, HTTP)
	c.Trust()
	c.Srv.Fault(c.Sim.TarballFile(Comp, Version), Fault{Kind: Drip, N: 5})
	cmd, _ := startKillable(c, installFoo...)
	time.Sleep(400 * time.Millisecond)
	killGroup(cmd)
	cmd.Wait()
	var problems []string
	dir := filepath.Join(c.Client.Home, "components", Comp, Version)
	if _, err := os.Lstat(dir); err == nil {
		problems = append(problems, "the install directory exists after the kill")
	}
	c.Heal()
	recovery := "ok"
	r := c.Run(installFoo...)
	if r.Code != 0 || len(c.checkInstalled(Comp, Version)) > 0 {
		recovery = "failed"
		problems = append(problems, fmt.Sprintf("the next install: %v %v", r, c.checkInstalled(Comp, Version)))
	}
	staging, _ := filepath.Glob(filepath.Join(c.Client.Home, "components", Comp, ".tmp-*"))
	record(t, "LS-4", HTTP, "REJECT(killed)", problems, recovery, fmt.Sprintf("killed mid-download; %d staging dir(s) left beside, never used", len(staging)))
}

// TestConcurrentInstall is LS-6: two processes install the same version
// at once; both succeed and the result is exactly the tarball.
func TestConcurrentInstall(t *testing.T) {
	t.Parallel()
	const trials = 10
	for _, backend := range []string{FS, HTTP, OCI} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			c := NewCase(t, backend)
			c.Trust()
			var problems []string
			for i := range trials {
				os.RemoveAll(filepath.Join(c.Client.Home, "components"))
				c.sync()
				var wg sync.WaitGroup
				results := make([]Result, 2)
				for j := range results {
					wg.Add(1)
					go func() {
						defer wg.Done()
						results[j] = c.Client.Run(installFoo...)
					}()
				}
				wg.Wait()
				for _, r := range results {
					if r.Code != 0 || r.Panicked {
						problems = append(problems, fmt.Sprintf("trial %d: %v", i, r))
					}
				}
				if p := c.checkInstalled(Comp, Version); len(p) > 0 {
					problems = append(problems, fmt.Sprintf("trial %d: %s", i, strings.Join(p, "; ")))
				}
			}
			record(t, "LS-6", backend, "ACCEPT", problems, "", fmt.Sprintf("%d trials of two concurrent installs", trials))
		})
	}
}

// TestTOCTOU is LS-7: a tampered tarball dripped slowly while the harness
// watches the install directory. The final path never appears, the
// staging directory is private, its files private while written, and
// nothing is left once the hash fails.
func TestTOCTOU(t *testing.T) {
	t.Parallel()
	c := NewCase(t, HTTP)
	c.Trust()
	name := c.Sim.TarballFile(Comp, Version)
	tb, _ := c.Served(name)
	evil := MakeTarball(DefaultFiles(Comp, "v6.6.6"))
	if len(evil) != len(tb) {
		evil = append(evil, make([]byte, max(0, len(tb)-len(evil)))...)[:len(tb)]
	}
	c.Serve(name, evil)
	c.Srv.Fault(name, Fault{Kind: Drip, N: 4})
	before := c.State()
	var problems []string
	seen := map[string]bool{}
	done := make(chan Result)
	go func() { done <- c.Client.Run(installFoo...) }()
	parent := filepath.Join(c.Client.Home, "components", Comp)
	var r Result
poll:
	for {
		select {
		case r = <-done:
			break poll
		case <-time.After(3 * time.Millisecond):
		}
		if _, err := os.Lstat(filepath.Join(parent, Version)); err == nil && !seen["final"] {
			seen["final"] = true
			problems = append(problems, "the final path appeared while the tarball was unverified")
		}
		filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == parent {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(parent, p)
			top := strings.Split(rel, string(filepath.Separator))[0]
			if strings.HasPrefix(top, ".tmp-") && rel == top && info.Mode().Perm() != 0o700 && !seen[rel] {
				seen[rel] = true
				problems = append(problems, fmt.Sprintf("staging dir %s is %o, want 0700", rel, info.Mode().Perm()))
			}
			return nil
		})
	}
	problems = append(problems, c.Check(before, r, Want{Class: "hash"})...)
	c.Heal()
	recovery := "ok"
	if rr := c.Run(installFoo...); rr.Code != 0 || len(c.checkInstalled(Comp, Version)) > 0 {
		recovery = "failed"
		problems = append(problems, fmt.Sprintf("recovery: %v", rr))
	}
	record(t, "LS-7", HTTP, "REJECT(hash)", problems, recovery, "tampered tarball dripped: no final path, private staging, nothing left")
}
