package repo

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mirrorkit/mirror/core/trust"
)

const (
	// chunkSize caps one read from the source and is the unit handed to
	// the hashers. At 1 MiB (one message of the plugin protocol, 1 ms of
	// sha512) the hand-over costs about 3% more CPU than hashing in the
	// reader did; at 256 KiB it cost 12% (BenchmarkVerifierDrain).
	chunkSize = 1 << 20
	// chunksInFlight bounds the chunks one Verifier holds at once, read
	// but not yet hashed or not yet handed to the caller: 4 MiB in all. A
	// reader that gets ahead of the slowest hash waits for a free chunk.
	chunksInFlight = 4
)

// chunkPool keeps full-size chunks between Verifiers, so that verifying
// many tarballs in a row (clone, verify) does not allocate and fault in
// 4 MiB for each.
var chunkPool = sync.Pool{New: func() any { return &chunk{buf: make([]byte, chunkSize)} }}

// errClosed is the cause of a FetchError from a Read after Close.
var errClosed = errors.New("read after the verifier was closed")

// Verifier streams content while checking it against signed values: it
// fails as soon as more than the signed length arrives (so an endless
// stream cannot fill a disk) and, at EOF, checks the length and every
// signed hash it knows (sha256, sha512). Only when all match does Read
// return io.EOF; otherwise the final Read returns a *trust.HashError, and
// a source that fails mid-stream gives a *FetchError.
//
// Each hash runs in its own goroutine on chunks the Verifier reads into
// buffers it owns, so hashing overlaps with what the caller does with the
// data and sha256 overlaps with sha512, instead of both running in the
// caller's Read. The goroutines end at EOF, at the first error, or at
// Close; a Verifier that is dropped unfinished and unclosed stops them
// when it is garbage collected.
type Verifier struct {
	r      io.ReadCloser
	file   string
	length uint64
	n      uint64 // bytes read from r
	want   map[string]string
	pipe   *hashPipe
	// cur is the chunk being handed out by Read, from offset off.
	cur *chunk
	off int
	// err is the outcome once the source has ended: io.EOF when all
	// verified, otherwise the error every later Read returns.
	err error
}

// NewVerifier wraps r. Hashes with names other than sha256 and sha512 are
// ignored; at least sha256 should be present, as every TiUP item has it.
// The caller must Close the Verifier.
func NewVerifier(r io.ReadCloser, file string, length uint64, hashes map[string]string) *Verifier {
	v := &Verifier{r: r, file: file, length: length, want: hashes}
	// A small tarball needs no more than one buffer of its own size.
	size := uint64(chunkSize)
	if length < size {
		size = length + 1
	}
	v.pipe = newHashPipe(int(size))
	for _, name := range []string{"sha256", "sha512"} {
		if _, ok := hashes[name]; ok {
			v.pipe.start(name)
		}
	}
	// The hashers reference the pipe, never the Verifier, so a Verifier
	// its user forgot can still be collected, and then stops them.
	runtime.AddCleanup(v, (*hashPipe).stopHashers, v.pipe)
	return v
}

// Read implements io.Reader. The data of the final Read was not verified
// until that Read returns io.EOF.
func (v *Verifier) Read(p []byte) (int, error) {
	for v.cur == nil {
		if v.err != nil {
			v.pipe.recycle()
			return 0, v.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		v.cur, v.off = v.next(), 0
		if v.cur == nil && v.err == nil {
			return 0, nil // the source returned nothing, and no error
		}
	}
	n := copy(p, v.cur.data[v.off:])
	v.off += n
	if v.off < len(v.cur.data) {
		return n, nil
	}
	v.pipe.release(v.cur)
	v.cur = nil
	if v.err != nil {
		v.pipe.recycle()
	}
	return n, v.err
}

// WriteTo implements io.WriterTo, so io.Copy from a Verifier writes its
// chunks as they are instead of copying them through a buffer of its own.
// It returns nil only when the whole content verified.
func (v *Verifier) WriteTo(w io.Writer) (int64, error) {
	var written int64
	for {
		if v.cur == nil {
			if v.err != nil {
				v.pipe.recycle()
				if v.err == io.EOF {
					return written, nil
				}
				return written, v.err
			}
			v.cur, v.off = v.next(), 0
			continue
		}
		m, err := w.Write(v.cur.data[v.off:])
		written += int64(m)
		v.off += m
		if err == nil && v.off < len(v.cur.data) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return written, err
		}
		v.pipe.release(v.cur)
		v.cur = nil
	}
}

// next reads the next chunk from the source and hands it to the hashers;
// it returns nil when the source returned no data. When the source ends
// it sets v.err: io.EOF once the content verified, else the error.
func (v *Verifier) next() *chunk {
	c, ok := v.pipe.get()
	if !ok {
		v.err = &FetchError{Key: v.file, Err: errClosed}
		return nil
	}
	// Never ask for more than one byte past the signed length. (room is
	// 0 only when it overflowed: the signed length is the largest there is.)
	buf := c.buf
	if room := v.length - v.n + 1; room != 0 && uint64(len(buf)) > room {
		buf = buf[:room]
	}
	n, err := v.r.Read(buf)
	v.n += uint64(n)
	if v.n > v.length {
		v.pipe.stop()
		v.err = &trust.HashError{File: v.file, What: "length", Want: "at most " + strconv.FormatUint(v.length, 10), Got: "more"}
		return nil
	}
	c.data = buf[:n]
	if n == 0 {
		v.pipe.put(c)
		c = nil
	} else if !v.pipe.send(c) {
		v.err = &FetchError{Key: v.file, Err: errClosed}
		return nil
	}
	switch {
	case err == io.EOF:
		v.err = v.check()
	case err != nil:
		// A read that breaks off is a transport failure, not a
		// verification one; the class lets the CLI say which.
		v.pipe.stop()
		v.err = &FetchError{Key: v.file, Err: err}
	}
	return c
}

// check waits for the hashers to finish and judges length and hashes,
// sha256 first, so that the error names the same hash every time.
func (v *Verifier) check() error {
	if v.n != v.length {
		v.pipe.stop()
		return &trust.HashError{File: v.file, What: "length", Want: strconv.FormatUint(v.length, 10), Got: strconv.FormatUint(v.n, 10)}
	}
	if len(v.pipe.hashers) == 0 {
		return &trust.HashError{File: v.file, What: "sha256", Want: "a signed hash", Got: "none signed"}
	}
	sums, ok := v.pipe.finish()
	if !ok {
		return &FetchError{Key: v.file, Err: errClosed}
	}
	for i, h := range v.pipe.hashers {
		if got := hex.EncodeToString(sums[i]); got != v.want[h.name] {
			return &trust.HashError{File: v.file, What: h.name, Want: v.want[h.name], Got: got}
		}
	}
	return io.EOF
}

// Close closes the underlying reader and stops the hashers. A Read after
// Close fails with a *FetchError.
func (v *Verifier) Close() error {
	err := v.r.Close()
	v.pipe.stop()
	v.pipe.recycle()
	return err
}

// Drain reads what is left and returns nil only when the whole content
// verified. Consumers that stop before EOF (a tar reader stops at the
// end-of-archive marker) call it before trusting what they read.
func (v *Verifier) Drain() error {
	_, err := v.WriteTo(io.Discard)
	return err
}

// chunk is one read of the source. It is shared, read-only, by every
// hasher and by the Verifier's caller; the last of them to be done with
// it returns it to the free list.
type chunk struct {
	buf  []byte
	data []byte // buf[:n], what the read returned
	refs atomic.Int32
}

// hashPipe feeds chunks to one goroutine per hash. Only the Verifier's
// reading goroutine calls get, put, send and finish; stop may come from
// any goroutine (Close, or the garbage collector's cleanup).
type hashPipe struct {
	hashers []*hasher
	size    int
	made    int         // chunks allocated so far, at most chunksInFlight
	free    chan *chunk // room for every chunk, so returning one never blocks
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type hasher struct {
	name string
	in   chan *chunk
	sum  chan []byte
}

func newHashPipe(size int) *hashPipe {
	return &hashPipe{size: size, free: make(chan *chunk, chunksInFlight), done: make(chan struct{})}
}

// start launches the goroutine that computes the named hash.
func (p *hashPipe) start(name string) {
	var h hash.Hash
	switch name {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	}
	hs := &hasher{name: name, in: make(chan *chunk, chunksInFlight), sum: make(chan []byte, 1)}
	p.hashers = append(p.hashers, hs)
	p.wg.Go(func() {
		for {
			select {
			case c, ok := <-hs.in:
				if !ok {
					hs.sum <- h.Sum(nil)
					return
				}
				h.Write(c.data)
				p.release(c)
			case <-p.done:
				return
			}
		}
	})
}

// get returns a free chunk, allocating one while fewer than chunksInFlight
// exist, else waiting until a hasher or the caller is done with one. It
// reports false once the pipe is stopped.
func (p *hashPipe) get() (*chunk, bool) {
	// A stopped pipe wins over a free chunk: after Close a Read must fail
	// with errClosed, not read the closed source again.
	select {
	case <-p.done:
		return nil, false
	default:
	}
	select {
	case c := <-p.free:
		return c, true
	case <-p.done:
		return nil, false
	default:
	}
	if p.made < chunksInFlight {
		p.made++
		if p.size == chunkSize {
			return chunkPool.Get().(*chunk), true
		}
		return &chunk{buf: make([]byte, p.size)}, true
	}
	select {
	case c := <-p.free:
		return c, true
	case <-p.done:
		return nil, false
	}
}

// put returns a chunk nobody else holds.
func (p *hashPipe) put(c *chunk) { p.free <- c }

// send hands c to every hasher; the caller holds one more reference,
// which it gives up with release. It reports false once the pipe is
// stopped.
func (p *hashPipe) send(c *chunk) bool {
	c.refs.Store(int32(len(p.hashers)) + 1)
	for _, h := range p.hashers {
		select {
		case h.in <- c:
		case <-p.done:
			return false
		}
	}
	return true
}

func (p *hashPipe) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c
	}
}

// finish waits until every chunk sent is hashed and returns the sums, in
// the order of p.hashers, or false if the pipe was stopped meanwhile.
func (p *hashPipe) finish() ([][]byte, bool) {
	sums := make([][]byte, len(p.hashers))
	for _, h := range p.hashers {
		close(h.in)
	}
	for i, h := range p.hashers {
		select {
		case sums[i] = <-h.sum:
		case <-p.done:
			return nil, false
		}
	}
	p.wg.Wait()
	return sums, true
}

// recycle gives the pool the chunks on the free list, which nobody holds:
// the last of a chunk's holders put it there. It is called once the stream
// has ended, and by Close; chunks released later are left to the garbage
// collector.
func (p *hashPipe) recycle() {
	for {
		select {
		case c := <-p.free:
			if len(c.buf) == chunkSize {
				c.data = nil
				chunkPool.Put(c)
			}
		default:
			return
		}
	}
}

// stop ends the hashers, abandoning what they had not hashed yet, and
// waits for them to return.
func (p *hashPipe) stop() {
	p.stopHashers()
	p.wg.Wait()
}

// stopHashers tells the hashers to return without waiting for them.
func (p *hashPipe) stopHashers() {
	p.once.Do(func() { close(p.done) })
}
