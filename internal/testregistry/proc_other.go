//go:build !linux

package testregistry

import "syscall"

// sysProcAttr: only Linux can tie the registry's life to the test binary's;
// elsewhere t.Cleanup alone stops it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
