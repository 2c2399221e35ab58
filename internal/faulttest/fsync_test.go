package faulttest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/mirrorkit/mirror/internal/attackreport"
)

// traced is one completed system call from an strace log.
type traced struct {
	call string // fsync, renameat, linkat, ...
	args string
}

var (
	straceLine    = regexp.MustCompile(`^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)
	unfinished    = regexp.MustCompile(`^(\d+)\s+(.*) <unfinished \.\.\.>$`)
	resumed       = regexp.MustCompile(`^(\d+)\s+<\.\.\. \w+ resumed>(.*)$`)
	fdPath        = regexp.MustCompile(`^\d+<([^>]*)>$`)
	renameTargets = regexp.MustCompile(`^\d+<([^>]*)>, "([^"]*)", \d+<([^>]*)>, "([^"]*)"`)
)

// readTrace parses `strace -f -y` output into completed, successful calls
// in the order they returned, joining calls that other threads split.
func readTrace(path string) ([]traced, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pending := map[string]string{}
	var out []traced
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := unfinished.FindStringSubmatch(line); m != nil {
			pending[m[1]] = m[2]
			continue
		}
		if m := resumed.FindStringSubmatch(line); m != nil {
			line = m[1] + " " + pending[m[1]] + m[2]
			delete(pending, m[1])
		}
		m := straceLine.FindStringSubmatch(line)
		if m == nil || m[3] != "0" {
			continue
		}
		out = append(out, traced{call: m[1], args: m[2]})
	}
	return out, sc.Err()
}

// TestFsyncModel grounds the page-cache model of RP-3 (journal.go) in what
// the fs backend really does: it traces a publish through the built binary
// and its plugin with strace and checks that every object reaches its name
// by a rename or link of a temporary file that was fsynced first, that the
// directory is fsynced after it and before the next object is named, and
// that timestamp.json is named last. That is exactly "a Put that returned
// is durable, file and name", the rule PowerLoss applies.
func TestFsyncModel(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed; the model then rests on reading plugins/backend-fs/fsbackend/put.go")
	}
	w := newWorld(t)
	out := w.path("strace.txt")
	args := append([]string{"-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat", "-o", out, mirrorBin},
		adminArgs(w, w.mirrorDir(), "publish", "hello", "v0.0.2", w.tarball("hello", "v0.0.2"), "hello")...)
	r := runCmd(t, w, "strace", args...)
	if r.code != 0 {
		if strings.Contains(r.stderr, "PTRACE") || strings.Contains(r.stderr, "Operation not permitted") {
			t.Skipf("strace cannot trace here: %s", lastLine(r.stderr))
		}
		t.Fatalf("publish under strace: %s", r)
	}
	calls, err := readTrace(out)
	if err != nil {
		t.Fatal(err)
	}
	dir := w.mirrorDir()
	synced := map[string]bool{} // paths fsynced so far
	var named []string
	var problems []string
	waitDirSync := ""
	for _, c := range calls {
		switch c.call {
		case "fsync", "fdatasync":
			if m := fdPath.FindStringSubmatch(c.args); m != nil {
				synced[m[1]] = true
				if m[1] == dir {
					waitDirSync = ""
				}
			}
		case "rename", "renameat", "renameat2", "link", "linkat":
			m := renameTargets.FindStringSubmatch(c.args)
			if m == nil || m[3] != dir {
				continue
			}
			if waitDirSync != "" {
				problems = append(problems, fmt.Sprintf("%s named before the directory was synced after %s", m[4], waitDirSync))
			}
			if tmp := m[1] + "/" + m[2]; !synced[tmp] {
				problems = append(problems, fmt.Sprintf("%s named from %s, which was never fsynced", m[4], m[2]))
			}
			named = append(named, m[4])
			waitDirSync = m[4]
		}
	}
	if waitDirSync != "" {
		problems = append(problems, "the directory was not synced after "+waitDirSync)
	}
	if len(named) < 4 || named[len(named)-1] != "timestamp.json" {
		problems = append(problems, fmt.Sprintf("objects named in the order %v, want timestamp.json last", named))
	}
	record(t, attackreport.Result{Family: "power loss", ID: "RP-3", Backend: "fs",
		Expected: "ACCEPT(each object fsynced, named, its directory fsynced, timestamp last)", Met: len(problems) == 0,
		Detail: fmt.Sprintf("strace of publish: named %s; %s", strings.Join(named, ", "), strings.Join(problems, "; "))})
}
