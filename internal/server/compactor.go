package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/store"
	"github.com/concorddb/concord/internal/tso"
)

// Automatic compaction, as etcd's --auto-compaction-mode=periodic: keep the
// history of the last retention period and compact what is older. Because
// revisions are commit timestamps, "the revision of retention ago" is simply
// the timestamp of that moment, so no revision sampling is needed. One node
// runs it for the cluster: the leader of the meta range.

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

// runCompactor compacts, every interval, the history older than retention
// while this node leads the meta range.
func (n *Node) runCompactor(retention time.Duration) {
	defer n.wg.Done()
	t := time.NewTicker(compactionInterval(retention))
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
		rev := tso.Compose(time.Now().Add(-retention).UnixMilli(), 0)
		ctx, cancel := context.WithTimeout(context.Background(), compactionInterval(retention))
		_, err := n.router.Compact(ctx, rev, true /* clamp */)
		cancel()
		if err != nil {
			n.log.Warn("automatic compaction failed", "revision", rev, "err", err)
			continue
		}
		n.log.Debug("automatic compaction", "revision", rev, "retention", retention)
	}
}
