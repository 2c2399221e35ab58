package server

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// Small files (every manifest) are served from memory. Clients ask for
// timestamp.json and the other manifests far more often than for
// tarballs, and for a file of a few KiB the open, fstat, read and close
// (and the 32 KiB copy buffer behind them) cost more than the request
// itself. A cached copy is served only while a stat of its path still
// shows the same inode, size and modification time: the fs backend
// replaces a file by renaming a new one over it, which always changes the
// inode, so a stale copy is never served.
const (
	// smallFileMax is the largest file kept in memory.
	smallFileMax = 256 << 10
	// smallCacheMax bounds the memory all copies take together.
	smallCacheMax = 64 << 20
)

// fileID is what must be unchanged for a cached copy to still be the file.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: fi.Size(), mtime: fi.ModTime()}, true
}

type cachedFile struct {
	id   fileID
	data []byte
	// watched says the directory watch vouches for the copy: it is served
	// without a stat until an event for its name drops it.
	watched bool
	// header holds the answer's headers, made once: a plain GET of a
	// cached file then costs no formatting at all. The slices are shared
	// by every answer and never changed.
	header http.Header
}

// smallCache holds the bytes of small files by key.
type smallCache struct {
	mu    sync.RWMutex
	files map[string]*cachedFile
	bytes int64
	// changes counts the directory watch's invalidations: a copy read
	// while one happened is not marked watched, as the event may have been
	// about the very bytes read.
	changes uint64
}

// getWatched returns key's copy when the directory watch vouches for it.
func (c *smallCache) getWatched(key string) *cachedFile {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if f := c.files[key]; f != nil && f.watched {
		return f
	}
	return nil
}

func (c *smallCache) changeCount() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changes
}

// invalidate drops the copy of name after a change to it.
func (c *smallCache) invalidate(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes++
	if f := c.files[name]; f != nil {
		c.bytes -= int64(len(f.data))
		delete(c.files, name)
	}
}

// invalidateAll drops every copy.
func (c *smallCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes++
	clear(c.files)
	c.bytes = 0
}

func (c *smallCache) get(key string, id fileID) *cachedFile {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if f := c.files[key]; f != nil && f.id == id {
		return f
	}
	return nil
}

// put stores a copy; watched asks for it to be vouched for by the
// directory watch, granted only when no change came in since changes0.
func (c *smallCache) put(key string, id fileID, data []byte, watched bool, changes0 uint64) *cachedFile {
	f := &cachedFile{id: id, data: data, header: http.Header{}}
	rec := headerRecorder(f.header)
	setHeaders(rec, key, sdk.ObjectInfo{Key: key, Size: int64(len(data)), ModTime: id.mtime})
	f.header.Set("Last-Modified", id.mtime.UTC().Format(http.TimeFormat))
	f.header.Set("Content-Length", strconv.Itoa(len(data)))
	f.header.Set("Accept-Ranges", "bytes")
	c.mu.Lock()
	defer c.mu.Unlock()
	f.watched = watched && c.changes == changes0
	if c.files == nil {
		c.files = map[string]*cachedFile{}
	}
	if old := c.files[key]; old != nil {
		c.bytes -= int64(len(old.data))
	}
	if c.bytes+int64(len(data)) > smallCacheMax {
		// Rarely reached (a mirror's manifests are a few MiB): start over
		// rather than track recency.
		clear(c.files)
		c.bytes = 0
	}
	c.files[key] = f
	c.bytes += int64(len(data))
	return f
}

// headerRecorder lets setHeaders fill a plain header map.
type headerRecorder http.Header

func (h headerRecorder) Header() http.Header       { return http.Header(h) }
func (h headerRecorder) Write([]byte) (int, error) { return 0, nil }
func (h headerRecorder) WriteHeader(int)           {}

// serveDir answers for key from the mirror's directory: small files from
// the cache (filling it on a miss), others by streaming the open file.
func (s *Server) serveDir(w http.ResponseWriter, r *http.Request, key string) {
	if s.watch.ok() {
		if f := s.small.getWatched(key); f != nil {
			s.serveCached(w, r, key, f)
			return
		}
	}
	fi, err := s.dir.Stat(key)
	if err == nil && fi.Mode().IsRegular() && fi.Size() <= smallFileMax {
		if id, ok := idOf(fi); ok {
			if f := s.small.get(key, id); f != nil {
				s.serveCached(w, r, key, f)
				return
			}
		}
	}
	// Apply the changes queued so far before reading the disk; see
	// dirWatch.
	s.watch.drain()
	changes0 := s.small.changeCount()
	f, fi, err := s.openDir(key)
	if err != nil {
		s.backendError(w, key, err)
		return
	}
	info := sdk.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	if info.Size > smallFileMax {
		s.serveFile(w, r, key, f, info, nil)
		return
	}
	defer f.Close()
	// Read what the open file holds and key the copy by that file's own
	// identity, so bytes and identity always agree.
	data, err := io.ReadAll(io.LimitReader(f, smallFileMax+1))
	if err == nil && int64(len(data)) != info.Size {
		err = fmt.Errorf("read %s: the file changed while being read", key)
	}
	if err != nil {
		s.backendError(w, key, err)
		return
	}
	if id, ok := idOf(fi); ok {
		s.serveCached(w, r, key, s.small.put(key, id, data, s.watchable(key), changes0))
		return
	}
	s.serveBytes(w, r, data, info)
}

// serveCached answers with a cached file. A plain GET or HEAD (the
// clients' every request) gets the ready-made headers; anything
// conditional or ranged goes through http.ServeContent.
func (s *Server) serveCached(w http.ResponseWriter, r *http.Request, key string, f *cachedFile) {
	rh := r.Header
	if rh.Get("Range") != "" || rh.Get("If-None-Match") != "" || rh.Get("If-Modified-Since") != "" ||
		rh.Get("If-Match") != "" || rh.Get("If-Unmodified-Since") != "" {
		s.serveBytes(w, r, f.data, sdk.ObjectInfo{Key: key, Size: int64(len(f.data)), ModTime: f.id.mtime})
		return
	}
	h := w.Header()
	for k, v := range f.header {
		h[k] = v
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(f.data)
	}
}

// serveBytes answers with data, with Range and conditional requests
// handled by http.ServeContent.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, data []byte, info sdk.ObjectInfo) {
	setHeaders(w, info.Key, info)
	http.ServeContent(writeOnly{w}, r, "", info.ModTime, bytes.NewReader(data))
}

// writeOnly hides the ResponseWriter's ReadFrom (its method set is the
// interface's alone): for bytes already in
// memory it would flush the headers on their own and then write the body,
// two syscalls where one buffered write does.
type writeOnly struct{ http.ResponseWriter }

// watchable reports whether the directory watch can vouch for key: a plain
// file directly in the watched directory. A symbolic link's target, or a
// file in a subdirectory, can change without an event for the watch.
func (s *Server) watchable(key string) bool {
	if !s.watch.ok() || strings.Contains(key, "/") {
		return false
	}
	fi, err := s.dir.Lstat(key)
	return err == nil && fi.Mode().IsRegular()
}
