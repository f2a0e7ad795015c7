package telemetry

import (
	"sync"
	"time"
)

// DefaultEventCapacity is how many events a node keeps: enough for the
// dashboard's "recent events" over a demo's failovers, small enough to
// serve whole on every poll.
const DefaultEventCapacity = 256

// Event kinds.
const (
	EventLeader   = "leader"    // a range's leader changed
	EventNodeUp   = "node-up"   // a peer answered again
	EventNodeDown = "node-down" // a peer stopped answering
	EventFault    = "fault"     // a fault injected from the dashboard
	EventSplit    = "split"     // a range split (on the node that split it)
	EventMerge    = "merge"     // a range merged into its left neighbour
)

// Event is one thing that happened on a node, as the dashboard lists it.
type Event struct {
	// Seq numbers a node's events from 1, so a poller asks only for newer
	// ones.
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Range   uint64    `json:"range,omitempty"`
	Node    uint64    `json:"node,omitempty"`
	Message string    `json:"message"`
}

// Events is a bounded log of recent events, oldest dropped first. It is
// safe for concurrent use and on a nil receiver.
type Events struct {
	mu sync.Mutex
	// ring holds the newest events; next is where the next one goes.
	// Invariant: len(ring) <= cap(ring) == capacity.
	ring []Event
	next int
	seq  uint64
}

// NewEvents creates an event log of the given capacity (0: the default).
func NewEvents(capacity int) *Events {
	if capacity <= 0 {
		capacity = DefaultEventCapacity
	}
	return &Events{ring: make([]Event, 0, capacity)}
}

// Add appends e, stamping its Seq and, if zero, its Time.
func (l *Events) Add(e Event) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, e)
		return
	}
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
}

// Since returns the events with Seq above after, oldest first. The caller
// owns the returned slice.
func (l *Events) Since(after uint64) []Event {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, 0, len(l.ring))
	for i := range l.ring {
		e := l.ring[(l.next+i)%len(l.ring)]
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}
