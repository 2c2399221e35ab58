package attacktest

import (
	"fmt"
	"os"
	"testing"
)

// TestMain builds the binary under test once for every case.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "attacktest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	Binary, err = Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
