package manifest

import (
	"bytes"
	"testing"
)

// FuzzParseEnvelope checks that ParseEnvelope never panics and that whatever
// it accepts re-encodes to a file that parses back to the same signed bytes.
// Seeds live in testdata/fuzz/FuzzParseEnvelope, cut from the fixtures.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"signatures":null,"signed":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		whole, err := env.Bytes()
		if err != nil {
			t.Fatalf("Bytes of an accepted envelope: %v", err)
		}
		back, err := ParseEnvelope(whole)
		if err != nil {
			t.Fatalf("re-parse %q: %v", whole, err)
		}
		if !bytes.Equal(back.Signed, env.Signed) || len(back.Signatures) != len(env.Signatures) {
			t.Fatalf("round trip changed the envelope")
		}
		for _, v := range []Signed{&Root{}, &Index{}, &Component{}, &Snapshot{}, &Timestamp{}} {
			_ = env.Decode(v)
		}
	})
}
