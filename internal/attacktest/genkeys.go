//go:build ignore

// Command genkeys writes the attack suite's pool of test keys: RSA-2048
// keys in TiUP's private key file format, testdata/keys/NN.json. Key
// generation is slow (tens of milliseconds per key, far more under -race),
// so the pool is made once and committed, as tuf-conformance pre-generates
// its signers. Run it from this directory to add keys:
//
//	go run genkeys.go -n 16
//
// Existing files are kept; only missing numbers are written.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mirrorkit/mirror/core/keys"
)

func main() {
	n := flag.Int("n", 16, "number of keys in the pool")
	dir := flag.String("dir", filepath.Join("testdata", "keys"), "where the key files go")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "genkeys:", err)
		os.Exit(1)
	}
	for i := range *n {
		path := filepath.Join(*dir, fmt.Sprintf("%02d.json", i))
		if _, err := os.Stat(path); err == nil {
			continue
		}
		k, err := keys.Generate()
		if err == nil {
			err = k.WriteFile(path)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "genkeys:", err)
			os.Exit(1)
		}
		fmt.Println(path, k.ID())
	}
}
