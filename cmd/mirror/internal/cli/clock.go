//go:build !testclock

package cli

import "time"

// clock is the real time. A binary built with -tags testclock reads
// MIRROR_TEST_NOW instead (clock_test_tag.go), so the attack suite and the
// fixture tests can verify at a fixed instant; release builds cannot.
func clock() func() time.Time { return time.Now }
