package trust

import (
	"errors"
	"fmt"
	"time"
)

// ErrUntrusted is wrapped by every verification failure, so callers (and the
// CLI's exit-code mapping) can tell "the mirror is not trustworthy" from I/O
// trouble with one errors.Is.
var ErrUntrusted = errors.New("untrusted")

// SignatureError reports a manifest whose signatures do not meet the role's
// threshold, or that carries a bad or duplicate signature.
type SignatureError struct {
	File   string // e.g. "timestamp.json"
	Role   string // the role or owner whose keys were used
	Valid  int    // valid signatures by keys of the role
	Need   uint64 // the role's threshold
	Reason string // what was wrong beyond the count, if anything
}

func (e *SignatureError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("verify %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("verify %s: %d valid signature(s) by %s keys, threshold is %d", e.File, e.Valid, e.Role, e.Need)
}

// Unwrap makes SignatureError match ErrUntrusted.
func (e *SignatureError) Unwrap() error { return ErrUntrusted }

// ExpiredError reports a manifest past its expiry at the verifier's clock.
type ExpiredError struct {
	File    string
	Expires time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("verify %s: expired at %s", e.File, e.Expires.UTC().Format(time.RFC3339))
}

// Unwrap makes ExpiredError match ErrUntrusted.
func (e *ExpiredError) Unwrap() error { return ErrUntrusted }

// VersionError reports a version that is not the one the chain of trust
// requires: a rollback below the trusted version, a jump in the root chain,
// or a manifest other than the one the snapshot names.
type VersionError struct {
	File string
	Got  uint64
	Want uint64
	Rule string // "at least", "exactly"
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("verify %s: version %d, want %s %d", e.File, e.Got, e.Rule, e.Want)
}

// Unwrap makes VersionError match ErrUntrusted.
func (e *VersionError) Unwrap() error { return ErrUntrusted }

// HashError reports content whose length or digest differs from the signed
// value.
type HashError struct {
	File string
	What string // "sha256", "sha512", "length"
	Want string
	Got  string
}

func (e *HashError) Error() string {
	return fmt.Sprintf("verify %s: %s is %s, signed value is %s", e.File, e.What, e.Got, e.Want)
}

// Unwrap makes HashError match ErrUntrusted.
func (e *HashError) Unwrap() error { return ErrUntrusted }

// untrusted wraps a structural problem (malformed manifest, missing role) so
// that it counts as a verification failure.
func untrusted(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUntrusted}, args...)...)
}
