package cli

import (
	"context"
	"errors"
	"io/fs"

	"github.com/mirrorkit/mirror/core/archive"
	"github.com/mirrorkit/mirror/core/mirror"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// errorClass returns the stable token of an error for the "error[CLASS]"
// prefix of the error line: the trust.Class of a verification failure
// (rollback, freeze, signature, threshold, mix-and-match, length, hash,
// root-chain, malformed, unsafe-path), "timeout" or "transport" for a fetch
// that failed, "permission" for access refused (a registry or a signer
// refused the credentials, or the system a file), "" for errors that are
// none of these (usage, not found, conflict, other local I/O). Scripts and the attack suite match the token, never the
// message text after it.
func errorClass(err error) string {
	c := trust.ClassOf(err)
	switch {
	case c != "" && c != trust.ClassTransport:
		return string(c)
	case errors.Is(err, archive.ErrUnsafePath):
		return string(trust.ClassUnsafePath)
	case errors.Is(err, archive.ErrTooLarge):
		return string(trust.ClassLength)
	case errors.Is(err, archive.ErrFormat):
		return string(trust.ClassMalformed)
	case errors.Is(err, sdk.ErrIntegrity):
		return string(trust.ClassHash)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, fs.ErrPermission):
		return classPermission
	case errors.Is(err, mirror.ErrUsage), errors.Is(err, fs.ErrNotExist), errors.Is(err, sdk.ErrConflict):
		return ""
	case c == trust.ClassTransport:
		return string(trust.ClassTransport)
	case errors.Is(err, trust.ErrUntrusted):
		return "untrusted"
	}
	return ""
}

// classPermission is the token of ExitDenied.
const classPermission = "permission"

// errorToken is the prefix of the error line: "error[CLASS]: ", or "" for
// an error without a class.
func errorToken(err error) string {
	if c := errorClass(err); c != "" {
		return "error[" + c + "]: "
	}
	return ""
}
