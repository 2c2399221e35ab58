package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mirrorkit/mirror/core/manifest"
	"github.com/mirrorkit/mirror/core/publish"
)

// maxSignFile caps the manifest file Sign reads; the largest official
// component manifests are a few MiB.
const maxSignFile = 64 << 20

// SignOptions configure Sign (`tiup mirror sign FILE`).
type SignOptions struct {
	// File is a manifest file (N.root.json, a component manifest, ...).
	File string
	// Keys are the key files (or signer URLs) to sign with; default
	// $TIUP_HOME/keys/private.json.
	Keys []string
	// Timeout bounds each request to a signing session URL; default
	// DefaultSignTimeout.
	Timeout time.Duration
}

// SignResult says what Sign added.
type SignResult struct {
	File       string   // the file or the session URL
	KeyIDs     []string // the keys that signed now
	Signatures int      // signatures in the file afterwards
	// Recanonicalized says the signed part was not canonical JSON and was
	// re-encoded before signing, as stock tiup does; signatures made over
	// the old bytes no longer verify.
	Recanonicalized bool
}

// Sign adds signatures to a manifest file and writes the whole envelope
// back canonically. The file is replaced atomically, so a crash leaves
// either the old file or the new one.
func Sign(ctx context.Context, env *Env, opts SignOptions) (*SignResult, error) {
	if opts.File == "" {
		return nil, fmt.Errorf("%w: sign needs the manifest file", ErrUsage)
	}
	if strings.Contains(opts.File, "://") {
		return signURL(ctx, env, opts)
	}
	st, err := os.Stat(opts.File)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, fs.ErrNotExist)
	}
	if !st.Mode().IsRegular() || st.Size() > maxSignFile {
		return nil, fmt.Errorf("%w: sign %s: not a manifest file", ErrUsage, opts.File)
	}
	data, err := os.ReadFile(opts.File)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	envl, err := manifest.ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	res, err := addSignatures(ctx, env, opts, envl)
	if err != nil {
		return nil, err
	}
	out, err := envl.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	if err := replaceFile(opts.File, out, st.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	res.Signatures = len(envl.Signatures)
	return res, nil
}

// DefaultSignTimeout bounds each request of `mirror sign URL`, as stock
// tiup's --timeout does.
const DefaultSignTimeout = 10 * time.Second

// sessionPath is the path of a signing session: /rotate/<base62 ID>,
// possibly behind a proxy's prefix.
var sessionPath = regexp.MustCompile(`/rotate/[0-9A-Za-z]+$`)

// maxErrorBody caps the refusal message read from a session.
const maxErrorBody = 4 << 10

// signURL signs the manifest a signing session serves: GET the envelope,
// sign its canonical signed bytes, POST the envelope back.
func signURL(ctx context.Context, env *Env, opts SignOptions) (*SignResult, error) {
	u, err := url.Parse(opts.File)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !sessionPath.MatchString(u.Path) {
		return nil, fmt.Errorf("%w: sign %s: not a signing session URL; `mirror rotate` and `mirror transfer-owner` print one like http://HOST:PORT/rotate/ID", ErrUsage, opts.File)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultSignTimeout
	}
	client := &http.Client{Timeout: timeout}
	envl, err := getSession(ctx, client, opts.File)
	if err != nil {
		return nil, err
	}
	res, err := addSignatures(ctx, env, opts, envl)
	if err != nil {
		return nil, err
	}
	body, err := envl.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.File, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("sign %s: the session refused the signature (%s): %s", opts.File, resp.Status, errorMessage(resp.Body))
	}
	res.Signatures = len(envl.Signatures)
	return res, nil
}

// addSignatures signs envl with the keys of opts, for a file or a session
// alike: the signed part is made canonical first (stock tiup signs the
// canonical form), and a key that already signed, or is given twice, is
// refused.
func addSignatures(ctx context.Context, env *Env, opts SignOptions, envl *manifest.Envelope) (*SignResult, error) {
	res := &SignResult{File: opts.File}
	canon, err := canonical(envl.Signed)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", opts.File, err)
	}
	if !bytes.Equal(canon, envl.Signed) {
		envl.Signed, res.Recanonicalized = canon, true
	}
	signers, ids, release, err := env.ownerSigners(ctx, opts.Keys)
	if err != nil {
		return nil, err
	}
	defer release()
	given := map[string]bool{}
	for _, id := range ids {
		if hasSignature(envl, id) || given[id] {
			return nil, fmt.Errorf("sign %s: already signed by key %s: %w", opts.File, id[:16], fs.ErrExist)
		}
		given[id] = true
	}
	for i, s := range signers {
		if err := publish.SignWith(ctx, envl, s); err != nil {
			return nil, fmt.Errorf("sign %s: %w", opts.File, err)
		}
		res.KeyIDs = append(res.KeyIDs, ids[i])
	}
	return res, nil
}

// getSession reads the envelope a signing session serves.
func getSession(ctx context.Context, client *http.Client, u string) (*manifest.Envelope, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sign %s: the session answered %s: %s", u, resp.Status, errorMessage(resp.Body))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, manifest.MaxRootSize+1))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", u, err)
	}
	if len(data) > manifest.MaxRootSize {
		return nil, fmt.Errorf("sign %s: the manifest is over %d bytes", u, manifest.MaxRootSize)
	}
	envl, err := manifest.ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", u, err)
	}
	return envl, nil
}

// errorMessage reads a refusal: a bare JSON string (stock tiup's form), a
// {"message": ...} object (tiup-server's), or plain text.
func errorMessage(r io.Reader) string {
	data, _ := io.ReadAll(io.LimitReader(r, maxErrorBody))
	var s string
	if json.Unmarshal(data, &s) == nil {
		return s
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	if msg := strings.TrimSpace(string(data)); msg != "" {
		return msg
	}
	return "no message"
}

// canonical re-encodes a JSON object canonically. Numbers are kept as
// written (json.Number), so no integer is rounded through a float.
func canonical(signed []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(signed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode signed: %w", err)
	}
	return manifest.Encode(v)
}

// replaceFile writes data to a temporary file beside path and renames it
// over path.
func replaceFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-sign-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
