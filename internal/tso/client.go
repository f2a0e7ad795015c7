package tso

import (
	"context"
	"time"

	"sync"
)

// FetchFunc asks the Oracle (wherever it runs) for n revisions.
type FetchFunc func(ctx context.Context, n int) (int64, error)

// fetchTimeout bounds one call to the Oracle.
const fetchTimeout = 3 * time.Second

// Client coalesces concurrent requests for revisions into one call to the
// Oracle at a time: while a call is out, new requests queue and leave
// together in the next call.
type Client struct {
	fetch FetchFunc

	mu struct {
		sync.Mutex
		queue   []*waiter
		running bool
		// current holds the callers of Current waiting for the next call,
		// currentRunning whether one is out.
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
func NewClient(fetch FetchFunc) *Client { return &Client{fetch: fetch} }

// Current returns the cluster's newest revision (see Oracle.Current).
// Concurrent callers share calls to the Oracle, but a caller is answered
// only by a call that began after it asked, so that the answer reflects
// every write acknowledged before it asked: callers that arrive while a
// call is out wait for the next one.
func (c *Client) Current(ctx context.Context) (int64, error) {
	w := &waiter{done: make(chan struct{})}
	c.mu.Lock()
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

// Next implements replica.Revisions.
func (c *Client) Next(ctx context.Context, n int) (int64, error) {
	w := &waiter{n: n, done: make(chan struct{})}
	c.mu.Lock()
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
