//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import (
	"context"

	"github.com/mirrorkit/mirror/sdk"
)

// flockSupported is false: without flock, Lock reports sdk.ErrUnsupported
// and commits are serialized within one process only.
const flockSupported = false

func acquire(context.Context, string) (func() error, error) { return nil, sdk.ErrUnsupported }
