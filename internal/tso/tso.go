// Package tso owns Concord's revision oracle: it hands out consecutive
// revision numbers, cluster-wide, to the writes being proposed, exactly as
// many as they need, so that revisions are dense as etcd's (a new cluster's
// first write is FirstRevision, then FirstRevision+1, ...).
//
// The Oracle runs on the meta range's leader. It never hands out a number
// at or above the window bound persisted in the meta range, and a new
// leader starts at the bound it reads back, so revisions never repeat or go
// backwards across a leader change or a full restart. The numbers between
// the last one a deposed leader handed out and its bound are never used:
// that is the only gap a failover leaves. A leader that steps down cleanly
// (Settle) lowers the bound to its next number first, so a hand-over leaves
// none. The Client runs on every node and coalesces concurrent requests
// into one call to the Oracle.
package tso

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/telemetry"
)

// ErrSettled is returned by Next once Settle has run in the caller's term:
// the meta range's leadership is being handed over.
var ErrSettled = errors.New("tso: handing over to the next meta leader")

// FirstRevision is the first revision the Oracle hands out in a new
// cluster. etcd's store starts at revision 1 with no keys, and its first
// write is revision 2.
const FirstRevision = 2

// MaxBatch is the most revisions one call may ask for.
const MaxBatch = 1 << 18

// DefaultWindow is how many revisions ahead of the next one the bound is
// kept: the most a failover may skip. It is extended (one meta-range
// write) each time half of it is used: 20 times a second at 10k writes/s,
// and a write waits for an extension only if 500 revisions go before one
// meta-range write commits.
const DefaultWindow = 1000

// Window persists the Oracle's bound: every revision handed out is below
// it. Implementations go through the meta range.
type Window interface {
	// Load returns the persisted bound, read linearizably (0 if none).
	Load(ctx context.Context) (int64, error)
	// Advance stores max(persisted, limit) durably and returns it.
	Advance(ctx context.Context, limit int64) (int64, error)
	// Settle stores limit even if it is below the persisted bound: the
	// caller leads the meta range, hands out nothing from now on, and every
	// revision it handed out is below limit, so lowering the bound is
	// safe. It returns the bound now persisted.
	Settle(ctx context.Context, limit int64) (int64, error)
}

// Config configures an Oracle.
type Config struct {
	Window Window
	// WindowSize is how far ahead of the next revision the bound is kept
	// (DefaultWindow if 0).
	WindowSize int64
	// Metrics counts the revisions handed out; nil counts nothing.
	Metrics *telemetry.Metrics
}

// Oracle hands out revisions while its node leads the meta range.
type Oracle struct {
	cfg Config

	// initMu serialises (re)initialisation and Settle, which do I/O; mu
	// guards the allocation state and is never held across I/O.
	// Lock order: initMu before mu.
	initMu sync.Mutex
	mu     struct {
		sync.Mutex
		// term is the meta leader term this state belongs to (0: none).
		term uint64
		// Invariant: next is above every revision handed out, and
		// next <= limit, the bound persisted.
		next, limit int64
		extending   bool
		// settled is set by Settle: term hands out nothing more.
		settled bool
		// settles counts Settle calls: a window advance that began before
		// one may have been lowered by it, so its bound is not kept.
		settles uint64
	}
}

// New creates an Oracle.
func New(cfg Config) (*Oracle, error) {
	if cfg.Window == nil {
		return nil, errors.New("tso: no Window")
	}
	if cfg.WindowSize == 0 {
		cfg.WindowSize = DefaultWindow
	}
	if cfg.WindowSize < 2 {
		return nil, fmt.Errorf("tso: window of %d revisions is too small", cfg.WindowSize)
	}
	return &Oracle{cfg: cfg}, nil
}

// Next returns the first of n consecutive revisions. term is the caller's
// current term as meta leader; a new term makes the Oracle reload its window
// before serving.
func (o *Oracle) Next(ctx context.Context, n int, term uint64) (int64, error) {
	if n <= 0 || n > MaxBatch {
		return 0, fmt.Errorf("tso: batch of %d outside [1, %d]", n, MaxBatch)
	}
	if err := o.ensureTerm(ctx, term); err != nil {
		return 0, err
	}
	for {
		o.mu.Lock()
		if o.mu.term != term {
			o.mu.Unlock()
			return 0, fmt.Errorf("tso: term changed to %d while serving term %d", o.mu.term, term)
		}
		if o.mu.settled {
			o.mu.Unlock()
			return 0, ErrSettled
		}
		if o.mu.next+int64(n) <= o.mu.limit {
			first := o.mu.next
			o.mu.next += int64(n)
			extend := !o.mu.extending && o.mu.next+o.cfg.WindowSize/2 >= o.mu.limit
			if extend {
				o.mu.extending = true
			}
			o.mu.Unlock()
			if extend {
				go o.extend(term)
			}
			o.cfg.Metrics.ObserveTimestamps(n)
			return first, nil
		}
		want := o.mu.next + int64(n) + o.cfg.WindowSize
		o.mu.Unlock()
		// Out of window: extend synchronously.
		if err := o.advance(ctx, term, want); err != nil {
			return 0, err
		}
	}
}

// Current returns the newest revision handed out anywhere in the cluster,
// as far as this Oracle can tell while serving term: every revision any
// leader handed out before is at or below it. It loads the window first in
// a new term, as Next does.
func (o *Oracle) Current(ctx context.Context, term uint64) (int64, error) {
	if err := o.ensureTerm(ctx, term); err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.term != term {
		return 0, fmt.Errorf("tso: term changed to %d while serving term %d", o.mu.term, term)
	}
	return o.mu.next - 1, nil
}

// Last returns the newest revision this Oracle handed out in term, and
// false if it handed out none in that term (or serves another).
func (o *Oracle) Last(term uint64) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.term != term || o.mu.term == 0 {
		return 0, false
	}
	return o.mu.next - 1, true
}

func (o *Oracle) ensureTerm(ctx context.Context, term uint64) error {
	o.mu.Lock()
	ok := o.mu.term == term
	o.mu.Unlock()
	if ok {
		return nil
	}
	o.initMu.Lock()
	defer o.initMu.Unlock()
	o.mu.Lock()
	ok = o.mu.term == term
	o.mu.Unlock()
	if ok {
		return nil
	}
	bound, err := o.cfg.Window.Load(ctx)
	if err != nil {
		return fmt.Errorf("tso: load window: %w", err)
	}
	// Everything a previous leader handed out is below bound.
	start := max(bound, FirstRevision)
	limit, err := o.cfg.Window.Advance(ctx, start+o.cfg.WindowSize)
	if err != nil {
		return fmt.Errorf("tso: advance window: %w", err)
	}
	o.mu.Lock()
	o.mu.term = term
	o.mu.next = start
	o.mu.limit = limit
	o.mu.extending = false
	o.mu.settled = false
	o.mu.Unlock()
	return nil
}

func (o *Oracle) extend(term uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), extendTimeout)
	defer cancel()
	o.mu.Lock()
	want := o.mu.next + o.cfg.WindowSize
	o.mu.Unlock()
	_ = o.advance(ctx, term, want)
	o.mu.Lock()
	o.mu.extending = false
	o.mu.Unlock()
}

// extendTimeout bounds a background extension of the window.
const extendTimeout = 5 * time.Second

func (o *Oracle) advance(ctx context.Context, term uint64, want int64) error {
	o.mu.Lock()
	settles := o.mu.settles
	o.mu.Unlock()
	limit, err := o.cfg.Window.Advance(ctx, want)
	if err != nil {
		return fmt.Errorf("tso: advance window: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.term == term && o.mu.settles == settles && limit > o.mu.limit {
		o.mu.limit = limit
	}
	return nil
}

// Reset forgets the current term (leadership lost); the next Next reloads.
func (o *Oracle) Reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mu.term = 0
}

// Resume undoes Settle in term when the leadership stayed here (a move of
// it that failed): revisions are handed out again from the settled bound,
// which the window must first be advanced past.
func (o *Oracle) Resume(term uint64) {
	o.initMu.Lock()
	defer o.initMu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.term != term || !o.mu.settled {
		return
	}
	o.mu.settled = false
	o.mu.limit = o.mu.next
}

// Settle stops handing out revisions in term and lowers the persisted
// bound to the next revision, so that the next leader continues without a
// gap. Call it before handing the meta range's leadership to another node,
// while still leading. Next fails with ErrSettled for term afterwards (a
// new term serves again, from the settled bound).
func (o *Oracle) Settle(ctx context.Context, term uint64) error {
	o.initMu.Lock()
	defer o.initMu.Unlock()
	o.mu.Lock()
	if o.mu.term != term || o.mu.term == 0 || o.mu.settled {
		o.mu.Unlock()
		return nil // nothing handed out in term: the bound is what it was
	}
	next := o.mu.next
	o.mu.settled = true
	o.mu.settles++
	o.mu.Unlock()
	if _, err := o.cfg.Window.Settle(ctx, next); err != nil {
		return fmt.Errorf("tso: settle window: %w", err)
	}
	return nil
}
