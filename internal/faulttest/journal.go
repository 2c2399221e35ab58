package faulttest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
)

// The page-cache model (Plan.Backend.Volatile).
//
// A power cut loses what the kernel had not yet written back. Which writes
// were durable depends on the fsyncs the backend made, and the fs backend
// makes them inside its own code, out of reach of a wrapper. So the model
// works one level up, on the durability each backend call promises, read off
// plugins/backend-fs/fsbackend/put.go:
//
//   - Put and PutFile write a temporary file, fsync it, rename (or link) it
//     over the key and fsync the parent directory before they return. A
//     call that returned is durable: content and directory entry. A call
//     that had not returned when the power went is lost entirely: its
//     temporary file was never linked under the key in a synced directory.
//   - Delete removes the name without syncing the directory. The removal
//     becomes durable only when a later Put in the same directory syncs it;
//     until then the power cut brings the file back.
//
// With Volatile "nosync" no call is ever durable: the model of a backend
// that writes in place and never fsyncs, like stock tiup's local store.
// After such a cut the kernel may have written back any subset of the
// dirty files in any order; PowerLoss's survives argument picks which.
//
// The wrapper journals every mutation before it runs, hard-linking the file
// it is about to replace or delete into the state directory (fsbackend never
// changes a file in place, so the link keeps the old bytes), and records
// when the call became durable. PowerLoss then puts the mirror directory
// into the state the disk would hold after the cut: every mutation that was
// not durable is undone, newest first.
//
// What the model leaves out: directories created on the way to a nested
// key (TiUP mirrors keep every object at the top level), the data blocks of
// files that stay unreferenced (they are invisible either way), and file
// systems that reorder a rename before the data it points at, which the
// fsync before the rename rules out.

const journalName = "journal.jsonl"

// journal events
const (
	evBegin   = "begin"
	evDurable = "durable" // the call returned and the model makes it durable
	evDone    = "done"    // the call returned, not durable yet
	evFailed  = "failed"  // the call returned an error
)

// JournalEntry is one line of the undo journal.
type JournalEntry struct {
	Seq   int    `json:"seq"`
	Event string `json:"event"`
	Op    string `json:"op,omitempty"`
	Key   string `json:"key,omitempty"`
	// Prev is the stash file holding the key's bytes before the call,
	// relative to the state directory; "" when the key did not exist.
	Prev string `json:"prev,omitempty"`
}

type journal struct {
	state, dir string // state directory, mirror directory
	mode       string
}

func (j *journal) append(e JournalEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(j.state, journalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_, err = f.Write(append(line, '\n'))
	return err
}

// begin stashes the key's current file and journals the mutation.
func (j *journal) begin(seq int, op, key string) error {
	e := JournalEntry{Seq: seq, Event: evBegin, Op: op, Key: key}
	live := filepath.Join(j.dir, filepath.FromSlash(key))
	if fi, err := os.Lstat(live); err == nil && fi.Mode().IsRegular() {
		stash := filepath.Join("stash", strconv.Itoa(seq))
		if err := os.MkdirAll(filepath.Join(j.state, "stash"), 0o755); err != nil {
			return err
		}
		if err := linkOrCopy(live, filepath.Join(j.state, stash)); err != nil {
			return fmt.Errorf("stash %s: %w", key, err)
		}
		e.Prev = stash
	}
	return j.append(e)
}

// end journals how the mutation ended.
func (j *journal) end(seq int, op string, err error) {
	ev := evDone
	switch {
	case err != nil:
		ev = evFailed
	case j.mode == VolatileFsync && (op == "Put" || op == "PutFile"):
		ev = evDurable
	}
	j.append(JournalEntry{Seq: seq, Event: ev})
}

// linkOrCopy makes dst hold src's current bytes: a hard link when both are
// on one file system, else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// ReadJournal parses the undo journal of a state directory.
func ReadJournal(state string) ([]JournalEntry, error) {
	f, err := os.Open(filepath.Join(state, journalName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []JournalEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e JournalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// PowerLoss turns the mirror directory dir into what the disk would hold
// after a power cut, given the journal in the state directory state: every
// journalled mutation that was not durable is undone, newest first, unless
// survives says the kernel happened to write it back before the cut
// (nil: nothing survives). It returns the mutations it undid. The journal is
// consumed: a second call undoes nothing.
func PowerLoss(dir, state string, survives func(JournalEntry) bool) ([]JournalEntry, error) {
	entries, err := ReadJournal(state)
	if err != nil {
		return nil, err
	}
	begun := map[int]JournalEntry{}
	var order []int
	durable := map[int]bool{}
	// Deletes that returned, by directory, waiting for a directory sync.
	unsynced := map[string][]int{}
	for _, e := range entries {
		switch e.Event {
		case evBegin:
			begun[e.Seq] = e
			order = append(order, e.Seq)
		case evDone:
			if b := begun[e.Seq]; b.Op == "Delete" {
				d := path.Dir(b.Key)
				unsynced[d] = append(unsynced[d], e.Seq)
			}
		case evDurable:
			durable[e.Seq] = true
			// fsbackend syncs the parent directory at the end of a Put,
			// which makes earlier removals in it durable too.
			d := path.Dir(begun[e.Seq].Key)
			for _, s := range unsynced[d] {
				durable[s] = true
			}
			delete(unsynced, d)
		case evFailed:
			// A failed call may still have changed the key (a rename that
			// failed to sync): undo it like any other.
		}
	}
	var undone []JournalEntry
	kept := map[string]bool{} // keys whose newest lost write survived
	for i := len(order) - 1; i >= 0; i-- {
		e := begun[order[i]]
		if durable[e.Seq] {
			kept[e.Key] = true
			continue
		}
		if kept[e.Key] {
			continue
		}
		if survives != nil && survives(e) {
			kept[e.Key] = true
			continue
		}
		live := filepath.Join(dir, filepath.FromSlash(e.Key))
		if e.Prev == "" {
			if err := os.Remove(live); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return undone, fmt.Errorf("power loss: drop %s: %w", e.Key, err)
			}
		} else {
			tmp := live + ".powerloss"
			os.Remove(tmp)
			if err := linkOrCopy(filepath.Join(state, e.Prev), tmp); err != nil {
				return undone, fmt.Errorf("power loss: restore %s: %w", e.Key, err)
			}
			if err := os.Rename(tmp, live); err != nil {
				return undone, fmt.Errorf("power loss: restore %s: %w", e.Key, err)
			}
		}
		undone = append(undone, e)
	}
	if err := os.Rename(filepath.Join(state, journalName), filepath.Join(state, journalName+".applied")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return undone, err
	}
	return undone, nil
}
