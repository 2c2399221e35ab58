package faulttest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Call is one line of the call log: a call a faulty plugin served, written
// when it ended (or when a fault stopped it).
type Call struct {
	// Seq numbers mutating calls from 1 across every process of the plan;
	// 0 for reads and for signer calls.
	Seq int `json:"seq,omitempty"`
	// Sign numbers Sign calls from 1 across every signer process.
	Sign   int    `json:"sign,omitempty"`
	PID    int    `json:"pid"`
	Plugin string `json:"plugin"` // "backend" or "signer"
	Op     string `json:"op"`     // the sdk method
	Key    string `json:"key,omitempty"`
	// Existed says whether a written key was already present before the
	// call (Put, PutFile): the write-order check looks for overwrites.
	Existed     bool   `json:"existed,omitempty"`
	IfNoneMatch bool   `json:"if_none_match,omitempty"`
	IfMatch     bool   `json:"if_match,omitempty"`
	Size        int64  `json:"size,omitempty"`
	Fault       string `json:"fault,omitempty"` // the fault injected, if any
	Err         string `json:"err,omitempty"`
	Time        string `json:"time"`
}

// Mutating reports whether the call is one the mutation counter numbers.
func (c Call) Mutating() bool { return c.Seq > 0 }

// recorder appends calls to the plan's log and hands out the shared call
// numbers.
type recorder struct {
	plan   *Plan
	plugin string
}

func (r *recorder) log(c Call) {
	if r.plan.Log == "" {
		return
	}
	c.PID = os.Getpid()
	c.Plugin = r.plugin
	c.Time = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(c)
	if err != nil {
		return
	}
	f, err := os.OpenFile(r.plan.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	// Several plugin processes append at once; an flock keeps each line
	// whole whatever the line length.
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX) == nil {
		defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	}
	f.Write(append(line, '\n'))
}

// next increments the named counter in the state directory and returns its
// new value. Without a state directory every call is number 0, which no
// fault matches.
func (r *recorder) next(name string) (int, error) {
	if r.plan.State == "" {
		return 0, nil
	}
	if err := os.MkdirAll(r.plan.State, 0o755); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(filepath.Join(r.plan.State, name+".count"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	n := 0
	if s := strings.TrimSpace(string(b)); s != "" {
		if n, err = strconv.Atoi(s); err != nil {
			return 0, fmt.Errorf("counter %s holds %q", name, s)
		}
	}
	n++
	if _, err := f.WriteAt([]byte(strconv.Itoa(n)+"\n"), 0); err != nil {
		return 0, err
	}
	return n, nil
}

// die ends the process as a crash or a power cut would: no deferred
// function runs, no buffer is flushed, the host sees the connection drop.
func die() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// SIGKILL cannot be caught; this only waits for it to land.
	select {}
}

// hang blocks forever, whatever the context says.
func hang() { select {} }

// ReadLog parses a call log. A missing file is an empty log: a verb that
// never reached its backend logs nothing.
func ReadLog(path string) ([]Call, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var c Call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("read call log %s: %w", path, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// Mutations returns the mutating calls of a log in the order of their
// numbers.
func Mutations(calls []Call) []Call {
	var out []Call
	for _, c := range calls {
		if c.Mutating() {
			out = append(out, c)
		}
	}
	// Lines are appended when calls end, and calls of one verb may
	// overlap; the number says when each began.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Seq < out[j-1].Seq; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
