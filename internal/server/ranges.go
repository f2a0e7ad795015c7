package server

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/storage"
	"github.com/concorddb/concord/internal/store"
	"github.com/concorddb/concord/internal/telemetry"
	"google.golang.org/protobuf/proto"
)

// Ranges split at run time. The splitting range's own descriptors (every
// replica's local copy, changed by the split trigger at one log position)
// are the truth about who owns which keys; the meta range's descriptors are
// the index the routers read. Split updates the index right after the split
// applies; if the node doing it fails in between, the repair loop
// (runRangeRepair) of the new ranges' leaders brings the index up to date,
// and meanwhile a router that sends a request by the old index gets
// KEY_MISMATCH and reads the index again. Descriptors only replace older
// generations in the index (SysUpdateRanges), so a late update cannot undo
// a newer split.

// Split splits the range holding the etcd key key so that a range starts
// at key, and returns the two ranges' descriptors. A key that already
// starts a range changes nothing and returns that range as right (left
// nil).
func (n *Node) Split(ctx context.Context, key []byte) (left, right *metapb.RangeDescriptor, err error) {
	if len(key) == 0 {
		return nil, nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "concord: cannot split at the empty key: it starts the keyspace")
	}
	gkey := keys.User(key)
	// boundary returns the range that starts at key, if one does, as the
	// router's cache has it (refreshed from the meta range if fresh).
	boundary := func(fresh bool) (*metapb.RangeDescriptor, error) {
		if fresh {
			if err := n.router.Refresh(ctx); err != nil {
				return nil, err
			}
		}
		ranges, err := n.router.Ranges(ctx)
		if err != nil {
			return nil, err
		}
		i := sort.Search(len(ranges), func(i int) bool { return bytes.Compare(ranges[i].GetStartKey(), gkey) >= 0 })
		if i < len(ranges) && bytes.Equal(ranges[i].GetStartKey(), gkey) {
			return ranges[i], nil
		}
		return nil, nil
	}
	// The cache decides whether to try (reading the whole index for each
	// split made splitting N ranges cost N squared); a boundary it shows
	// is checked against the meta range, as it may have merged away since.
	if d, err := boundary(false); err != nil {
		return nil, nil, err
	} else if d != nil {
		if d, err := boundary(true); err != nil || d != nil {
			return nil, d, err
		}
	}
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_AllocRangeId{AllocRangeId: &cmdpb.SysAllocRangeID{}}})
	if err != nil {
		return nil, nil, fmt.Errorf("concord: allocate a range id: %w", err)
	}
	left, right, err = n.router.Split(ctx, gkey, uint64(resp.GetValue()))
	if err != nil {
		// Split by someone else since the cache was read: not an error.
		if d, berr := boundary(true); berr == nil && d != nil {
			return nil, d, nil
		}
		return nil, nil, err
	}
	n.router.Learn(left, right)
	if err := n.indexRanges(ctx, left, right); err != nil {
		n.log.Warn("split applied; the meta range's index is updated later", "left", left.GetRangeId(), "right", right.GetRangeId(), "err", err)
	}
	n.log.Info("split range", "range", left.GetRangeId(), "at", fmt.Sprintf("%q", key), "new_range", right.GetRangeId())
	n.tel.metrics.Events().Add(telemetry.Event{Kind: telemetry.EventSplit, Range: left.GetRangeId(), Node: n.ident.NodeID,
		Message: fmt.Sprintf("range %d split at %q: new range %d", left.GetRangeId(), key, right.GetRangeId())})
	return left, right, nil
}

// indexRanges records descriptors in the meta range (where newer).
func (n *Node) indexRanges(ctx context.Context, descs ...*metapb.RangeDescriptor) error {
	_, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_UpdateRanges{UpdateRanges: &cmdpb.SysUpdateRanges{Descriptors: descs}}})
	return err
}

// rangeRepairInterval is how often a node checks that the meta range
// indexes the ranges it leads as they are.
const rangeRepairInterval = 3 * time.Second

// runRangeRepair records in the meta range the descriptor of every user
// range this node leads whose index entry is missing or older (a split
// whose index update was lost).
func (n *Node) runRangeRepair() {
	defer n.wg.Done()
	t := time.NewTicker(rangeRepairInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		var led []*metapb.RangeDescriptor
		for _, r := range n.store.Replicas() {
			// A frozen range is being merged away: indexing it again would
			// undo the merge's record.
			if r.RangeID == store.MetaRangeID || !r.Leads() {
				continue
			}
			if st := r.Status(); st.IsLeader && !st.Frozen {
				led = append(led, r.Descriptor())
			}
		}
		if len(led) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), rangeRepairInterval)
		if err := n.repairIndex(ctx, led); err != nil {
			n.log.Debug("range index repair", "err", err)
		}
		cancel()
	}
}

// repairIndex records the descriptors of led whose meta entry is older.
func (n *Node) repairIndex(ctx context.Context, led []*metapb.RangeDescriptor) error {
	s := keys.RangeSpan()
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: s.Start, End: s.End}}})
	if err != nil {
		return err
	}
	gens := make(map[uint64]uint64, len(resp.GetKvs()))
	for _, kv := range resp.GetKvs() {
		d := &metapb.RangeDescriptor{}
		if err := proto.Unmarshal(kv.GetValue(), d); err != nil {
			return fmt.Errorf("server: bad range descriptor %q: %w", kv.GetKey(), err)
		}
		gens[d.GetRangeId()] = d.GetGeneration()
	}
	var stale []*metapb.RangeDescriptor
	for _, d := range led {
		if g, ok := gens[d.GetRangeId()]; !ok || g < d.GetGeneration() {
			stale = append(stale, d)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	n.log.Info("recording ranges missing from the meta range's index", "ranges", len(stale))
	n.router.Learn(stale...)
	return n.indexRanges(ctx, stale...)
}

// adoptAttempts and adoptEvery bound how long a node looks for the ranges
// split off a span its replica lost to a snapshot.
const (
	adoptAttempts = 30
	adoptEvery    = time.Second
)

// adoptRanges creates, uninitialized, this node's replicas of the ranges
// that hold keys of lost (a span one of its replicas gave up when a
// snapshot showed it had missed splits): their leaders then send them
// snapshots. It runs until every such range is here or it gives up, and
// is started by replica.Config.OnSpanLost.
func (n *Node) adoptRanges(lost keys.Span) {
	defer n.wg.Done()
	for attempt := 0; attempt < adoptAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-n.stop:
				return
			case <-time.After(adoptEvery):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), adoptEvery)
		err := n.router.Refresh(ctx)
		cancel()
		if err != nil {
			continue
		}
		ranges, err := n.router.Ranges(context.Background())
		if err != nil {
			continue
		}
		covered := lost.Start
		for _, d := range ranges {
			if bytes.Compare(d.GetEndKey(), lost.Start) <= 0 || bytes.Compare(d.GetStartKey(), lost.End) >= 0 {
				continue
			}
			if bytes.Compare(d.GetStartKey(), covered) <= 0 && bytes.Compare(d.GetEndKey(), covered) > 0 {
				covered = d.GetEndKey()
			}
			for _, rd := range d.GetReplicas() {
				if rd.GetNodeId() == n.ident.NodeID {
					if err := n.store.AddUninitialized(d.GetRangeId(), rd.ID()); err != nil {
						n.log.Warn("cannot create a replica for a range split off while this node was behind", "range", d.GetRangeId(), "err", err)
					}
				}
			}
		}
		if bytes.Compare(covered, lost.End) >= 0 {
			return
		}
	}
	n.log.Warn("the meta range does not index every range of a span this node missed splits of", "span", lost.String())
}

// mergeFreezeWait bounds how long a merge waits for every replica of the
// right range to apply its freeze before it thaws the range and gives up.
const mergeFreezeWait = 10 * time.Second

// Merge merges the range that starts at the etcd key key into its left
// neighbour (CockroachDB's subsume): it freezes the right range, waits
// until every replica of it has applied the freeze (its data is then final
// on every node, where the left range's replica takes it over in place),
// proposes the merge on the left range, and records the result in the
// meta range. A replica that does not confirm in time (its node is down)
// makes it thaw the range and fail: nothing merged. It returns the merged
// range's descriptor.
func (n *Node) Merge(ctx context.Context, key []byte) (*metapb.RangeDescriptor, error) {
	if err := n.router.Refresh(ctx); err != nil {
		return nil, err
	}
	ranges, err := n.router.Ranges(ctx)
	if err != nil {
		return nil, err
	}
	gkey := keys.User(key)
	var left, right *metapb.RangeDescriptor
	for _, d := range ranges {
		if bytes.Equal(d.GetStartKey(), gkey) {
			right = d
		}
		if bytes.Equal(d.GetEndKey(), gkey) {
			left = d
		}
	}
	if right == nil || left == nil {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "concord: no range starts at %q after another: nothing to merge", key)
	}
	// From the freeze on, the merge is driven to an end, merged or thawed,
	// whatever the caller's deadline: a range left frozen refuses every
	// write. A step whose outcome is unknown (AMBIGUOUS) is proposed
	// again until one answers for sure; a later proposal applies after an
	// earlier one, so its answer tells what the earlier one did.
	bg, cancel := context.WithTimeout(context.Background(), mergeSettle)
	defer cancel()
	var index uint64
	err = settle(bg, func(ctx context.Context) (err error) {
		index, err = n.router.Freeze(ctx, right, false /* thaw */)
		return err
	})
	if err != nil {
		if kvpb.CodeOf(err) == kvpb.ErrorCode_AMBIGUOUS {
			n.thaw(bg, right)
		}
		return nil, fmt.Errorf("concord: freeze range %d: %w", right.GetRangeId(), err)
	}
	if err := n.waitApplied(bg, right, index); err != nil {
		n.thaw(bg, right)
		return nil, fmt.Errorf("concord: merge range %d into %d: %w", right.GetRangeId(), left.GetRangeId(), err)
	}
	var merged *metapb.RangeDescriptor
	attempts := 0
	err = settle(bg, func(ctx context.Context) (err error) {
		attempts++
		merged, err = n.router.Merge(ctx, left, right)
		return err
	})
	if err != nil && attempts > 1 && kvpb.CodeOf(err) == kvpb.ErrorCode_FAILED_PRECONDITION {
		// An earlier attempt may have merged (the left range moved on):
		// the left range holds right's keys if so.
		if ok, herr := n.router.Holds(bg, left, right.GetStartKey()); herr == nil && ok {
			merged, err = n.mergedDescriptor(bg, left)
		}
	}
	if err != nil {
		switch ok, herr := n.router.Holds(bg, left, right.GetStartKey()); {
		case kvpb.CodeOf(err) == kvpb.ErrorCode_AMBIGUOUS:
			// Still unknown: a thaw could apply before the merge, which
			// needs the range frozen. It stays frozen, and says so.
			n.log.Error("a merge's outcome is unknown; its right range stays frozen", "range", right.GetRangeId(), "into", left.GetRangeId(), "err", err)
		case herr == nil && !ok:
			n.thaw(bg, right)
		}
		return nil, fmt.Errorf("concord: merge range %d into %d: %w", right.GetRangeId(), left.GetRangeId(), err)
	}
	n.router.Learn(merged)
	if err := n.indexRanges(ctx, merged); err == nil {
		_, err = n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Delete{Delete: &cmdpb.SysDelete{Key: keys.Range(right.GetRangeId())}}})
		if err != nil {
			n.log.Warn("merged; the meta range still lists the merged-away range", "range", right.GetRangeId(), "err", err)
		}
	} else {
		n.log.Warn("merged; the meta range's index is updated later", "range", merged.GetRangeId(), "err", err)
	}
	n.log.Info("merged range", "range", right.GetRangeId(), "into", merged.GetRangeId())
	n.tel.metrics.Events().Add(telemetry.Event{Kind: telemetry.EventMerge, Range: merged.GetRangeId(), Node: n.ident.NodeID,
		Message: fmt.Sprintf("range %d (from %q) merged into range %d", right.GetRangeId(), key, merged.GetRangeId())})
	return merged, nil
}

// mergeSettle bounds how long a merge keeps at a step whose outcome is
// unknown, and the thaw of a merge that failed.
const mergeSettle = 30 * time.Second

// settle runs op until it answers anything but AMBIGUOUS or ctx ends.
func settle(ctx context.Context, op func(context.Context) error) error {
	for {
		err := op(ctx)
		if kvpb.CodeOf(err) != kvpb.ErrorCode_AMBIGUOUS || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// thaw unfreezes right after a merge that did not happen.
func (n *Node) thaw(ctx context.Context, right *metapb.RangeDescriptor) {
	err := settle(ctx, func(ctx context.Context) error {
		_, err := n.router.Freeze(ctx, right, true /* thaw */)
		return err
	})
	if err != nil {
		n.log.Error("a merge that failed left its range frozen", "range", right.GetRangeId(), "err", err)
	}
}

// mergedDescriptor returns the descriptor of the range left became, from
// the meta range or, before it is indexed there, from left's replica here.
func (n *Node) mergedDescriptor(ctx context.Context, left *metapb.RangeDescriptor) (*metapb.RangeDescriptor, error) {
	if r := n.store.Replica(left.GetRangeId()); r != nil {
		if d := r.Descriptor(); d.GetGeneration() > left.GetGeneration() {
			return d, nil
		}
	}
	if err := n.router.Refresh(ctx); err != nil {
		return nil, err
	}
	rs, err := n.router.Ranges(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range rs {
		if d.GetRangeId() == left.GetRangeId() {
			return d, nil
		}
	}
	return nil, fmt.Errorf("concord: range %d merged, but no descriptor of it is known", left.GetRangeId())
}

// waitApplied waits until every replica of d has applied index, asking
// each node (this one directly) for its replicas' positions.
func (n *Node) waitApplied(ctx context.Context, d *metapb.RangeDescriptor, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, mergeFreezeWait)
	defer cancel()
	for _, rd := range d.GetReplicas() {
		for {
			applied, err := n.appliedOn(ctx, rd.GetNodeId(), d.GetRangeId())
			if err == nil && applied >= index {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("node %d did not confirm it applied the freeze (index %d) in %v: %v", rd.GetNodeId(), index, mergeFreezeWait, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// appliedOn returns how far node's replica of rangeID has applied.
func (n *Node) appliedOn(ctx context.Context, node, rangeID uint64) (uint64, error) {
	if node == n.ident.NodeID {
		if r := n.store.Replica(rangeID); r != nil {
			return r.Status().Applied, nil
		}
		return 0, fmt.Errorf("no replica of range %d here", rangeID)
	}
	st, err := n.nodeStatus(ctx, node)
	if err != nil {
		return 0, err
	}
	for _, r := range st.GetReplicas() {
		if r.GetRangeId() == rangeID {
			return r.GetApplied(), nil
		}
	}
	return 0, fmt.Errorf("node %d holds no replica of range %d", node, rangeID)
}

// sizeCheckInterval is how often a node checks the sizes of the ranges it
// leads against --range-max-bytes and --range-min-bytes.
var sizeCheckInterval = 10 * time.Second

// sizeOpTimeout bounds one round of size checks with the splits and merges
// it makes.
const sizeOpTimeout = 30 * time.Second

// exactBelowBytes: a range the storage engine estimates below this is
// measured exactly (by reading it), since the estimate counts only data
// already flushed to tables, and a small range may live in memtables.
const exactBelowBytes = 64 << 20

// runSizeQueue splits the ranges this node leads that grew past
// --range-max-bytes at their middle key by bytes, or that served more
// than --range-split-qps at two checks in a row at the median of their
// recent request keys, and merges a range below --range-min-bytes into its
// left neighbour when both are that small and their sum stays under the
// maximum.
func (n *Node) runSizeQueue() {
	defer n.wg.Done()
	t := time.NewTicker(sizeCheckInterval)
	defer t.Stop()
	hot := map[uint64]int{} // checks in a row each range was over --range-split-qps
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), sizeOpTimeout)
		n.checkSizes(ctx, hot)
		cancel()
	}
}

// loadSplitChecks is how many checks in a row a range must be over
// --range-split-qps before it splits by load: its rate is the last ten
// seconds', so two checks ten seconds apart mean a sustained load.
const loadSplitChecks = 2

func (n *Node) checkSizes(ctx context.Context, hot map[uint64]int) {
	for _, r := range n.store.Replicas() {
		st := r.Status()
		d := r.Descriptor()
		if r.RangeID == store.MetaRangeID || !st.IsLeader || st.Frozen || replica.IsUninitialized(d) {
			delete(hot, r.RangeID)
			continue
		}
		if n.cfg.RangeSplitQPS > 0 {
			if st.QPS <= n.cfg.RangeSplitQPS {
				delete(hot, r.RangeID)
			} else if hot[r.RangeID]++; hot[r.RangeID] >= loadSplitChecks {
				delete(hot, r.RangeID)
				if k := r.LoadSplitKey(); k != nil {
					if _, _, err := n.Split(ctx, keys.StripUser(k)); err != nil {
						n.log.Warn("load split failed", "range", r.RangeID, "qps", st.QPS, "err", err)
					} else {
						n.log.Info("split a range past --range-split-qps", "range", r.RangeID, "qps", st.QPS, "at", fmt.Sprintf("%q", keys.StripUser(k)))
					}
					continue
				}
			}
		}
		span := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}
		size, err := n.rangeBytes(span)
		if err != nil {
			n.log.Warn("range size unknown", "range", r.RangeID, "err", err)
			continue
		}
		switch {
		case n.cfg.RangeMaxBytes > 0 && size > n.cfg.RangeMaxBytes:
			mid, err := storage.MVCCMidKey(n.engine, span)
			if err != nil || mid == nil {
				continue
			}
			if _, _, err := n.Split(ctx, keys.StripUser(mid)); err != nil {
				n.log.Warn("size split failed", "range", r.RangeID, "bytes", size, "err", err)
				continue
			}
			n.log.Info("split a range past --range-max-bytes", "range", r.RangeID, "bytes", size, "at", fmt.Sprintf("%q", keys.StripUser(mid)))
		case n.cfg.RangeMinBytes > 0 && size < n.cfg.RangeMinBytes:
			n.maybeMergeRight(ctx, d, size)
		}
	}
}

// maybeMergeRight merges the range right of d into d when this node holds
// a replica of it to measure, it is below --range-min-bytes too, and the
// two together stay under --range-max-bytes.
func (n *Node) maybeMergeRight(ctx context.Context, d *metapb.RangeDescriptor, size int64) {
	for _, r := range n.store.Replicas() {
		rd := r.Descriptor()
		if replica.IsUninitialized(rd) || !bytes.Equal(rd.GetStartKey(), d.GetEndKey()) || r.Status().Frozen {
			continue
		}
		rsize, err := n.rangeBytes(keys.Span{Start: rd.GetStartKey(), End: rd.GetEndKey()})
		if err != nil || rsize >= n.cfg.RangeMinBytes || (n.cfg.RangeMaxBytes > 0 && size+rsize >= n.cfg.RangeMaxBytes) {
			return
		}
		if _, err := n.Merge(ctx, keys.StripUser(rd.GetStartKey())); err != nil {
			n.log.Warn("size merge failed", "range", rd.GetRangeId(), "into", d.GetRangeId(), "err", err)
			return
		}
		n.log.Info("merged a range below --range-min-bytes", "range", rd.GetRangeId(), "into", d.GetRangeId(), "bytes", size+rsize)
		return
	}
}

// rangeBytes is the size of span's data on this node: the engine's
// estimate, or an exact count where the estimate is small.
func (n *Node) rangeBytes(span keys.Span) (int64, error) {
	est, err := n.engine.ApproximateBytes(span)
	if err != nil || est >= exactBelowBytes {
		return est, err
	}
	return storage.MVCCBytes(n.engine, span)
}
