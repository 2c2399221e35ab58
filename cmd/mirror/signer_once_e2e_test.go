package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// countingSigner puts in MIRROR_PLUGIN_DIR a mirror-signer-envkey that
// notes each start in a file and then runs the example envkey signer, so a
// test can count how often a run starts the signer of an envkey://
// reference. It returns the function that reads the count and resets it.
func countingSigner(t *testing.T, s *sandbox) func() int {
	t.Helper()
	real, err := examplePlugins()
	if err != nil {
		t.Fatal(err)
	}
	dir, starts := s.path("counting-plugins"), s.path("signer-starts")
	script := "#!/bin/sh\necho started >> '" + starts + "'\nexec '" + filepath.Join(real, "mirror-signer-envkey") + "'\n"
	s.write("counting-plugins/mirror-signer-envkey", script, 0o755)
	s.env = append(s.env, "MIRROR_PLUGIN_DIR="+dir)
	return func() int {
		t.Helper()
		b, err := os.ReadFile(starts)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(starts); err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "started\n")
	}
}

// TestSignerOpenedOncePerRun: a --signer reference is started once per
// run, though a publish asks for it as an owner key and again as a possible
// role key for snapshot and timestamp, and a rotate for the new root and
// again for snapshot and timestamp. A remote signer would otherwise pay
// two TLS handshakes, a local one two processes.
func TestSignerOpenedOncePerRun(t *testing.T) {
	s := newMirror(t)
	starts := countingSigner(t, s)

	// The owner key exists only behind the signer, so the publish can
	// succeed only through it.
	ownerKey := moveFile(t, filepath.Join(s.home, "keys", "private.json"), s.path("signer-keys", "alice.json"))
	s.write("src/hello", "#!/bin/sh\necho hello once\n", 0o755)
	s.must("package", "hello", "-C", "src", "--name", "hello", "--release", "v0.0.2")
	s.must("publish", "hello", "v0.0.2", "package/hello-v0.0.2-"+platform+".tar.gz", "hello", "--signer", "envkey://"+ownerKey)
	if n := starts(); n != 1 {
		t.Errorf("publish --signer started the signer %d times, want 1", n)
	}

	// Two root keys sign through --sign-with (the built-in local signer),
	// the third only through --signer: the threshold of 3 needs it.
	s.must("genkey", "-n", "newroot")
	roots := rootKeyFiles(t, s)
	s.mustEnv(noEditor, "rotate", "--add-key", filepath.Join(s.home, "keys", "newroot.json"), "--no-session",
		"--sign-with", roots[0]+","+roots[1], "--signer", "envkey://"+roots[2])
	if n := starts(); n != 1 {
		t.Errorf("rotate --signer started the signer %d times, want 1", n)
	}
	root, signers := readRoot(t, s, "2.root.json")
	if root.Version != 2 || len(signers) != 3 {
		t.Fatalf("2.root.json: version %d with %d signatures, want 2 with 3", root.Version, len(signers))
	}
	if !strings.Contains(strings.Join(signers, " "), keyID(t, roots[2])) {
		t.Error("2.root.json lacks the signature of the --signer root key")
	}
	s.must("verify")
	if out := s.must("list", "hello").stdout; !strings.Contains(out, "v0.0.2") {
		t.Errorf("list hello lacks v0.0.2:\n%s", out)
	}
}
