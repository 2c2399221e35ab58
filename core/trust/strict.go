package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxSignatures caps the signature entries of one manifest. A TiUP
// manifest carries one per key of its role (five for the official root);
// sumdb's note.Open refuses more than 100. The cap bounds the work an
// oversized list can cause before the threshold is counted.
const MaxSignatures = 256

// checkStrictJSON refuses a manifest that encoding/json would read
// leniently, so that the signed bytes have exactly one meaning:
//   - invalid UTF-8 (encoding/json silently replaces it);
//   - two members of one object with the same name (encoding/json keeps
//     the last);
//   - a case variant of a field name of the TiUP manifests ("Version"):
//     encoding/json matches struct fields case-insensitively, so it would
//     set version. Map keys (versions, platforms, key IDs) are compared
//     exactly by encoding/json and may differ in case;
//   - escapes in member names ("versi\u006fn"): a canonical encoder never
//     writes them, and they hide a name from a reader that compares bytes;
//   - control characters in strings other than tab, newline and carriage
//     return, and any in member names (sumdb refuses them in notes too).
//
// Trailing data is refused by the envelope parser.
func checkStrictJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("invalid UTF-8")
	}
	type frame struct {
		object    bool
		expectKey bool
		names     map[string]bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	prev := int64(0)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		off := dec.InputOffset()
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.expectKey
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{object: true, expectKey: true, names: map[string]bool{}})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].expectKey = true
				}
			}
		case string:
			if isKey {
				// The raw text between the previous token and this one is
				// separators, whitespace and the quoted name: a backslash
				// there can only be an escape inside the name.
				if bytes.IndexByte(b[prev:off], '\\') >= 0 {
					return fmt.Errorf("member name %q is written with escapes", v)
				}
				if i := strings.IndexFunc(v, isControl); i >= 0 {
					return fmt.Errorf("member name %q has a control character", v)
				}
				if top.names[v] {
					return fmt.Errorf("duplicate member %q", v)
				}
				if f, ok := fieldNames[strings.ToLower(v)]; ok && f != v {
					return fmt.Errorf("member %q is a case variant of field %q", v, f)
				}
				top.names[v] = true
				top.expectKey = false
				break
			}
			if i := strings.IndexFunc(v, func(r rune) bool { return isControl(r) && r != '\t' && r != '\n' && r != '\r' }); i >= 0 {
				return fmt.Errorf("string value has control character %U", []rune(v[i:])[0])
			}
			if top != nil && top.object {
				top.expectKey = true
			}
		default:
			if top != nil && top.object {
				top.expectKey = true
			}
		}
		prev = off
	}
}

// fieldNames are the JSON field names of the envelope and of the five
// manifest types (core/manifest), by their lowercase form.
var fieldNames = func() map[string]string {
	m := map[string]string{}
	for _, f := range []string{
		"signatures", "signed", "keyid", "sig",
		"_type", "spec_version", "expires", "version",
		"roles", "url", "keys", "threshold", "keytype", "keyval", "scheme", "public", "private",
		"owners", "components", "default_components", "name", "yanked", "owner", "standalone", "hidden",
		"id", "description", "nightly", "platforms", "entry", "released", "dependencies", "hashes", "length",
		"meta",
	} {
		m[strings.ToLower(f)] = f
	}
	return m
}()

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
