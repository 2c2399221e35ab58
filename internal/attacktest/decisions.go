package attacktest

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"testing"
)

// decisionsFile records the policy decisions of the catalogue (the cases
// where TiUP and TUF disagree), one per line: ID, the decision, and the
// outcome the cases expect from it. docs/security.md explains each one;
// the cases read this file, as tuf-conformance reads its .xfails.
//
//go:embed testdata/decisions.txt
var decisionsFile []byte

// Decision is one recorded policy decision.
type Decision struct {
	ID       string
	Decision string
	// Expect is "ACCEPT" or a rejection class, as Attack.Expect takes it.
	Expect string
}

// Decisions parses the decisions file.
func Decisions() (map[string]Decision, error) {
	out := map[string]Decision{}
	sc := bufio.NewScanner(bytes.NewReader(decisionsFile))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("decisions.txt:%d: want ID DECISION EXPECT, got %q", n, line)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("decisions.txt:%d: %s decided twice", n, f[0])
		}
		out[f[0]] = Decision{ID: f[0], Decision: f[1], Expect: f[2]}
	}
	return out, sc.Err()
}

// decision returns the recorded decision for id, failing t when there is
// none.
func decision(t testing.TB, id string) Decision {
	t.Helper()
	ds, err := Decisions()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ds[id]
	if !ok {
		t.Fatalf("no decision recorded for %s in testdata/decisions.txt", id)
	}
	return d
}
