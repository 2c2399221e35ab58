// Package archtest holds the test that enforces the repository's import
// rules (see ARCHITECTURE.md): sdk depends on the standard library alone,
// core reaches plugins only through the plugin protocol, plugins stay
// independent of one another, and cobra stays in cmd.
package archtest
