package attackreport

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordReadTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(EnvFile, path)
	Record(t, Result{Family: "rollback", ID: "RB-1", Backend: "http", Expected: "REJECT(rollback)", Met: true, Recovery: "ok"})
	Record(t, Result{Family: "rollback", ID: "RB-2", Backend: "http", Expected: "REJECT(rollback)", Met: false, Recovery: "failed"})
	Record(t, Result{Family: "crash points", ID: "RP-1", Backend: "fs", Expected: "ACCEPT", Met: true, Torn: true, LostUpdates: 2})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	results, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 || results[1].ID != "RB-2" || results[2].LostUpdates != 2 {
		t.Fatalf("read back %+v", results)
	}
	var b bytes.Buffer
	if err := Table(&b, results); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| crash points | fs | 1 | 1 of 1 | 0 of 0 | 0 | 1 | 2 |",
		"| rollback | http | 2 | 1 of 2 | 1 of 2 | 0 | 0 | 0 |",
		"| **all** | | **3** | **2 of 3** | **1 of 2** | **0** | **1** | **2** |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
