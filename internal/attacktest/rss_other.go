//go:build !unix

package attacktest

import "os"

// maxRSS is unknown off unix.
func maxRSS(*os.ProcessState) int64 { return 0 }
