package tso

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FetchFunc asks the Oracle (wherever it runs) for n revisions.
type FetchFunc func(ctx context.Context, n int) (int64, error)

// fetchTimeout bounds one call to the Oracle.
const fetchTimeout = 3 * time.Second

// MaxWaiting bounds each of a Client's two queues: the callers of Next, and
// those of Current, waiting for the next call to the Oracle (callers that
// gave up included: they stay until that call answers). Next's callers are
// the node's proposers, one per range it leads; Current's are its
// gateway's reads and its ranges' read batches. One call answers a whole
// queue, so a queue holds what arrives while one call is out, usually a
// round trip; a waiter is about 100 bytes. A full queue means the Oracle
// has not answered for long (up to fetchTimeout), and more waiting would
// only pile up: a caller past it is refused at once (ResourceExhausted).
// Those answered by the call already out were admitted under it too, so at
// most 2*MaxWaiting callers wait on each kind of call.
const MaxWaiting = 1 << 14

// fullError is the refusal of a caller that finds its queue full. It is a
// gRPC ResourceExhausted status with its message, which names the bound.
type fullError struct{ msg string }

func (e *fullError) Error() string { return e.msg }

// GRPCStatus makes the error a gRPC status for status.FromError.
func (e *fullError) GRPCStatus() *status.Status { return status.New(codes.ResourceExhausted, e.msg) }

// Client coalesces concurrent requests for revisions into one call to the
// Oracle at a time: while a call is out, new requests queue and leave
// together in the next call.
type Client struct {
	fetch FetchFunc
	// maxWaiting is MaxWaiting (tests lower it).
	maxWaiting int

	mu struct {
		sync.Mutex
		// queue holds the callers of Next waiting for the next call,
		// running whether one is out.
		// Invariant: len(queue) <= maxWaiting.
		queue   []*waiter
		running bool
		// current holds the callers of Current waiting for the next call,
		// currentRunning whether one is out.
		// Invariant: len(current) <= maxWaiting.
		current        []*waiter
		currentRunning bool
	}
}

type waiter struct {
	n     int
	first int64
	err   error
	done  chan struct{}
}

// NewClient creates a Client over fetch.
func NewClient(fetch FetchFunc) *Client { return &Client{fetch: fetch, maxWaiting: MaxWaiting} }

// Current returns the cluster's newest revision (see Oracle.Current).
// Concurrent callers share calls to the Oracle, but a caller is answered
// only by a call that began after it asked, so that the answer reflects
// every write acknowledged before it asked: callers that arrive while a
// call is out wait for the next one. It fails at once, with a gRPC
// ResourceExhausted status, if MaxWaiting callers already wait.
func (c *Client) Current(ctx context.Context) (int64, error) {
	w := &waiter{done: make(chan struct{})}
	c.mu.Lock()
	if n := len(c.mu.current); n >= c.maxWaiting {
		c.mu.Unlock()
		return 0, &fullError{fmt.Sprintf("tso: %d callers already wait for the current revision (bound MaxWaiting); the revision oracle is not keeping up, retry later", n)}
	}
	c.mu.current = append(c.mu.current, w)
	if !c.mu.currentRunning {
		c.mu.currentRunning = true
		go c.runCurrent()
	}
	c.mu.Unlock()
	select {
	case <-w.done:
		return w.first, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// runCurrent answers the queued Current callers, one Oracle call per
// round, until none waits; one goroutine at a time.
func (c *Client) runCurrent() {
	for {
		c.mu.Lock()
		q := c.mu.current
		c.mu.current = nil
		if len(q) == 0 {
			c.mu.currentRunning = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		cur, err := c.fetch(ctx, 0)
		cancel()
		for _, w := range q {
			w.first, w.err = cur, err
			close(w.done)
		}
	}
}

// Next implements replica.Revisions. It fails at once, with a gRPC
// ResourceExhausted status, if MaxWaiting callers already wait.
func (c *Client) Next(ctx context.Context, n int) (int64, error) {
	w := &waiter{n: n, done: make(chan struct{})}
	c.mu.Lock()
	if k := len(c.mu.queue); k >= c.maxWaiting {
		c.mu.Unlock()
		return 0, &fullError{fmt.Sprintf("tso: %d callers already wait for revisions (bound MaxWaiting); the revision oracle is not keeping up, retry later", k)}
	}
	c.mu.queue = append(c.mu.queue, w)
	if !c.mu.running {
		c.mu.running = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case <-w.done:
		return w.first, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run serves the queue until it is empty; one goroutine at a time.
func (c *Client) run() {
	for {
		c.mu.Lock()
		q := c.mu.queue
		c.mu.queue = nil
		if len(q) == 0 {
			c.mu.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for len(q) > 0 {
			total, k := 0, 0
			for k < len(q) && total+q[k].n <= MaxBatch {
				total += q[k].n
				k++
			}
			if k == 0 { // a single oversized request
				k, total = 1, q[0].n
			}
			ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
			first, err := c.fetch(ctx, total)
			cancel()
			for _, w := range q[:k] {
				w.first, w.err = first, err
				first += int64(w.n)
				close(w.done)
			}
			q = q[k:]
		}
	}
}
