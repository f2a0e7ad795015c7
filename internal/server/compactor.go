package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/store"
	"github.com/concorddb/concord/internal/tso"
)

// Automatic compaction, as etcd's --auto-compaction-mode:
//   - periodic keeps the history of the last retention period and compacts
//     what is older. Because revisions are commit timestamps, "the revision
//     of retention ago" is simply the timestamp of that moment.
//   - revision keeps the newest N writes of every range: each range's
//     leader names the revision from the writes it has seen (see
//     replica.writeRing), keeping at least N.
//
// One node runs it for the cluster: the leader of the meta range.

// compactionPolicy is a parsed --auto-compaction-mode/-retention pair; at
// most one field is set, none when compaction is off.
type compactionPolicy struct {
	period time.Duration
	writes int64
}

// revisionCompactionInterval is how often revision-mode compaction runs
// (etcd's five minutes).
var revisionCompactionInterval = 5 * time.Minute

func parseCompaction(mode, retention string) (compactionPolicy, error) {
	switch mode {
	case "", "periodic":
		d, err := parseRetention(retention)
		return compactionPolicy{period: d}, err
	case "revision":
		s := strings.TrimSpace(retention)
		if s == "" {
			return compactionPolicy{}, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return compactionPolicy{}, fmt.Errorf("server: --auto-compaction-retention %q: revision mode wants a count of revisions", retention)
		}
		return compactionPolicy{writes: n}, nil
	}
	return compactionPolicy{}, fmt.Errorf("server: --auto-compaction-mode must be periodic or revision, not %q", mode)
}

// parseRetention reads etcd's --auto-compaction-retention: a Go duration,
// or a bare number of hours (etcd's historical form). "0" or "" is off.
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if h, err := strconv.ParseFloat(s, 64); err == nil {
		if h < 0 {
			return 0, fmt.Errorf("server: --auto-compaction-retention %q is negative", s)
		}
		return time.Duration(h * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("server: --auto-compaction-retention %q: want a duration like 30m or a number of hours", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("server: --auto-compaction-retention %q is negative", s)
	}
	return d, nil
}

// compactionInterval is how often the compactor runs for a retention:
// a tenth of it, between one second and one hour (etcd compacts hourly for
// long retentions).
func compactionInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// runCompactor applies the policy on its schedule while this node leads the
// meta range.
func (n *Node) runCompactor(p compactionPolicy) {
	defer n.wg.Done()
	interval := revisionCompactionInterval
	if p.period > 0 {
		interval = compactionInterval(p.period)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		r := n.store.Replica(store.MetaRangeID)
		if r == nil || !r.Status().IsLeader {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		req := &concordpb.CompactRequest{RetainWrites: p.writes}
		if p.period > 0 {
			req = &concordpb.CompactRequest{Revision: tso.Compose(time.Now().Add(-p.period).UnixMilli(), 0), Clamp: true}
		}
		_, err := n.router.Compact(ctx, req)
		cancel()
		if err != nil {
			n.log.Warn("automatic compaction failed", "err", err)
		}
	}
}
