package attacktest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

// TestNames is the catalogue's 1.9 names and URLs: no name the user types
// or an owner signs reaches a file or URL outside its place.
func TestNames(t *testing.T) {
	noRequest := func(c *Case, r Result) error {
		if c.Srv != nil && len(c.Srv.Requests()) > 0 {
			return fmt.Errorf("the bad name reached the network: %v", c.Srv.Paths())
		}
		return nil
	}
	var attacks []Attack
	for i, name := range []string{"../x", "a/b", ".", "..", strings.Repeat("a", 300), "CON", "f\u03bfo", "root", "index", "snapshot", "timestamp"} {
		attacks = append(attacks, Attack{ID: fmt.Sprintf("PT-1/%c", 'a'+i), Expect: NoToken, Exit: 64, Cmd: []string{"install", name},
			Verify: noRequest, NoRecovery: true, Detail: fmt.Sprintf("install %.20q: a usage error before any file or URL use", name)})
	}
	// item changes foo's v1.0.0 item in a manifest its owner signs; the
	// heal publishes the original again.
	item := func(change func(it *manifest.VersionItem)) (attack, heal func(c *Case)) {
		attack = func(c *Case) {
			it := c.Sim.Item(Comp, Version)
			c.Keep("item", Encode(it))
			change(&it)
			c.Sim.SetItem(Comp, Version, it)
			c.Sim.Commit(Comp)
		}
		heal = func(c *Case) {
			c.Heal()
			var it manifest.VersionItem
			must(jsonUnmarshal(c.Kept("item"), &it))
			c.Sim.SetItem(Comp, Version, it)
			c.Sim.Commit(Comp)
		}
		return attack, heal
	}
	attacks = append(attacks,
		Attack{ID: "PT-1/index", Expect: "malformed", Attack: func(c *Case) {
			c.Sim.Index.Components["../x"] = manifest.ComponentItem{Owner: Owner, URL: "/../x.json"}
			c.Sim.Commit("index")
		}, Heal: func(c *Case) {
			c.Heal()
			delete(c.Sim.Index.Components, "../x")
			c.Sim.Commit("index")
		}, Detail: "an index naming a component ../x"},
		Attack{ID: "PT-2", Expect: NoToken, Exit: 64, Cmd: []string{"install", Comp + ":v1.0.0/../../x"}, Verify: noRequest, NoRecovery: true,
			Detail: "a version with / and .. is a usage error"},
		Attack{ID: "PT-2b", Expect: "ACCEPT", Cmd: []string{"install", Comp}, Attack: func(c *Case) {
			// The owner signs versions named like paths, on a platform
			// named like a path: latest stays v1.0.0, and nothing lands
			// outside the install directory.
			it := c.Sim.Item(Comp, Version)
			c.Sim.Components[Comp].Platforms[Platform]["../../../evil"] = it
			c.Sim.Components[Comp].Platforms["../../x"] = map[string]manifest.VersionItem{Version: it}
			c.Sim.Commit(Comp)
		}, NoRecovery: true, Verify: func(c *Case, r Result) error {
			if p := c.checkInstalled(Comp, Version); len(p) > 0 {
				return fmt.Errorf("%s", strings.Join(p, "; "))
			}
			return nil
		}, Detail: "path-like version and platform keys are never used as paths"},
	)
	for i, url := range []string{"/../x.tar.gz", "/%2e%2e/x.tar.gz", "http://other-host/x.tar.gz", "//other-host/x.tar.gz", `/..\x.tar.gz`, "/sub/x.tar.gz"} {
		a, h := item(func(it *manifest.VersionItem) { it.URL = url })
		attacks = append(attacks, Attack{ID: fmt.Sprintf("PT-3/%c", 'a'+i), Expect: "unsafe-path", Cmd: installFoo, Attack: a, Heal: h, MayChange: committed,
			Detail: fmt.Sprintf("tarball url %q", url)})
	}
	for i, entry := range []string{"/bin/sh", "../../bin/foo", ".."} {
		a, h := item(func(it *manifest.VersionItem) { it.Entry = entry })
		attacks = append(attacks, Attack{ID: fmt.Sprintf("PT-4/%c", 'a'+i), Expect: "unsafe-path", Cmd: installFoo, Attack: a, Heal: h, MayChange: committed,
			Detail: fmt.Sprintf("entry %q", entry)})
	}
	RunAttacks(t, "names and archives", attacks)
}

// TestArchives is the catalogue's 1.9 archive rows: a tarball its owner
// signed (the blast radius of a compromised owner) still cannot write
// outside components/foo/VERSION, and a broken one installs nothing.
func TestArchives(t *testing.T) {
	const v = "v1.0.1"
	cmd := []string{"install", Comp + ":" + v}
	withEntries := func(extra ...TarEntry) []TarEntry {
		return append(DefaultFiles(Comp, v), extra...)
	}
	publishFiles := func(tb []byte, entries []TarEntry) func(c *Case) {
		return func(c *Case) {
			c.Sim.AddTarball(Comp, v, Platform, tb, entries)
			c.Sim.Commit(Comp)
		}
	}
	publish := func(tb []byte) func(c *Case) { return publishFiles(tb, nil) }
	archive := func(entries []TarEntry) func(c *Case) { return publishFiles(MakeTarball(entries), entries) }
	heal := func(c *Case) {
		c.Heal()
		c.Sim.AddVersion(Comp, v, DefaultFiles(Comp, v))
		c.Sim.Commit(Comp)
	}
	good := MakeTarball(withEntries())
	var tarOnly bytes.Buffer // the uncompressed tar of the good tarball
	{
		tw := tar.NewWriter(&tarOnly)
		for _, e := range withEntries() {
			typ := e.Type
			if typ == 0 {
				typ = tar.TypeReg
			}
			tw.WriteHeader(&tar.Header{Typeflag: typ, Name: e.Name, Mode: 0o755, Size: int64(len(e.Body))})
			tw.Write([]byte(e.Body))
		}
		tw.Close()
	}
	attacks := []Attack{
		{ID: "TR-1", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "../../../canary-a/evil", Body: "x"}))},
		{ID: "TR-1b", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "/tmp/evil", Body: "x"}))},
		{ID: "TR-2", Expect: "unsafe-path", Attack: archive(withEntries(
			TarEntry{Name: "lib", Type: tar.TypeSymlink, Linkname: "../../../canary-a"},
			TarEntry{Name: "lib/passwd", Body: "owned\n"}))},
		{ID: "TR-2b", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "etc", Type: tar.TypeSymlink, Linkname: "/etc"})),
			Detail: "the escaping symlink alone is refused"},
		{ID: "TR-3", Expect: "unsafe-path", Attack: func(c *Case) {
			archive(withEntries(TarEntry{Name: "passwd", Type: tar.TypeLink, Linkname: filepath.Join(c.Client.Root, "canary-a", "passwd")}))(c)
		}, Detail: "a hard link to a file outside"},
		{ID: "TR-3b", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "other", Type: tar.TypeLink, Linkname: "../../bar/v1.0.0/bin/bar"})),
			Detail: "a hard link into another component"},
		{ID: "TR-4", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "dev", Type: tar.TypeChar})), Detail: "a device entry"},
		{ID: "TR-4b", Expect: "unsafe-path", Attack: archive(withEntries(TarEntry{Name: "fifo", Type: tar.TypeFifo})), Detail: "a FIFO entry"},
		{ID: "TR-5", Expect: "ACCEPT", Attack: archive([]TarEntry{
			{Name: "bin/", Type: tar.TypeDir},
			{Name: Entry, Body: "#!/bin/sh\n", Mode: 0o6755},
			{Name: "sticky", Body: "x", Mode: 0o1644},
		}), NoRecovery: true, Detail: "setuid, setgid and sticky bits are dropped (mode & 0777)"},
		{ID: "TR-6", Expect: "length", Attack: archive(withEntries(TarEntry{Name: "bomb", Body: "x", Size: 10 << 30})),
			Detail: "an entry declaring 10 GiB is refused at its header"},
		{ID: "TR-6b", Expect: "length", Attack: func(c *Case) {
			entries := make([]TarEntry, 0, 200_002)
			for range 200_000 {
				entries = append(entries, TarEntry{Name: "d/", Type: tar.TypeDir})
			}
			archive(withEntries(entries...))(c)
		}, Detail: "200,000 entries in a 40 KB tarball stop at the entry cap"},
		{ID: "TR-7", Expect: "malformed", Attack: archive(withEntries(TarEntry{Name: "README", Body: "second"})), Detail: "a duplicate entry"},
		{ID: "TR-7b", Expect: "malformed", Attack: archive(withEntries(TarEntry{Name: "readme", Body: "folded"})), Detail: "names equal under case folding"},
		{ID: "TR-8", Expect: "malformed", Attack: func(c *Case) {
			b := append([]byte(nil), good...)
			b[len(b)/2] ^= 0xff
			publish(b)(c)
		}, Detail: "corrupt gzip"},
		{ID: "TR-8b", Expect: "malformed", Attack: publish(Gzip(tarOnly.Bytes()[:1024])), Detail: "a truncated tar"},
		{ID: "TR-8c", Expect: "malformed", Attack: publish(append(append([]byte(nil), good...), "garbage"...)), Detail: "garbage after the gzip member"},
		{ID: "TR-8d", Expect: "malformed", Attack: publish(append(append([]byte(nil), good...), Gzip([]byte("second member"))...)), Detail: "a second gzip member"},
	}
	for i := range attacks {
		attacks[i].Cmd = cmd
		attacks[i].MayChange = committed
		if attacks[i].Expect != "ACCEPT" {
			attacks[i].Heal = heal
			attacks[i].Verify = canariesIntact
		}
	}
	RunAttacks(t, "names and archives", attacks)
}

// canariesIntact double-checks what the sandbox digest already covers:
// the canary's passwd is the one the sandbox wrote.
func canariesIntact(c *Case, r Result) error {
	for _, d := range Canaries {
		b, err := os.ReadFile(filepath.Join(c.Client.Root, d, "passwd"))
		if err != nil || !strings.HasPrefix(string(b), "root:x:0:0") {
			return fmt.Errorf("canary %s/passwd changed", d)
		}
	}
	return nil
}
