package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

// publishHello packages src/hello as another version of hello and
// publishes it to the sandbox's current mirror.
func publishHello(s *sandbox, version string) {
	s.t.Helper()
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", version)
	s.must("publish", "hello", version, "package/hello-"+version+"-"+platform+".tar.gz", "hello")
}

func helloTarball(version string) string { return "hello-" + version + "-" + platform + ".tar.gz" }

// decodeManifest reads a manifest file of the clone into v.
func decodeManifest(t *testing.T, path string, v manifest.Signed) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := env.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestClone: a clone of the current mirror verifies on its own, has its own
// keys with the pingcap owner, and installs once a client is set to it.
func TestClone(t *testing.T) {
	s := newMirror(t)
	publishHello(s, "v0.0.2")
	out := s.must("clone", "c", "--full").stdout
	if !strings.Contains(out, "cloned 1 components, 2 tarballs (") || !strings.Contains(out, "0 skipped) into "+s.path("c")) {
		t.Errorf("summary: %q", out)
	}
	if out := s.must("verify", "c").stdout; !strings.Contains(out, "1 components, 2 tarballs") {
		t.Errorf("verify: %s", out)
	}
	ents, err := os.ReadDir(s.path("c", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	joined := strings.Join(names, " ")
	if len(names) != 7 || strings.Count(joined, "-root.json") != 3 || !strings.Contains(joined, "-pingcap.json") {
		t.Errorf("clone keys: %v", names)
	}
	var ix manifest.Index
	decodeManifest(t, s.path("c", "2.index.json"), &ix)
	if o := ix.Owners["pingcap"]; o.Name != "PingCAP" || o.Threshold != 1 || ix.Components["hello"].Owner != "pingcap" {
		t.Errorf("clone index: %+v", ix)
	}
	var snap manifest.Snapshot
	decodeManifest(t, s.path("c", "snapshot.json"), &snap)
	if exp, _ := snap.ExpiresAt(); exp.Year() < 2060 {
		t.Errorf("snapshot of a clone expires %s, want in 50 years", snap.Expires)
	}
	s.must("set", "c")
	entry := strings.TrimSpace(s.must("install", "hello").stdout)
	if !strings.HasSuffix(entry, filepath.Join("hello", "v0.0.2", "hello")) {
		t.Errorf("installed %s, want v0.0.2", entry)
	}
	if r := s.run("clone", "c", "--full"); r.code != 64 {
		t.Errorf("clone into the source itself: exit %d: %s", r.code, r.stderr)
	}
}

// TestCloneHelp: stock 1.16.5 panics on `clone -h`.
func TestCloneHelp(t *testing.T) {
	s := newSandbox(t)
	for _, args := range [][]string{{"clone", "-h"}, {"clone", "--help"}, {"help", "clone"}, {"clone", "x", "--hello", "v1.0.0", "-h"}} {
		r := s.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "--full") || !strings.Contains(r.stdout, "COMPONENT") {
			t.Errorf("mirror %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestCloneFixture: a clone of the stock fixture keeps hidden, standalone,
// nightly and any/any, and leaves out yanked components and versions.
func TestCloneFixture(t *testing.T) {
	s, clock := fixtureSandbox(t)
	run := func(args ...string) string {
		t.Helper()
		r := s.runEnv(clock, args...)
		if r.code != 0 {
			t.Fatalf("mirror %v: exit %d: %s%s", args, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	if out := run("clone", "c", "--from", "fx", "--full", "--jobs", "2"); !strings.Contains(out, "cloned 5 components, 18 tarballs") {
		t.Errorf("clone: %s", out)
	}
	run("verify", "c")
	run("set", "c")
	if out := run("list"); strings.Contains(out, "gohello") || strings.Contains(out, "legacy") {
		t.Errorf("list shows a hidden or yanked component:\n%s", out)
	}
	all := run("list", "--all")
	if !strings.Contains(all, "gohello") || strings.Contains(all, "legacy") {
		t.Errorf("list --all:\n%s", all)
	}
	if matches, _ := filepath.Glob(s.path("c", "legacy*")); len(matches) != 0 {
		t.Errorf("yanked component copied: %v", matches)
	}
	var ix manifest.Index
	decodeManifest(t, s.path("c", "2.index.json"), &ix)
	if !ix.Components["hello"].Standalone || !ix.Components["gohello"].Hidden {
		t.Errorf("flags lost: %+v", ix.Components)
	}
	var greet, shout, hello manifest.Component
	decodeManifest(t, s.path("c", "1.greet.json"), &greet)
	decodeManifest(t, s.path("c", "1.shout.json"), &shout)
	decodeManifest(t, s.path("c", "1.hello.json"), &hello)
	if greet.Nightly != "v2.1.0-nightly-20261122" || greet.Description != "greet from mirror2" {
		t.Errorf("greet: nightly %q, description %q", greet.Nightly, greet.Description)
	}
	if _, ok := greet.Platforms["linux/arm64"]["v2.1.0-nightly-20261122"]; !ok {
		t.Error("greet nightly not copied for linux/arm64")
	}
	if len(shout.Platforms) != 1 || len(shout.Platforms["any/any"]) != 1 {
		t.Errorf("shout platforms: %v", shout.Platforms)
	}
	if _, ok := hello.Platforms["linux/amd64"]["v1.1.0"]; ok {
		t.Error("yanked hello v1.1.0 copied")
	}
	run("install", "shout", "--os", "linux", "--arch", "amd64")
	run("install", "greet:v2.1.0-nightly-20261122", "--os", "linux", "--arch", "arm64")
}

// TestCloneSelection: per-component and global versions copy only what
// they name; a bad selection writes nothing.
func TestCloneSelection(t *testing.T) {
	s := newMirror(t)
	publishHello(s, "v0.0.2")
	s.must("clone", "c", "--hello", "v0.0.1")
	if _, err := os.Stat(s.path("c", helloTarball("v0.0.1"))); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(s.path("c", helloTarball("v0.0.2"))); !os.IsNotExist(err) {
		t.Errorf("unselected v0.0.2 copied: %v", err)
	}
	out := s.must("--mirror", s.path("c"), "list", "hello", "--all").stdout
	if !strings.Contains(out, "v0.0.1") || strings.Contains(out, "v0.0.2") {
		t.Errorf("clone lists:\n%s", out)
	}
	// A global version missing in a component falls back to its latest.
	s.must("clone", "g", "0.0.9")
	if _, err := os.Stat(s.path("g", helloTarball("v0.0.2"))); err != nil {
		t.Error(err)
	}
	s.must("clone", "n", "--hello=latest", "--os", "darwin,linux")
	if _, err := os.Stat(s.path("n", helloTarball("v0.0.2"))); err != nil {
		t.Error(err)
	}
	cases := []struct {
		name string
		code int
		msg  string
		args []string
	}{
		{"nothing selected", 64, "nothing selected", []string{"clone", "x"}},
		{"no target", 64, "target", []string{"clone"}},
		{"unknown component", 64, "nosuch", []string{"clone", "x", "--nosuch", "v1.0.0"}},
		{"missing version", 5, "v9.9.9", []string{"clone", "x", "--hello", "v9.9.9"}},
		{"bad version", 64, "version", []string{"clone", "x", "--hello", "1.0"}},
		{"flag without value", 64, "hello", []string{"clone", "x", "--hello"}},
		{"filtered out platform", 5, "v0.0.1", []string{"clone", "x", "--hello", "v0.0.1", "--os", "plan9"}},
		{"non-empty target", 1, "not empty", []string{"clone", "src", "--full"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			s.fail(tc.code, tc.msg, tc.args...)
			if _, err := os.Stat(s.path("x")); !os.IsNotExist(err) {
				t.Fatalf("a failed clone wrote the target: %v", err)
			}
		})
	}
}

// TestCloneRefresh: re-cloning into a clone keeps its root and keys, so a
// client set to it before still installs what the refresh brought; tarballs
// already there are not rewritten.
func TestCloneRefresh(t *testing.T) {
	s := newMirror(t)
	s.must("clone", "c", "--full")
	client := []string{"TIUP_HOME=" + s.path("client")}
	for _, args := range [][]string{{"set", s.path("c")}, {"install", "hello"}} {
		if r := s.runEnv(client, args...); r.code != 0 {
			t.Fatalf("client %v: %s", args, r.stderr)
		}
	}
	rootBefore, err := os.ReadFile(s.path("c", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	oldBefore, err := os.Stat(s.path("c", helloTarball("v0.0.1")))
	if err != nil {
		t.Fatal(err)
	}

	publishHello(s, "v0.0.2")
	out := s.must("clone", "c", "--full").stdout
	if !strings.Contains(out, "refreshed 1 components, 2 tarballs") || !strings.Contains(out, "1 skipped") {
		t.Errorf("refresh: %s", out)
	}
	if rootAfter, _ := os.ReadFile(s.path("c", "root.json")); string(rootAfter) != string(rootBefore) {
		t.Error("the refresh changed root.json")
	}
	oldAfter, err := os.Stat(s.path("c", helloTarball("v0.0.1")))
	if err != nil || !os.SameFile(oldBefore, oldAfter) || !oldAfter.ModTime().Equal(oldBefore.ModTime()) {
		t.Errorf("the old tarball was rewritten: %v", err)
	}
	if _, err := os.Stat(s.path("c", "2.hello.json")); err != nil {
		t.Errorf("no new hello manifest: %v", err)
	}
	s.must("verify", "c")
	r := s.runEnv(client, "install", "hello")
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Join("v0.0.2", "hello")) {
		t.Fatalf("client install after the refresh: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	// Nothing new at the source: the clone is left as it is.
	before := treeDigest(t, s.path("c"))
	s.must("clone", "c", "--full")
	if treeDigest(t, s.path("c")) != before {
		t.Error("a refresh without changes changed the clone")
	}

	// A clone whose keys are gone is refused, not overwritten.
	if err := os.Rename(s.path("c", "keys"), s.path("c-keys")); err != nil {
		t.Fatal(err)
	}
	before = treeDigest(t, s.path("c"))
	s.fail(1, "key", "clone", "c", "--full")
	if treeDigest(t, s.path("c")) != before {
		t.Error("a refused refresh changed the clone")
	}
	s.must("clone", "c", "--full", "-k", s.path("c-keys"))
}

// TestCloneResume: a clone with missing or damaged tarballs is repaired by
// running the clone again; intact ones are kept.
func TestCloneResume(t *testing.T) {
	s := newMirror(t)
	for _, v := range []string{"v0.0.2", "v0.0.3", "v0.0.4"} {
		publishHello(s, v)
	}
	s.must("clone", "c", "--full", "--jobs", "2")
	if err := os.Remove(s.path("c", helloTarball("v0.0.1"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(s.path("c", helloTarball("v0.0.2")), 10); err != nil {
		t.Fatal(err)
	}
	if err := flipByte(s.path("c", helloTarball("v0.0.3")), 30); err != nil {
		t.Fatal(err)
	}
	s.fail(3, "problem", "verify", "c")
	if out := s.must("clone", "c", "--full").stdout; !strings.Contains(out, "4 tarballs") || !strings.Contains(out, "1 skipped") {
		t.Errorf("resume: %s", out)
	}
	s.must("verify", "c")
}

// TestCloneTamperedSource: a tarball that does not match its signed hash
// stops the clone with exit 3 and never lands in the target; a source whose
// chain does not verify is refused before anything is written.
func TestCloneTamperedSource(t *testing.T) {
	s := newMirror(t)
	if err := flipByte(s.path("m", helloTarball("v0.0.1")), 40); err != nil {
		t.Fatal(err)
	}
	s.fail(3, helloTarball("v0.0.1"), "clone", "c", "--from", "m", "--full")
	if _, err := os.Stat(s.path("c", helloTarball("v0.0.1"))); !os.IsNotExist(err) {
		t.Errorf("the tampered tarball landed: %v", err)
	}
	ents, _ := os.ReadDir(s.path("c"))
	for _, e := range ents {
		if strings.Contains(e.Name(), "hello") {
			t.Errorf("left behind: %s", e.Name())
		}
	}

	s2 := newMirror(t)
	if err := flipSignedByte(s2.path("m", "timestamp.json")); err != nil {
		t.Fatal(err)
	}
	s2.fail(3, "", "clone", "c", "--from", "m", "--full")
	s2.fail(3, "", "clone", "c", "--full")
	if _, err := os.Stat(s2.path("c")); !os.IsNotExist(err) {
		t.Errorf("a refused clone wrote the target: %v", err)
	}
}

// TestClonePrefix: with --prefix, global and per-component versions select
// every version under them at a version boundary; without it a prefix is
// refused as stock refuses it.
func TestClonePrefix(t *testing.T) {
	s := newMirror(t)
	for _, v := range []string{"v1.0.0", "v1.2.0", "v1.2.1-rc.1", "v10.0.0"} {
		publishHello(s, v)
	}
	tests := []struct {
		name string
		args []string
		want []string // versions in the clone; the rest must be absent
	}{
		{"component prefix", []string{"--prefix", "--hello", "v1"}, []string{"v1.0.0", "v1.2.0", "v1.2.1-rc.1"}},
		{"component prefix with dot", []string{"--prefix", "--hello", "v1.2"}, []string{"v1.2.0", "v1.2.1-rc.1"}},
		{"exact version still works", []string{"--prefix", "--hello", "v1.2.0"}, []string{"v1.2.0"}},
		{"global prefix", []string{"--prefix", "10"}, []string{"v10.0.0"}},
		{"global and component", []string{"--prefix", "0.0", "--hello", "v1.0"}, []string{"v0.0.1", "v1.0.0"}},
	}
	all := []string{"v0.0.1", "v1.0.0", "v1.2.0", "v1.2.1-rc.1", "v10.0.0"}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.t = t
			target := "p" + string(rune('a'+i))
			s.must(append([]string{"clone", target}, tt.args...)...)
			for _, v := range all {
				_, err := os.Stat(s.path(target, helloTarball(v)))
				if want := slices.Contains(tt.want, v); want != (err == nil) {
					t.Errorf("%s in the clone: %v, want %v (%v)", v, err == nil, want, err)
				}
			}
			s.must("verify", target)
		})
	}
	refused := []struct {
		name string
		code int
		msg  string
		args []string
	}{
		{"prefix without --prefix", 64, "version", []string{"clone", "x", "--hello", "v1"}},
		{"prefix matching nothing", 5, "v9", []string{"clone", "x", "--prefix", "--hello", "v9"}},
		{"not a version prefix", 64, "prefix", []string{"clone", "x", "--prefix", "--hello", "v1/2"}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			s.t = t
			s.fail(tt.code, tt.msg, tt.args...)
			if _, err := os.Stat(s.path("x")); !os.IsNotExist(err) {
				t.Fatalf("a failed clone wrote the target: %v", err)
			}
		})
	}
}

// toolPath makes a directory of links to the tools local_install.sh needs,
// so the script runs with a PATH that surely holds no tiup.
func toolPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"sh", "bash", "dirname", "uname", "tr", "mkdir", "cp", "mv", "rm", "tar", "gzip"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s for local_install.sh: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCloneLocalInstall runs the clone's local_install.sh with bash in a
// fresh HOME: it trusts the clone's root.json, drops cached manifests and,
// when the clone carries tiup for this platform, installs it and runs
// `tiup mirror set DIR`; otherwise it says how to set the mirror.
func TestCloneLocalInstall(t *testing.T) {
	s := newMirror(t)
	// A stand-in tiup that records how it was called.
	s.write("tsrc/tiup", "#!/bin/sh\necho \"$@\" > \"$TIUP_HOME/tiup-called\"\n", 0o755)
	s.must("package", "tiup", "-C", "tsrc", "--name", "tiup", "--release", "v1.0.0")
	tiupTarball := "package/tiup-v1.0.0-" + platform + ".tar.gz"
	s.must("publish", "tiup", "v1.0.0", tiupTarball, "tiup")
	s.must("clone", "plain", "--hello", "v0.0.1")
	s.must("clone", "full", "--full")
	tools := toolPath(t)

	tests := []struct {
		name      string
		clone     string
		wantTiup  bool
		wantInOut string
	}{
		{"without tiup", "plain", false, "mirror set \"" + s.path("plain") + "\""},
		{"with tiup", "full", true, "Installed tiup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := s.path(tt.clone, "local_install.sh")
			st, err := os.Stat(script)
			if err != nil || st.Mode().Perm() != 0o755 {
				t.Fatalf("local_install.sh: %v, mode %v, want 0755", err, st)
			}
			_, err = os.Stat(s.path(tt.clone, "tiup-"+platform+".tar.gz"))
			if (err == nil) != tt.wantTiup {
				t.Fatalf("tiup-%s.tar.gz in the clone: %v, want %v", platform, err == nil, tt.wantTiup)
			}
			home := t.TempDir()
			tiupHome := filepath.Join(home, ".tiup")
			stale := filepath.Join(tiupHome, "manifests", "stale.json")
			if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", script)
			cmd.Dir = t.TempDir()
			cmd.Env = []string{"HOME=" + home, "PATH=" + tools}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("local_install.sh: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.wantInOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantInOut, out)
			}
			want, err := os.ReadFile(s.path(tt.clone, "root.json"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(tiupHome, "bin", "root.json")); err != nil || string(got) != string(want) {
				t.Errorf("bin/root.json is not the clone's root.json: %v", err)
			}
			if _, err := os.Stat(filepath.Join(tiupHome, "manifests")); !os.IsNotExist(err) {
				t.Errorf("manifests/ left behind: %v", err)
			}
			called, err := os.ReadFile(filepath.Join(tiupHome, "tiup-called"))
			if tt.wantTiup && (err != nil || strings.TrimSpace(string(called)) != "mirror set "+s.path(tt.clone)) {
				t.Errorf("tiup was called with %q (%v), want mirror set %s", called, err, s.path(tt.clone))
			}
			if !tt.wantTiup && err == nil {
				t.Errorf("a tiup ran: %q", called)
			}
		})
	}
}
