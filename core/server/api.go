package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/core/trust"
	"github.com/mirrorkit/mirror/sdk"
)

// Defaults of the write API's limits.
const (
	DefaultMaxUpload      = 2 << 30
	DefaultMaxSessions    = 64
	DefaultSessionTTL     = 10 * time.Minute
	DefaultRequestTimeout = 10 * time.Minute
	// MaxManifestBody bounds a component manifest posted to the API.
	MaxManifestBody = 1 << 20
	// multipartSlack is room for the multipart headers and boundaries
	// around an upload of the largest size allowed.
	multipartSlack = 64 << 10
)

// API error codes, as tiup-server names them (spec §8).
const (
	codeUnknown     = "UNKNOWN_ERROR"
	codeInvalid     = "INVALID TARBALL"
	codeConflict    = "MANIFEST CONFLICT"
	codeForbidden   = "FORBIDDEN"
	codeInternal    = "INTERNAL ERROR"
	codeBadRequest  = "BAD REQUEST"
	codeNotFound    = "NOT FOUND"
	codeTooLarge    = "TOO LARGE"
	codeTooMany     = "TOO MANY SESSIONS"
	codeSessionUsed = "SESSION CONFLICT"
	msgInvalidJSON  = "make sure your request is valid"
)

// APIOptions enable the write API of tiup-server (spec §8): tarball
// uploads, component manifests and root rotations, each applied as one
// transaction of Writer on the served mirror with the server's role keys.
type APIOptions struct {
	// Writer commits the changes; its Backend must be the served one.
	Writer *publish.Writer
	// UploadDir is where uploads are staged, in a private subdirectory;
	// "" means os.TempDir().
	UploadDir string
	// MaxUpload bounds one tarball, in bytes; 0 means DefaultMaxUpload.
	MaxUpload int64
	// MaxSessions bounds the uploads held at once; 0 means
	// DefaultMaxSessions.
	MaxSessions int
	// SessionTTL is how long an upload waits for its manifest; 0 means
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// RequestTimeout bounds one API request, upload included; 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// api answers /api/v1/.
type api struct {
	w       *publish.Writer
	dir     string // private staging directory
	max     int64
	maxSess int
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time
	log     hclog.Logger

	mu       sync.Mutex
	sessions map[string]*upload
}

// upload is one session's tarball. ready is false while it is being
// received.
type upload struct {
	path    string
	name    string
	size    int64
	sum     string
	expires time.Time
	ready   bool
}

// apiError is a refusal with its status, code and message.
type apiError struct {
	code   int
	status string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func refuse(code int, status, format string, args ...any) *apiError {
	return &apiError{code: code, status: status, msg: fmt.Sprintf(format, args...)}
}

func newAPI(opts *APIOptions, now func() time.Time, log hclog.Logger) (*api, error) {
	if opts.Writer == nil || opts.Writer.Backend == nil || opts.Writer.Keys == nil {
		return nil, fmt.Errorf("serve api: a writer with a backend and keys is needed: %w", fs.ErrInvalid)
	}
	if now == nil {
		now = opts.Writer.Clock
	}
	if now == nil {
		return nil, fmt.Errorf("serve api: a clock is needed: %w", fs.ErrInvalid)
	}
	dir, err := os.MkdirTemp(opts.UploadDir, "mirror-serve-uploads-")
	if err != nil {
		return nil, fmt.Errorf("serve api: make upload directory: %w", err)
	}
	a := &api{w: opts.Writer, dir: dir, max: opts.MaxUpload, maxSess: opts.MaxSessions, ttl: opts.SessionTTL,
		timeout: opts.RequestTimeout, now: now, log: log, sessions: map[string]*upload{}}
	if a.max <= 0 {
		a.max = DefaultMaxUpload
	}
	if a.maxSess <= 0 {
		a.maxSess = DefaultMaxSessions
	}
	if a.ttl <= 0 {
		a.ttl = DefaultSessionTTL
	}
	if a.timeout <= 0 {
		a.timeout = DefaultRequestTimeout
	}
	return a, nil
}

// close drops every session and the staging directory.
func (a *api) close() error {
	a.mu.Lock()
	a.sessions = map[string]*upload{}
	a.mu.Unlock()
	return os.RemoveAll(a.dir)
}

// isAPIPath reports whether p is under /api/.
func isAPIPath(p string) bool { return p == "/api" || strings.HasPrefix(p, "/api/") }

func (a *api) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		reply(w, refuse(http.StatusNotFound, codeNotFound, "no such endpoint"))
		return
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			reply(w, refuse(http.StatusBadRequest, codeBadRequest, "malformed path %q", r.URL.Path))
			return
		}
	}
	route := ""
	switch {
	case len(segs) == 2 && segs[0] == "tarball":
		route = "tarball"
	case len(segs) == 3 && segs[0] == "component":
		route = "component"
	case len(segs) == 1 && segs[0] == "rotate":
		route = "rotate"
	default:
		reply(w, refuse(http.StatusNotFound, codeNotFound, "no such endpoint"))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, refuse(http.StatusMethodNotAllowed, codeBadRequest, "use POST"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	r = r.WithContext(ctx)
	var err error
	switch route {
	case "tarball":
		err = a.tarball(w, r, segs[1])
	case "component":
		err = a.component(w, r, segs[1], segs[2])
	default:
		err = a.rotate(w, r)
	}
	if err != nil {
		reply(w, a.classify(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// classify turns an error into the refusal a client sees; unexpected errors
// are logged and reported without detail.
func (a *api) classify(err error) *apiError {
	var ae *apiError
	var se *trust.SignatureError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, sdk.ErrConflict):
		return refuse(http.StatusConflict, codeConflict, "the manifest is not the next version; read the mirror again and retry")
	case errors.As(err, &se):
		return refuse(http.StatusForbidden, codeForbidden, "%v", se)
	case errors.Is(err, context.DeadlineExceeded):
		return refuse(http.StatusServiceUnavailable, codeInternal, "the request took too long")
	}
	a.log.Error("api request", "error", err)
	return refuse(http.StatusInternalServerError, codeInternal, "the server could not apply the change")
}

// reply writes the error body tiup-server sends.
func reply(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}{e.status, e.msg})
}

// validSID accepts the session IDs clients make (UUIDs), and nothing that
// could name a path.
func validSID(sid string) bool {
	if len(sid) == 0 || len(sid) > 64 {
		return false
	}
	for _, c := range []byte(sid) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// reserve claims sid for an upload, after dropping expired sessions.
func (a *api) reserve(sid string) error {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, u := range a.sessions {
		if u.ready && now.After(u.expires) {
			os.Remove(u.path)
			delete(a.sessions, id)
		}
	}
	if _, ok := a.sessions[sid]; ok {
		return refuse(http.StatusConflict, codeSessionUsed, "session %s is already used; start a new one", sid)
	}
	if len(a.sessions) >= a.maxSess {
		return refuse(http.StatusTooManyRequests, codeTooMany, "too many uploads waiting for their manifests; retry later")
	}
	a.sessions[sid] = &upload{}
	return nil
}

// release drops a session and its file.
func (a *api) release(sid string) {
	a.mu.Lock()
	u := a.sessions[sid]
	delete(a.sessions, sid)
	a.mu.Unlock()
	if u != nil && u.path != "" {
		os.Remove(u.path)
	}
}

// take removes a finished session and returns it: a manifest consumes its
// upload whatever the outcome. nil means the session has no tarball.
func (a *api) take(sid string) (*upload, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.sessions[sid]
	if !ok {
		return nil, nil
	}
	if !u.ready {
		return nil, refuse(http.StatusConflict, codeSessionUsed, "session %s is still uploading", sid)
	}
	delete(a.sessions, sid)
	if a.now().After(u.expires) {
		os.Remove(u.path)
		return nil, nil
	}
	return u, nil
}

// tarball receives POST /api/v1/tarball/{sid}: the multipart field "file",
// streamed to a staging file and hashed on the way.
func (a *api) tarball(w http.ResponseWriter, r *http.Request, sid string) error {
	if !validSID(sid) {
		return refuse(http.StatusBadRequest, codeBadRequest, "invalid session id")
	}
	if err := a.reserve(sid); err != nil {
		return err
	}
	u, err := a.receive(w, r)
	if err != nil {
		a.release(sid)
		return err
	}
	u.expires, u.ready = a.now().Add(a.ttl), true
	a.mu.Lock()
	a.sessions[sid] = u
	a.mu.Unlock()
	return nil
}

func (a *api) receive(w http.ResponseWriter, r *http.Request) (*upload, error) {
	r.Body = http.MaxBytesReader(w, r.Body, a.max+multipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, refuse(http.StatusBadRequest, codeInvalid, "send the tarball as multipart/form-data field file")
	}
	var u *upload
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			dropUpload(u)
			return nil, bodyError(err)
		}
		if part.FormName() != "file" {
			part.Close()
			continue
		}
		if u != nil {
			dropUpload(u)
			return nil, refuse(http.StatusBadRequest, codeInvalid, "more than one file field")
		}
		if u, err = a.store(part); err != nil {
			return nil, err
		}
	}
	if u == nil {
		return nil, refuse(http.StatusBadRequest, codeInvalid, "no file field in the form")
	}
	return u, nil
}

// store streams one part to a staging file.
func (a *api) store(part *multipart.Part) (*upload, error) {
	name, ok := uploadName(part)
	if !ok {
		return nil, refuse(http.StatusBadRequest, codeInvalid, "the file name must be <id>-<version>-<os>-<arch>.tar.gz")
	}
	f, err := os.CreateTemp(a.dir, "upload-*")
	if err != nil {
		return nil, err
	}
	u := &upload{path: f.Name(), name: name}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(part, a.max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > a.max {
		err = &http.MaxBytesError{Limit: a.max}
	}
	if err != nil {
		dropUpload(u)
		return nil, bodyError(err)
	}
	u.size, u.sum = n, hex.EncodeToString(h.Sum(nil))
	return u, nil
}

// uploadName reads the raw file name of a part: multipart.Part.FileName
// strips directories, which would hide a name that tries to escape.
func uploadName(part *multipart.Part) (string, bool) {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return "", false
	}
	name := params["filename"]
	return name, validTarballName(name)
}

// validTarballName accepts a plain <id>-<version>-<os>-<arch>.tar.gz.
func validTarballName(name string) bool {
	base, ok := strings.CutSuffix(name, ".tar.gz")
	if !ok || base == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || !fs.ValidPath(name) {
		return false
	}
	return strings.Count(base, "-") >= 3
}

func dropUpload(u *upload) {
	if u != nil {
		os.Remove(u.path)
	}
}

// bodyError classifies a failed body read: over the limit or cut short.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return refuse(http.StatusRequestEntityTooLarge, codeTooLarge, "the upload is over the limit of %d bytes", mbe.Limit)
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return refuse(http.StatusBadRequest, codeInvalid, "the upload was cut short or malformed")
}

// readBody reads a small request body whole.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, refuse(http.StatusRequestEntityTooLarge, codeTooLarge, "the request body is over the limit of %d bytes", limit)
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	return b, nil
}

// parseEnvelope reads a posted envelope in any JSON form and puts its signed
// part in canonical form, as it will be stored and as signatures are made.
func parseEnvelope(b []byte, v manifest.Signed) (*manifest.Envelope, error) {
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(env.Signed))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	if env.Signed, err = manifest.Encode(raw); err != nil {
		return nil, refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	if err := env.Decode(v); err != nil {
		return nil, refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	return env, nil
}

// indexFlags are the query flags of a component post; nil leaves a flag
// unchanged.
type indexFlags struct {
	yanked, standalone, hidden *bool
}

func parseFlags(r *http.Request) (indexFlags, error) {
	var f indexFlags
	q := r.URL.Query()
	for name, dst := range map[string]**bool{"yanked": &f.yanked, "standalone": &f.standalone, "hidden": &f.hidden} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, refuse(http.StatusBadRequest, codeBadRequest, "query %s=%q is not true or false", name, v)
		}
		*dst = &b
	}
	return f, nil
}

func (f indexFlags) apply(item *manifest.ComponentItem) {
	for _, p := range []struct {
		dst *bool
		v   *bool
	}{{&item.Yanked, f.yanked}, {&item.Standalone, f.standalone}, {&item.Hidden, f.hidden}} {
		if p.v != nil {
			*p.dst = *p.v
		}
	}
}

// component receives POST /api/v1/component/{sid}/{name}.
func (a *api) component(w http.ResponseWriter, r *http.Request, sid, name string) error {
	if name == manifest.RoleRoot || name == manifest.RoleIndex || name == manifest.RoleSnapshot || name == manifest.RoleTimestamp {
		return refuse(http.StatusForbidden, codeForbidden, "%s is a mirror role, not a component", name)
	}
	if err := manifest.ValidComponentID(name); err != nil {
		return refuse(http.StatusBadRequest, codeBadRequest, "invalid component name %q", name)
	}
	if !validSID(sid) {
		return refuse(http.StatusBadRequest, codeBadRequest, "invalid session id")
	}
	flags, err := parseFlags(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, MaxManifestBody)
	if err != nil {
		return err
	}
	var c manifest.Component
	env, err := parseEnvelope(body, &c)
	if err != nil {
		return err
	}
	if c.ID != name {
		return refuse(http.StatusBadRequest, codeBadRequest, "the manifest is of component %q, posted as %q", c.ID, name)
	}
	up, err := a.take(sid)
	if err != nil {
		return err
	}
	if up != nil {
		defer os.Remove(up.path)
	}
	// The session's tarball is uploaded while the writer lock is taken,
	// where the backend can stage it (publish.Writer.Ahead).
	writer := *a.w
	if up != nil {
		writer.Ahead = []string{up.path}
	}
	return writer.Update(r.Context(), func(ctx context.Context, tx *publish.Txn) error {
		return a.applyComponent(ctx, tx, env, &c, up, flags)
	})
}

// applyComponent stages a posted component: its index item (new, or with
// changed flags), the owner's threshold of signatures, the version, and the
// session's tarball.
func (a *api) applyComponent(ctx context.Context, tx *publish.Txn, env *manifest.Envelope, c *manifest.Component, up *upload, flags indexFlags) error {
	item, exists := tx.Index.Components[c.ID]
	if !exists {
		owner := signersOwner(tx.Index, env)
		if owner == "" {
			return refuse(http.StatusForbidden, codeForbidden, "no signature is by a key of an owner of this mirror")
		}
		item = manifest.ComponentItem{Owner: owner, URL: manifest.ManifestURL(c.ID)}
	}
	next := item
	flags.apply(&next)
	if !exists || next != item {
		tx.Index.Components[c.ID] = next
		tx.IndexChanged()
	}
	o := tx.Index.Owners[next.Owner]
	ks, err := trust.NewKeySet("owner "+next.Owner, o.Keys, o.Threshold)
	if err != nil {
		return err
	}
	if err := ks.Verify(manifest.VersionedName(c.Version, c.ID), env); err != nil {
		return refuse(http.StatusForbidden, codeForbidden, "%v", err)
	}
	if err := tx.PutComponent(env); err != nil {
		return err
	}
	old, err := tx.Component(ctx, c.ID)
	if err != nil {
		return err
	}
	return a.checkTarballs(ctx, tx, old, c, up)
}

// signersOwner is the owner of the first signature's key, as stock tiup
// picks the owner of a new component; "" when no signer is an owner.
func signersOwner(ix *manifest.Index, env *manifest.Envelope) string {
	owners := make([]string, 0, len(ix.Owners))
	for id := range ix.Owners {
		owners = append(owners, id)
	}
	slices.Sort(owners)
	for _, s := range env.Signatures {
		for _, id := range owners {
			if _, ok := ix.Owners[id].Keys[s.KeyID]; ok {
				return id
			}
		}
	}
	return ""
}

// checkTarballs checks the uploaded tarball against its version item, and
// that every other item the manifest adds names a file the mirror has, so
// a manifest never points clients at a missing tarball.
func (a *api) checkTarballs(ctx context.Context, tx *publish.Txn, old, c *manifest.Component, up *upload) error {
	known := map[string]bool{}
	if old != nil {
		for _, versions := range old.Platforms {
			for _, vi := range versions {
				known[itemKey(vi)] = true
			}
		}
	}
	matched := false
	for _, versions := range c.Platforms {
		for _, vi := range versions {
			key, ok := strings.CutPrefix(vi.URL, "/")
			if !ok || !fs.ValidPath(key) || hidden(key) || key == "keys" || strings.HasPrefix(key, "keys/") {
				return refuse(http.StatusBadRequest, codeInvalid, "invalid tarball url %q", vi.URL)
			}
			if up != nil && key == up.name {
				if vi.Hashes["sha256"] != up.sum || vi.Length != uint64(up.size) {
					return refuse(http.StatusBadRequest, codeInvalid, "checksum mismatch for %s", up.name)
				}
				matched = true
				continue
			}
			if known[itemKey(vi)] {
				continue
			}
			st, err := a.w.Backend.Stat(ctx, key)
			if errors.Is(err, sdk.ErrNotFound) {
				return refuse(http.StatusBadRequest, codeInvalid, "the mirror has no %s; upload it with the manifest", key)
			}
			if err != nil {
				return err
			}
			if st.Size >= 0 && uint64(st.Size) != vi.Length {
				return refuse(http.StatusBadRequest, codeInvalid, "checksum mismatch for %s", key)
			}
		}
	}
	if up != nil && !matched {
		return refuse(http.StatusBadRequest, codeInvalid, "incorrect file name %s: no version of the manifest has it", up.name)
	}
	if up != nil {
		tx.AddFile(up.name, up.path, up.size, up.sum)
	}
	return nil
}

func itemKey(vi manifest.VersionItem) string {
	return vi.URL + " " + vi.Hashes["sha256"] + " " + strconv.FormatUint(vi.Length, 10)
}

// rotate receives POST /api/v1/rotate: a root N+1 that must carry enough
// signatures of both the current and the new root.
func (a *api) rotate(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, manifest.MaxRootSize)
	if err != nil {
		return err
	}
	var root manifest.Root
	env, err := parseEnvelope(body, &root)
	if err != nil {
		return err
	}
	canon, err := env.Bytes()
	if err != nil {
		return refuse(http.StatusBadRequest, codeUnknown, msgInvalidJSON)
	}
	return a.w.Update(r.Context(), func(ctx context.Context, tx *publish.Txn) error {
		if want := tx.Root().Version + 1; root.Version != want {
			return refuse(http.StatusConflict, codeConflict, "root version %d, the mirror needs %d", root.Version, want)
		}
		st, err := trust.New(tx.State().RootBytes, a.w.Clock)
		if err != nil {
			return err
		}
		if err := st.UpdateRoot(canon); err != nil {
			return refuse(http.StatusBadRequest, codeBadRequest, "the root is rejected: %v", err)
		}
		tx.PutRoot(env)
		return nil
	})
}
