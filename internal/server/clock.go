package server

import (
	"os"
	"strings"
	"sync"
	"time"
)

// clockOffsetRefresh bounds how often the offset file is read again.
const clockOffsetRefresh = 50 * time.Millisecond

// offsetClock is the TEST-ONLY wall clock of --unsafe-clock-offset-file:
// time.Now shifted by the duration written in the file ("-30s", "+2m";
// missing, empty or unparsable means no shift), re-read at most every
// clockOffsetRefresh. The fault-injection harness writes the file to make a
// node's clock jump.
//
// Only the wall clock jumps: it feeds the periodic compactor's
// time-to-revision index. Revisions are counted, never read off a clock,
// and leader leases run on Go's monotonic clock, which a wall-clock jump
// does not move (as on a real host).
type offsetClock struct {
	path string
	mu   struct {
		sync.Mutex
		offset time.Duration
		read   time.Time
	}
}

// Now returns the shifted wall clock.
func (c *offsetClock) Now() time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.mu.read) >= clockOffsetRefresh {
		c.mu.read = now
		c.mu.offset = 0
		if data, err := os.ReadFile(c.path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(data))); err == nil {
				c.mu.offset = d
			}
		}
	}
	// Round(0) drops the monotonic reading, so the shift is not undone by
	// comparisons against other times.
	return now.Round(0).Add(c.mu.offset)
}

// wallClock returns the test offset clock when --unsafe-clock-offset-file
// is set, nil (the real clock) otherwise.
func (n *Node) wallClock() func() time.Time {
	if n.cfg.UnsafeClockOffsetFile == "" {
		return nil
	}
	n.log.Warn("UNSAFE: --unsafe-clock-offset-file is on: this node's wall clock follows " + n.cfg.UnsafeClockOffsetFile)
	c := &offsetClock{path: n.cfg.UnsafeClockOffsetFile}
	return c.Now
}
