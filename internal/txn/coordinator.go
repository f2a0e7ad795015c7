package txn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/router"
	"google.golang.org/protobuf/proto"
)

// Revisions is the TSO (internal/tso's client). Safe for concurrent use.
type Revisions interface {
	// Next returns the first of n consecutive new revisions.
	Next(ctx context.Context, n int) (int64, error)
	// Current returns the cluster's newest revision.
	Current(ctx context.Context) (int64, error)
}

// Config configures a Coordinator.
type Config struct {
	Router    *router.Router
	Revisions Revisions
	Logger    *slog.Logger
	// AbandonAfter is how long after its staging began a txn that has not
	// staged everywhere may be aborted by those who meet its locks: its
	// coordinator is then presumed dead. Longer than a staging takes (one
	// consensus round, under load a few); default 2 s.
	AbandonAfter time.Duration
	// ResolveTimeout bounds the background resolution of one txn; what is
	// left then, the next request that meets it resolves. Default 10 s.
	ResolveTimeout time.Duration
	// Now reads the wall clock that stamps stagings (nil: time.Now).
	Now func() time.Time
	// UnsafeNoRecord commits a txn's ranges one after the other, each at
	// once at a revision of its own, with no reservation, no locks and no
	// record: NOT atomic, on purpose, so that the fault-injection harness
	// can prove its bank checker notices. Never set outside tests.
	UnsafeNoRecord bool
}

// Bounds of the coordinator.
const (
	// maxAttempts bounds how often one txn runs again after a refused
	// staging.
	maxAttempts = 32
	// maxBackground bounds the txns being resolved in the background;
	// past it a txn is resolved before its client is answered.
	maxBackground = 4096
	// retryBackoffMax bounds the pause before a txn's next attempt.
	retryBackoffMax = 50 * time.Millisecond
	// lockPoll is how long ResolveLock waits on a young txn before its
	// caller looks again.
	lockPoll = 20 * time.Millisecond
)

// Coordinator runs cross-range txns (see the package doc) and resolves
// the locks requests meet (router.LockResolver). Safe for concurrent use.
type Coordinator struct {
	cfg Config
	r   *router.Router
	log *slog.Logger

	// bg counts the background resolutions; slots bounds them.
	bg    sync.WaitGroup
	slots chan struct{}
	// finishing holds the txns a recoverer is resolving (finishLater).
	finishing sync.Map
	// forgets queues the markers of resolved txns for forgetLoop, which
	// deletes them in batches. Bounded by maxForgets.
	forgets chan *cmdpb.TxnRef
	// stop ends the background resolutions (Close).
	stop     chan struct{}
	stopOnce sync.Once
}

var _ router.LockResolver = (*Coordinator)(nil)

// New returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Router == nil || cfg.Revisions == nil {
		return nil, errors.New("txn: Router and Revisions are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AbandonAfter <= 0 {
		cfg.AbandonAfter = 2 * time.Second
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Coordinator{cfg: cfg, r: cfg.Router, log: cfg.Logger, slots: make(chan struct{}, maxBackground), stop: make(chan struct{}), forgets: make(chan *cmdpb.TxnRef, maxForgets)}
	c.bg.Add(1)
	go c.forgetLoop()
	return c, nil
}

// Close stops the background resolutions and waits for them to return.
func (c *Coordinator) Close() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.bg.Wait()
}

// Do serves a KV request: through the router as it is, and as a txn
// across ranges when its keys lie in several (the router's CROSS_RANGE).
func (c *Coordinator) Do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, router.Header, error) {
	resp, h, err := c.r.Do(ctx, op)
	if kvpb.CodeOf(err) != kvpb.ErrorCode_CROSS_RANGE || kvpb.IsReadOnly(op) {
		return resp, h, err
	}
	return c.Across(ctx, op)
}

// prioKey carries a txn's priority (its first attempt's revision: lower is
// older) to ResolveLock, for wound-wait.
type prioKey struct{}

func priorityOf(ctx context.Context) int64 {
	p, _ := ctx.Value(prioKey{}).(int64)
	return p
}

// Across runs op (a writing Txn or a DeleteRange) as a cross-range txn.
func (c *Coordinator) Across(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, router.Header, error) {
	var prio int64
	var last error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, h, err, again := c.attempt(ctx, op, &prio, attempt > 0)
		if !again {
			return resp, h, err
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		d := time.Duration(rand.Int64N(int64(min(time.Millisecond<<attempt, retryBackoffMax)))) + time.Millisecond
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	return nil, router.Header{}, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "txn: gave up after %d attempts: %v", maxAttempts, last)
}

// part is one range's share of a txn attempt.
type part struct {
	clip   keys.Span
	writes []keys.Span
	anchor []byte
	writer bool

	resp *cmdpb.BatchResponse
	err  error
}

// attempt runs op once. again reports that it did not commit and may run
// again (err says why).
func (c *Coordinator) attempt(ctx context.Context, op *kvpb.RequestOp, prio *int64, fresh bool) (_ *kvpb.ResponseOp, _ router.Header, _ error, again bool) {
	compares := hasCompares(op)
	var path []bool
	var floor int64 // the revision the path was read at (0: not read)
	if compares {
		// Decide the path at the current revision first: a txn whose path
		// writes nothing is a read there and draws no revision.
		cur, err := c.cfg.Revisions.Current(ctx)
		if err != nil {
			return nil, router.Header{}, err, false
		}
		if path, err = c.path(ctx, op, cur); err != nil {
			return nil, router.Header{}, err, retryable(err)
		}
		if w, _ := eval.PathSpans(op, path); len(w) == 0 {
			resp, h, err := c.readPath(ctx, op, path, cur)
			return resp, h, err, false
		}
		floor = cur
	} else {
		path = allTaken(op)
		cur, err := c.cfg.Revisions.Current(ctx)
		if err != nil {
			return nil, router.Header{}, err, false
		}
		floor = cur
	}
	writes, reads := eval.PathSpans(op, path)
	parts, err := c.split(ctx, writes, reads, fresh)
	if err != nil {
		return nil, router.Header{}, err, retryable(err)
	}
	id := newTxnID()
	if c.cfg.UnsafeNoRecord {
		return c.unsafeCommit(ctx, op, path, parts, id)
	}
	// Reserve the keys the txn writes before drawing its revision: reads
	// of them that could be served at or above it wait for its staging
	// instead of refusing it.
	reserved, willWrite, err := c.reserve(ctx, id, op, path, parts, floor)
	var sent []*part // the parts a staging went to: it drops their reservation
	defer func() { c.release(id, unsent(reserved, sent)) }()
	if err != nil {
		// A request error (a lease or key not found, a compacted
		// revision) fails the txn before it draws a revision.
		return nil, router.Header{}, err, retryable(err)
	}
	if !willWrite {
		// Its deletes found nothing to delete: a read at floor, if they
		// find nothing there either.
		resp, h, err := c.readPath(ctx, op, path, floor)
		if !errors.Is(err, errWouldWrite) {
			return resp, h, err, false
		}
	}
	ts, err := c.cfg.Revisions.Next(ctx, 1)
	if err != nil {
		return nil, router.Header{}, err, false
	}
	if *prio == 0 {
		*prio = ts
	}
	ctx = router.WithTxn(context.WithValue(ctx, prioKey{}, *prio), id)
	if compares {
		again, err := c.path(ctx, op, ts-1)
		if err != nil {
			return nil, router.Header{}, err, retryable(err)
		}
		if !slices.Equal(again, path) {
			path = again
			if writes, reads = eval.PathSpans(op, path); len(writes) == 0 {
				// The path changed since it was first read: a read at
				// ts-1 (ts is thrown away, a gap in the revisions).
				resp, h, err := c.readPath(ctx, op, path, ts-1)
				return resp, h, err, false
			}
			if parts, err = c.split(ctx, writes, reads, false); err != nil {
				return nil, router.Header{}, err, retryable(err)
			}
		}
	}
	var writers []*part
	for _, p := range parts {
		if p.writer {
			writers = append(writers, p)
		}
	}
	staged := c.cfg.Now().UnixNano()
	var record []byte
	var anchors [][]byte
	if len(writers) > 1 {
		record = writers[0].anchor
		for _, w := range writers {
			anchors = append(anchors, w.anchor)
		}
	}
	build := func(p *part) *cmdpb.BatchRequest {
		sr := &cmdpb.TxnStageRequest{TxnId: id, Ts: ts, Op: op, Path: path, SpanStart: p.clip.Start, SpanEnd: p.clip.End, StagedUnixNanos: staged}
		switch {
		case p.writer && len(writers) == 1:
			sr.CommitNow = true
		case p.writer:
			sr.Participant, sr.Anchor, sr.Record = true, p.anchor, record
			if bytes.Equal(p.anchor, record) {
				sr.Participants = anchors
			}
		}
		return &cmdpb.BatchRequest{TxnStage: sr}
	}
	// The parts the txn only reads first: their request errors (a
	// compacted revision, say) must fail the txn before it can commit.
	var readers []*part
	for _, p := range parts {
		if !p.writer {
			readers = append(readers, p)
		}
	}
	sendAll := func(ps []*part) {
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.resp, p.err = c.r.Send(ctx, p.clip, build(p), p.writer)
			}()
		}
		wg.Wait()
	}
	sent = parts
	for try := 0; ; try++ {
		sendAll(readers)
		var moved []*part // readers whose range split or merged since
		for _, p := range readers {
			if p.err != nil && isRouting(p.err) && try < maxResplits {
				moved = append(moved, p)
			} else if p.err != nil {
				return nil, router.Header{}, p.err, retryable(p.err)
			}
		}
		if len(moved) == 0 {
			break
		}
		// Read those parts again, range by range as the ranges are now:
		// the txn's revision is drawn, and a read part is not worth it.
		if readers, parts, err = c.resplit(ctx, parts, moved, reads); err != nil {
			return nil, router.Header{}, err, retryable(err)
		}
	}
	sendAll(writers)
	var werr error // the first writer's error
	for _, w := range writers {
		if w.err != nil {
			werr = w.err
			break
		}
	}
	switch {
	case werr != nil && len(writers) == 1:
		// One-phase: the one writer's outcome is the txn's.
		return nil, router.Header{}, werr, retryable(werr)
	case werr != nil:
		committed, derr := c.decide(ctx, id, record, ts, writers)
		if derr != nil {
			return nil, router.Header{}, derr, false
		}
		if !committed {
			c.abort(ctx, id, record, writers)
			return nil, router.Header{}, werr, retryable(werr)
		}
	}
	// Committed: every participant staged.
	if len(writers) > 1 {
		c.resolveLater(id, record, true, writers)
	}
	resps := make([]*kvpb.ResponseOp, 0, len(parts))
	h := router.Header{Revision: ts}
	for _, p := range parts {
		resps = append(resps, p.resp.GetResp())
		h.RaftTerm = max(h.RaftTerm, p.resp.GetRaftTerm())
	}
	return eval.MergeParts(op, path, ts, resps), h, nil, false
}

// unsafeCommit is Config.UnsafeNoRecord's broken commit: every part, one
// after the other, at once, at a revision drawn for it alone.
func (c *Coordinator) unsafeCommit(ctx context.Context, op *kvpb.RequestOp, path []bool, parts []*part, id uint64) (*kvpb.ResponseOp, router.Header, error, bool) {
	var h router.Header
	resps := make([]*kvpb.ResponseOp, 0, len(parts))
	for _, p := range parts {
		// A reservation of no keys: only the range's low water mark, which
		// a staging needs.
		if _, err := c.r.Send(ctx, p.clip, &cmdpb.BatchRequest{TxnReserve: &cmdpb.TxnReserveRequest{TxnId: id, TtlMillis: c.cfg.AbandonAfter.Milliseconds()}}, false); err != nil {
			return nil, router.Header{}, err, false
		}
		ts, err := c.cfg.Revisions.Next(ctx, 1)
		if err != nil {
			return nil, router.Header{}, err, false
		}
		sr := &cmdpb.TxnStageRequest{TxnId: id, Ts: ts, Op: op, Path: path, SpanStart: p.clip.Start, SpanEnd: p.clip.End, CommitNow: p.writer}
		resp, err := c.r.Send(ctx, p.clip, &cmdpb.BatchRequest{TxnStage: sr}, p.writer)
		if err != nil {
			return nil, router.Header{}, err, false
		}
		resps = append(resps, resp.GetResp())
		h = router.Header{Revision: ts, RaftTerm: max(h.RaftTerm, resp.GetRaftTerm())}
	}
	return eval.MergeParts(op, path, h.Revision, resps), h, nil, false
}

// reserve reserves the keys each part of parts writes (see
// cmdpb.TxnReserveRequest), all at once, after each part's leaseholder
// evaluated it as of floor; it returns the parts reserved and whether any
// would write. Errors: the first part's that failed.
func (c *Coordinator) reserve(ctx context.Context, id uint64, op *kvpb.RequestOp, path []bool, parts []*part, floor int64) (_ []*part, writes bool, _ error) {
	var ws []*part
	for _, p := range parts {
		if p.writer {
			ws = append(ws, p)
		}
	}
	dry := needsDryRun(op, path)
	errs := make([]error, len(ws))
	would := make([]bool, len(ws))
	var wg sync.WaitGroup
	for i, p := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := &cmdpb.TxnReserveRequest{TxnId: id, Floor: floor, TtlMillis: c.cfg.AbandonAfter.Milliseconds()}
			if dry {
				rr.Op, rr.Path, rr.SpanStart, rr.SpanEnd = op, path, p.clip.Start, p.clip.End
			}
			for _, s := range p.writes {
				rr.Spans = append(rr.Spans, &cmdpb.KeySpan{Start: s.Start, End: s.End})
			}
			var resp *cmdpb.BatchResponse
			resp, errs[i] = c.r.Send(ctx, p.clip, &cmdpb.BatchRequest{TxnReserve: rr}, false)
			would[i] = !dry || len(resp.GetLockedKeys()) > 0
		}()
	}
	wg.Wait()
	var out []*part
	var first error
	for i, p := range ws {
		switch {
		case errs[i] != nil && first == nil:
			first = errs[i]
		case errs[i] == nil && would[i]:
			out = append(out, p)
			writes = true
		}
	}
	return out, writes, first
}

// release gives up the reservations of parts, in the background: a
// staging gives up its own, so this matters only for a part that never
// got one (the attempt failed, or its path changed).
func (c *Coordinator) release(id uint64, parts []*part) {
	if len(parts) == 0 {
		return
	}
	// Without a free slot the reservations simply expire.
	c.background(c.cfg.AbandonAfter, func(ctx context.Context) {
		for _, p := range parts {
			_, _ = c.r.Send(ctx, p.clip, &cmdpb.BatchRequest{TxnReserve: &cmdpb.TxnReserveRequest{TxnId: id, Release: true}}, false)
		}
	})
}

// needsDryRun reports whether the ops on op's path may fail or write
// nothing (a DeleteRange, a Put with a lease or ignore flags, a Range at
// a revision), which only an evaluation on each range tells: a txn of
// plain Puts and current reads skips it.
func needsDryRun(op *kvpb.RequestOp, taken []bool) bool {
	p := 0
	var walk func(op *kvpb.RequestOp) bool
	walk = func(op *kvpb.RequestOp) bool {
		switch req := op.GetRequest().(type) {
		case *kvpb.RequestOp_Range:
			return req.Range.GetRevision() > 0
		case *kvpb.RequestOp_Put:
			return !eval.AlwaysWrites(op)
		case *kvpb.RequestOp_DeleteRange:
			return true
		case *kvpb.RequestOp_Txn:
			if p >= len(taken) {
				return true
			}
			ops := req.Txn.GetSuccess()
			if !taken[p] {
				ops = req.Txn.GetFailure()
			}
			p++
			for _, o := range ops {
				if walk(o) {
					return true
				}
			}
		}
		return false
	}
	return walk(op)
}

// unsent returns the parts of reserved that no part of sent has the clip
// of.
func unsent(reserved, sent []*part) []*part {
	var out []*part
	for _, r := range reserved {
		found := false
		for _, s := range sent {
			if s.writer && bytes.Equal(s.clip.Start, r.clip.Start) && bytes.Equal(s.clip.End, r.clip.End) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, r)
		}
	}
	return out
}

// maxResplits bounds how often a txn's read parts are cut again by the
// ranges as they are now.
const maxResplits = 3

// isRouting reports whether err says a part's keys are no longer where
// the range cache had them.
func isRouting(err error) bool {
	switch kvpb.CodeOf(err) {
	case kvpb.ErrorCode_CROSS_RANGE, kvpb.ErrorCode_KEY_MISMATCH, kvpb.ErrorCode_RANGE_NOT_FOUND:
		return true
	}
	return false
}

// resplit replaces the read parts moved by new ones, cut from their clips
// by the ranges as they are now (reloaded from the meta range), and
// returns the new read parts (only they are still to send) and all
// parts, in key order.
func (c *Coordinator) resplit(ctx context.Context, parts, moved []*part, reads []keys.Span) (readers, all []*part, _ error) {
	for _, p := range parts {
		isMoved := false
		for _, m := range moved {
			isMoved = isMoved || m == p
		}
		if !isMoved {
			all = append(all, p)
			continue
		}
		var rs []keys.Span
		for _, r := range reads {
			if x, ok := r.Within(p.clip); ok {
				rs = append(rs, x)
			}
		}
		sub, err := c.split(ctx, nil, rs, true /* fresh */)
		if err != nil {
			return nil, nil, err
		}
		for _, q := range sub {
			q.clip = q.clip.Intersect(p.clip)
			all = append(all, q)
			readers = append(readers, q)
		}
	}
	return readers, all, nil
}

// retryable reports whether a failed attempt may run again: it was
// refused for its revision or its routing, and wrote nothing that stays.
func retryable(err error) bool {
	switch kvpb.CodeOf(err) {
	case kvpb.ErrorCode_TXN_ABORTED, kvpb.ErrorCode_LOCKED, kvpb.ErrorCode_CROSS_RANGE, kvpb.ErrorCode_KEY_MISMATCH, kvpb.ErrorCode_RANGE_NOT_FOUND, kvpb.ErrorCode_RETRY:
		return true
	}
	return false
}

// decide settles a txn whose stagings did not all succeed: a participant
// whose answer was lost is asked (and prevented from staging later); the
// txn is committed only if every participant staged. Errors: AMBIGUOUS when
// some participant cannot be asked.
func (c *Coordinator) decide(ctx context.Context, id uint64, record []byte, ts int64, writers []*part) (bool, error) {
	all := true
	for _, w := range writers {
		switch {
		case w.err == nil:
			continue
		case kvpb.CodeOf(w.err) != kvpb.ErrorCode_AMBIGUOUS && kvpb.CodeOf(w.err) != kvpb.ErrorCode_OK:
			// Refused or failed for good: never staged, never will.
			all = false
			continue
		}
		m, err := c.mark(ctx, w.anchor, id, kvpb.TxnStatus_ABORTED, true /* ifAbsent */)
		if err != nil {
			return false, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "txn: staging at revision %d may have committed: %v (asking: %v)", ts, w.err, err)
		}
		if m.GetStatus() != kvpb.TxnStatus_STAGING {
			all = false
		} else {
			w.err = nil
		}
	}
	return all, nil
}

// abort marks a txn that never committed ABORTED at its record and drops
// its locks and markers, before its next attempt runs (so that it does not
// meet them). What fails is left to those who meet it.
func (c *Coordinator) abort(ctx context.Context, id uint64, record []byte, writers []*part) {
	if record == nil {
		return
	}
	if _, err := c.mark(ctx, record, id, kvpb.TxnStatus_ABORTED, true /* ifAbsent */); err != nil {
		c.log.Debug("txn: abort: mark record", "txn", txnName(id), "err", err)
		return
	}
	if _, err := c.mark(ctx, record, id, kvpb.TxnStatus_ABORTED, false); err != nil {
		c.log.Debug("txn: abort: mark record", "txn", txnName(id), "err", err)
		return
	}
	if err := c.finish(ctx, id, record, false, participantsOf(writers)); err != nil {
		c.log.Debug("txn: abort: resolve", "txn", txnName(id), "err", err)
	}
}

// participant is what resolution needs of one participant: its anchor
// and the keys its staging locked.
type participant struct {
	anchor []byte
	keys   [][]byte
}

func participantsOf(writers []*part) []participant {
	out := make([]participant, 0, len(writers))
	for _, w := range writers {
		out = append(out, participant{anchor: w.anchor, keys: w.resp.GetLockedKeys()})
	}
	return out
}

// resolveLater resolves a decided txn in the background (or now, if too
// many are being resolved).
func (c *Coordinator) resolveLater(id uint64, record []byte, commit bool, writers []*part) {
	ps := participantsOf(writers)
	run := func(ctx context.Context) {
		if err := c.finish(ctx, id, record, commit, ps); err != nil {
			c.log.Debug("txn: resolve", "txn", txnName(id), "err", err)
		}
	}
	if !c.background(c.cfg.ResolveTimeout, run) {
		c.withStop(c.cfg.ResolveTimeout, run)
	}
}

// background runs fn on a goroutine that Close waits for, with a context
// that ends after timeout or at Close, if one of the maxBackground slots
// is free (false if none is).
func (c *Coordinator) background(timeout time.Duration, fn func(ctx context.Context)) bool {
	select {
	case c.slots <- struct{}{}:
	default:
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer func() { <-c.slots }()
		c.withStop(timeout, fn)
	}()
	return true
}

// withStop runs fn with a context that ends after timeout or at Close.
func (c *Coordinator) withStop(timeout time.Duration, fn func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	fn(ctx)
}

// finish resolves a decided txn everywhere.
//
// A committed txn resolves in one round: on every participant at once its
// locks become versions and its marker (the record too) says COMMITTED,
// which a recoverer counts as staged; then the markers are deleted, in
// batches shared with other txns (forgetLater). An aborted txn's record
// says ABORTED first, then every other participant's locks are dropped and
// its marker deleted; the record stays (see the end).
func (c *Coordinator) finish(ctx context.Context, id uint64, record []byte, commit bool, ps []participant) error {
	if commit {
		errs := make([]error, len(ps))
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.resolveKeys(ctx, id, true, p.keys, p.anchor, false)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for _, p := range ps {
			c.forgetLater(ctx, id, p.anchor)
		}
		return nil
	}
	var rec *participant
	var others []participant
	for i := range ps {
		if bytes.Equal(ps[i].anchor, record) {
			rec = &ps[i]
		} else {
			others = append(others, ps[i])
		}
	}
	if rec != nil {
		if err := c.resolveKeys(ctx, id, false, rec.keys, rec.anchor, false); err != nil {
			return err
		}
	}
	errs := make([]error, len(others))
	var wg sync.WaitGroup
	for i, p := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.resolveKeys(ctx, id, false, p.keys, p.anchor, true)
		}()
	}
	wg.Wait()
	// An aborted txn's record stays, ABORTED: a staging of it still on
	// its way may land later, and must then find it so.
	return errors.Join(errs...)
}

// Bounds of the marker deletions (forgetLater).
const (
	// maxForgets bounds the markers waiting to be deleted; past it a
	// marker is deleted at once, on its own.
	maxForgets = 1 << 16
	// forgetBatch and forgetEvery bound one batch: a flush deletes what
	// waits, at most forgetBatch markers, at least every forgetEvery.
	forgetBatch = 1024
	forgetEvery = 20 * time.Millisecond
)

// forgetLater queues txn id's marker at anchor for deletion, once every
// lock of the txn is resolved (forgetLoop sends it, with others).
func (c *Coordinator) forgetLater(ctx context.Context, id uint64, anchor []byte) {
	select {
	case c.forgets <- &cmdpb.TxnRef{TxnId: id, Anchor: anchor}:
	default:
		if err := c.forget(ctx, []*cmdpb.TxnRef{{TxnId: id, Anchor: anchor}}); err != nil {
			c.log.Debug("txn: forget marker", "txn", txnName(id), "err", err)
		}
	}
}

// forgetLoop deletes the queued markers in batches, one request per range
// holding some, until Close.
func (c *Coordinator) forgetLoop() {
	defer c.bg.Done()
	t := time.NewTicker(forgetEvery)
	defer t.Stop()
	var batch []*cmdpb.TxnRef
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ResolveTimeout)
		defer cancel()
		if err := c.forget(ctx, batch); err != nil {
			c.log.Debug("txn: forget markers", "markers", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-c.stop:
			return
		case ref := <-c.forgets:
			batch = append(batch, ref)
			if len(batch) >= forgetBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// forget deletes the markers refs names, one request per range holding
// some.
func (c *Coordinator) forget(ctx context.Context, refs []*cmdpb.TxnRef) error {
	refs = append([]*cmdpb.TxnRef(nil), refs...)
	sort.Slice(refs, func(i, j int) bool { return bytes.Compare(refs[i].GetAnchor(), refs[j].GetAnchor()) < 0 })
	anchors := make([][]byte, len(refs))
	for i, ref := range refs {
		anchors[i] = ref.GetAnchor()
	}
	groups, err := c.groupByRange(ctx, anchors, false)
	if err != nil {
		return err
	}
	var errs []error
	i := 0
	for _, g := range groups {
		part := refs[i : i+len(g)]
		i += len(g)
		span := keys.Span{Start: g[0], End: append(append([]byte(nil), g[len(g)-1]...), 0)}
		if _, err := c.r.Send(ctx, span, &cmdpb.BatchRequest{TxnForget: &cmdpb.TxnForget{Refs: part}}, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// resolveKeys resolves txn id's locks on ks, in as many requests as the
// ranges now holding them, and then its marker at anchor (forget: delete
// it; else it takes the txn's status).
func (c *Coordinator) resolveKeys(ctx context.Context, id uint64, commit bool, ks [][]byte, anchor []byte, forget bool) error {
	ks = append([][]byte(nil), ks...)
	sort.Slice(ks, func(i, j int) bool { return bytes.Compare(ks[i], ks[j]) < 0 })
	var withAnchor bool
	for attempt := 0; ; attempt++ {
		groups, err := c.groupByRange(ctx, ks, attempt > 0)
		if err != nil {
			return err
		}
		var failed error
		for _, g := range groups {
			res := &cmdpb.TxnResolve{TxnId: id, Commit: commit, Keys: g}
			span := keys.Span{Start: g[0], End: append(append([]byte(nil), g[len(g)-1]...), 0)}
			if len(anchor) > 0 && !withAnchor && span.Contains(anchor) {
				res.Anchor, res.Forget, withAnchor = anchor, forget, true
			}
			if _, err := c.r.Send(ctx, span, &cmdpb.BatchRequest{TxnResolve: &cmdpb.TxnResolveRequest{Resolve: res}}, true); err != nil {
				failed = err
				if res.Anchor != nil {
					withAnchor = false
				}
			}
		}
		if failed == nil {
			break
		}
		if !isRouting(failed) || attempt >= 3 {
			return failed
		}
	}
	if len(anchor) > 0 && !withAnchor {
		_, err := c.r.Send(ctx, keys.Span{Start: anchor}, &cmdpb.BatchRequest{TxnResolve: &cmdpb.TxnResolveRequest{Resolve: &cmdpb.TxnResolve{TxnId: id, Commit: commit, Anchor: anchor, Forget: forget}}}, true)
		return err
	}
	return nil
}

// groupByRange splits sorted keys by the ranges holding them now, in key
// order.
func (c *Coordinator) groupByRange(ctx context.Context, ks [][]byte, fresh bool) ([][][]byte, error) {
	if len(ks) == 0 {
		return nil, nil
	}
	bound := keys.Span{Start: ks[0], End: append(append([]byte(nil), ks[len(ks)-1]...), 0)}
	descs, err := c.r.Covering(ctx, bound, fresh)
	if err != nil {
		return nil, err
	}
	var out [][][]byte
	i := 0
	for _, d := range descs {
		s := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}
		var g [][]byte
		for i < len(ks) && s.Contains(ks[i]) {
			g = append(g, ks[i])
			i++
		}
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	if i != len(ks) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "txn: the known ranges do not hold key %q", ks[i])
	}
	return out, nil
}

// mark decides txn id's marker at anchor (see cmdpb.TxnMark) and returns
// it as it is after.
func (c *Coordinator) mark(ctx context.Context, anchor []byte, id uint64, status kvpb.TxnStatus, ifAbsent bool) (*kvpb.TxnMeta, error) {
	resp, err := c.r.Send(ctx, keys.Span{Start: anchor}, &cmdpb.BatchRequest{TxnMark: &cmdpb.TxnMark{TxnId: id, Anchor: anchor, Status: status, IfAbsent: ifAbsent}}, true)
	if err != nil {
		return nil, err
	}
	return resp.GetTxn(), nil
}

// split cuts a txn's write and read spans by the ranges holding them, in
// key order. A part the txn writes on is a participant, anchored at the
// first key it writes.
func (c *Coordinator) split(ctx context.Context, writes, reads []keys.Span, fresh bool) ([]*part, error) {
	bound := bounding(append(append([]keys.Span(nil), writes...), reads...))
	descs, err := c.r.Covering(ctx, bound, fresh)
	if err != nil {
		return nil, err
	}
	var out []*part
	for _, d := range descs {
		clip := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}.Intersect(bound)
		if clip.Empty() {
			continue
		}
		p := &part{clip: clip}
		touched := false
		for _, w := range writes {
			if s, ok := w.Within(clip); ok {
				p.writes = append(p.writes, s)
				if p.anchor == nil || bytes.Compare(s.Start, p.anchor) < 0 {
					p.anchor = s.Start
				}
			}
		}
		for _, r := range reads {
			if _, ok := r.Within(clip); ok {
				touched = true
			}
		}
		p.writer = len(p.writes) > 0
		if p.writer || touched {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "txn: no range holds the txn's keys %v", bound)
	}
	return out, nil
}

// bounding is the smallest span (with an End) holding every span of ss.
func bounding(ss []keys.Span) keys.Span {
	var out keys.Span
	for i, s := range ss {
		end := s.End
		if len(end) == 0 {
			end = append(append([]byte(nil), s.Start...), 0)
		}
		if i == 0 || bytes.Compare(s.Start, out.Start) < 0 {
			out.Start = s.Start
		}
		if i == 0 || bytes.Compare(end, out.End) > 0 {
			out.End = end
		}
	}
	return out
}

// hasCompares reports whether any txn in op has a compare.
func hasCompares(op *kvpb.RequestOp) bool {
	t := op.GetTxn()
	if t == nil {
		return false
	}
	if len(t.GetCompare()) > 0 {
		return true
	}
	for _, ops := range [][]*kvpb.RequestOp{t.GetSuccess(), t.GetFailure()} {
		for _, o := range ops {
			if hasCompares(o) {
				return true
			}
		}
	}
	return false
}

// allTaken is the path of a txn with no compares: every success branch.
func allTaken(op *kvpb.RequestOp) []bool {
	path, _ := eval.Path(op, func(*kvpb.Compare) ([]*kvpb.KeyValue, error) { return nil, nil })
	return path
}

// path reads op's compares at rev and decides its path.
func (c *Coordinator) path(ctx context.Context, op *kvpb.RequestOp, rev int64) ([]bool, error) {
	return eval.Path(op, func(cmp *kvpb.Compare) ([]*kvpb.KeyValue, error) {
		resp, _, err := c.r.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: cmp.GetKey(), RangeEnd: cmp.GetRangeEnd(), Revision: rev}}})
		if err != nil {
			return nil, err
		}
		return resp.GetRange().GetKvs(), nil
	})
}

// errWouldWrite is readPath's answer for a path that writes after all.
var errWouldWrite = errors.New("txn: the path writes")

// readPath answers a txn whose path writes nothing: its reads, at rev.
// Errors: errWouldWrite if a delete on it finds keys at rev, or it puts.
func (c *Coordinator) readPath(ctx context.Context, op *kvpb.RequestOp, path []bool, rev int64) (*kvpb.ResponseOp, router.Header, error) {
	h := router.Header{Revision: rev}
	p := 0
	var walk func(op *kvpb.RequestOp) (*kvpb.ResponseOp, error)
	walk = func(op *kvpb.RequestOp) (*kvpb.ResponseOp, error) {
		switch req := op.GetRequest().(type) {
		case *kvpb.RequestOp_Range:
			sub := proto.CloneOf(req.Range)
			if sub.Revision <= 0 {
				sub.Revision = rev
			}
			resp, sh, err := c.r.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: sub}})
			if err != nil {
				return nil, err
			}
			h.RaftTerm = max(h.RaftTerm, sh.RaftTerm)
			return resp, nil
		case *kvpb.RequestOp_Txn:
			if p >= len(path) {
				return nil, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "txn: path too short")
			}
			ok := path[p]
			p++
			ops := req.Txn.GetSuccess()
			if !ok {
				ops = req.Txn.GetFailure()
			}
			out := &kvpb.TxnResponse{Succeeded: ok, Responses: make([]*kvpb.ResponseOp, 0, len(ops))}
			for _, o := range ops {
				r, err := walk(o)
				if err != nil {
					return nil, err
				}
				out.Responses = append(out.Responses, r)
			}
			return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: out}}, nil
		case *kvpb.RequestOp_DeleteRange:
			// Deletes nothing, if its keys are all gone at rev.
			dr := req.DeleteRange
			resp, _, err := c.r.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: dr.GetKey(), RangeEnd: dr.GetRangeEnd(), Revision: rev, CountOnly: true}}})
			if err != nil {
				return nil, err
			}
			if resp.GetRange().GetCount() > 0 {
				return nil, errWouldWrite
			}
			return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeResponse{}}}, nil
		case nil:
			return &kvpb.ResponseOp{}, nil
		}
		return nil, errWouldWrite
	}
	resp, err := walk(op)
	if err != nil {
		return nil, router.Header{}, err
	}
	eval.SetTxnHeaders(resp, rev)
	return resp, h, nil
}

// newTxnID returns a random non-zero txn id.
func newTxnID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// txnName names a txn in logs and errors.
func txnName(id uint64) string { return fmt.Sprintf("%016x", id) }
