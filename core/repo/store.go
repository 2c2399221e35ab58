package repo

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Store keeps the manifests a client trusted, under their unversioned names
// (root.json, N.root.json, timestamp.json, snapshot.json, index.json), as the
// stock client keeps $TIUP_HOME/manifests.
type Store interface {
	// Load returns a saved file, or an error wrapping fs.ErrNotExist.
	Load(name string) ([]byte, error)
	// Save replaces a file atomically.
	Save(name string, b []byte) error
}

// DirStore is a Store in a directory.
type DirStore string

// Load implements Store.
func (d DirStore) Load(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

// Save implements Store: a temp file, fsync, rename, so a crash leaves the
// old copy or the new one.
func (d DirStore) Save(name string, b []byte) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("save %s: %w", name, err)
	}
	if err := WriteFileAtomic(filepath.Join(string(d), name), b, 0o644); err != nil {
		return err
	}
	removeStaleTemps(string(d), name)
	return nil
}

// staleTemp is the age after which a temp file of WriteFileAtomic is
// taken for one a killed process left behind; a live writer finishes its
// temp file within milliseconds.
const staleTemp = 10 * time.Minute

// removeStaleTemps removes the temp files of name that crashed writers
// left in dir, so that they do not pile up.
func removeStaleTemps(dir, name string) {
	temps, _ := filepath.Glob(filepath.Join(dir, ".tmp-"+name+"-*"))
	for _, p := range temps {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(p)
		}
	}
}

// WriteFileAtomic writes a small file through a temp file in the same
// directory, fsynced and renamed into place.
func WriteFileAtomic(path string, b []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// MemStore is a Store in memory, for one run that should remember nothing
// (mirror verify) and for tests.
type MemStore map[string][]byte

var memMu sync.Mutex

// Load implements Store.
func (m MemStore) Load(name string) ([]byte, error) {
	memMu.Lock()
	defer memMu.Unlock()
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("load %s: %w", name, fs.ErrNotExist)
	}
	return b, nil
}

// Save implements Store.
func (m MemStore) Save(name string, b []byte) error {
	memMu.Lock()
	defer memMu.Unlock()
	m[name] = b
	return nil
}
