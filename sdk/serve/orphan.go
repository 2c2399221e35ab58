package serve

import (
	"fmt"
	"os"
	"time"
)

// hostCheckInterval is how often a plugin looks for its host.
const hostCheckInterval = 500 * time.Millisecond

// exitWithHost ends the plugin process soon after the host that started
// it is gone. go-plugin leaves that to the host's Kill, which a host that
// crashes or is killed never calls: its plugins lived on as orphans,
// holding files open and (a backend) the mirror's writer lock. An orphan
// is re-parented, so a change of parent process is the sign. Polling
// getppid is portable across the Unixes, unlike Linux's PR_SET_PDEATHSIG,
// which also fires when merely the host's forking thread exits.
func exitWithHost() {
	host := os.Getppid()
	if host <= 1 {
		// Started by init or a reaper itself: there is no host to watch.
		return
	}
	go func() {
		for {
			time.Sleep(hostCheckInterval)
			if os.Getppid() != host {
				fmt.Fprintf(os.Stderr, "mirror plugin: host process %d is gone; exiting\n", host)
				os.Exit(1)
			}
		}
	}()
}
