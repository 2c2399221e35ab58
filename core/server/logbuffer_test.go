package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/core/server"
)

// A buffered log line must still arrive on its own within the flush
// interval (an operator tailing the log sees every request), and Close must
// write out whatever is left.
func TestLogBuffer(t *testing.T) {
	var out syncBuffer
	b := server.NewLogBuffer(&out)
	b.Write([]byte("first\n"))
	deadline := time.Now().Add(20 * server.LogFlushInterval)
	for !strings.Contains(out.String(), "first\n") {
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed after %v", 20*server.LogFlushInterval)
		}
		time.Sleep(server.LogFlushInterval / 4)
	}
	b.Write([]byte("last\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "first\nlast\n" {
		t.Fatalf("log = %q", got)
	}
}
