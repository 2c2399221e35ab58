package trust

import (
	"errors"
	"testing"
)

// TestCheckStrictJSON: what encoding/json reads leniently is refused, and
// what tiup writes passes.
func TestCheckStrictJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"canonical", `{"signatures":[{"keyid":"ab","sig":"cd"}],"signed":{"_type":"timestamp","meta":{"/snapshot.json":{"length":1}},"version":2}}`, true},
		{"map keys differing in case", `{"signed":{"platforms":{"v1.0.0-RC1":{},"v1.0.0-rc1":{}}}}`, true},
		{"newline and tab in a value", `{"signed":{"description":"a\nb\tc"}}`, true},
		{"duplicate member", `{"signed":{"version":1,"version":2}}`, false},
		{"duplicate envelope member", `{"signed":{},"signed":{}}`, false},
		{"case variant of a field", `{"signed":{"Version":2}}`, false},
		{"escaped member name", `{"signed":{"versi\u006fn":2}}`, false},
		{"control character in a value", `{"signed":{"description":"a\u0007b"}}`, false},
		{"NUL in a value", `{"signed":{"description":"a\u0000b"}}`, false},
		{"invalid UTF-8", "{\"signed\":{\"description\":\"a\xffb\"}}", false},
		{"duplicate after a nested object", `{"signed":{"meta":{"a":{"b":1}},"meta":{}}}`, false},
		{"same name in sibling objects", `{"a":{"version":1},"b":{"version":1}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkStrictJSON([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("checkStrictJSON(%s) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

// TestClassOf: each typed error names its class, through wrapping.
func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{&VersionError{Rule: "at least"}, ClassRollback},
		{&VersionError{Rule: "exactly"}, ClassMixAndMatch},
		{&ExpiredError{}, ClassFreeze},
		{&SignatureError{Reason: "bad"}, ClassSignature},
		{&SignatureError{Valid: 0, Need: 1}, ClassThreshold},
		{&HashError{What: "length"}, ClassLength},
		{&HashError{What: "sha512"}, ClassHash},
		{Errorf(ClassRootChain, "gap"), ClassRootChain},
		{untrusted("bad"), ClassMalformed},
		{errors.New("plain"), ""},
	} {
		wrapped := errors.Join(errors.New("context"), tc.err)
		if got := ClassOf(wrapped); got != tc.want {
			t.Errorf("ClassOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if tc.want != "" && !errors.Is(tc.err, ErrUntrusted) {
			t.Errorf("%T does not wrap ErrUntrusted", tc.err)
		}
	}
}
