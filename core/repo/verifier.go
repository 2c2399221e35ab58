package repo

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io"
	"strconv"

	"github.com/mirrorkit/mirror/core/trust"
)

// Verifier streams content while checking it against signed values: it
// fails as soon as more than the signed length arrives (so an endless
// stream cannot fill a disk) and, at EOF, checks the length and every
// signed hash it knows (sha256, sha512). Only when all match does Read
// return io.EOF; otherwise the final Read returns a *trust.HashError.
type Verifier struct {
	r      io.ReadCloser
	file   string
	length uint64
	n      uint64
	want   map[string]string
	hashes map[string]hash.Hash
	err    error
}

// NewVerifier wraps r. Hashes with names other than sha256 and sha512 are
// ignored; at least sha256 should be present, as every TiUP item has it.
func NewVerifier(r io.ReadCloser, file string, length uint64, hashes map[string]string) *Verifier {
	v := &Verifier{r: r, file: file, length: length, want: hashes, hashes: map[string]hash.Hash{}}
	if _, ok := hashes["sha256"]; ok {
		v.hashes["sha256"] = sha256.New()
	}
	if _, ok := hashes["sha512"]; ok {
		v.hashes["sha512"] = sha512.New()
	}
	return v
}

// Read implements io.Reader.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Never ask for more than one byte past the signed length.
	if room := v.length - v.n + 1; uint64(len(p)) > room {
		p = p[:room]
	}
	n, err := v.r.Read(p)
	v.n += uint64(n)
	if v.n > v.length {
		v.err = &trust.HashError{File: v.file, What: "length", Want: "at most " + strconv.FormatUint(v.length, 10), Got: "more"}
		return 0, v.err
	}
	for _, h := range v.hashes {
		h.Write(p[:n])
	}
	if err == io.EOF {
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	}
	if err != nil {
		// A read that breaks off is a transport failure, not a
		// verification one; the class lets the CLI say which.
		v.err = &FetchError{Key: v.file, Err: err}
		return n, v.err
	}
	return n, nil
}

func (v *Verifier) check() error {
	if v.n != v.length {
		return &trust.HashError{File: v.file, What: "length", Want: strconv.FormatUint(v.length, 10), Got: strconv.FormatUint(v.n, 10)}
	}
	if len(v.hashes) == 0 {
		return &trust.HashError{File: v.file, What: "sha256", Want: "a signed hash", Got: "none signed"}
	}
	for name, h := range v.hashes {
		if got := hex.EncodeToString(h.Sum(nil)); got != v.want[name] {
			return &trust.HashError{File: v.file, What: name, Want: v.want[name], Got: got}
		}
	}
	return nil
}

// Close closes the underlying reader.
func (v *Verifier) Close() error { return v.r.Close() }

// Drain reads what is left and returns nil only when the whole content
// verified. Consumers that stop before EOF (a tar reader stops at the
// end-of-archive marker) call it before trusting what they read.
func (v *Verifier) Drain() error {
	_, err := io.Copy(io.Discard, v)
	return err
}
