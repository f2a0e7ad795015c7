package replica

import (
	"sync"
	"time"
)

// rateWindow is how far back a replica's recent request rate looks.
const rateWindow = 10 // seconds

// rateCounter counts requests in one-second buckets over the last
// rateWindow seconds, for the range's recent QPS (concord range list, and
// one day load-based splitting).
type rateCounter struct {
	mu sync.Mutex
	// counts[i] holds the requests of second secs[i]; a bucket whose
	// second is older than the window counts as empty.
	counts [rateWindow]uint64
	secs   [rateWindow]int64
}

// add counts one request at now.
func (c *rateCounter) add(now time.Time) {
	s := now.Unix()
	i := int(s % rateWindow)
	c.mu.Lock()
	if c.secs[i] != s {
		c.secs[i], c.counts[i] = s, 0
	}
	c.counts[i]++
	c.mu.Unlock()
}

// rate is the requests per second over the full seconds of the window
// before now.
func (c *rateCounter) rate(now time.Time) float64 {
	s := now.Unix()
	var total uint64
	c.mu.Lock()
	for i := range c.counts {
		if age := s - c.secs[i]; age >= 1 && age <= rateWindow {
			total += c.counts[i]
		}
	}
	c.mu.Unlock()
	return float64(total) / rateWindow
}
