//go:build testclock

package cli

import (
	"os"
	"time"
)

// clock honours MIRROR_TEST_NOW (RFC 3339) in test builds only.
func clock() func() time.Time {
	if v := os.Getenv("MIRROR_TEST_NOW"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return func() time.Time { return t }
		}
	}
	return time.Now
}
