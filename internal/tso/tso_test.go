package tso

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memWindow is an in-memory Window (the real one is the meta range).
type memWindow struct {
	mu       sync.Mutex
	bound    int64
	advances int
}

func (w *memWindow) Load(context.Context) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bound, nil
}

func (w *memWindow) Advance(_ context.Context, limit int64) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advances++
	w.bound = max(w.bound, limit)
	return w.bound, nil
}

type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func TestMonotonicAcrossTermsAndRestarts(t *testing.T) {
	ctx := context.Background()
	w := &memWindow{}
	clock := &fakeClock{}
	clock.ms.Store(1_000_000)
	o, err := New(Config{Window: w, Now: clock.now, WindowSize: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	next := func(o *Oracle, n int, term uint64) {
		t.Helper()
		ts, err := o.Next(ctx, n, term)
		if err != nil {
			t.Fatal(err)
		}
		if ts <= last {
			t.Fatalf("timestamp %d not above %d", ts, last)
		}
		last = ts + int64(n) - 1
	}
	for i := 0; i < 1000; i++ {
		next(o, 1+i%7, 1)
	}
	// The clock goes backwards: timestamps do not.
	clock.ms.Add(-500_000)
	next(o, 3, 1)
	// A new leader (a fresh Oracle, as after a restart) starts above the
	// persisted bound, even with a clock far behind.
	o2, _ := New(Config{Window: w, Now: clock.now, WindowSize: time.Second})
	next(o2, 1, 2)
	if Physical(last) < 1_000_000 {
		t.Fatalf("new leader went back to physical %d", Physical(last))
	}
	// The clock runs past the window: the oracle extends it.
	clock.ms.Add(2_000_000)
	next(o2, 1, 2)
	if w.bound <= Physical(last) {
		t.Fatalf("window %d not above handed out physical %d", w.bound, Physical(last))
	}
}

func TestLogicalOverflowMovesPhysical(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(5000)
	o, _ := New(Config{Window: &memWindow{}, Now: clock.now})
	a, _ := o.Next(context.Background(), MaxBatch-1, 1)
	b, _ := o.Next(context.Background(), 2, 1)
	if b <= a+MaxBatch-2 || Physical(b) != Physical(a)+1 {
		t.Fatalf("a=%d b=%d: logical overflow not handled", a, b)
	}
	if _, err := o.Next(context.Background(), MaxBatch+1, 1); err == nil {
		t.Fatal("oversized batch accepted")
	}
}

func TestClientCoalescesAndIsUnique(t *testing.T) {
	o, _ := New(Config{Window: &memWindow{}})
	var calls atomic.Int64
	c := NewClient(func(ctx context.Context, n int) (int64, error) {
		calls.Add(1)
		time.Sleep(time.Millisecond) // let requests pile up
		return o.Next(ctx, n, 1)
	})
	const workers, per = 32, 50
	got := make(chan int64, workers*per*3)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				n := 1 + j%3
				ts, err := c.Next(context.Background(), n)
				if err != nil {
					t.Error(err)
					return
				}
				for k := 0; k < n; k++ {
					got <- ts + int64(k)
				}
			}
		}()
	}
	wg.Wait()
	close(got)
	seen := map[int64]bool{}
	for ts := range got {
		if seen[ts] {
			t.Fatalf("timestamp %d handed out twice", ts)
		}
		seen[ts] = true
	}
	if calls.Load() >= workers*per {
		t.Fatalf("%d oracle calls for %d requests: no coalescing", calls.Load(), workers*per)
	}
}
