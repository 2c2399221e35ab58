package testregistry

import "syscall"

// sysProcAttr has the kernel kill the registry when the test binary dies
// without running its cleanups (a `go test -timeout` panic, a SIGKILL), so
// no registry outlives its test. The registry stays in the test's process
// group, so a Ctrl-C at the terminal stops it too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
