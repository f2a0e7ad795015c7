package chaos

import (
	"errors"
	"fmt"
	"time"
)

// Config is one run of the harness.
type Config struct {
	// Nodes is the cluster size: 3 or more (5 by default).
	Nodes int
	// ReplicationFactor is passed to every node; 0 means Nodes, so every
	// node holds every range and every partition splits a Raft group.
	ReplicationFactor int
	// Clients is the number of concurrent clients; client i is pinned to
	// node i mod Nodes and runs workload i mod len(Workloads).
	Clients int
	// Workloads are any of WorkloadRegister, WorkloadAppend, WorkloadLock,
	// WorkloadBank, WorkloadAPCounter, WorkloadAPSet.
	Workloads []string
	// Faults are the nemesis's faults (see ParseNemesis); none is allowed.
	Faults []string
	// Duration is the workload's length; the first and last Interval of
	// it are quiet.
	Duration time.Duration
	// Interval is the mean quiet gap between faults and the mean hold of
	// a fault.
	Interval time.Duration
	// Seed derives the fault schedule and every client's operations.
	Seed int64

	// Keys is the number of keys per workload in use at a time; few keys
	// make operations contend.
	Keys int
	// KeyLifetime is how long a key is used before the clients move on to
	// fresh ones: it bounds each key's history, which keeps the checker's
	// search small.
	KeyLifetime time.Duration
	// OpTimeout bounds each client operation; a write that times out is
	// indeterminate.
	OpTimeout time.Duration
	// ThinkTime is each client's mean pause between operations (uniform in
	// [0, 2·ThinkTime)); it keeps the load modest on a shared machine.
	ThinkTime time.Duration
	// CheckTimeout bounds the check of one key's history.
	CheckTimeout time.Duration

	// BankAccounts is the bank workload's number of accounts.
	BankAccounts int
	// BankRanges is how many ranges the bank's accounts are split over
	// at setup, in contiguous groups; 0 means one range per account.
	BankRanges int

	// APAntiEntropyInterval, if not 0, is every node's
	// --ap-anti-entropy-interval (the AP workloads).
	APAntiEntropyInterval time.Duration
	// APConvergeTimeout bounds how long after the workload the replicas
	// of every AP key get to agree; 0 means the anti-entropy interval
	// (the nodes' 10 s unless APAntiEntropyInterval) plus 5 s.
	APConvergeTimeout time.Duration

	// Binary is the concord binary the nodes run.
	Binary string
	// OutDir receives history.jsonl, the node logs and, on a violation,
	// the visualisations.
	OutDir string
	// UnsafeNoReadLease starts every node with --unsafe-no-read-lease:
	// stale reads on purpose, to show the checker catches them.
	UnsafeNoReadLease bool
	// UnsafeLockNoFence drops the lock from the lock workload's guard:
	// writes of a holder that lost its lock land, to show the check
	// catches them.
	UnsafeLockNoFence bool
	// UnsafeTxnNoRecord starts every node with --unsafe-txn-no-record: a
	// txn across ranges commits range by range, with no txn record, to
	// show the bank check catches it.
	UnsafeTxnNoRecord bool
	// UnsafeAPDropHints starts every node with --unsafe-ap-drop-hints:
	// hints are acknowledged and dropped, to show the AP check catches
	// it (see ap.go).
	UnsafeAPDropHints bool

	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// DefaultConfig returns the defaults of `concord chaos`.
func DefaultConfig() Config {
	return Config{
		Nodes:        5,
		Clients:      10,
		Workloads:    []string{WorkloadRegister, WorkloadAppend},
		Faults:       faultGroups["all"],
		Duration:     60 * time.Second,
		Interval:     5 * time.Second,
		Seed:         1,
		Keys:         4,
		KeyLifetime:  10 * time.Second,
		OpTimeout:    2 * time.Second,
		ThinkTime:    10 * time.Millisecond,
		CheckTimeout: 2 * time.Minute,
		BankAccounts: 8,
	}
}

// Bounds a Config must stay within.
const (
	maxNodes    = 9
	maxClients  = 1000
	maxDuration = 24 * time.Hour
	minInterval = 500 * time.Millisecond
)

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 3 || c.Nodes > maxNodes:
		return fmt.Errorf("chaos: %d nodes: want 3..%d", c.Nodes, maxNodes)
	case c.ReplicationFactor < 0 || c.ReplicationFactor > c.Nodes:
		return fmt.Errorf("chaos: replication factor %d: want 0..%d", c.ReplicationFactor, c.Nodes)
	case c.Clients < 1 || c.Clients > maxClients:
		return fmt.Errorf("chaos: %d clients: want 1..%d", c.Clients, maxClients)
	case len(c.Workloads) == 0:
		return errors.New("chaos: no workload")
	case c.Duration <= 0 || c.Duration > maxDuration:
		return fmt.Errorf("chaos: duration %v: want (0, %v]", c.Duration, maxDuration)
	case c.Interval < minInterval:
		return fmt.Errorf("chaos: interval %v: want at least %v", c.Interval, minInterval)
	case c.Keys < 1:
		return fmt.Errorf("chaos: %d keys: want at least 1", c.Keys)
	case c.KeyLifetime <= 0 || c.OpTimeout <= 0 || c.ThinkTime < 0 || c.CheckTimeout <= 0:
		return errors.New("chaos: key lifetime, op timeout and check timeout must be positive, think time not negative")
	case c.Binary == "":
		return errors.New("chaos: no concord binary")
	case c.OutDir == "":
		return errors.New("chaos: no output folder")
	case c.APAntiEntropyInterval < 0 || c.APConvergeTimeout < 0:
		return errors.New("chaos: AP anti-entropy interval and converge timeout must not be negative")
	}
	for _, w := range c.Workloads {
		if isAP(w) {
			continue // checked by CheckAP
		}
		if w == WorkloadBank {
			// Checked by CheckBank, not by a porcupine model.
			if err := c.validateBank(); err != nil {
				return err
			}
			continue
		}
		if _, err := Model(w); err != nil {
			return err
		}
	}
	for _, f := range c.Faults {
		if !contains(faultGroups["all"], f) {
			return fmt.Errorf("chaos: unknown fault %q", f)
		}
	}
	return nil
}
