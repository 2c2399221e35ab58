package host

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/sdk"
	"github.com/mirrorkit/mirror/sdk/internal/wire"
)

// A plugin whose host is killed (so nobody calls Kill) must not live on as
// an orphan: it exits by itself within a few seconds.
func TestPluginExitsWhenHostIsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hs := wire.Handshake(sdk.ProtocolVersion)
	// The shell starts the plugin, prints its pid, then becomes `sleep`:
	// the plugin's host is the sleep, which the test kills.
	host := exec.Command("sh", "-c", `"$0" & echo "pid $!"; exec sleep 60`, exe)
	host.Env = append(os.Environ(), pluginEnv+"=backend", hs.MagicCookieKey+"="+hs.MagicCookieValue)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })
	sc := bufio.NewScanner(out)
	pid, served := 0, false
	for (pid == 0 || !served) && sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pid "); ok {
			pid, _ = strconv.Atoi(p)
		} else if strings.Contains(line, "|grpc") {
			served = true // go-plugin's handshake line: the plugin is up
		}
	}
	if pid == 0 || !served {
		t.Fatalf("plugin did not start (pid %d, served %v): %v", pid, served, sc.Err())
	}
	go func() { // keep the pipe drained; the plugin may still write to it
		for sc.Scan() {
		}
	}()
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscallKill(pid)
			t.Fatalf("plugin %d still running 10s after its host was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by
// whoever adopted it) counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func syscallKill(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
