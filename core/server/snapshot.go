package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/mirrorkit/mirror/sdk"
)

// TiUP's snapshot.json has no version in its name: a publish overwrites it
// and then moves timestamp.json, so between the two writes the mirror
// holds a timestamp that names the previous snapshot, which is gone. On a
// local disk that window lasts a rename; on a registry or an object store
// it lasts a round trip or more, and a client that reads in it gets a
// timestamp and a snapshot that do not match. So on a streaming backend
// the server answers for snapshot.json with the snapshot the current
// timestamp names: the stored one when it matches, else the last matching
// one it has seen, kept in memory. Every server process does this on its
// own, so several of them over one mirror all give consistent views.
const (
	snapshotKey  = "snapshot.json"
	timestampKey = "timestamp.json"
	// maxManifest caps what is read into memory for the check.
	maxManifest = 64 << 20
)

// snapshotMemory is the last snapshot.json seen to match a timestamp.
type snapshotMemory struct {
	mu     sync.Mutex
	sha256 string
	data   []byte
}

func (m *snapshotMemory) get(sum string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sha256 == sum {
		return m.data
	}
	return nil
}

func (m *snapshotMemory) set(sum string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sha256, m.data = sum, data
}

// namedSnapshot returns the sha256 and length timestamp.json gives for
// snapshot.json. The timestamp is not verified here: clients do that, and
// a bad one only makes the server serve the stored snapshot as it is.
func (s *Server) namedSnapshot(ctx context.Context) (string, int64, error) {
	data, err := s.readSmall(ctx, timestampKey)
	if err != nil {
		return "", 0, err
	}
	var ts struct {
		Signed struct {
			Meta map[string]struct {
				Hashes map[string]string `json:"hashes"`
				Length int64             `json:"length"`
			} `json:"meta"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &ts); err != nil {
		return "", 0, fmt.Errorf("read %s: %w", timestampKey, err)
	}
	m := ts.Signed.Meta["/"+snapshotKey]
	return m.Hashes["sha256"], m.Length, nil
}

// readSmall reads a whole object of at most maxManifest bytes.
func (s *Server) readSmall(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := s.backend.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err == nil && len(data) > maxManifest {
		err = fmt.Errorf("read %s: larger than %d bytes", key, maxManifest)
	}
	return data, err
}

// serveSnapshot answers for snapshot.json with the snapshot the current
// timestamp names, when it can.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	want, wantLen, err := s.namedSnapshot(ctx)
	if err != nil {
		// No readable timestamp: nothing to be consistent with.
		s.serveStream(w, r, snapshotKey)
		return
	}
	data, err := s.readSmall(ctx, snapshotKey)
	if err != nil {
		s.backendError(w, snapshotKey, err)
		return
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if got == want && int64(len(data)) == wantLen {
		s.snapshot.set(got, data)
	} else if named := s.snapshot.get(want); named != nil {
		// A publish is between its snapshot and its timestamp.
		data, got = named, want
	}
	s.serveBytes(w, r, data, sdk.ObjectInfo{Key: snapshotKey, Size: int64(len(data)), ETag: "sha256-" + got})
}
