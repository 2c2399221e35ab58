package main_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

// TestPublishTiupKeepsInstallerCopy: publishing the tiup component keeps
// tiup-OS-ARCH.tar.gz, which install.sh downloads, at the newest stable
// version of the platform (spec §2). Unlike stock tiup, which copies every
// tiup it publishes, an older release published later leaves the copy
// alone. A copy lost after the commit (a crash) comes back on a re-run.
func TestPublishTiupKeepsInstallerCopy(t *testing.T) {
	s := newMirror(t)
	copyPath := s.path("m", "tiup-"+platform+".tar.gz")
	publish := func(version string) []byte {
		t.Helper()
		s.write("tiup-src/tiup", "#!/bin/sh\necho tiup "+version+"\n", 0o755)
		s.must("package", "tiup", "-C", "tiup-src", "--name", "tiup", "--release", version)
		tarball := "package/tiup-" + version + "-" + platform + ".tar.gz"
		s.must("publish", "tiup", version, tarball, "tiup")
		b, err := os.ReadFile(s.path(tarball))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	copyIs := func(want []byte, what string) {
		t.Helper()
		got, err := os.ReadFile(copyPath)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: tiup-%s.tar.gz is not the expected tarball", what, platform)
		}
	}

	if _, err := os.Stat(s.path("m", "tiup-"+platform+".tar.gz")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a mirror without tiup has a tiup copy: %v", err)
	}
	v110 := publish("v1.1.0")
	copyIs(v110, "after publishing v1.1.0")
	publish("v1.0.5")
	copyIs(v110, "after publishing the older v1.0.5")
	v120 := publish("v1.2.0")
	copyIs(v120, "after publishing v1.2.0")

	if err := os.Remove(copyPath); err != nil {
		t.Fatal(err)
	}
	s.must("publish", "tiup", "v1.2.0", "package/tiup-v1.2.0-"+platform+".tar.gz", "tiup")
	copyIs(v120, "after re-running the publish of v1.2.0")
	s.must("verify")
}
