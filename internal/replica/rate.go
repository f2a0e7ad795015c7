package replica

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/keys"
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

// keySampleEvery and keySamples: one request in keySampleEvery has its
// first key recorded, and the last keySamples recorded are kept, for the
// key that halves the range's recent load (LoadSplitKey).
const (
	keySampleEvery = 8
	keySamples     = 128
)

// keySampler keeps recent request keys (global keys) of a range.
type keySampler struct {
	seen atomic.Uint64
	mu   sync.Mutex
	keys [keySamples][]byte
	n    int // how many of keys are set
	next int // where the next sample goes
}

// maybeAdd records key for one request in keySampleEvery.
func (s *keySampler) maybeAdd(key []byte) {
	if len(key) == 0 || s.seen.Add(1)%keySampleEvery != 0 {
		return
	}
	k := keys.User(key)
	s.mu.Lock()
	s.keys[s.next] = k
	s.next = (s.next + 1) % keySamples
	s.n = min(s.n+1, keySamples)
	s.mu.Unlock()
}

// median returns the middle of the recorded keys, or nil with fewer than
// minSamples of them.
func (s *keySampler) median(minSamples int) []byte {
	s.mu.Lock()
	if s.n < minSamples {
		s.mu.Unlock()
		return nil
	}
	ks := make([][]byte, s.n)
	copy(ks, s.keys[:s.n])
	s.mu.Unlock()
	slices.SortFunc(ks, bytes.Compare)
	return ks[len(ks)/2]
}

// requestKey is the first key a request names (nil for none).
func requestKey(req *cmdpb.BatchRequest) []byte {
	op := req.GetOp()
	switch {
	case op.GetRange() != nil:
		return op.GetRange().GetKey()
	case op.GetPut() != nil:
		return op.GetPut().GetKey()
	case op.GetDeleteRange() != nil:
		return op.GetDeleteRange().GetKey()
	case op.GetTxn() != nil:
		if cs := op.GetTxn().GetCompare(); len(cs) > 0 {
			return cs[0].GetKey()
		}
	}
	return nil
}
