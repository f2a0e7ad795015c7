package tso

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

func (w *memWindow) Settle(_ context.Context, limit int64) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bound = limit
	return w.bound, nil
}

// next asks o for n revisions in term and checks they follow want: the
// first is want (dense) or, with gapOK, above it.
func next(t *testing.T, o *Oracle, n int, term uint64, want int64, gapOK bool) int64 {
	t.Helper()
	first, err := o.Next(context.Background(), n, term)
	if err != nil {
		t.Fatal(err)
	}
	if first < want || (!gapOK && first != want) {
		t.Fatalf("revisions from %d, want %d (gap allowed: %v)", first, want, gapOK)
	}
	return first + int64(n)
}

func TestDenseWithinATermIncreasingAcross(t *testing.T) {
	w := &memWindow{}
	o, err := New(Config{Window: w, WindowSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	// A new cluster's first write is revision 2, then every revision is
	// handed out once and in order, across many window extensions.
	want := int64(FirstRevision)
	for i := 0; i < 1000; i++ {
		want = next(t, o, 1+i%7, 1, want, false)
	}
	if w.advances < 10 {
		t.Fatalf("%d window advances for %d revisions of a 100-revision window", w.advances, want)
	}
	if last, ok := o.Last(1); !ok || last != want-1 {
		t.Fatalf("Last = %d, %v; want %d", last, ok, want-1)
	}
	// A new leader (a fresh Oracle, as after a failover or a restart)
	// starts at the persisted bound: above everything handed out, with a
	// gap of at most the window.
	o2, _ := New(Config{Window: w, WindowSize: 100})
	got := next(t, o2, 1, 2, want, true) - 1
	if got-want > 200 {
		t.Fatalf("failover skipped from %d to %d", want, got)
	}
	// A leader that settles before handing over leaves no gap.
	if err := o2.Settle(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := o2.Next(context.Background(), 1, 2); err != ErrSettled {
		t.Fatalf("Next after Settle: %v", err)
	}
	o3, _ := New(Config{Window: w, WindowSize: 100})
	next(t, o3, 5, 3, got+1, false)
	if _, err := o3.Next(context.Background(), MaxBatch+1, 3); err == nil {
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

// Concurrent Current callers share Oracle calls, but each is answered by a
// call that began after it asked: it sees every revision handed out
// before.
func TestClientCurrentIsFreshAndShared(t *testing.T) {
	o, _ := New(Config{Window: &memWindow{}})
	var calls atomic.Int64
	c := NewClient(func(ctx context.Context, n int) (int64, error) {
		if n == 0 {
			calls.Add(1)
			time.Sleep(time.Millisecond)
			return o.Current(ctx, 1)
		}
		return o.Next(ctx, n, 1)
	})
	const workers, per = 16, 30
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				first, err := c.Next(context.Background(), 1)
				if err != nil {
					t.Error(err)
					return
				}
				cur, err := c.Current(context.Background())
				if err != nil || cur < first {
					t.Errorf("Current %d after revision %d was handed out (%v)", cur, first, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n >= workers*per {
		t.Fatalf("%d oracle calls for %d Current calls: none shared", n, workers*per)
	}
}

// gatedFetch is a FetchFunc over an Oracle whose calls wait until gate is
// closed, each saying on entered that it began.
type gatedFetch struct {
	o       *Oracle
	entered chan struct{}
	gate    chan struct{}
}

func newGatedFetch(t *testing.T) *gatedFetch {
	o, err := New(Config{Window: &memWindow{}})
	if err != nil {
		t.Fatal(err)
	}
	return &gatedFetch{o: o, entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (g *gatedFetch) fetch(ctx context.Context, n int) (int64, error) {
	g.entered <- struct{}{}
	<-g.gate
	if n == 0 {
		return g.o.Current(ctx, 1)
	}
	return g.o.Next(ctx, n, 1)
}

// waitQueued waits until q() callers wait.
func waitQueued(t *testing.T, c *Client, q func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n := q()
		c.mu.Unlock()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait, want %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantFull checks that err is the refusal of a full queue: ResourceExhausted,
// naming the bound.
func wantFull(t *testing.T, err error, what string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), what) || !strings.Contains(s.Message(), "bound MaxWaiting") {
		t.Fatalf("a caller past a full queue: %v, want ResourceExhausted naming %q and MaxWaiting", err, what)
	}
}

// At most maxWaiting callers of Next wait for the next Oracle call: the
// next is refused at once, those waiting all get their own revisions, and
// once the queue drained callers are served again.
func TestClientBoundsNextQueue(t *testing.T) {
	const bound = 8
	g := newGatedFetch(t)
	c := NewClient(g.fetch)
	c.maxWaiting = bound
	got := make(chan int64, bound+1)
	ask := func() {
		first, err := c.Next(context.Background(), 1)
		if err != nil {
			t.Error(err)
		}
		got <- first
	}
	go ask()
	<-g.entered // that caller's call is out
	for range bound {
		go ask()
	}
	waitQueued(t, c, func() int { return len(c.mu.queue) }, bound)
	_, err := c.Next(context.Background(), 1)
	wantFull(t, err, fmt.Sprintf("%d callers already wait for revisions", bound))

	close(g.gate)
	seen := map[int64]bool{}
	for range bound + 1 {
		rev := <-got
		if seen[rev] || rev < FirstRevision {
			t.Fatalf("revision %d handed out twice or below %d", rev, FirstRevision)
		}
		seen[rev] = true
	}
	waitQueued(t, c, func() int { return len(c.mu.queue) }, 0)
	for range 2 * bound {
		rev, err := c.Next(context.Background(), 1)
		if err != nil || seen[rev] {
			t.Fatalf("Next after the queue drained: %d, %v", rev, err)
		}
		seen[rev] = true
	}
}

// Current's queue is bounded the same way.
func TestClientBoundsCurrentQueue(t *testing.T) {
	const bound = 8
	g := newGatedFetch(t)
	c := NewClient(g.fetch)
	c.maxWaiting = bound
	errs := make(chan error, bound+1)
	ask := func() {
		_, err := c.Current(context.Background())
		errs <- err
	}
	go ask()
	<-g.entered
	for range bound {
		go ask()
	}
	waitQueued(t, c, func() int { return len(c.mu.current) }, bound)
	_, err := c.Current(context.Background())
	wantFull(t, err, fmt.Sprintf("%d callers already wait for the current revision", bound))
	// Next has a queue of its own.
	go func() {
		_, err := c.Next(context.Background(), 1)
		errs <- err
	}()
	<-g.entered

	close(g.gate)
	for range bound + 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, c, func() int { return len(c.mu.current) }, 0)
	for range 2 * bound {
		if _, err := c.Current(context.Background()); err != nil {
			t.Fatalf("Current after the queue drained: %v", err)
		}
	}
}

// hookWindow runs hook inside the next Advance, after it applied and
// before it returns.
type hookWindow struct {
	*memWindow
	hook func()
}

func (w *hookWindow) Advance(ctx context.Context, limit int64) (int64, error) {
	bound, err := w.memWindow.Advance(ctx, limit)
	if h := w.hook; h != nil {
		w.hook = nil
		h()
	}
	return bound, err
}

// A leader whose handover failed resumes where it settled: dense, and
// never above the persisted bound (which Settle lowered), even with a
// window advance that was in flight across the Settle and the Resume.
func TestResumeAfterAFailedHandover(t *testing.T) {
	mw := &memWindow{}
	w := &hookWindow{memWindow: mw}
	o, _ := New(Config{Window: w, WindowSize: 100})
	want := next(t, o, 10, 1, FirstRevision, false)
	var settledAt int64
	w.hook = func() {
		if err := o.Settle(context.Background(), 1); err != nil {
			t.Error(err)
		}
		mw.mu.Lock()
		settledAt = mw.bound
		mw.mu.Unlock()
		o.Resume(1)
	}
	// The advance raised the persisted bound, then the Settle lowered it:
	// the advance's result must not count.
	if err := o.advance(context.Background(), 1, want+500); err != nil {
		t.Fatal(err)
	}
	if settledAt != want {
		t.Fatalf("settled at %d, want %d", settledAt, want)
	}
	o.mu.Lock()
	limit := o.mu.limit
	o.mu.Unlock()
	if limit != want {
		t.Fatalf("limit %d after a resume at %d: an advance from before the settle counted", limit, want)
	}
	for i := 0; i < 50; i++ {
		want = next(t, o, 7, 1, want, false)
		mw.mu.Lock()
		bound := mw.bound
		mw.mu.Unlock()
		if want > bound {
			t.Fatalf("handed out up to %d above the persisted bound %d", want-1, bound)
		}
	}
	// Resume in another term, or twice, changes nothing.
	o.Resume(2)
	o.Resume(1)
	next(t, o, 1, 1, want, false)
}
