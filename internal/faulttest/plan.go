// Package faulttest holds the fault-injecting plugins of the repository-side
// attack suite (attack catalogue §1.12 and §4) and the cases that run the
// built mirror binary against them.
//
// Two test-only external plugins live under cmd/: mirror-backend-faulty
// wraps the fs backend (plugins/backend-fs/fsbackend) and
// mirror-signer-faulty wraps the local signer
// (plugins/signer-local/localsigner). The host finds them like any
// third-party plugin, by executable name: a mirror address
// faulty:///abs/dir or a key reference faulty:///abs/key.json. Both read
// one fault plan (Plan) from $MIRROR_FAULT_PLAN and append every call they
// serve to the plan's JSONL log, which is how a case counts the mutating
// calls of a verb and checks their order.
//
// Mutating calls are numbered across every process that follows the same
// plan (a verb may start several backend plugins), through a counter file
// in the plan's state directory, so "the k-th mutating call" means the same
// thing in a dry run and in the run that faults.
package faulttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// EnvPlan names the environment variable the faulty plugins read their plan
// from: the JSON text itself, or the path of a file holding it. Unset means
// no faults and no log.
const EnvPlan = "MIRROR_FAULT_PLAN"

// Scheme is the address scheme, and the plugin name, of both faulty
// plugins: faulty:///abs/dir for the backend, faulty:///abs/key.json for
// the signer.
const Scheme = "faulty"

// Plan is what the faulty plugins do. The zero Plan passes every call
// through unchanged.
type Plan struct {
	// Log is a file every call is appended to as one JSON line (a Call).
	Log string `json:"log,omitempty"`
	// State is a directory shared by every process following the plan: the
	// call counters and, for volatile plans, the undo journal and the
	// stash of replaced files. Needed by any numbered fault.
	State string `json:"state,omitempty"`
	// Backend are the storage faults.
	Backend BackendPlan `json:"backend"`
	// Signer are the signing faults.
	Signer SignerPlan `json:"signer"`
}

// BackendPlan are the storage faults. Each *At field names a mutating call
// (Put, PutFile, Delete, Lock) by its 1-based number; 0 disables it.
type BackendPlan struct {
	// CrashAfterMutations carries out mutating call k and then kills the
	// plugin with SIGKILL before it answers, so the host sees a crash after
	// exactly k mutations reached storage.
	CrashAfterMutations int `json:"crash_after_mutations,omitempty"`
	// ErrorAt fails mutating call k without touching storage.
	ErrorAt int `json:"error_at,omitempty"`
	// TornWriteAt, when call k is a Put or PutFile, writes the first half of
	// the bytes straight into the final file, in place, and then crashes:
	// a backend without fsbackend's write-to-temporary-and-rename. A call
	// k of another kind just crashes before it runs.
	TornWriteAt int `json:"torn_write_at,omitempty"`
	// DropWriteAt acknowledges call k without carrying it out: a Put
	// reads the whole stream and answers with plausible info, a Delete
	// answers nil, a Lock hands out an unlock that guards nothing.
	DropWriteAt int `json:"drop_write_at,omitempty"`
	// CorruptRead lists keys whose Get returns the stored bytes with the
	// middle byte flipped; their LocalPath is refused, so readers that
	// would open the file directly stream it through Get instead.
	CorruptRead []string `json:"corrupt_read,omitempty"`
	// HangAt makes mutating call k block forever, ignoring its context, as
	// a plugin stuck in a system call would.
	HangAt int `json:"hang_at,omitempty"`
	// HangRead makes every Stat, Get and LocalPath of this key block
	// forever.
	HangRead string `json:"hang_read,omitempty"`
	// ListFlood makes List report this many made-up objects and ignore
	// both its callback's errors and its context: the million-entry
	// listing of RP-17.
	ListFlood int `json:"list_flood,omitempty"`
	// Volatile turns on the page-cache model (see journal.go): "fsync" for
	// the durability fsbackend provides, "nosync" for a backend that never
	// fsyncs. Every mutation is journalled so that PowerLoss can later
	// drop what the model says was not yet durable.
	Volatile string `json:"volatile,omitempty"`
}

// Volatile modes.
const (
	VolatileFsync  = "fsync"
	VolatileNoSync = "nosync"
)

// SignerPlan are the signing faults. At numbers Sign calls from 1 across
// every signer process following the plan; 0 means every call.
type SignerPlan struct {
	// Fault is what the faulty Sign call does: SignCrash, SignHang,
	// SignOtherBytes, SignGarbage, SignHuge or SignError. Empty signs
	// honestly.
	Fault string `json:"fault,omitempty"`
	At    int    `json:"at,omitempty"`
}

// Signer faults.
const (
	SignCrash      = "crash"       // SIGKILL in the middle of Sign
	SignHang       = "hang"        // never answer, ignoring the context
	SignOtherBytes = "other_bytes" // a valid signature over other bytes
	SignGarbage    = "garbage"     // random bytes of a signature's length
	SignHuge       = "huge"        // 10 MB of random bytes
	SignError      = "error"       // an error
)

// HugeSignatureSize is the length of a SignHuge answer.
const HugeSignatureSize = 10 << 20

// LoadPlan reads the plan named by $MIRROR_FAULT_PLAN.
func LoadPlan() (*Plan, error) {
	return ParsePlan(os.Getenv(EnvPlan))
}

// ParsePlan reads a plan given as JSON text or as the path of a JSON file;
// "" is the zero plan. Unknown fields are refused, so a misspelt fault
// never silently does nothing.
func ParsePlan(s string) (*Plan, error) {
	p := &Plan{}
	s = strings.TrimSpace(s)
	if s == "" {
		return p, nil
	}
	text := []byte(s)
	if !strings.HasPrefix(s, "{") {
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("read fault plan: %w", err)
		}
		text = b
	}
	dec := json.NewDecoder(strings.NewReader(string(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("parse fault plan: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("fault plan: %w", err)
	}
	return p, nil
}

func (p *Plan) validate() error {
	b := p.Backend
	for name, v := range map[string]int{
		"crash_after_mutations": b.CrashAfterMutations, "error_at": b.ErrorAt, "torn_write_at": b.TornWriteAt,
		"drop_write_at": b.DropWriteAt, "hang_at": b.HangAt, "list_flood": b.ListFlood, "signer.at": p.Signer.At,
	} {
		if v < 0 {
			return fmt.Errorf("%s is %d, want 0 or more", name, v)
		}
	}
	switch b.Volatile {
	case "", VolatileFsync, VolatileNoSync:
	default:
		return fmt.Errorf("volatile is %q, want %q or %q", b.Volatile, VolatileFsync, VolatileNoSync)
	}
	switch p.Signer.Fault {
	case "", SignCrash, SignHang, SignOtherBytes, SignGarbage, SignHuge, SignError:
	default:
		return fmt.Errorf("signer fault %q is not one of crash, hang, other_bytes, garbage, huge, error", p.Signer.Fault)
	}
	numbered := b.CrashAfterMutations+b.ErrorAt+b.TornWriteAt+b.DropWriteAt+b.HangAt > 0 || b.Volatile != "" || p.Signer.Fault != ""
	if numbered && p.State == "" {
		return errors.New("numbered faults and volatile mode need a state directory")
	}
	return nil
}

// Encode returns the plan as the JSON text $MIRROR_FAULT_PLAN takes.
func (p *Plan) Encode() string {
	b, err := json.Marshal(p)
	if err != nil {
		// A Plan holds only strings and numbers.
		panic(err)
	}
	return string(b)
}
