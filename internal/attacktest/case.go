package attacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/internal/attackreport"
)

// Backends a case can run on: "http" through SRV, "fs" from a directory
// holding the same files.
const (
	HTTP = "http"
	FS   = "fs"
)

// Now is the reference time of every case: the Sim's manifests are made
// valid from it, and the client runs at it.
var Now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Case is one attack on one backend: a Sim, what the client is served of
// it (the Sim's files with a case's overrides on top, through SRV or a
// directory), and the client's sandbox.
type Case struct {
	T       *testing.T
	Backend string
	Sim     *Sim
	Client  *Client
	// Srv serves the mirror on the http backend; nil on fs.
	Srv *Server
	// Addr is the mirror address the client is set to.
	Addr string
	// MirrorDir holds the served files on the fs backend.
	MirrorDir string

	oci *ociStore // the registry on the oci backend

	mu      sync.Mutex
	overlay map[string][]byte // nil value: the file is not served
	sparse  map[string]int64  // fs backend: files served as sparse files
	kept    map[string][]byte
}

// Sparse serves name on the fs backend as a sparse file of size zero
// bytes, which costs no disk: the endless data of a file system.
func (c *Case) Sparse(name string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sparse[name] = size
}

// Keep stores bytes a case needs later (an old timestamp to replay).
func (c *Case) Keep(name string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept[name] = b
}

// Kept returns what Keep stored under name.
func (c *Case) Kept(name string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.kept[name]
	if !ok {
		c.T.Fatalf("attacktest: nothing kept as %q", name)
	}
	return b
}

// NewCase makes a Sim and a sandbox and serves the one to the other.
func NewCase(t *testing.T, backend string) *Case {
	t.Helper()
	sim, err := NewSim(Now)
	if err != nil {
		t.Fatal(err)
	}
	c := &Case{T: t, Backend: backend, Sim: sim, Client: NewClient(t, Now), overlay: map[string][]byte{}, sparse: map[string]int64{}, kept: map[string][]byte{}}
	switch backend {
	case HTTP:
		c.Srv = NewServer(c.Served)
		t.Cleanup(c.Srv.Close)
		c.Addr = c.Srv.URL
	case FS:
		c.MirrorDir = filepath.Join(c.Client.Root, "mirror")
		c.Addr = c.MirrorDir
	case OCI:
		store, err := newOCIStore()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.close)
		c.oci = store
		c.Addr = store.addr
	default:
		t.Fatalf("attacktest: unknown backend %q", backend)
	}
	return c
}

// Served returns the bytes served as name: a case's override, else the
// Sim's published file.
func (c *Case) Served(name string) ([]byte, bool) {
	c.mu.Lock()
	b, over := c.overlay[name]
	c.mu.Unlock()
	if over {
		return b, b != nil
	}
	b = c.Sim.File(name)
	return b, b != nil
}

// Serve serves b as name instead of the Sim's file.
func (c *Case) Serve(name string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.overlay[name] = b
}

// Unserve makes name absent (404 over HTTP).
func (c *Case) Unserve(name string) { c.Serve(name, nil) }

// Heal drops every override and fault: the client is served the Sim as
// published.
func (c *Case) Heal() {
	c.mu.Lock()
	c.overlay = map[string][]byte{}
	c.sparse = map[string]int64{}
	c.mu.Unlock()
	if c.Srv != nil {
		c.Srv.Heal()
	}
	if c.oci != nil {
		c.oci.corruptBlobs(false)
	}
}

// sync writes the served files into the fs backend's directory and
// removes the rest.
func (c *Case) sync() {
	if c.oci != nil {
		c.syncOCI()
		return
	}
	if c.MirrorDir == "" {
		return
	}
	if err := os.MkdirAll(c.MirrorDir, 0o755); err != nil {
		c.T.Fatal(err)
	}
	names := map[string]bool{}
	for name := range c.Sim.Files() {
		names[name] = true
	}
	c.mu.Lock()
	for name := range c.overlay {
		names[name] = true
	}
	sparse := maps.Clone(c.sparse)
	c.mu.Unlock()
	entries, err := os.ReadDir(c.MirrorDir)
	if err != nil {
		c.T.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(c.MirrorDir, e.Name())
		if !names[e.Name()] || !e.Type().IsRegular() {
			os.RemoveAll(p)
		}
	}
	for name, size := range sparse {
		p := filepath.Join(c.MirrorDir, name)
		os.Remove(p)
		f, err := os.Create(p)
		if err == nil {
			err = f.Truncate(size)
			f.Close()
		}
		if err != nil {
			c.T.Fatal(err)
		}
	}
	for name := range names {
		if _, ok := sparse[name]; ok {
			continue
		}
		p := filepath.Join(c.MirrorDir, name)
		b, ok := c.Served(name)
		if !ok {
			os.Remove(p)
			continue
		}
		// Compare sizes first: a sparse file left from an attack would
		// otherwise be read whole.
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(b)) {
			if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, b) {
				continue
			}
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			c.T.Fatal(err)
		}
	}
}

func (c *Case) syncOCI() {
	names := map[string]bool{}
	for name := range c.Sim.Files() {
		names[name] = true
	}
	c.mu.Lock()
	for name := range c.overlay {
		names[name] = true
	}
	sparse := len(c.sparse) > 0
	c.mu.Unlock()
	if sparse {
		c.T.Fatal("attacktest: sparse files exist on the fs backend only")
	}
	if err := c.oci.sync(names, c.Served); err != nil {
		c.T.Fatal(err)
	}
}

// Run runs the client against the served mirror.
func (c *Case) Run(args ...string) Result {
	c.T.Helper()
	c.sync()
	return c.Client.Run(args...)
}

// Trust anchors the client on the Sim's root.json (`mirror set ADDR
// --root FILE`, no network) and refreshes once (`mirror list`), so that
// it trusts the mirror as currently served.
func (c *Case) Trust() {
	c.T.Helper()
	c.Anchor()
	if r := c.Run("list"); r.Code != 0 || r.Panicked {
		c.T.Fatalf("baseline refresh: %v", r)
	}
}

// Anchor sets the client to the mirror with the Sim's root.json as its
// first trusted root, without refreshing.
func (c *Case) Anchor() {
	c.T.Helper()
	root, _ := c.Served("root.json")
	anchor := filepath.Join(c.Client.Work, "root.json")
	if err := os.WriteFile(anchor, root, 0o644); err != nil {
		c.T.Fatal(err)
	}
	c.sync()
	c.Client.Must("set", c.Addr, "--root", anchor)
}

// Trusted returns the client's trusted copy of a manifest
// ($TIUP_HOME/manifests/NAME), nil if it has none.
func (c *Case) Trusted(name string) []byte {
	b, _ := os.ReadFile(filepath.Join(c.Client.Home, "manifests", name))
	return b
}

// TrustedVersion returns signed.version of a trusted manifest, 0 when
// there is none.
func (c *Case) TrustedVersion(name string) uint64 {
	b := c.Trusted(name)
	if b == nil {
		return 0
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return 0
	}
	var base struct {
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(env.Signed, &base); err != nil {
		return 0
	}
	return base.Version
}

// State is what the checks compare across a run.
type State struct {
	tree map[string]string // the sandbox but the served mirror
}

// State describes the sandbox now.
func (c *Case) State() State {
	c.T.Helper()
	tree, err := Tree(c.Client.Root, "mirror")
	if err != nil {
		c.T.Fatal(err)
	}
	return State{tree: tree}
}

// Want is the expected outcome of a run.
type Want struct {
	// Class is the error token expected on stderr; "" expects success,
	// NoToken a failure without one (usage, not found: see Exit).
	Class string
	// Exit overrides the exit code the class implies (3 for verification
	// classes, 1 for timeout and transport, 0 for success).
	Exit int
	// MayChange lists trusted files (names under $TIUP_HOME/manifests,
	// or path.Match patterns such as "*.root.json") that a rejected run
	// may legitimately have advanced before the failing step.
	MayChange []string
}

// NoToken is the Want.Class (and Attack.Expect) of a failure that prints
// no class token: a usage error (exit 64), a missing file (exit 5), a
// local I/O error (exit 1).
const NoToken = "-"

// ExitFor is the exit code a class implies.
func ExitFor(class string) int {
	switch class {
	case "":
		return 0
	case "timeout", "transport", NoToken:
		return 1
	}
	return 3
}

// Check returns what is wrong with the run r, which started from before:
// the standard outcome checks of the catalogue's section 0.
func (c *Case) Check(before State, r Result, w Want) []string {
	var problems []string
	if r.Panicked {
		problems = append(problems, "panic in stderr")
	}
	if r.TimedOut {
		problems = append(problems, fmt.Sprintf("still running after %s", RunTimeout))
	}
	exit := w.Exit
	if exit == 0 {
		exit = ExitFor(w.Class)
	}
	if r.Code != exit {
		problems = append(problems, fmt.Sprintf("exit %d, want %d", r.Code, exit))
	}
	after := c.State()
	if w.Class != "" || exit != 0 {
		if w.Class == NoToken {
			if strings.Contains(r.LastLine(), "error[") {
				problems = append(problems, fmt.Sprintf("error line %q has a class token, want none", r.LastLine()))
			}
		} else if w.Class != "" {
			token := "error[" + w.Class + "]"
			last := r.LastLine()
			if !strings.HasPrefix(last, "mirror: ") || !strings.Contains(last, token) {
				problems = append(problems, fmt.Sprintf("error line %q lacks %s", last, token))
			}
		}
		may := func(p string) bool {
			if p == "home/manifests" {
				return len(w.MayChange) > 0
			}
			name, ok := strings.CutPrefix(p, "home/manifests/")
			for _, pat := range w.MayChange {
				if m, _ := path.Match(pat, name); ok && m {
					return true
				}
			}
			return false
		}
		if d := diffTrees(before.tree, after.tree, may); len(d) > 0 {
			problems = append(problems, "sandbox changed: "+strings.Join(d, ", "))
		}
		return problems
	}
	problems = append(problems, c.checkAccepted(before, after, r)...)
	return problems
}

// checkAccepted checks a successful run: the trusted copies are the bytes
// served, an installed component holds exactly its tarball's files, and
// nothing else in the sandbox changed.
func (c *Case) checkAccepted(before, after State, r Result) []string {
	var problems []string
	for _, name := range []string{"timestamp.json", "snapshot.json"} {
		served, _ := c.Served(name)
		if got := c.Trusted(name); !bytes.Equal(got, served) {
			problems = append(problems, "trusted "+name+" differs from the served bytes")
		}
	}
	if snap, err := c.servedSnapshot(); err == nil {
		name := manifest.VersionedName(snap.Meta["/index.json"].Version, "index")
		served, _ := c.Served(name)
		if got := c.Trusted("index.json"); !bytes.Equal(got, served) {
			problems = append(problems, "trusted index.json differs from the served "+name)
		}
		if rv := snap.Meta["/root.json"].Version; rv > 1 {
			served, _ := c.Served(manifest.VersionedName(rv, "root"))
			if got := c.Trusted("root.json"); !bytes.Equal(got, served) {
				problems = append(problems, fmt.Sprintf("trusted root.json is not the served %d.root.json", rv))
			}
		}
	} else {
		problems = append(problems, "served snapshot: "+err.Error())
	}
	installDir := ""
	if len(r.Args) >= 2 && r.Args[0] == "install" {
		id, version, _ := strings.Cut(r.Args[1], ":")
		installDir = "home/components/" + id
		if version != "" {
			installDir += "/" + version
			problems = append(problems, c.checkInstalled(id, version)...)
		}
	}
	allowed := func(p string) bool {
		return strings.HasPrefix(p, "home/manifests/") || p == "home/manifests" ||
			installDir != "" && (p == installDir || strings.HasPrefix(p, installDir+"/") ||
				p == "home/components" || p == path.Dir(installDir))
	}
	if d := diffTrees(before.tree, after.tree, allowed); len(d) > 0 {
		problems = append(problems, "sandbox changed: "+strings.Join(d, ", "))
	}
	return problems
}

func (c *Case) servedSnapshot() (*manifest.Snapshot, error) {
	b, ok := c.Served("snapshot.json")
	if !ok {
		return nil, fmt.Errorf("not served")
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return nil, err
	}
	var s manifest.Snapshot
	if err := env.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkInstalled compares an installed version with the entries of the
// tarball the Sim published for it: the same files with the same content,
// modes without setuid, setgid or sticky bits, and nothing else.
func (c *Case) checkInstalled(id, version string) []string {
	item := c.Sim.Item(id, version)
	entries := c.Sim.Contents[strings.TrimPrefix(item.URL, "/")]
	dir := filepath.Join(c.Client.Home, "components", id, version)
	tree, err := Tree(dir)
	if err != nil {
		return []string{"installed tree: " + err.Error()}
	}
	var problems []string
	want := map[string]bool{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name, "/")
		want[name] = true
		got, ok := tree[name]
		if !ok {
			problems = append(problems, "not installed: "+name)
			continue
		}
		if e.Type == 0 || e.Type == '0' {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil || string(b) != e.Body {
				problems = append(problems, "installed content differs: "+name)
			}
			mode := e.Mode
			if mode == 0 {
				mode = 0o644
			}
			if want := fmt.Sprintf("%o", mode&0o777); strings.Fields(got)[1] != want {
				problems = append(problems, fmt.Sprintf("installed mode of %s is %s, want %s", name, strings.Fields(got)[1], want))
			}
		}
	}
	for name := range tree {
		if !want[name] {
			problems = append(problems, "installed but not in the tarball: "+name)
		}
	}
	return problems
}

// Attack is one catalogue row, run on each of its backends as the subtest
// FAMILY/ID/BACKEND.
type Attack struct {
	ID string
	// Expect is the class of the expected rejection, or "ACCEPT".
	Expect string
	// Exit overrides the exit code Expect implies.
	Exit int
	// Backends to run on; default all three.
	Backends []string
	// Cmd is the command under attack; default "list".
	Cmd []string
	// Setup shapes the mirror before the client's first refresh.
	Setup func(c *Case)
	// NoBaseline skips the first refresh: the client only holds its anchor.
	NoBaseline bool
	// Attack applies the fault after the client's first refresh.
	Attack func(c *Case)
	// MayChange lists trusted files a rejected run may have advanced.
	MayChange []string
	// Verify checks more after the attacked run (a request log, a file).
	Verify func(c *Case, r Result) error
	// Heal repairs the mirror for the recovery run; default Case.Heal.
	Heal func(c *Case)
	// NoRecovery skips the recovery run (an accepted control needs none).
	NoRecovery bool
	// Detail is noted in the report.
	Detail string
}

// RunAttacks runs each attack on each of its backends, in parallel, checks
// its outcome and recovery, and records the result for the report.
func RunAttacks(t *testing.T, family string, attacks []Attack) {
	t.Helper()
	t.Run(family, func(t *testing.T) {
		t.Parallel()
		for _, a := range attacks {
			backends := a.Backends
			if len(backends) == 0 {
				backends = []string{FS, HTTP, OCI}
			}
			t.Run(a.ID, func(t *testing.T) {
				t.Parallel()
				for _, backend := range backends {
					t.Run(backend, func(t *testing.T) {
						t.Parallel()
						runAttack(t, family, a, backend)
					})
				}
			})
		}
	})
}

func runAttack(t *testing.T, family string, a Attack, backend string) {
	c := NewCase(t, backend)
	if a.Setup != nil {
		a.Setup(c)
	}
	if a.NoBaseline {
		c.Anchor()
	} else {
		c.Trust()
	}
	cmd := a.Cmd
	if len(cmd) == 0 {
		cmd = []string{"list"}
	}
	if a.Attack != nil {
		a.Attack(c)
	}
	if c.Srv != nil {
		c.Srv.ResetLog()
	}
	before := c.State()
	r := c.Run(cmd...)
	w := Want{Exit: a.Exit, MayChange: a.MayChange}
	expected := "ACCEPT"
	switch {
	case a.Expect == NoToken:
		w.Class = NoToken
		expected = fmt.Sprintf("REJECT(exit %d)", ExitFor(NoToken))
		if a.Exit != 0 {
			expected = fmt.Sprintf("REJECT(exit %d)", a.Exit)
		}
	case a.Expect != "ACCEPT":
		w.Class = a.Expect
		expected = "REJECT(" + a.Expect + ")"
	}
	problems := c.Check(before, r, w)
	if a.Verify != nil {
		if err := a.Verify(c, r); err != nil {
			problems = append(problems, err.Error())
		}
	}
	res := attackreport.Result{Family: family, ID: a.ID, Backend: backend, Expected: expected, Met: len(problems) == 0, Panic: r.Panicked}
	if len(problems) > 0 {
		t.Errorf("%s %s on %s: %s\n%v", a.ID, expected, backend, strings.Join(problems, "; "), r)
		res.Detail = strings.Join(problems, "; ")
	} else {
		res.Detail = a.Detail
		if res.Detail == "" && r.Code != 0 {
			res.Detail = r.LastLine()
		}
	}
	if !a.NoRecovery {
		if a.Heal != nil {
			a.Heal(c)
		} else {
			c.Heal()
		}
		before := c.State()
		rr := c.Run(cmd...)
		res.Recovery = "ok"
		if p := c.Check(before, rr, Want{}); len(p) > 0 {
			res.Recovery = "failed"
			res.Panic = res.Panic || rr.Panicked
			t.Errorf("%s on %s: recovery run: %s\n%v", a.ID, backend, strings.Join(p, "; "), rr)
		}
	}
	attackreport.Record(t, res)
}
