// Package attackreport records the outcome of each attack and fault case
// so that `make attack` can print one table for the whole suite. Cases live
// in internal/attacktest (client side) and internal/faulttest (repository
// side); both call Record once per case and backend.
package attackreport

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// EnvFile names the file Record appends to; unset, Record only logs.
const EnvFile = "MIRROR_ATTACK_REPORT"

// Result is the outcome of one case on one backend.
type Result struct {
	Family   string `json:"family"`   // catalogue family, e.g. "rollback" or "crash points"
	ID       string `json:"id"`       // catalogue row, e.g. "RB-1" or "RP-1"
	Backend  string `json:"backend"`  // "fs", "http" or "oci"
	Expected string `json:"expected"` // "ACCEPT" or "REJECT(class)"
	Met      bool   `json:"met"`      // the expected outcome happened
	// Recovery is "ok" or "failed" when the case re-ran after healing the
	// fault, "" when it has no recovery step.
	Recovery    string `json:"recovery,omitempty"`
	Panic       bool   `json:"panic,omitempty"`
	Torn        bool   `json:"torn,omitempty"`
	LostUpdates int    `json:"lost_updates,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

var mu sync.Mutex

// Record logs r on t and appends it as one JSON line to $MIRROR_ATTACK_REPORT
// when set. A case that did not meet its expectation must also fail t;
// Record only reports.
func Record(t testing.TB, r Result) {
	t.Helper()
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("attackreport: %v", err)
	}
	t.Logf("attack-result %s", line)
	path := os.Getenv(EnvFile)
	if path == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	// O_APPEND writes of one short line are atomic on a local file system,
	// so several test processes may share the file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("attackreport: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatalf("attackreport: %v", err)
	}
}

// Read parses the JSON lines Record wrote.
func Read(r io.Reader) ([]Result, error) {
	var out []Result
	dec := json.NewDecoder(r)
	for {
		var res Result
		err := dec.Decode(&res)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read attack report: %w", err)
		}
		out = append(out, res)
	}
}

// Table writes a Markdown table of results grouped by family and backend,
// then a totals line: expected outcomes met, recoveries, panics, torn
// states and lost updates.
func Table(w io.Writer, results []Result) error {
	type key struct{ family, backend string }
	type row struct {
		cases, met, recTried, recOK, panics, torn, lost int
		ids                                             []string
	}
	rows := map[key]*row{}
	var total row
	for _, r := range results {
		k := key{r.Family, r.Backend}
		x := rows[k]
		if x == nil {
			x = &row{}
			rows[k] = x
		}
		for _, y := range []*row{x, &total} {
			y.cases++
			if r.Met {
				y.met++
			}
			if r.Recovery != "" {
				y.recTried++
				if r.Recovery == "ok" {
					y.recOK++
				}
			}
			if r.Panic {
				y.panics++
			}
			if r.Torn {
				y.torn++
			}
			y.lost += r.LostUpdates
		}
		if !slices.Contains(x.ids, r.ID) {
			x.ids = append(x.ids, r.ID)
		}
	}
	keys := make([]key, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := strings.Compare(a.family, b.family); c != 0 {
			return c
		}
		return strings.Compare(a.backend, b.backend)
	})
	var b strings.Builder
	b.WriteString("| family | backend | cases | expected met | recoveries | panics | torn | lost updates |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, k := range keys {
		x := rows[k]
		fmt.Fprintf(&b, "| %s | %s | %d | %d of %d | %d of %d | %d | %d | %d |\n",
			k.family, k.backend, x.cases, x.met, x.cases, x.recOK, x.recTried, x.panics, x.torn, x.lost)
	}
	fmt.Fprintf(&b, "| **all** | | **%d** | **%d of %d** | **%d of %d** | **%d** | **%d** | **%d** |\n",
		total.cases, total.met, total.cases, total.recOK, total.recTried, total.panics, total.torn, total.lost)
	_, err := io.WriteString(w, b.String())
	return err
}
