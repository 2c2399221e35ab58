// Command attack-report prints the Markdown table of an attack report file
// written by attackreport.Record (see `make attack`). It exits 1 when any
// case missed its expectation, failed to recover, panicked, tore the
// mirror or lost an update.
package main

import (
	"fmt"
	"os"

	"github.com/mirrorkit/mirror/internal/attackreport"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: attack-report REPORT.jsonl")
		os.Exit(64)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "attack-report: %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	results, err := attackreport.Read(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "attack-report: %v\n", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "attack-report: no results in", os.Args[1])
		os.Exit(1)
	}
	if err := attackreport.Table(os.Stdout, results); err != nil {
		fmt.Fprintf(os.Stderr, "attack-report: %v\n", err)
		os.Exit(1)
	}
	for _, r := range results {
		if !r.Met || r.Recovery == "failed" || r.Panic || r.Torn || r.LostUpdates > 0 {
			os.Exit(1)
		}
	}
}
