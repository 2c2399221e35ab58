package mirror

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
	"github.com/mirrorkit/mirror/sdk"
)

// An http(s) mirror is written to through the tiup-server API that `mirror
// serve` answers (spec §8): the owner's manifest is built and signed here,
// from the mirror's verified state read over HTTP, and the server, which
// holds the mirror's role keys, checks it and commits index, snapshot and
// timestamp.

// remoteAttempts bounds the runs of a change that loses to a concurrent
// writer (409), as stock tiup retries.
const remoteAttempts = 10

// Timeouts of the API requests, as the stock client sets them; uploads have
// none beyond the context's, since a tarball may be large.
const (
	manifestTimeout = 5 * time.Minute
	rotateTimeout   = time.Minute
)

// errCaptured ends a local transaction once its owner-signed part is
// staged: the rest needs role keys only the server has.
var errCaptured = errors.New("change captured for the server")

// errRemoteConflict reports a 409: the mirror moved on meanwhile.
var errRemoteConflict = fmt.Errorf("the mirror changed meanwhile: %w", sdk.ErrConflict)

// isHTTP reports whether addr is a mirror written to through the API.
func isHTTP(addr string) bool {
	return strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://")
}

// RoleKeys returns the key source `mirror serve` signs the mirror at addr
// with: the directory --key-dir names, else the one `mirror init -k`
// recorded, else ADDRESS/keys for a local mirror. It returns a nil source
// when that directory does not exist. close stops the signer plugins.
func (e *Env) RoleKeys(addr string) (ks publish.KeySource, dir string, close func()) {
	dir = e.keyDir(normalizeAddress(addr))
	if dir == "" {
		return nil, "", func() {}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, dir, func() {}
	}
	k := newDirKeys(e, dir)
	return k, dir, k.Close
}

// remoteChange is what a local transaction staged for an http mirror.
type remoteChange struct {
	component string // "" for a root rotation
	manifest  []byte
	tarball   string // the file name in the mirror, "" when none
	path      string // the local tarball
	query     url.Values
	root      []byte
}

// updateRemote runs fn against the http mirror's verified state, then sends
// what it staged through the API; a 409 runs it again on a fresh read.
func (e *Env) updateRemote(ctx context.Context, addr string, fn func(ctx context.Context, tx *publish.Txn) error) error {
	b, err := e.OpenBackend(ctx, addr)
	if err != nil {
		return err
	}
	defer b.Close()
	client := &http.Client{}
	for attempt := 1; ; attempt++ {
		cb := &captureBackend{Backend: b, files: map[string]string{}, manifests: map[string][]byte{}}
		w := &publish.Writer{Backend: cb, Keys: captureKeys{}, Clock: e.Clock, Attempts: 1}
		var last *publish.Txn
		err := w.Update(ctx, func(ctx context.Context, tx *publish.Txn) error {
			last = tx
			return fn(ctx, tx)
		})
		if err == nil {
			// captureKeys signs nothing, so no commit can complete.
			return fmt.Errorf("write %s: the change was not captured", displayAddress(addr))
		}
		if !errors.Is(err, errCaptured) {
			return err
		}
		ch, err := changeOf(addr, last, cb)
		if err != nil {
			return err
		}
		err = publishRemote(ctx, client, addr, ch)
		if !errors.Is(err, errRemoteConflict) || attempt >= remoteAttempts {
			return err
		}
	}
}

// changeOf turns a captured transaction into API requests, refusing what
// only the mirror's role keys can do.
func changeOf(addr string, tx *publish.Txn, cb *captureBackend) (*remoteChange, error) {
	where := displayAddress(addr)
	old := tx.State().Index
	if !reflect.DeepEqual(tx.Index.Owners, old.Owners) {
		return nil, fmt.Errorf("grant on %s: the mirror's index key is needed; run grant on the server host against the mirror's directory", where)
	}
	ch := &remoteChange{query: url.Values{}}
	for name, body := range cb.manifests {
		base, ok := versionedName(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("write %s: unexpected file %s", where, name)
		case base == manifest.RoleRoot:
			ch.root = body
		case ch.component != "":
			return nil, fmt.Errorf("write %s: the server takes one component at a time; run this on the server host against the mirror's directory", where)
		default:
			ch.component, ch.manifest = base, body
		}
	}
	if ch.root != nil && ch.component != "" {
		return nil, fmt.Errorf("write %s: a root and a component cannot be sent together", where)
	}
	if ch.root == nil && ch.component == "" {
		return nil, fmt.Errorf("write %s: the change needs the mirror's role keys; run it on the server host against the mirror's directory", where)
	}
	for id, next := range tx.Index.Components {
		prev, existed := old.Components[id]
		if existed && next == prev {
			continue
		}
		if id != ch.component {
			return nil, fmt.Errorf("write %s: changing the index item of %s without its manifest needs the mirror's index key; run it on the server host against the mirror's directory", where, id)
		}
		if existed && (next.Owner != prev.Owner || next.URL != prev.URL) {
			return nil, fmt.Errorf("write %s: changing the owner of %s needs the mirror's index key; run it on the server host against the mirror's directory", where, id)
		}
		for _, f := range []struct {
			name      string
			prev, now bool
		}{{"yanked", prev.Yanked, next.Yanked}, {"standalone", prev.Standalone, next.Standalone}, {"hidden", prev.Hidden, next.Hidden}} {
			if f.now != f.prev {
				ch.query.Set(f.name, strconv.FormatBool(f.now))
			}
		}
	}
	if len(cb.files) > 1 {
		return nil, fmt.Errorf("write %s: the server takes one tarball at a time", where)
	}
	for key, path := range cb.files {
		ch.tarball, ch.path = key, path
	}
	return ch, nil
}

// versionedName returns the name of "N.name.json".
func versionedName(key string) (string, bool) {
	num, rest, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(key, "/") {
		return "", false
	}
	base, ok := strings.CutSuffix(rest, ".json")
	_, err := strconv.ParseUint(num, 10, 64)
	return base, ok && err == nil && base != ""
}

// publishRemote sends a captured change: the tarball (if any), then the
// component manifest, in one session; or a new root.
func publishRemote(ctx context.Context, client *http.Client, addr string, ch *remoteChange) error {
	api := strings.TrimRight(addr, "/") + "/api/v1/"
	if ch.root != nil {
		ctx, cancel := context.WithTimeout(ctx, rotateTimeout)
		defer cancel()
		return post(ctx, client, "rotate", api+"rotate", "application/json", strings.NewReader(string(ch.root)))
	}
	sid, err := newSID()
	if err != nil {
		return err
	}
	if ch.tarball != "" {
		if err := uploadTarball(ctx, client, api+"tarball/"+sid, ch.tarball, ch.path); err != nil {
			return err
		}
	}
	u := api + "component/" + sid + "/" + url.PathEscape(ch.component)
	if len(ch.query) > 0 {
		u += "?" + ch.query.Encode()
	}
	mctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	return post(mctx, client, "publish "+ch.component, u, "application/json", strings.NewReader(string(ch.manifest)))
}

// uploadTarball streams a local file as the multipart field "file".
func uploadTarball(ctx context.Context, client *http.Client, u, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", name)
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	// The client closes pr when the request ends, so the writer above
	// never outlives it.
	return post(ctx, client, "upload "+name, u, mw.FormDataContentType(), pr)
}

// post sends one API request; 204 is success.
func post(ctx context.Context, client *http.Client, op, u, ctype string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	msg := apiMessage(resp.Body)
	switch resp.StatusCode {
	case http.StatusConflict:
		return fmt.Errorf("%s: %s: %w", op, msg, errRemoteConflict)
	case http.StatusForbidden:
		return fmt.Errorf("%s: the server refused: %s; make sure you have access", op, msg)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("%s: the server has no write API (%s): %w; serve the mirror with `mirror serve` and its keys", op, resp.Status, sdk.ErrUnsupported)
	}
	return fmt.Errorf("%s: the server answered %s: %s", op, resp.Status, msg)
}

// apiMessage reads the message of an API error body.
func apiMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 1<<16))
	var e struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	if s := strings.TrimSpace(string(b)); s != "" && len(s) < 200 {
		return s
	}
	return "no message"
}

// newSID returns a random UUIDv4.
func newSID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make session id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// captureBackend reads through to the mirror and keeps what a commit
// writes instead of storing it.
type captureBackend struct {
	sdk.Backend
	mu        sync.Mutex
	files     map[string]string // key → local path
	manifests map[string][]byte
}

var _ sdk.LocalFiler = (*captureBackend)(nil)

// Lock is unsupported: the server serializes writers.
func (c *captureBackend) Lock(context.Context, string) (func() error, error) {
	return nil, sdk.ErrUnsupported
}

// Put keeps a manifest's bytes.
func (c *captureBackend) Put(ctx context.Context, key string, r io.Reader, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	b, err := io.ReadAll(io.LimitReader(r, manifest.MaxRootSize+1))
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	if len(b) > manifest.MaxRootSize {
		return sdk.ObjectInfo{}, fmt.Errorf("write %s: over %d bytes: %w", key, manifest.MaxRootSize, fs.ErrInvalid)
	}
	c.mu.Lock()
	c.manifests[key] = b
	c.mu.Unlock()
	return sdk.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

// LocalPath is unsupported, so a commit hands files over by path.
func (c *captureBackend) LocalPath(context.Context, string) (string, error) {
	return "", sdk.ErrUnsupported
}

// PutFile keeps the path of a tarball to upload.
func (c *captureBackend) PutFile(ctx context.Context, key, path string, opts sdk.PutOptions) (sdk.ObjectInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return sdk.ObjectInfo{}, err
	}
	c.mu.Lock()
	c.files[key] = abs
	c.mu.Unlock()
	return sdk.ObjectInfo{Key: key, Size: opts.Size}, nil
}

// Delete is refused: a captured change only adds.
func (c *captureBackend) Delete(ctx context.Context, key string) error {
	return fmt.Errorf("delete %s: %w", key, sdk.ErrUnsupported)
}

// captureKeys stops a commit at its first role signature: everything the
// owner signs is staged by then.
type captureKeys struct{}

func (captureKeys) Signer(context.Context, string) (sdk.Signer, error) { return nil, errCaptured }
