package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/meta"
)

// Automatic compaction, as etcd's --auto-compaction-mode:
//   - periodic keeps the history of the last retention period: every
//     compactionInterval it samples the cluster's current revision into a
//     time-to-revision index (revSamples) and compacts at the newest
//     revision sampled at least retention ago, as etcd's periodic
//     compactor does.
//   - revision keeps the newest N revisions: every
//     revisionCompactionInterval it compacts at current - N.
//
// One node runs it for the cluster: the leader of the meta range. A new
// leader samples afresh, so periodic compaction resumes one retention
// after a failover (etcd's compactor does the same on a leader change).

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

// revSample is the cluster's revision at one moment.
type revSample struct {
	at  time.Time
	rev int64
}

// revSamples is the periodic compactor's time-to-revision index: samples
// in time order, at most max of them (enough to cover one retention at the
// sampling interval, plus one older than it).
type revSamples struct {
	samples []revSample
	max     int
}

// add records a sample, dropping the oldest past max.
func (s *revSamples) add(at time.Time, rev int64) {
	s.samples = append(s.samples, revSample{at: at, rev: rev})
	if len(s.samples) > s.max {
		s.samples = append(s.samples[:0], s.samples[len(s.samples)-s.max:]...)
	}
}

// before returns the newest revision sampled at or before t, 0 if none.
func (s *revSamples) before(t time.Time) int64 {
	var rev int64
	for _, x := range s.samples {
		if x.at.After(t) {
			break
		}
		rev = x.rev
	}
	return rev
}

// runCompactor applies the policy on its schedule while this node leads the
// meta range.
func (n *Node) runCompactor(p compactionPolicy) {
	defer n.wg.Done()
	interval := revisionCompactionInterval
	if p.period > 0 {
		interval = compactionInterval(p.period)
	}
	now := time.Now
	if c := n.wallClock(); c != nil {
		now = c
	}
	index := revSamples{max: int(p.period/interval) + 2}
	var compacted int64
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		r := n.store.Replica(meta.MetaRangeID)
		if r == nil || !r.Status().IsLeader {
			index.samples, compacted = index.samples[:0], 0
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		cur, err := n.currentRevision(ctx)
		var rev int64
		switch {
		case err != nil:
		case p.period > 0:
			at := now()
			index.add(at, cur)
			rev = index.before(at.Add(-p.period))
		default:
			rev = cur - p.writes
		}
		if err == nil && rev > compacted {
			_, err = n.router.Compact(ctx, &kvpb.CompactRequest{Revision: rev, Clamp: true})
			if err == nil {
				n.watchHub.NoteCompacted(rev)
			}
			if err == nil || kvpb.CodeOf(err) == kvpb.ErrorCode_COMPACTED {
				compacted, err = rev, nil
			}
		}
		cancel()
		if err != nil {
			n.log.Warn("automatic compaction failed", "err", err)
		}
	}
}

// currentRevision is the cluster's current revision, read linearizably: a
// one-key Range's header, as etcd's compactor reads its store's.
func (n *Node) currentRevision(ctx context.Context) (int64, error) {
	_, h, err := n.router.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte{0}, CountOnly: true}}})
	return h.Revision, err
}
