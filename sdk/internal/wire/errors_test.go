package wire

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mirrorkit/mirror/sdk"
)

func TestErrorTable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		is   error
	}{
		{"not found", sdk.ErrNotFound, codes.NotFound, sdk.ErrNotFound},
		{"exist", sdk.ErrExist, codes.AlreadyExists, sdk.ErrExist},
		{"conflict", sdk.ErrConflict, codes.Aborted, sdk.ErrConflict},
		{"integrity", sdk.ErrIntegrity, codes.DataLoss, sdk.ErrIntegrity},
		{"unsupported", sdk.ErrUnsupported, codes.Unimplemented, sdk.ErrUnsupported},
		{"invalid", fs.ErrInvalid, codes.InvalidArgument, fs.ErrInvalid},
		{"canceled", context.Canceled, codes.Canceled, context.Canceled},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, context.DeadlineExceeded},
		{"permission", fmt.Errorf("registry r needs credentials: %w", fs.ErrPermission), codes.PermissionDenied, fs.ErrPermission},
		{"wrapped twice", fmt.Errorf("get a: %w", fmt.Errorf("open: %w", sdk.ErrNotFound)), codes.NotFound, sdk.ErrNotFound},
		{"anything else", errors.New("disk on fire"), codes.Unknown, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ToStatus(tt.err)
			if got := status.Code(st); got != tt.code {
				t.Fatalf("ToStatus code = %v, want %v", got, tt.code)
			}
			back := FromStatus(st)
			if back.Error() != tt.err.Error() {
				t.Errorf("message = %q, want %q", back.Error(), tt.err.Error())
			}
			if tt.is != nil && !errors.Is(back, tt.is) {
				t.Errorf("%v does not wrap %v", back, tt.is)
			}
			if tt.is == nil && errors.Unwrap(back) != nil {
				t.Errorf("unknown error unwraps to %v", errors.Unwrap(back))
			}
		})
	}
	if ToStatus(nil) != nil || FromStatus(nil) != nil {
		t.Error("nil errors must stay nil")
	}
	plain := errors.New("plain")
	if FromStatus(plain) != plain {
		t.Error("FromStatus changed a non-status error")
	}
}
