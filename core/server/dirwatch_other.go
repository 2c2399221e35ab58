//go:build !linux

package server

// dirWatch is inotify's, on Linux; elsewhere every cached copy is checked
// with a stat.
type dirWatch struct{}

func watchDir(string, *smallCache) *dirWatch { return nil }
func (w *dirWatch) ok() bool                 { return false }
func (w *dirWatch) drain()                   {}
func (w *dirWatch) close()                   {}
