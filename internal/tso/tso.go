// Package tso owns Concord's timestamp oracle: strictly increasing 64-bit
// timestamps (physical milliseconds << 18 | logical) that are the revisions
// of every write in the cluster.
//
// The Oracle runs on the meta range's leader. It never hands out a timestamp
// whose physical part reaches the window bound persisted in the meta range,
// and a new leader starts above the bound it reads back, so timestamps never
// go backwards across a leader change or a full restart. The Client runs on
// every node and coalesces concurrent requests into one call to the Oracle.
package tso

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/telemetry"
)

// LogicalBits is the width of the logical part of a timestamp.
const LogicalBits = 18

// MaxBatch is the most timestamps one call may ask for: the logical space
// of one millisecond.
const MaxBatch = 1 << LogicalBits

// Compose builds a timestamp from its parts.
func Compose(physicalMs, logical int64) int64 { return physicalMs<<LogicalBits | logical }

// Physical returns the millisecond part of a timestamp.
func Physical(ts int64) int64 { return ts >> LogicalBits }

// Window persists the Oracle's upper bound, in milliseconds. Implementations
// go through the meta range.
type Window interface {
	// Load returns the persisted bound, read linearizably (0 if none).
	Load(ctx context.Context) (int64, error)
	// Advance stores max(persisted, limit) durably and returns it.
	Advance(ctx context.Context, limit int64) (int64, error)
}

// Config configures an Oracle.
type Config struct {
	Window Window
	// WindowSize is how far ahead of the clock the bound is kept: the most
	// time a new leader may have to skip forward. Default 3 s.
	WindowSize time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts the timestamps handed out; nil counts nothing.
	Metrics *telemetry.Metrics
}

// Oracle hands out timestamps while its node leads the meta range.
type Oracle struct {
	cfg Config

	// initMu serialises (re)initialisation, which does I/O; mu guards the
	// allocation state and is never held across I/O.
	// Lock order: initMu before mu.
	initMu sync.Mutex
	mu     struct {
		sync.Mutex
		// term is the meta leader term this state belongs to (0: none).
		term uint64
		// Invariant: Compose(physical, logical) is above every timestamp
		// handed out, and physical < limit.
		physical, logical int64
		limit             int64
		extending         bool
	}
}

// New creates an Oracle.
func New(cfg Config) (*Oracle, error) {
	if cfg.Window == nil {
		return nil, errors.New("tso: no Window")
	}
	if cfg.WindowSize == 0 {
		cfg.WindowSize = 3 * time.Second
	}
	if cfg.WindowSize < 10*time.Millisecond {
		return nil, fmt.Errorf("tso: window %v too small", cfg.WindowSize)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Oracle{cfg: cfg}, nil
}

func (o *Oracle) nowMs() int64 { return o.cfg.Now().UnixMilli() }

// Next returns the first of n consecutive timestamps. term is the caller's
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
		if now := o.nowMs(); now > o.mu.physical {
			o.mu.physical, o.mu.logical = now, 0
		}
		if o.mu.logical+int64(n) > MaxBatch {
			o.mu.physical, o.mu.logical = o.mu.physical+1, 0
		}
		if o.mu.physical < o.mu.limit {
			first := Compose(o.mu.physical, o.mu.logical)
			o.mu.logical += int64(n)
			extend := !o.mu.extending && o.mu.physical+o.cfg.WindowSize.Milliseconds()/2 >= o.mu.limit
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
		o.mu.Unlock()
		// Out of window: extend synchronously.
		if err := o.advance(ctx, term); err != nil {
			return 0, err
		}
	}
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
	start := max(o.nowMs(), bound)
	limit, err := o.cfg.Window.Advance(ctx, start+o.cfg.WindowSize.Milliseconds())
	if err != nil {
		return fmt.Errorf("tso: advance window: %w", err)
	}
	o.mu.Lock()
	o.mu.term = term
	o.mu.physical, o.mu.logical = start, 0
	o.mu.limit = limit
	o.mu.extending = false
	o.mu.Unlock()
	return nil
}

func (o *Oracle) extend(term uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.advance(ctx, term)
	o.mu.Lock()
	o.mu.extending = false
	o.mu.Unlock()
}

func (o *Oracle) advance(ctx context.Context, term uint64) error {
	o.mu.Lock()
	want := max(o.nowMs(), o.mu.physical) + o.cfg.WindowSize.Milliseconds()
	o.mu.Unlock()
	limit, err := o.cfg.Window.Advance(ctx, want)
	if err != nil {
		return fmt.Errorf("tso: advance window: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.term == term && limit > o.mu.limit {
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
