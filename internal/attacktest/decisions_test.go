package attacktest

import (
	"os"
	"strings"
	"testing"
)

// TestDecisionsDocumented keeps testdata/decisions.txt and the policy
// table of docs/security.md in step: every decision the cases read has a
// row there naming it, with the same outcome.
func TestDecisionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Decisions()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RB-2", "SG-6", "SG-10", "LS-1", "FZ-4", "RAW", "HASH"} {
		if _, ok := ds[want]; !ok {
			t.Errorf("the catalogue's policy case %s has no decision", want)
		}
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) > 4 {
			rows[strings.TrimSpace(cells[1])] = line
		}
	}
	for id, d := range ds {
		row, ok := rows[id]
		if !ok {
			t.Errorf("docs/security.md has no row for decision %s", id)
			continue
		}
		outcome := "ACCEPT"
		if d.Expect != "ACCEPT" {
			outcome = "REJECT(" + d.Expect + ")"
		}
		if !strings.Contains(row, "`"+d.Decision+"`") || !strings.Contains(row, outcome) {
			t.Errorf("docs/security.md row for %s does not say `%s` and %s:\n%s", id, d.Decision, outcome, row)
		}
	}
}
