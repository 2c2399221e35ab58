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

// Class names the kind of a failure with a stable token, so that users,
// scripts and the attack suite can tell a rollback from a bad signature
// without parsing messages. The CLI prints it as "error[CLASS]".
type Class string

// The classes of verification failures, and of the I/O failures the
// packages that fetch manifests (core/repo) report beside them.
const (
	// ClassRollback: a version below the one trusted before (spec 5.3.5,
	// 5.4.3, 5.5.5).
	ClassRollback Class = "rollback"
	// ClassFreeze: a manifest past its expiry (spec 5.3.10, 5.4.4, 5.5.6).
	ClassFreeze Class = "freeze"
	// ClassSignature: a signature that does not verify, a duplicate one,
	// or signatures beyond any sane count.
	ClassSignature Class = "signature"
	// ClassThreshold: too few valid signatures by the role's keys.
	ClassThreshold Class = "threshold"
	// ClassMixAndMatch: a manifest other than the one the snapshot (or the
	// root chain, or the request) pins: another version or component.
	ClassMixAndMatch Class = "mix-and-match"
	// ClassLength: more (or other) bytes than the signed length, endless
	// data, a file beyond its size cap.
	ClassLength Class = "length"
	// ClassHash: content whose digest differs from the signed one.
	ClassHash Class = "hash"
	// ClassRootChain: the root chain cannot be followed: a root that
	// expires earlier than its predecessor, a missing next root the
	// snapshot names, a chain longer than one run may walk.
	ClassRootChain Class = "root-chain"
	// ClassMalformed: a manifest that does not decode strictly or breaks a
	// structural rule (unknown role, bad threshold, key under a wrong ID).
	ClassMalformed Class = "malformed"
	// ClassUnsafePath: a name or URL that would leave its directory.
	ClassUnsafePath Class = "unsafe-path"
	// ClassTransport: the bytes could not be fetched at all. It is not a
	// verification failure and does not wrap ErrUntrusted.
	ClassTransport Class = "transport"
)

// ClassOf returns the class of the outermost classified error in err's
// chain, or "" when none has one.
func ClassOf(err error) Class {
	var c interface{ Class() Class }
	if errors.As(err, &c) {
		return c.Class()
	}
	return ""
}

// Error is a verification failure that needs no fields beyond its class
// and message: a malformed manifest, a broken root chain, an unsafe path.
type Error struct {
	Kind Class
	Msg  string
}

// Errorf returns an *Error of class kind; it wraps ErrUntrusted.
func Errorf(kind Class, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return "untrusted: " + e.Msg }

// Class returns the error's class.
func (e *Error) Class() Class { return e.Kind }

// Unwrap makes Error match ErrUntrusted.
func (e *Error) Unwrap() error { return ErrUntrusted }

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

// Class is ClassSignature for a bad signature, ClassThreshold for too few
// good ones.
func (e *SignatureError) Class() Class {
	if e.Reason != "" {
		return ClassSignature
	}
	return ClassThreshold
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

// Class is ClassFreeze.
func (e *ExpiredError) Class() Class { return ClassFreeze }

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

// Class is ClassRollback for a version below the trusted one ("at least"),
// ClassMixAndMatch for one other than the pinned one ("exactly").
func (e *VersionError) Class() Class {
	if e.Rule == "at least" {
		return ClassRollback
	}
	return ClassMixAndMatch
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

// Class is ClassLength for a length, ClassHash for a digest.
func (e *HashError) Class() Class {
	if e.What == "length" {
		return ClassLength
	}
	return ClassHash
}

// Unwrap makes HashError match ErrUntrusted.
func (e *HashError) Unwrap() error { return ErrUntrusted }

// untrusted wraps a structural problem (malformed manifest, missing role) so
// that it counts as a verification failure of class ClassMalformed.
func untrusted(format string, args ...any) error {
	return Errorf(ClassMalformed, format, args...)
}
