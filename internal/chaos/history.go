package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// Result is how an operation ended.
type Result string

// The results, as Jepsen names them.
const (
	// Ok: the operation took effect and returned the recorded output.
	Ok Result = "ok"
	// Fail: the operation certainly did not take effect (a read that
	// errored, a write the server rejected as invalid).
	Fail Result = "fail"
	// Info: indeterminate (timeout, lost connection, unavailable): the
	// operation may or may not have taken effect, possibly later.
	Info Result = "info"
)

// Kind is an operation's type.
type Kind string

// The operation kinds of the register, append and lock workloads (the
// bank adds KindTransfer).
const (
	KindRead   Kind = "read"
	KindWrite  Kind = "write"
	KindCAS    Kind = "cas"
	KindAppend Kind = "append"
)

// Op is one completed client operation of the history.
type Op struct {
	// Process identifies a sequential actor: a client takes a new process
	// number after an info operation, since that one never ends.
	Process  int    `json:"process"`
	Client   int    `json:"client"`
	Node     int    `json:"node"` // 0-based node the client is pinned to
	Workload string `json:"workload"`
	Kind     Kind   `json:"kind"`
	Key      string `json:"key"`
	// Value is the value written (write, cas) or appended (append).
	Value string `json:"value,omitempty"`
	// Old is the value a cas compares against.
	Old string `json:"old,omitempty"`

	Result Result `json:"result"`
	// Out is what a read returned ("" for an absent key).
	Out string `json:"out,omitempty"`
	// Succeeded is a cas's Txn outcome (only meaningful when ok).
	Succeeded bool   `json:"succeeded,omitempty"`
	Err       string `json:"err,omitempty"`
	// Revision is the header revision of an ok write (a put, a cas that
	// succeeded, an append, a transfer that succeeded): the write's
	// commit revision.
	Revision int64 `json:"revision,omitempty"`
	// Bank is what a bank operation read and wrote (see bank.go).
	Bank *BankOp `json:"bank,omitempty"`

	// Start and End are nanoseconds since the run began, from the
	// monotonic clock: invocation and completion as the client saw them.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// History collects operations from concurrent clients.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add appends one completed operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// WriteHistory writes ops as JSON lines to path.
func WriteHistory(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadHistory reads a history written by WriteHistory, so a history can
// be checked again offline.
func ReadHistory(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var op Op
		if err := dec.Decode(&op); err != nil {
			return nil, fmt.Errorf("chaos: %s op %d: %w", path, len(ops)+1, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}
