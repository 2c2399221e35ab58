package ocibackend

import (
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mirrorkit/mirror/sdk"
)

// blobReader streams a blob and checks it against its descriptor: never
// more than its size, and at the end exactly its size and, unless h is nil
// (the caller verifies the content), its digest.
type blobReader struct {
	body io.ReadCloser
	key  string
	want v1.Hash
	size int64
	h    hash.Hash
	n    int64
	err  error // sticky
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if rem := r.size - r.n + 1; int64(len(p)) > rem {
		// Read at most one byte past the size, enough to see an overlong blob.
		p = p[:rem]
	}
	n, err := r.body.Read(p)
	if r.h != nil {
		r.h.Write(p[:n])
	}
	r.n += int64(n)
	switch {
	case r.n > r.size:
		r.err = fmt.Errorf("get %s: the registry sent more than the %d bytes of blob %s: %w", r.key, r.size, r.want, sdk.ErrIntegrity)
		return n - int(r.n-r.size), r.err
	case err == io.EOF:
		if r.n != r.size {
			r.err = fmt.Errorf("get %s: the registry sent %d of the %d bytes of blob %s: %w", r.key, r.n, r.size, r.want, sdk.ErrIntegrity)
			return n, r.err
		}
		if r.h == nil {
			r.err = io.EOF
			return n, r.err
		}
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want.Hex {
			r.err = fmt.Errorf("get %s: the registry sent bytes of sha256 %s for blob %s: %w", r.key, got[:12], r.want, sdk.ErrIntegrity)
			return n, r.err
		}
		r.err = io.EOF
	case err != nil:
		r.err = fmt.Errorf("get %s: %w", r.key, err)
	}
	return n, r.err
}

func (r *blobReader) Close() error { return r.body.Close() }
