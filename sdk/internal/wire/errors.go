package wire

import (
	"context"
	"errors"
	"io/fs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mirrorkit/mirror/sdk"
)

// errorTable maps each sentinel that crosses the plugin boundary to its gRPC
// code. It is append-only: a row, once released, keeps its code forever,
// because old plugins and hosts decode by it. The first matching row wins,
// so a more specific sentinel must come before a more general one.
var errorTable = []struct {
	err  error
	code codes.Code
}{
	{sdk.ErrNotFound, codes.NotFound},
	{sdk.ErrExist, codes.AlreadyExists},
	{sdk.ErrConflict, codes.Aborted},
	{sdk.ErrIntegrity, codes.DataLoss},
	{sdk.ErrUnsupported, codes.Unimplemented},
	{fs.ErrInvalid, codes.InvalidArgument},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	// Added after the first release: a host from before it takes the code
	// for a broken connection (sdk/host conn.wrap) and still shows the
	// plugin's message, which says how to log in.
	{fs.ErrPermission, codes.PermissionDenied},
}

// ToStatus turns an implementation's error into a gRPC status error whose
// code names the sentinel it wraps (Unknown if none) and whose message is
// the error's own text. A nil error stays nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return status.Error(row.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// RemoteError is an error returned by a plugin. Its text is the plugin's
// original message and it wraps the sentinel its gRPC code stands for, so
// errors.Is works on the host as it would in-process.
type RemoteError struct {
	// Msg is the plugin's error text.
	Msg string
	// Code is the gRPC code the error travelled with.
	Code codes.Code
	// Sentinel is the sdk sentinel for Code, nil for Unknown.
	Sentinel error
}

// Error returns the plugin's message.
func (e *RemoteError) Error() string { return e.Msg }

// Unwrap returns the sentinel, so errors.Is matches it.
func (e *RemoteError) Unwrap() error { return e.Sentinel }

// SentinelFor returns the sentinel error for a gRPC code, nil if none.
func SentinelFor(c codes.Code) error {
	for _, row := range errorTable {
		if row.code == c {
			return row.err
		}
	}
	return nil
}

// FromStatus turns an error from a gRPC call into a *RemoteError. An error
// that is not a gRPC status is returned unchanged; nil stays nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &RemoteError{Msg: s.Message(), Code: s.Code(), Sentinel: SentinelFor(s.Code())}
}
