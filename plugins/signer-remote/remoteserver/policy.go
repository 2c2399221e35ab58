package remoteserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/mirrorkit/mirror/core/manifest"
)

// Raw is the role of a payload that is not a TiUP manifest: anything that
// is not a JSON object with a "_type" member. No TiUP client accepts a
// signature over such bytes as a manifest signature, so granting it cannot
// let a client forge a manifest; it exists for signing other data (and
// for conformance suites, which sign arbitrary bytes).
const Raw = "raw"

// ErrPayload is wrapped by the errors of payloads that look like a manifest
// but are not one this server will sign.
var ErrPayload = errors.New("not a signable manifest")

// Request is what a payload asks to be signed as, decided by parsing the
// payload itself: the server never trusts a claim made beside it.
type Request struct {
	// Role is the manifest's "_type" (root, index, snapshot, timestamp or
	// component), or Raw.
	Role string
	// Component is a component manifest's "id"; empty for other roles.
	Component string
	// Version is the manifest's "version"; zero for Raw.
	Version uint64
}

// String names the request as grants do: "timestamp", "component:hello",
// "raw".
func (r Request) String() string {
	if r.Role == manifest.TypeComponent {
		return manifest.TypeComponent + ":" + r.Component
	}
	return r.Role
}

// Classify decides what payload is. A JSON object with a top-level "_type"
// member is a manifest's signed part and must be exactly its canonical
// encoding, with a known "_type" (and, for a component, a valid "id"); the
// canonical check rules out duplicate members, which parsers resolve
// differently, so the server reads the same manifest every verifier will.
// Bytes that are not JSON but mention "_type" are refused too, in case
// some parser is more lenient than encoding/json. Anything else is Raw.
func Classify(payload []byte) (Request, error) {
	if !json.Valid(payload) {
		if bytes.Contains(payload, []byte(`"_type"`)) {
			return Request{}, fmt.Errorf("the payload mentions \"_type\" but is not valid JSON: %w", ErrPayload)
		}
		return Request{Role: Raw}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Request{}, fmt.Errorf("decode payload: %v: %w", err, ErrPayload)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Request{Role: Raw}, nil
	}
	rawType, ok := obj["_type"]
	if !ok {
		return Request{Role: Raw}, nil
	}
	canon, err := manifest.Encode(v)
	if err != nil || !bytes.Equal(canon, payload) {
		return Request{}, fmt.Errorf("the payload has \"_type\" but is not canonical JSON (the form manifests are signed in): %w", ErrPayload)
	}
	typ, _ := rawType.(string)
	r := Request{Role: typ}
	switch typ {
	case manifest.TypeRoot, manifest.TypeIndex, manifest.TypeSnapshot, manifest.TypeTimestamp:
	case manifest.TypeComponent:
		id, _ := obj["id"].(string)
		if err := manifest.ValidComponentID(id); err != nil {
			return Request{}, fmt.Errorf("component manifest: %v: %w", err, ErrPayload)
		}
		r.Component = id
	default:
		return Request{}, fmt.Errorf("unknown manifest _type %q: %w", truncate(fmt.Sprint(rawType), 40), ErrPayload)
	}
	if n, ok := obj["version"].(json.Number); ok {
		v, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil {
			return Request{}, fmt.Errorf("%s manifest: version %s is not a whole number: %w", typ, truncate(n.String(), 40), ErrPayload)
		}
		r.Version = v
	} else {
		return Request{}, fmt.Errorf("%s manifest: no numeric version: %w", typ, ErrPayload)
	}
	return r, nil
}

// truncate keeps a value quoted in an error short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Grant is one thing a client may have signed: a role, Raw, or the
// components whose IDs match a pattern.
type Grant struct {
	// Role is root, index, snapshot, timestamp, component or raw.
	Role string
	// Pattern matches component IDs (path.Match syntax: "*", "tidb-*",
	// "hello"); only for Role component.
	Pattern string
}

// String returns the grant as it is written: "snapshot", "component:*".
func (g Grant) String() string {
	if g.Role == manifest.TypeComponent {
		return g.Role + ":" + g.Pattern
	}
	return g.Role
}

// allows reports whether the grant covers r.
func (g Grant) allows(r Request) bool {
	if g.Role != r.Role {
		return false
	}
	if g.Role != manifest.TypeComponent {
		return true
	}
	ok, err := path.Match(g.Pattern, r.Component)
	return err == nil && ok
}

// ParseGrant parses one grant: root, index, snapshot, timestamp, raw, or
// component:PATTERN.
func ParseGrant(s string) (Grant, error) {
	s = strings.TrimSpace(s)
	role, pattern, hasPattern := strings.Cut(s, ":")
	switch role {
	case manifest.TypeRoot, manifest.TypeIndex, manifest.TypeSnapshot, manifest.TypeTimestamp, Raw:
		if hasPattern {
			return Grant{}, fmt.Errorf("grant %q: only component grants take a :PATTERN", s)
		}
		return Grant{Role: role}, nil
	case manifest.TypeComponent:
		if !hasPattern || pattern == "" {
			return Grant{}, fmt.Errorf("grant %q: name the components, as component:ID or component:* for all", s)
		}
		if _, err := path.Match(pattern, ""); err != nil || strings.Contains(pattern, "/") {
			return Grant{}, fmt.Errorf("grant %q: bad component pattern", s)
		}
		return Grant{Role: role, Pattern: pattern}, nil
	}
	return Grant{}, fmt.Errorf("grant %q: unknown; a grant is root, index, snapshot, timestamp, raw or component:PATTERN", s)
}

// Policy is the allow-list: for each client, by its certificate's Common
// Name, what it may have signed. A client not in it may sign nothing.
type Policy map[string][]Grant

// ParseAllow builds a policy from CLIENT=GRANT,GRANT,... specifications, as
// --allow takes them; a client named twice gets the union.
func ParseAllow(specs []string) (Policy, error) {
	p := Policy{}
	for _, spec := range specs {
		client, list, ok := strings.Cut(spec, "=")
		client = strings.TrimSpace(client)
		if !ok || client == "" || strings.TrimSpace(list) == "" {
			return nil, fmt.Errorf("allow %q: want CLIENT=GRANT[,GRANT...], e.g. ci=timestamp,snapshot", spec)
		}
		for _, g := range strings.Split(list, ",") {
			grant, err := ParseGrant(g)
			if err != nil {
				return nil, fmt.Errorf("allow %s: %w", client, err)
			}
			if !slices.Contains(p[client], grant) {
				p[client] = append(p[client], grant)
			}
		}
	}
	return p, nil
}

// Allows reports whether client may have r signed.
func (p Policy) Allows(client string, r Request) bool {
	for _, g := range p[client] {
		if g.allows(r) {
			return true
		}
	}
	return false
}

// String lists the policy, one client per entry, for a start-up message.
func (p Policy) String() string {
	clients := make([]string, 0, len(p))
	for c := range p {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	var b strings.Builder
	for i, c := range clients {
		if i > 0 {
			b.WriteString("; ")
		}
		gs := make([]string, len(p[c]))
		for j, g := range p[c] {
			gs[j] = g.String()
		}
		b.WriteString(c + "=" + strings.Join(gs, ","))
	}
	return b.String()
}
