package ocibackend

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// The "registry lost the upload" advice follows the status and the
// registry's error codes, never digits that happen to be in the address.
func TestLostUploadHint(t *testing.T) {
	onPort := errors.New("registry 127.0.0.1:41623 answered 500 Internal Server Error")
	if h := lostUploadHint(http.StatusInternalServerError, onPort); h != "" {
		t.Errorf("a 500 from port 41623 got the lost-upload hint %q", h)
	}
	if h := lostUploadHint(http.StatusRequestedRangeNotSatisfiable, onPort); !strings.Contains(h, "lost the upload") {
		t.Errorf("a 416 got %q", h)
	}
	unknown := errors.New("registry 127.0.0.1:5000: BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry")
	if h := lostUploadHint(http.StatusNotFound, unknown); !strings.Contains(h, "lost the upload") {
		t.Errorf("BLOB_UPLOAD_UNKNOWN got %q", h)
	}
}
