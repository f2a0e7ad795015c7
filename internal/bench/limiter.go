package bench

import (
	"context"
	"sync/atomic"
	"time"
)

// Limiter paces an open-loop run: op slot i is due at start + i/rate, for
// every worker together, whether or not earlier ops have finished. Latency
// is then measured from the slot's due time, so when the server falls
// behind the queueing shows in the histogram (no coordinated omission).
// A Limiter is safe for concurrent use.
type Limiter struct {
	start    time.Time
	interval time.Duration
	next     atomic.Int64 // Invariant: the number of slots handed out
}

// NewLimiter returns a limiter of rate ops per second whose first slot is
// due at start. rate must be positive.
func NewLimiter(start time.Time, rate float64) *Limiter {
	return &Limiter{start: start, interval: time.Duration(float64(time.Second) / rate)}
}

// Slot hands out the next slot and returns when it is due.
func (l *Limiter) Slot() time.Time {
	i := l.next.Add(1) - 1
	return l.start.Add(time.Duration(i) * l.interval)
}

// Wait takes the next slot and sleeps until it is due; it returns the due
// time, or ctx's error if ctx ends first.
func (l *Limiter) Wait(ctx context.Context) (time.Time, error) {
	due := l.Slot()
	d := time.Until(due)
	if d <= 0 {
		return due, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return due, nil
	case <-ctx.Done():
		return due, ctx.Err()
	}
}
