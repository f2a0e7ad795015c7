package eval

import (
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// A txn whose keys lie in several ranges (internal/txn) is evaluated part
// by part: its coordinator decides the branches of every txn on the path
// (its compares, read at ts-1, before any part), and each range then
// evaluates the same op with that path, every key op clipped to the range
// (StagePart), at the txn's revision ts. The parts' answers merge
// (MergeParts) into the answer one range holding every key would give:
// key ops commute across ranges, so running each range's share of the ops
// in order gives each op its exact result.

// StagePart evaluates, at revision ts into b, the part of op that lies in
// clip (global keys, inside the range), with the branches path takes (in
// pre-order, as a txn's compares decided them). Ops outside clip answer
// empty placeholders that MergeParts ignores; Ranges clipped to clip fetch
// what MergeParts needs. Reads inside the txn see its earlier writes in
// clip. prev is the revision before the txn (ts-1 for the cluster),
// compacted the range's compacted revision. Errors as Write's: on a
// *kvpb.Error nothing was written.
func StagePart(b *storage.Batch, clip keys.Span, ts, prev, compacted int64, taken []bool, op *kvpb.RequestOp) (*kvpb.ResponseOp, bool, error) {
	if ts <= 0 || prev >= ts {
		return nil, false, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "eval: txn part at revision %d after %d", ts, prev)
	}
	if op.GetRequest() == nil {
		return nil, false, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "eval: empty request")
	}
	e := &evaluator{r: b, b: b, span: clip, clip: true, ts: ts, prev: max(prev, 1), current: prev, compacted: compacted, readRev: ts}
	p := &path{taken: taken}
	var effects []effect
	if err := e.check(op, p.cursor(), &effects); err != nil {
		return nil, false, err
	}
	if err := p.complete(op); err != nil {
		return nil, false, err
	}
	resp, err := e.exec(op, p.cursor())
	if err != nil {
		return nil, false, err
	}
	return resp, e.wrote, nil
}

// complete checks that p decides every txn on op's path.
func (p *path) complete(op *kvpb.RequestOp) error {
	need := pathLen(op, p.cursor())
	if need < 0 || need != len(p.taken) {
		return kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "eval: txn path of %d branches does not fit the txn", len(p.taken))
	}
	return nil
}

// pathLen counts the txns on op's path as p takes it; -1 if p is too short.
func pathLen(op *kvpb.RequestOp, p *path) int {
	t := op.GetTxn()
	if t == nil {
		return 0
	}
	if p.next >= len(p.taken) {
		return -1
	}
	n := 1
	for _, o := range branch(t, p.pop()) {
		k := pathLen(o, p)
		if k < 0 {
			return -1
		}
		n += k
	}
	return n
}

// Path evaluates the compares of op's txns against kvs, the keys each
// compare names as of the txn's read revision (read(c) returns them), and
// returns the branch every txn on the path takes, in pre-order (what
// StagePart takes).
func Path(op *kvpb.RequestOp, read func(c *kvpb.Compare) ([]*kvpb.KeyValue, error)) ([]bool, error) {
	var out []bool
	var walk func(op *kvpb.RequestOp) error
	walk = func(op *kvpb.RequestOp) error {
		t := op.GetTxn()
		if t == nil {
			return nil
		}
		ok := true
		for _, c := range t.GetCompare() {
			kvs, err := read(c)
			if err != nil {
				return err
			}
			if ok = CompareKVs(c, kvs); !ok {
				break
			}
		}
		out = append(out, ok)
		for _, o := range branch(t, ok) {
			if err := walk(o); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(op)
}

// inClip reports whether the key op's keys (a user span as
// keys.UserSpanOf makes it) touch clip, and returns their part in it.
func (e *evaluator) inClip(s keys.Span) (keys.Span, bool) {
	if !e.clip {
		return s, true
	}
	return s.Within(e.span)
}

// clippedRange is the part of a Range in clip, for StagePart: its keys in
// clip, every match fetched that the merge may need.
func (e *evaluator) clippedRange(req *kvpb.RangeRequest) (*kvpb.RangeRequest, bool) {
	if !e.clip {
		return req, true
	}
	s, ok := e.inClip(keys.UserSpanOf(req.GetKey(), req.GetRangeEnd()))
	if !ok {
		return nil, false
	}
	if len(req.GetRangeEnd()) == 0 {
		return req, true
	}
	return SplitRange(req, s, req.GetRevision(), rangeLimit(req), false), true
}

// MergeParts merges the answers of op's parts (StagePart's, in key order
// of their clips) at revision ts into op's answer, with path the branches
// taken; header revisions inside the txn are ts-1 before its first write
// and ts from it on, as for a txn on one range.
func MergeParts(op *kvpb.RequestOp, taken []bool, ts int64, parts []*kvpb.ResponseOp) *kvpb.ResponseOp {
	m := &merger{ts: ts, p: &path{taken: taken}}
	return m.merge(op, parts)
}

type merger struct {
	ts    int64
	p     *path
	wrote bool
}

func (m *merger) merge(op *kvpb.RequestOp, parts []*kvpb.ResponseOp) *kvpb.ResponseOp {
	switch req := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		rs := make([]*kvpb.RangeResponse, 0, len(parts))
		for _, p := range parts {
			rs = append(rs, p.GetRange())
		}
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: MergeRanges(req.Range, rs)}}
	case *kvpb.RequestOp_Put:
		out := &kvpb.PutResponse{}
		for _, p := range parts {
			if kv := p.GetPut().GetPrevKv(); kv != nil {
				out.PrevKv = kv
			}
		}
		m.wrote = true
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: out}}
	case *kvpb.RequestOp_DeleteRange:
		out := &kvpb.DeleteRangeResponse{}
		for _, p := range parts {
			out.Deleted += p.GetDeleteRange().GetDeleted()
			out.PrevKvs = append(out.PrevKvs, p.GetDeleteRange().GetPrevKvs()...)
		}
		m.wrote = m.wrote || out.Deleted > 0
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: out}}
	case *kvpb.RequestOp_Txn:
		succeeded := m.p.pop()
		ops := branch(req.Txn, succeeded)
		out := &kvpb.TxnResponse{Succeeded: succeeded, Responses: make([]*kvpb.ResponseOp, 0, len(ops))}
		for i, o := range ops {
			sub := make([]*kvpb.ResponseOp, 0, len(parts))
			for _, p := range parts {
				if rs := p.GetTxn().GetResponses(); i < len(rs) {
					sub = append(sub, rs[i])
				}
			}
			resp := m.merge(o, sub)
			if o.GetTxn() == nil {
				resp.HeaderRevision = m.ts - 1
				if m.wrote {
					resp.HeaderRevision = m.ts
				}
			}
			out.Responses = append(out.Responses, resp)
		}
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: out}}
	}
	return &kvpb.ResponseOp{}
}

// Intents returns the writes a StagePart evaluation made into its batch
// (recorded with storage.Batch.RecordEvents before it), as the intents of
// the txn's locks.
func Intents(evs []*kvpb.Event) []*kvpb.Intent {
	out := make([]*kvpb.Intent, 0, len(evs))
	for _, ev := range evs {
		out = append(out, &kvpb.Intent{Kv: ev.GetKv(), Delete: ev.GetType() == kvpb.Event_DELETE})
	}
	return out
}

// CommitIntent writes a resolved intent into b as the version it stands
// for, at its commit revision, and keeps idx (nil: none) up to date.
func CommitIntent(b *storage.Batch, idx *Index, in *kvpb.Intent) error {
	kv := in.GetKv()
	if in.GetDelete() {
		if err := b.MVCCDelete(kv.GetKey(), kv.GetModRevision()); err != nil {
			return err
		}
		idx.del(kv.GetKey(), kv.GetModRevision())
		return nil
	}
	kv = &kvpb.KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Lease: kv.GetLease()}
	if err := b.MVCCPut(kv); err != nil {
		return err
	}
	idx.put(kv)
	return nil
}

// PathSpans returns the global spans that op writes (Puts, DeleteRanges)
// and reads (Ranges) on the branches taken says, in op order; a single key
// is a span with an empty End.
func PathSpans(op *kvpb.RequestOp, taken []bool) (writes, reads []keys.Span) {
	p := &path{taken: taken}
	var walk func(op *kvpb.RequestOp)
	walk = func(op *kvpb.RequestOp) {
		switch req := op.GetRequest().(type) {
		case *kvpb.RequestOp_Range:
			reads = append(reads, keys.UserSpanOf(req.Range.GetKey(), req.Range.GetRangeEnd()))
		case *kvpb.RequestOp_Put:
			writes = append(writes, keys.UserSpanOf(req.Put.GetKey(), nil))
		case *kvpb.RequestOp_DeleteRange:
			writes = append(writes, keys.UserSpanOf(req.DeleteRange.GetKey(), req.DeleteRange.GetRangeEnd()))
		case *kvpb.RequestOp_Txn:
			if p.next >= len(p.taken) {
				return
			}
			for _, o := range branch(req.Txn, p.pop()) {
				walk(o)
			}
		}
	}
	walk(op)
	return writes, reads
}

// SetTxnHeaders sets the header revision of every non-txn response inside
// resp's txns (recursively) to rev: a txn that wrote nothing answers them
// all at the revision it was served at.
func SetTxnHeaders(resp *kvpb.ResponseOp, rev int64) {
	for _, r := range resp.GetTxn().GetResponses() {
		if r.GetTxn() != nil {
			SetTxnHeaders(r, rev)
			continue
		}
		r.HeaderRevision = rev
	}
}
