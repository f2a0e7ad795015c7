package crdt

import "sync"

// HLC is a hybrid logical clock timestamp: physical time in nanoseconds
// since the Unix epoch, and a logical counter that orders events within one
// physical tick or when a clock lags a timestamp it has seen.
type HLC struct {
	Wall    int64
	Logical uint32
}

// Less orders timestamps by wall time, then logical counter.
func (h HLC) Less(o HLC) bool {
	if h.Wall != o.Wall {
		return h.Wall < o.Wall
	}
	return h.Logical < o.Logical
}

// IsZero reports whether h is the zero timestamp (never written).
func (h HLC) IsZero() bool { return h == HLC{} }

// Clock issues HLC timestamps that never go backwards and stay ahead of
// every timestamp it was told about (Observe). It is safe for concurrent
// use.
type Clock struct {
	// physical returns the current wall time in Unix nanoseconds.
	physical func() int64

	mu sync.Mutex
	// last is the newest timestamp issued or observed.
	// Invariant: every Now returns a timestamp greater than last.
	last HLC
}

// NewClock returns a clock reading physical, which returns wall time in Unix
// nanoseconds (time.Now().UnixNano at the edges, a fake in tests).
func NewClock(physical func() int64) *Clock { return &Clock{physical: physical} }

// Now returns a timestamp greater than every one issued or observed before.
func (c *Clock) Now() HLC {
	pt := c.physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last.Wall {
		c.last = HLC{Wall: pt}
	} else {
		c.last.Logical++
	}
	return c.last
}

// Observe moves the clock past ts, a timestamp read from another replica's
// state, so that a write made after reading ts orders after it even when
// this node's wall clock is behind.
func (c *Clock) Observe(ts HLC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Less(ts) {
		c.last = ts
	}
}
