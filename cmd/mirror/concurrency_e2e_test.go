package main_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mirrorkit/mirror/core/manifest"
)

// TestParallelWriters runs publish, modify and renew as separate processes
// at the same time on one mirror: every version lands, and the component
// and timestamp versions are dense (one per change, none lost or reused).
func TestParallelWriters(t *testing.T) {
	s := newMirror(t) // hello v0.0.1: component manifest version 1
	const publishes = 6
	for i := range publishes {
		s.must("package", "hello", "-C", "src", "--name", "hello", "--release", fmt.Sprintf("v1.0.%d", i))
	}
	before := manifestVersion(t, s.path("m", "timestamp.json"))
	var wg sync.WaitGroup
	results := make(chan result, publishes+2)
	run := func(args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.run(args...)
		}()
	}
	for i := range publishes {
		v := fmt.Sprintf("v1.0.%d", i)
		run("publish", "hello", v, "package/hello-"+v+"-"+platform+".tar.gz", "hello")
	}
	run("modify", "hello", "--desc", "changed concurrently")
	run("renew", "hello")
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != 0 {
			t.Fatalf("a concurrent writer failed: exit %d: %s", r.code, r.stderr)
		}
	}
	changes := uint64(publishes + 2)
	if got := manifestVersion(t, s.path("m", "timestamp.json")); got != before+changes {
		t.Errorf("timestamp version %d, want %d", got, before+changes)
	}
	for v := uint64(1); v <= 1+changes; v++ {
		if _, err := os.Stat(s.path("m", manifest.VersionedName(v, "hello"))); err != nil {
			t.Errorf("hello manifest version %d missing: %v", v, err)
		}
	}
	if _, err := os.Stat(s.path("m", manifest.VersionedName(2+changes, "hello"))); err == nil {
		t.Error("more hello manifest versions than changes")
	}
	out := s.must("list", "hello").stdout
	for i := range publishes {
		if v := fmt.Sprintf("v1.0.%d", i); !strings.Contains(out, v) {
			t.Errorf("version %s lost:\n%s", v, out)
		}
	}
	if !strings.Contains(s.must("list").stdout, "changed concurrently") {
		t.Error("the concurrent modify was lost")
	}
	s.must("verify")
}

func manifestVersion(t *testing.T, path string) uint64 {
	t.Helper()
	env, err := manifest.ParseEnvelope(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var ts manifest.Timestamp
	if err := env.Decode(&ts); err != nil {
		t.Fatal(err)
	}
	return ts.Version
}
