package faulttest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/internal/attackreport"
	"github.com/mirrorkit/mirror/internal/testregistry"
)

// writers is how many publish processes race in RP-6, RP-7 and RP-9.
const writers = 8

// change is one command a racing process runs, and how to see afterwards
// that it landed.
type change struct {
	args      []string
	component string // whose manifest it changes ("" for none)
	landed    func(list map[string]string) bool
}

// raceResult is what a race of changes did.
type raceResult struct {
	ok, conflicts, failed int
	lost                  int
	problems              []string
}

// race runs the processes at once (each its changes in order, as one user
// would) against the mirror at addr, then checks through a fresh client
// that every change that exited 0 landed, and that the timestamp and each
// component manifest moved by exactly one version per landed change: no
// update lost, none counted twice, no gap. Losers may exit 4 (conflict:
// run again); any other failure is a problem.
func race(t *testing.T, w *world, addr string, env, flags []string, procs [][]change) raceResult {
	t.Helper()
	readFlags := backendFlags(flags)
	before := readState(t, w, addr, env, readFlags, procs)
	var mu sync.Mutex
	var res raceResult
	var landed []change
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range p {
				r := w.run(env, append(append([]string{"--mirror", addr}, flags...), c.args...)...)
				mu.Lock()
				switch {
				case r.code == 0:
					res.ok++
					landed = append(landed, c)
				case r.code == 4 && r.oneLineError():
					res.conflicts++
				default:
					res.failed++
					res.problems = append(res.problems, fmt.Sprintf("%s: %s", strings.Join(c.args, " "), r))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	after := readState(t, w, addr, env, readFlags, procs)
	for _, c := range landed {
		if !c.landed(after.lists) {
			res.lost++
			res.problems = append(res.problems, "lost: "+strings.Join(c.args, " "))
		}
	}
	if got, want := after.ts, before.ts+uint64(res.ok); got != want {
		res.problems = append(res.problems, fmt.Sprintf("timestamp version %d after %d landed changes from %d", got, res.ok, before.ts))
		if got < want {
			res.lost += int(want - got)
		}
	}
	perComp := map[string]uint64{}
	for _, c := range landed {
		if c.component != "" {
			perComp[c.component]++
		}
	}
	for comp, n := range perComp {
		if got, want := after.comps[comp], before.comps[comp]+n; got != want {
			res.problems = append(res.problems, fmt.Sprintf("%s manifest version %d after %d landed changes from %d", comp, got, n, before.comps[comp]))
		}
	}
	return res
}

// mirrorState is what a fresh client trusts after reading a mirror.
type mirrorState struct {
	ts    uint64
	comps map[string]uint64 // component manifest versions
	lists map[string]string // `list COMP --all` output
}

// readState reads the mirror at addr as a new client would: `set` in a
// fresh home, then `list` for every component the changes touch, and the
// versions of the manifests it saved.
func readState(t *testing.T, w *world, addr string, extra, flags []string, procs [][]change) mirrorState {
	t.Helper()
	home := w.path(fmt.Sprintf("reader-%d", time.Now().UnixNano()))
	env := append(append([]string{}, extra...), "TIUP_HOME="+home)
	if r := w.run(env, append(flags, "set", addr)...); r.code != 0 {
		t.Fatalf("set %s: %s", addr, r)
	}
	st := mirrorState{comps: map[string]uint64{}, lists: map[string]string{}}
	comps := map[string]bool{"hello": true}
	for _, p := range procs {
		for _, c := range p {
			if c.component != "" {
				comps[c.component] = true
			}
		}
	}
	for comp := range comps {
		r := w.run(env, append(flags, "list", comp, "--all")...)
		if r.code == 5 {
			continue // not published yet
		}
		if r.code != 0 {
			t.Fatalf("list %s: %s", comp, r)
		}
		st.lists[comp] = r.stdout
	}
	if r := w.run(env, append(flags, "list")...); r.code != 0 {
		t.Fatalf("list: %s", r)
	}
	// The verified snapshot the client saved names every component
	// manifest's version.
	var ts manifest.Timestamp
	var sn manifest.Snapshot
	b, err := os.ReadFile(home + "/manifests/timestamp.json")
	if err != nil || decode(b, &ts) != nil {
		t.Fatalf("read the client's timestamp: %v", err)
	}
	if b, err = os.ReadFile(home + "/manifests/snapshot.json"); err != nil || decode(b, &sn) != nil {
		t.Fatalf("read the client's snapshot: %v", err)
	}
	st.ts = ts.Version
	for comp := range comps {
		st.comps[comp] = sn.Meta[manifest.ManifestURL(comp)].Version
	}
	return st
}

// backendFlags keeps --backend NAME from a writer's flags, for readers.
func backendFlags(flags []string) []string {
	for i, f := range flags {
		if f == "--backend" && i+1 < len(flags) {
			return []string{f, flags[i+1]}
		}
	}
	return nil
}

func hasVersion(comp, version string) func(map[string]string) bool {
	return func(lists map[string]string) bool {
		return regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(version) + `\b`).MatchString(lists[comp])
	}
}

// distinctComponents is RP-6: each process publishes its own component,
// n versions in a row.
func distinctComponents(w *world, n int) [][]change {
	procs := make([][]change, writers)
	for i := range procs {
		comp := fmt.Sprintf("comp%d", i)
		for j := range n {
			v := fmt.Sprintf("v1.0.%d", j)
			procs[i] = append(procs[i], change{component: comp, landed: hasVersion(comp, v),
				args: []string{"publish", comp, v, w.tarball("hello", "v0.0.1"), "hello"}})
		}
	}
	return procs
}

// sameComponent is RP-7: every process publishes distinct versions of
// hello.
func sameComponent(w *world, n int) [][]change {
	procs := make([][]change, writers)
	for i := range procs {
		for j := range n {
			v := fmt.Sprintf("v2.%d.%d", i, j)
			procs[i] = append(procs[i], change{component: "hello", landed: hasVersion("hello", v),
				args: []string{"publish", "hello", v, w.tarball("hello", "v0.0.1"), "hello"}})
		}
	}
	return procs
}

func recordRace(t *testing.T, id, backend, what string, res raceResult) {
	t.Helper()
	detail := fmt.Sprintf("%s: %d landed, %d conflicts (exit 4), %d failed, %d lost", what, res.ok, res.conflicts, res.failed, res.lost)
	if len(res.problems) > 0 {
		detail += "; " + strings.Join(res.problems, "; ")
	}
	record(t, attackreport.Result{Family: "concurrent writers", ID: id, Backend: backend,
		Expected: "ACCEPT(every change that exited 0 landed once, versions dense)",
		Met:      res.failed == 0 && len(res.problems) == 0 && res.ok > 0, LostUpdates: res.lost, Detail: detail})
}

// TestConcurrentPublishers is RP-6 and RP-7 on one fs mirror: 8 publish
// processes at once, on distinct components and on the same one.
func TestConcurrentPublishers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id, name string
		procs    func(w *world) [][]change
	}{
		{"RP-6", "distinct components", func(w *world) [][]change { return distinctComponents(w, 3) }},
		{"RP-7", "same component", func(w *world) [][]change { return sameComponent(w, 3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			res := race(t, w, w.mirrorDir(), nil, []string{"--key-dir", w.path("keys")}, tc.procs(w))
			if vr := w.run(nil, "verify", w.mirrorDir()); vr.code != 0 {
				res.problems = append(res.problems, "verify: "+vr.String())
			}
			if tc.id == "RP-7" {
				// Dense on disk too: 1.hello.json … N.hello.json and no more.
				n := 1 + uint64(res.ok)
				for v := uint64(1); v <= n+1; v++ {
					_, err := os.Stat(w.path("m", manifest.VersionedName(v, "hello")))
					if (v <= n) != (err == nil) {
						res.problems = append(res.problems, fmt.Sprintf("%s present=%v", manifest.VersionedName(v, "hello"), err == nil))
					}
				}
			}
			recordRace(t, tc.id, "fs", fmt.Sprintf("%d processes, %s", writers, tc.name), res)
		})
	}
}

// TestMixedAdmin is RP-8: publish, renew, grant, yank and describe at once
// on one mirror; every change lands.
func TestMixedAdmin(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	has := func(comp, text string) func(map[string]string) bool {
		return func(lists map[string]string) bool { return strings.Contains(lists[comp], text) }
	}
	procs := [][]change{
		{{args: []string{"publish", "hello", "v3.0.0", w.tarball("hello", "v0.0.1"), "hello"}, component: "hello", landed: hasVersion("hello", "v3.0.0")}},
		{{args: []string{"publish", "hello", "v3.0.1", w.tarball("hello", "v0.0.1"), "hello"}, component: "hello", landed: hasVersion("hello", "v3.0.1")}},
		{{args: []string{"renew", "hello"}, component: "hello", landed: func(map[string]string) bool { return true }}},
		{{args: []string{"modify", "hello:v0.0.1", "--yank"}, component: "hello", landed: has("hello", "yanked")}},
		{{args: []string{"modify", "hello", "--desc", "described concurrently"}, component: "hello", landed: func(map[string]string) bool { return true }}},
		{{args: []string{"grant", "bob", "-k", w.path("home", "keys", "bob.json")}, landed: func(map[string]string) bool { return true }}},
		{{args: []string{"publish", "other", "v1.0.0", w.tarball("other", "v1.0.0"), "hello"}, component: "other", landed: hasVersion("other", "v1.0.0")}},
	}
	res := race(t, w, w.mirrorDir(), nil, []string{"--key-dir", w.path("keys")}, procs)
	// What `list` does not show: the description and the new owner.
	if r := w.run(nil, "--mirror", w.mirrorDir(), "list", "--all"); !strings.Contains(r.stdout, "described concurrently") {
		res.lost++
		res.problems = append(res.problems, "the description was lost: "+r.stdout)
	}
	if r := w.run(nil, "--mirror", w.mirrorDir(), "--key-dir", w.path("keys"), "grant", "bob", "-k", w.path("home", "keys", "bob.json")); !strings.Contains(r.stderr, "already exists") {
		res.lost++
		res.problems = append(res.problems, "the grant was lost: "+r.String())
	}
	if vr := w.run(nil, "verify", w.mirrorDir()); vr.code != 0 {
		res.problems = append(res.problems, "verify: "+vr.String())
	}
	recordRace(t, "RP-8", "fs", "publish ∥ renew ∥ grant ∥ yank ∥ describe", res)
}

// server is a `mirror serve` running in the background.
type server struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
	errb strings.Builder
}

var servingLine = regexp.MustCompile(`^Serving (.+) on (http://127\.0\.0\.1:\d+)$`)

// startServer runs the mirror binary with args (a `mirror serve`) in the
// background until it prints the address it serves, and stops it when the
// test ends.
func startServer(t *testing.T, w *world, args ...string) *server {
	t.Helper()
	s := &server{done: make(chan struct{})}
	s.cmd = exec.Command(mirrorBin, args...)
	s.cmd.Dir = w.dir
	s.cmd.Env = w.env
	pipe, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	timeout := time.After(time.Minute)
	for s.base == "" {
		select {
		case l := <-lines:
			if m := servingLine.FindStringSubmatch(l); m != nil {
				s.base = m[2]
			}
		case <-s.done:
			t.Fatal("mirror serve exited before serving")
		case <-timeout:
			t.Fatal("mirror serve did not start within a minute")
		}
	}
	return s
}

// TestConcurrentPublishersHTTP is RP-9 over HTTP: the same races through
// `mirror serve`'s write API, which serializes writers on the server.
func TestConcurrentPublishersHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id, name string
		procs    func(w *world) [][]change
	}{
		{"RP-9", "distinct components", func(w *world) [][]change { return distinctComponents(w, 2) }},
		{"RP-9", "same component", func(w *world) [][]change { return sameComponent(w, 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			srv := serveAt(t, w, w.mirrorDir())
			res := race(t, w, srv.base, nil, nil, tc.procs(w))
			if vr := w.run(nil, "verify", w.mirrorDir()); vr.code != 0 {
				res.problems = append(res.problems, "verify: "+vr.String())
			}
			recordRace(t, tc.id, "http", fmt.Sprintf("%d processes through mirror serve, %s", writers, tc.name), res)
		})
	}
}

// TestConcurrentPublishersOCI is RP-9 on a registry: OCI has no
// conditional tag update, so the oci backend serializes writers with a
// lease; the races must lose nothing all the same. One publish per
// process: a registry round trip per file makes each commit slow.
func TestConcurrentPublishersOCI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id, name string
		procs    func(w *world) [][]change
	}{
		{"RP-9", "distinct components", func(w *world) [][]change { return distinctComponents(w, 1) }},
		{"RP-9", "same component", func(w *world) [][]change { return sameComponent(w, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := testregistry.Start(t)
			w := newWorld(t)
			addr := "oci+http://" + reg.Host() + "/ns/m"
			keys := w.path("oci-keys")
			extra := []string{"DOCKER_CONFIG=" + w.path("docker")}
			// --backend oci: the built-in backend when the binary has one,
			// else the mirror-backend-oci built beside the faulty plugins.
			for _, args := range [][]string{
				{"--backend", "oci", "init", addr, "-k", keys},
				{"--backend", "oci", "--mirror", addr, "--key-dir", keys, "grant", "alice"},
				{"--backend", "oci", "--mirror", addr, "--key-dir", keys, "publish", "hello", "v0.0.1", w.tarball("hello", "v0.0.1"), "hello"},
			} {
				if r := w.run(extra, args...); r.code != 0 {
					t.Fatalf("mirror %s: %s", strings.Join(args, " "), r)
				}
			}
			res := race(t, w, addr, extra, []string{"--backend", "oci", "--key-dir", keys}, tc.procs(w))
			if vr := w.run(extra, "--backend", "oci", "verify", addr); vr.code != 0 {
				res.problems = append(res.problems, "verify: "+vr.String())
			}
			recordRace(t, tc.id, "oci", fmt.Sprintf("%d processes on a registry, %s", writers, tc.name), res)
		})
	}
}
