package faulttest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
)

// view is the logical content of a mirror directory: file name → digest.
// A manifest's digest covers its signed bytes and the IDs of the keys that
// signed it, not the signature bytes, which RSA-PSS salts anew on every run;
// the timestamp's snapshot hashes are left out for the same reason (they
// hash the snapshot's signatures). With the clock fixed, a verb that
// reaches the same result twice gives equal views.
type view struct {
	files map[string]string
	// committed views only:
	empty       bool // no timestamp.json: no mirror was ever committed
	interrupted bool // snapshot.json is not the one timestamp.json pins
	problems    []string
	tsVersion   uint64 // the timestamp's version
	rootVersion uint64 // the root version the snapshot names
}

func (v view) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v.files)) {
		fmt.Fprintf(&b, "  %s %s\n", k, v.files[k])
	}
	if v.empty {
		b.WriteString("  (no timestamp.json)\n")
	}
	if v.interrupted {
		b.WriteString("  (snapshot.json newer than timestamp.json)\n")
	}
	for _, p := range v.problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	return b.String()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// logical is the digest of one file as described on view.
func logical(name string, b []byte) string {
	if !strings.HasSuffix(name, ".json") {
		return sum(b)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return sum(b)
	}
	signed := env.Signed
	if name == "timestamp.json" {
		var ts manifest.Timestamp
		if env.Decode(&ts) == nil {
			for k, fh := range ts.Meta {
				fh.Hashes = nil
				ts.Meta[k] = fh
			}
			if enc, err := manifest.Encode(&ts); err == nil {
				signed = enc
			}
		}
	}
	var ids []string
	for _, s := range env.Signatures {
		ids = append(ids, s.KeyID[:8])
	}
	slices.Sort(ids)
	return sum(signed) + " by " + strings.Join(ids, ",")
}

// wholeView digests every object of a mirror directory: what the backend
// serves, so without its temporary and lock files and without keys/.
func wholeView(dir string) (view, error) {
	v := view{files: map[string]string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || rel == "keys" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		v.files[filepath.ToSlash(rel)] = logical(d.Name(), b)
		return nil
	})
	return v, err
}

// committedView digests what a client reading the mirror now can reach:
// timestamp.json, the snapshot.json it pins (or the one that is there),
// the root chain, the index and component manifests the snapshot names and
// the tarballs those name. Files it cannot read or parse are problems.
func committedView(dir string) view {
	v := view{files: map[string]string{}}
	read := func(name string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) || name != "timestamp.json" {
				v.problems = append(v.problems, fmt.Sprintf("%s: %v", name, err))
			}
			return nil, false
		}
		v.files[name] = logical(name, b)
		return b, true
	}
	tsBytes, ok := read("timestamp.json")
	if !ok {
		v.empty = true
		return v
	}
	var ts manifest.Timestamp
	if err := decode(tsBytes, &ts); err != nil {
		v.problems = append(v.problems, "timestamp.json: "+err.Error())
		return v
	}
	v.tsVersion = ts.Version
	snBytes, ok := read("snapshot.json")
	if !ok {
		return v
	}
	want := ts.Meta["/snapshot.json"]
	got := sha256.Sum256(snBytes)
	if want.Hashes["sha256"] != hex.EncodeToString(got[:]) || want.Length != uint64(len(snBytes)) {
		v.interrupted = true
	}
	var sn manifest.Snapshot
	if err := decode(snBytes, &sn); err != nil {
		v.problems = append(v.problems, "snapshot.json: "+err.Error())
		return v
	}
	read("root.json")
	v.rootVersion = sn.Meta["/root.json"].Version
	// Clients follow the root chain by probing N+1.root.json, whatever
	// the snapshot names, so the chain is part of what they reach.
	for n := uint64(2); ; n++ {
		name := manifest.VersionedName(n, "root")
		if _, err := os.Stat(filepath.Join(dir, name)); n > v.rootVersion && err != nil {
			break
		}
		read(name)
	}
	for url, fv := range sn.Meta {
		name := strings.TrimSuffix(strings.TrimPrefix(url, "/"), ".json")
		if name == "root" {
			continue
		}
		file := manifest.VersionedName(fv.Version, name)
		b, ok := read(file)
		if !ok || name == "index" {
			continue
		}
		var c manifest.Component
		if err := decode(b, &c); err != nil {
			v.problems = append(v.problems, file+": "+err.Error())
			continue
		}
		for _, versions := range c.Platforms {
			for _, item := range versions {
				read(strings.TrimPrefix(item.URL, "/"))
			}
		}
	}
	return v
}

func decode(b []byte, v manifest.Signed) error {
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return err
	}
	return env.Decode(v)
}

// keyless keeps the component manifests (without their signers) and the
// tarballs: what two clones made with different fresh keys share.
func (v view) keyless() view {
	out := view{files: map[string]string{}}
	for name, d := range v.files {
		switch {
		case strings.HasSuffix(name, ".tar.gz"):
			out.files[name] = d
		case strings.HasSuffix(name, ".json") && !isRoleFile(name):
			out.files[name], _, _ = strings.Cut(d, " by ")
		}
	}
	return out
}

func isRoleFile(name string) bool {
	for _, role := range []string{"root", "index", "snapshot", "timestamp"} {
		if name == role+".json" || strings.HasSuffix(name, "."+role+".json") {
			return true
		}
	}
	return false
}

func sameFiles(a, b view) bool { return maps.Equal(a.files, b.files) }

// diff lists the names whose digests differ.
func diff(a, b view) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a.files)) {
		if b.files[k] != a.files[k] {
			out = append(out, fmt.Sprintf("%s: %s != %s", k, a.files[k], b.files[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.files)) {
		if _, ok := a.files[k]; !ok {
			out = append(out, fmt.Sprintf("%s: missing != %s", k, b.files[k]))
		}
	}
	return strings.Join(out, "; ")
}

// States a crash can leave a mirror in.
const (
	stateOld         = "old"         // the committed state before the verb
	stateNew         = "new"         // the committed state the verb makes
	stateInterrupted = "interrupted" // the new snapshot.json under the old timestamp.json
	stateRootAhead   = "root-ahead"  // the old state plus the new N+1.root.json
	stateTorn        = "torn"        // anything else
)

// classify says which state a crashed mirror's committed view is in, given
// the views before the verb and after a run that never crashed. An
// interrupted commit (the new snapshot.json written, the timestamp not) is
// what TiUP's unversioned snapshot.json allows between its two writes:
// clients refuse it until the next write rolls it forward.
func classify(got, old, new view) string {
	if len(got.problems) > 0 {
		return stateTorn
	}
	switch {
	case old.empty && got.empty:
		return stateOld
	case !got.interrupted && sameFiles(got, old):
		return stateOld
	case !got.interrupted && sameFiles(got, new):
		return stateNew
	case got.interrupted && got.files["timestamp.json"] == old.files["timestamp.json"]:
		rolled := view{files: maps.Clone(got.files)}
		if ts, ok := new.files["timestamp.json"]; ok {
			rolled.files["timestamp.json"] = ts
		}
		if sameFiles(rolled, new) {
			return stateInterrupted
		}
	case !got.interrupted:
		// A rotation that wrote N+1.root.json and stopped before its
		// snapshot: clients already follow the new root (TUF probes the
		// chain), and everything else is the old state.
		behind := view{files: maps.Clone(got.files)}
		extra := 0
		for name, d := range got.files {
			if _, inOld := old.files[name]; !inOld && isRootFile(name) && new.files[name] == d {
				delete(behind.files, name)
				extra++
			}
		}
		if extra > 0 && sameFiles(behind, old) {
			return stateRootAhead
		}
	}
	return stateTorn
}

// isRootFile reports a versioned root, N.root.json.
func isRootFile(name string) bool {
	return strings.HasSuffix(name, ".root.json")
}
