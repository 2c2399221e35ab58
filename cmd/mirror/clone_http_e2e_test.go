package main_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestCloneFromHTTP clones a mirror served by `mirror serve` over loopback
// through the http backend plugin: the clone verifies on its own, holds the
// same tarball bytes, installs, and without a terminal the copy ends with
// one summary line on stderr.
func TestCloneFromHTTP(t *testing.T) {
	s := newMirror(t)
	publishHello(s, "v0.0.2")
	srv := s.start(nil, "serve", "m", "--addr", "127.0.0.1:0")
	base := srv.waitFor(t, servingLine)[2]

	tests := []struct {
		name     string
		args     []string
		versions []string
	}{
		{"full", []string{"--full"}, []string{"v0.0.1", "v0.0.2"}},
		{"one version", []string{"--hello", "v0.0.1", "--jobs", "1"}, []string{"v0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.t = t
			target := "c-" + strings.ReplaceAll(tt.name, " ", "-")
			r := s.must(append([]string{"clone", target, "--from", base}, tt.args...)...)
			if !strings.Contains(r.stdout, "cloned 1 components") {
				t.Errorf("summary: %q", r.stdout)
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "copied ") {
				t.Errorf("stderr is not one summary line: %q", r.stderr)
			}
			for _, v := range tt.versions {
				want, err := os.ReadFile(s.path("m", helloTarball(v)))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(s.path(target, helloTarball(v))); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s differs from the source: %v", helloTarball(v), err)
				}
			}
			s.must("verify", target)
			client := []string{"TIUP_HOME=" + s.path(target+"-client")}
			for _, args := range [][]string{{"set", s.path(target)}, {"install", "hello:" + tt.versions[0]}} {
				if r := s.runEnv(client, args...); r.code != 0 {
					t.Fatalf("client %v: exit %d: %s", args, r.code, r.stderr)
				}
			}
		})
	}
	// A version the served mirror lacks is a missing file (exit 5), not a
	// transport error.
	if r := s.run("clone", "x", "--from", base, "--hello", "v9.9.9"); r.code != 5 {
		t.Errorf("clone of a missing version over HTTP: exit %d: %s", r.code, r.stderr)
	}
}
