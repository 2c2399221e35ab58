package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	cjson "github.com/gibson042/canonicaljson-go"
)

// Encode returns the canonical JSON encoding of v, the form tiup signs and
// writes: sorted members, minimal escaping, no whitespace, no trailing
// newline.
func Encode(v any) ([]byte, error) {
	b, err := cjson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode canonical json: %w", err)
	}
	return b, nil
}

// TypeOf returns the "_type" value the manifest type of v stands for, or ""
// for a type that is not one of the five manifests.
func TypeOf(v Signed) string {
	switch v.(type) {
	case *Root:
		return TypeRoot
	case *Index:
		return TypeIndex
	case *Component:
		return TypeComponent
	case *Snapshot:
		return TypeSnapshot
	case *Timestamp:
		return TypeTimestamp
	}
	return ""
}

// ParseEnvelope decodes a manifest file strictly: it must be one JSON object
// with exactly the members "signatures" and "signed", where "signed" is an
// object. Signed keeps the exact bytes of the file, because signatures are
// verified over them.
func ParseEnvelope(b []byte) (*Envelope, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return nil, fmt.Errorf("parse envelope: %w", err)
	}
	if members == nil {
		return nil, errors.New("parse envelope: not a json object")
	}
	// The member names are compared exactly: encoding/json would match
	// "Signed" case-insensitively, and a strict reader must not.
	for name := range members {
		if name != "signatures" && name != "signed" {
			return nil, fmt.Errorf("parse envelope: unknown member %q", name)
		}
	}
	signed, ok := members["signed"]
	if !ok {
		return nil, errors.New("parse envelope: missing member \"signed\"")
	}
	if len(signed) == 0 || signed[0] != '{' {
		return nil, errors.New("parse envelope: member \"signed\" is not an object")
	}
	env := &Envelope{Signed: append(json.RawMessage(nil), signed...)}
	if raw, ok := members["signatures"]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env.Signatures); err != nil {
			return nil, fmt.Errorf("parse envelope signatures: %w", err)
		}
		for i, s := range env.Signatures {
			if s.KeyID == "" {
				return nil, fmt.Errorf("parse envelope signature %d: empty keyid", i)
			}
		}
	}
	return env, nil
}

// Decode decodes the signed body into v, rejecting unknown fields, and checks
// the common header: _type must match v's type, spec_version must be
// SpecVersion, and expires must be RFC 3339.
func (e *Envelope) Decode(v Signed) error {
	want := TypeOf(v)
	if want == "" {
		return fmt.Errorf("decode manifest: unsupported type %T", v)
	}
	dec := json.NewDecoder(bytes.NewReader(e.Signed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %s manifest: %w", want, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("decode %s manifest: trailing data after signed object", want)
	}
	h := v.Header()
	if h.Type != want {
		return fmt.Errorf("decode %s manifest: field _type is %q", want, h.Type)
	}
	if h.SpecVersion != SpecVersion {
		return fmt.Errorf("decode %s manifest: field spec_version is %q, want %q", want, h.SpecVersion, SpecVersion)
	}
	if _, err := h.ExpiresAt(); err != nil {
		return fmt.Errorf("decode %s manifest: field expires: %w", want, err)
	}
	return nil
}

// NewEnvelope returns an unsigned envelope holding the canonical encoding of
// v; its Signatures are nil, which encodes as null as tiup's do.
func NewEnvelope(v Signed) (*Envelope, error) {
	if TypeOf(v) == "" {
		return nil, fmt.Errorf("new envelope: unsupported type %T", v)
	}
	b, err := Encode(v)
	if err != nil {
		return nil, fmt.Errorf("new envelope %s: %w", TypeOf(v), err)
	}
	return &Envelope{Signed: b}, nil
}

// Bytes returns the whole manifest file in canonical form. The signed bytes
// are copied verbatim rather than re-encoded so that existing signatures stay
// valid.
func (e *Envelope) Bytes() ([]byte, error) {
	if len(e.Signed) == 0 || e.Signed[0] != '{' {
		return nil, errors.New("encode envelope: signed is not an object")
	}
	sigs, err := Encode(e.Signatures)
	if err != nil {
		return nil, fmt.Errorf("encode envelope signatures: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(sigs) + len(e.Signed) + 27)
	buf.WriteString(`{"signatures":`)
	buf.Write(sigs)
	buf.WriteString(`,"signed":`)
	buf.Write(e.Signed)
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// AddSignature appends a signature by keyID; a key may sign only once, since
// tiup rejects files with duplicate key IDs.
func (e *Envelope) AddSignature(keyID string, sig []byte) error {
	if keyID == "" {
		return errors.New("add signature: empty key id")
	}
	if len(sig) == 0 {
		return fmt.Errorf("add signature %s: empty signature", keyID)
	}
	for _, s := range e.Signatures {
		if s.KeyID == keyID {
			return fmt.Errorf("add signature %s: key already signed", keyID)
		}
	}
	e.Signatures = append(e.Signatures, Signature{KeyID: keyID, Sig: base64.StdEncoding.EncodeToString(sig)})
	return nil
}

// FormatTime formats t as tiup writes expiries and release times: UTC,
// RFC 3339, whole seconds, ending in Z.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// ExpiresAt parses the expires field.
func (b *Base) ExpiresAt() (time.Time, error) {
	t, err := time.Parse(time.RFC3339, b.Expires)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse expires %q: %w", b.Expires, err)
	}
	return t, nil
}

// Renew extends the expiry to now+lifetime unless it is already later, and
// bumps Version by one when it is above zero; this is tiup's RenewManifest,
// which never shortens an expiry and leaves the snapshot at version 0.
func (b *Base) Renew(now time.Time, lifetime time.Duration) {
	next := now.Add(lifetime)
	if cur, err := b.ExpiresAt(); err != nil || cur.Before(next) {
		b.Expires = FormatTime(next)
	}
	if b.Version > 0 {
		b.Version++
	}
}
