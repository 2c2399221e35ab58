package ocibackend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mirrorkit/mirror/sdk"
)

// blob is an uploaded (or already present) blob.
type blob struct {
	digest v1.Hash
	size   int64
}

// checkedReader reads a Put's source the way PutOptions asks: at most one
// byte past the expected size, hashing on the way; verify then says whether
// the whole stream matched.
type checkedReader struct {
	r    io.Reader
	opts sdk.PutOptions
	op   string // "put KEY" or "stage", leading every error
	h    hash.Hash
	n    int64
	eof  bool  // the source ended
	err  error // sticky: the source ran past the size
}

func newCheckedReader(op string, r io.Reader, opts sdk.PutOptions) *checkedReader {
	if opts.SizeKnown {
		r = io.LimitReader(r, opts.Size+1)
	}
	return &checkedReader{r: r, opts: opts, op: op, h: sha256.New()}
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.opts.SizeKnown && c.n > c.opts.Size {
		c.err = fmt.Errorf("%s: %d bytes or more, want %d: %w", c.op, c.n, c.opts.Size, sdk.ErrIntegrity)
		return n, c.err
	}
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// verify checks the stream read to its end against the options and returns
// its digest.
func (c *checkedReader) verify() (v1.Hash, error) {
	if c.err != nil {
		return v1.Hash{}, c.err
	}
	sum := hex.EncodeToString(c.h.Sum(nil))
	if c.opts.SizeKnown && c.n != c.opts.Size {
		return v1.Hash{}, fmt.Errorf("%s: %d bytes, want %d: %w", c.op, c.n, c.opts.Size, sdk.ErrIntegrity)
	}
	if c.opts.SHA256 != "" && sum != c.opts.SHA256 {
		return v1.Hash{}, fmt.Errorf("%s: sha256 %s, want %s: %w", c.op, sum[:12], c.opts.SHA256[:12], sdk.ErrIntegrity)
	}
	return v1.Hash{Algorithm: "sha256", Hex: sum}, nil
}

// atEOF makes sure the source has no byte left: an HTTP body of known
// length is read only up to that length.
func (c *checkedReader) atEOF() error {
	if c.eof {
		return nil
	}
	var one [1]byte
	n, err := c.Read(one[:])
	if n > 0 || c.err != nil {
		if c.err != nil {
			return c.err
		}
		return fmt.Errorf("%s: more than %d bytes: %w", c.op, c.n-1, sdk.ErrIntegrity)
	}
	if err != nil && err != io.EOF {
		return readError(c.op, err)
	}
	return nil
}

// drain reads the rest of the stream and verifies it: the path of a blob the
// registry already has, whose bytes need not travel but must still be the
// bytes the caller claimed.
func (c *checkedReader) drain() (blob, error) {
	if _, err := io.Copy(io.Discard, c); err != nil {
		return blob{}, readError(c.op, err)
	}
	d, err := c.verify()
	if err != nil {
		return blob{}, err
	}
	return blob{digest: d, size: c.n}, nil
}

// readError wraps an error reading a Put's source.
func readError(op string, err error) error {
	if errors.Is(err, sdk.ErrIntegrity) {
		return err
	}
	return fmt.Errorf("%s: read the content: %w", op, err)
}

// putBlob stores the stream as a blob of the repository and returns it,
// holding at most 1 MiB of it in memory (two chunks in chunked mode); op,
// "put KEY" or "stage", leads every error. When the caller knows the
// digest, a blob the repository already has, or that can be mounted from
// another repository of the registry, is not uploaded again. Nothing is
// tagged here: a failed or mismatching upload leaves at most an unreferenced
// upload, which the registry discards.
func (b *Backend) putBlob(ctx context.Context, op string, r io.Reader, opts sdk.PutOptions) (blob, error) {
	cr := newCheckedReader(op, r, opts)
	var loc string
	if opts.SHA256 != "" {
		d := v1.Hash{Algorithm: "sha256", Hex: opts.SHA256}
		if ok, err := b.hasBlob(ctx, b.c.url("blobs/"+d.String())); err != nil {
			return blob{}, fmt.Errorf("%s: %w", op, err)
		} else if ok {
			return cr.drain()
		}
		mounted, session, err := b.mount(ctx, d)
		if err != nil {
			return blob{}, fmt.Errorf("%s: %w", op, err)
		}
		if mounted {
			return cr.drain()
		}
		loc = session
	}
	if loc == "" {
		var err error
		if _, loc, err = b.postUpload(ctx, b.c.url("blobs/uploads/")); err != nil {
			return blob{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	bl, err := b.upload(ctx, op, cr, loc)
	if err != nil {
		b.abortUpload(ctx, loc)
		return blob{}, err
	}
	return bl, nil
}

// hasBlob reports whether the blob at url exists.
func (b *Backend) hasBlob(ctx context.Context, url string) (bool, error) {
	_, ok, err := b.blobSize(ctx, url)
	return ok, err
}

// blobSize reports whether the blob at url exists and its length, -1 when
// the registry does not say.
func (b *Backend) blobSize(ctx context.Context, url string) (size int64, ok bool, err error) {
	resp, err := b.c.do(ctx, request{method: http.MethodHead, url: url})
	if err != nil {
		return 0, false, err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return 0, false, nil
	}
	if err := b.c.expect(resp, http.StatusOK); err != nil {
		return 0, false, err
	}
	resp.Body.Close()
	return resp.ContentLength, true, nil
}

// mount tries to link blob d into the repository without uploading it: from
// each mount-from repository that has it, and else with a mount request
// naming no source, which OCI 1.1 lets a registry satisfy from any
// repository it knows (and which distribution 2.8 answers by starting an
// ordinary upload, returned in loc so it is used rather than wasted).
func (b *Backend) mount(ctx context.Context, d v1.Hash) (mounted bool, loc string, err error) {
	for _, from := range b.c.mountFrom {
		ok, err := b.hasBlob(ctx, b.c.repoURL(from, "blobs/"+d.String()))
		if err != nil || !ok {
			// A source we may not read, or without the blob, is skipped: the
			// upload still works.
			continue
		}
		u := b.c.url("blobs/uploads/") + "?mount=" + d.String() + "&from=" + from.RepositoryStr()
		mounted, loc, err := b.postUpload(ctx, u)
		if err != nil || mounted {
			return mounted, loc, err
		}
		if loc != "" {
			b.abortUpload(ctx, loc)
		}
	}
	mounted, loc, err = b.postUpload(ctx, b.c.url("blobs/uploads/")+"?mount="+d.String())
	if err != nil && ctx.Err() == nil && !errors.Is(err, fs.ErrPermission) {
		// A registry that takes a mount without a source for a bad
		// request still takes a plain upload.
		return b.postUpload(ctx, b.c.url("blobs/uploads/"))
	}
	return mounted, loc, err
}

// postUpload sends the POST that starts an upload (or mounts: 201).
func (b *Backend) postUpload(ctx context.Context, url string) (mounted bool, loc string, err error) {
	resp, err := b.c.do(ctx, request{method: http.MethodPost, url: url, body: []byte{}})
	if err != nil {
		return false, "", err
	}
	if err := b.c.expect(resp, http.StatusCreated, http.StatusAccepted); err != nil {
		return false, "", fmt.Errorf("start upload: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return true, "", nil
	}
	loc, err = location(resp)
	return false, loc, err
}

// abortUpload cancels an upload session, best effort: a registry discards
// abandoned sessions anyway.
func (b *Backend) abortUpload(ctx context.Context, loc string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if resp, err := b.c.do(ctx, request{method: http.MethodDelete, url: loc}); err == nil {
		resp.Body.Close()
	}
}

// smallObject is the most a Put holds in memory to send in one request
// that can be retried as a whole; every signed manifest is smaller.
const smallObject = 1 << 20

// upload sends cr to the upload session at loc and commits the blob once the
// whole stream has matched the options. A stream of up to smallObject bytes
// goes in the committing PUT itself. A longer one is streamed in one PATCH,
// as crane does, by default, or in chunks when the chunk-size option is set.
func (b *Backend) upload(ctx context.Context, op string, cr *checkedReader, loc string) (blob, error) {
	size := int64(smallObject)
	if cr.opts.SizeKnown && cr.opts.Size+1 < size {
		size = cr.opts.Size + 1
	}
	head := make([]byte, size)
	n, err := io.ReadFull(cr, head)
	head = head[:n]
	switch {
	case cr.err != nil:
		return blob{}, cr.err // past the size (io.ReadFull drops that error)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return b.commit(ctx, op, cr, loc, 0, head)
	case err != nil:
		return blob{}, readError(op, err)
	}
	src := io.MultiReader(bytes.NewReader(head), cr)
	if b.chunkSize > 0 {
		return b.uploadChunks(ctx, op, cr, src, loc)
	}
	return b.uploadStream(ctx, op, cr, src, loc)
}

// commit verifies the stream, read to its end, and sends the closing PUT
// with the digest and the last bytes (offset is where they start).
func (b *Backend) commit(ctx context.Context, op string, cr *checkedReader, loc string, offset int64, last []byte) (blob, error) {
	d, err := cr.verify()
	if err != nil {
		return blob{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := b.finishUpload(ctx, loc, d, offset, last); err != nil {
		return blob{}, fmt.Errorf("%s: %w", op, err)
	}
	return blob{digest: d, size: cr.n}, nil
}

// uploadStream sends the whole stream in one PATCH (with its length when
// known). Its body cannot be replayed, so a failure fails the Put, with
// nothing tagged; a run again starts over.
func (b *Backend) uploadStream(ctx context.Context, op string, cr *checkedReader, src io.Reader, loc string) (blob, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	length := int64(-1)
	if cr.opts.SizeKnown {
		length = cr.opts.Size
	}
	resp, err := b.c.do(ctx, request{method: http.MethodPatch, url: loc, header: h, stream: src, length: length})
	if err == nil {
		if err = b.c.expect(resp, http.StatusAccepted, http.StatusNoContent, http.StatusCreated); err == nil {
			resp.Body.Close()
			loc, err = location(resp)
		}
	}
	if cr.err != nil {
		return blob{}, cr.err
	}
	if err != nil {
		if ctx.Err() != nil {
			return blob{}, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if cr.eof {
			// A stream shorter than its size fails the request itself.
			if _, verr := cr.verify(); verr != nil {
				return blob{}, verr
			}
		}
		return blob{}, fmt.Errorf("%s: upload: %w%s", op, err, runAgainHint(err))
	}
	if err := cr.atEOF(); err != nil {
		return blob{}, err
	}
	return b.commit(ctx, op, cr, loc, 0, nil)
}

// runAgainHint tells what to do after an upload broke off for a reason
// that may pass.
func runAgainHint(err error) string {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, sdk.ErrUnsupported) {
		return ""
	}
	return "; nothing was stored, run again"
}

// chunk is a piece of the stream, read ahead while the previous one is
// being sent.
type chunk struct {
	buf  []byte // from the pool, returned after sending
	data []byte
	last bool
	err  error
}

// uploadChunks streams src to the session in chunks of the configured
// size: every chunk but the last goes in a PATCH with its Content-Range, and
// is sent again when the registry answers 429 or 5xx; the last goes in the
// closing PUT. A second chunk is read from the source while the first is on
// the wire, so reading and sending overlap and memory stays at two chunks.
func (b *Backend) uploadChunks(ctx context.Context, op string, cr *checkedReader, src io.Reader, loc string) (blob, error) {
	ctx, cancel := context.WithCancel(ctx)
	chunks := make(chan chunk)
	free := make(chan []byte, 2)
	free <- nil
	free <- nil
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(chunks)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			if buf == nil {
				buf = b.getChunkBuffer()
			}
			n, err := io.ReadFull(src, buf)
			c := chunk{buf: buf, data: buf[:n]}
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				c.last = true
			case err != nil:
				c.err = readError(op, err)
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				b.putChunkBuffer(buf)
				return
			}
			if c.last || c.err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		// Wait for the reader so the source is never read after Put
		// returns; it stops at its next chunk.
		for c := range chunks {
			b.putChunkBuffer(c.buf)
		}
		<-readerDone
		for len(free) > 0 {
			b.putChunkBuffer(<-free)
		}
	}()

	var offset int64
	for c := range chunks {
		if c.err != nil {
			b.putChunkBuffer(c.buf)
			return blob{}, c.err
		}
		if c.last {
			defer b.putChunkBuffer(c.buf)
			return b.commit(ctx, op, cr, loc, offset, c.data)
		}
		next, err := b.patchChunk(ctx, loc, offset, c.data)
		free <- c.buf
		if err != nil {
			return blob{}, fmt.Errorf("%s: %w", op, err)
		}
		loc = next
		offset += int64(len(c.data))
	}
	// The reader stopped without a last chunk: ctx was cancelled.
	return blob{}, fmt.Errorf("%s: %w", op, context.Cause(ctx))
}

// patchChunk sends one chunk and returns the location for the next request.
func (b *Backend) patchChunk(ctx context.Context, loc string, offset int64, data []byte) (string, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+int64(len(data))-1))
	resp, err := b.c.do(ctx, request{method: http.MethodPatch, url: loc, header: h, body: data})
	if err != nil {
		return "", fmt.Errorf("upload bytes %d-: %w", offset, err)
	}
	if err := b.c.expect(resp, http.StatusAccepted, http.StatusNoContent, http.StatusCreated); err != nil {
		return "", fmt.Errorf("upload bytes %d-: %w%s", offset, err, lostUploadHint(resp.StatusCode, err))
	}
	resp.Body.Close()
	return location(resp)
}

// finishUpload sends the last chunk with the digest; the registry checks the
// digest and commits the blob.
func (b *Backend) finishUpload(ctx context.Context, loc string, d v1.Hash, offset int64, data []byte) error {
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	if len(data) > 0 && offset > 0 {
		h.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+int64(len(data))-1))
	}
	resp, err := b.c.do(ctx, request{method: http.MethodPut, url: withQuery(loc, "digest", d.String()), header: h, body: data})
	if err != nil {
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := b.c.expect(resp, http.StatusCreated, http.StatusNoContent, http.StatusAccepted); err != nil {
		return fmt.Errorf("commit blob %s: %w%s", d, err, lostUploadHint(resp.StatusCode, err))
	}
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("commit blob %s: the registry stored %s: %w", d, got, sdk.ErrIntegrity)
	}
	return nil
}

// lostUploadHint explains an upload session the registry no longer knows:
// it restarted, or a retried chunk found part of itself already taken.
func lostUploadHint(status int, err error) string {
	lost := status == http.StatusRequestedRangeNotSatisfiable
	for _, code := range []transport.ErrorCode{transport.BlobUploadUnknownErrorCode, transport.BlobUploadInvalidErrorCode} {
		lost = lost || strings.Contains(err.Error(), string(code))
	}
	if lost {
		return "; the registry lost the upload (did it restart?), nothing was stored: run again"
	}
	return ""
}

// getChunkBuffer returns a buffer of the configured chunk size.
func (b *Backend) getChunkBuffer() []byte {
	if p, ok := b.chunkPool.Get().(*[]byte); ok && len(*p) == b.chunkSize {
		return *p
	}
	return make([]byte, b.chunkSize)
}

func (b *Backend) putChunkBuffer(buf []byte) {
	if len(buf) == b.chunkSize && b.chunkSize > 0 {
		b.chunkPool.Put(&buf)
	}
}
