package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Request validation, rule for rule what etcd's v3rpc layer checks before a
// request reaches its server (go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc,
// key.go), returning the same errors. The Backend may assume a request that
// reaches it passed these checks.

func checkRangeRequest(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPutRequest(r *pb.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRequest(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// checkTxn runs both of etcd's txn checks in etcd's order: the shape
// (checkTxnRequest) first, then duplicate keys in each branch, which is only
// affordable once the op counts are known to be bounded.
func checkTxn(r *pb.TxnRequest, maxTxnOps int) error {
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkIntervals(r.GetFailure())
	return err
}

// checkTxnRequest bounds the txn by maxTxnOps the way etcd counts: the
// largest of the compare list and each branch must fit, and a nested txn gets
// what is left of the budget (maxTxnOps minus that largest count), so the
// total work of a deeply nested txn stays bounded too.
func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	opc := max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()))
	if opc > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, op := range r.GetSuccess() {
		if err := checkRequestOp(op, maxTxnOps-opc); err != nil {
			return err
		}
	}
	for _, op := range r.GetFailure() {
		if err := checkRequestOp(op, maxTxnOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(op *pb.RequestOp, maxTxnOps int) error {
	switch v := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return checkRangeRequest(v.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPutRequest(v.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRequest(v.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(v.RequestTxn, maxTxnOps)
	default:
		// An op with no request: etcd answers "key not found".
		return rpctypes.ErrGRPCKeyNotFound
	}
}

// interval is a key interval [begin, end) under etcd's "affine" string order,
// where the empty string is +infinity: an end of "" is unbounded.
type interval struct{ begin, end string }

// containsKey reports whether k is in iv, which is what etcd's
// IntervalTree.Intersects(NewStringAffinePoint(k)) decides.
func (iv interval) containsKey(k string) bool {
	if iv.begin == "" { // begins at +infinity: empty
		return false
	}
	return iv.begin <= k && (iv.end == "" || k < iv.end)
}

func anyContains(ivs []interval, k string) bool {
	for _, iv := range ivs {
		if iv.containsKey(k) {
			return true
		}
	}
	return false
}

// checkIntervals is etcd's duplicate-key rule for one list of ops (one txn
// branch): a key may be put at most once, and not be put where the same
// branch (or a txn nested in it) deletes. The two branches of a nested txn
// exclude each other, so both may put the same key. It returns the keys put
// and the intervals deleted, for the enclosing level.
//
// Like etcd, a delete's range_end is taken literally, so a "from key" delete
// (range_end "\x00") covers no key here and never conflicts; the backend
// applies the ops in order either way. Lists are scanned linearly: their
// total length is bounded by checkTxnRequest's op budget.
func checkIntervals(ops []*pb.RequestOp) (map[string]struct{}, []interval, error) {
	var dels []interval
	for _, op := range ops {
		d := op.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		k := string(d.GetKey())
		if len(d.GetRangeEnd()) != 0 {
			dels = append(dels, interval{begin: k, end: string(d.GetRangeEnd())})
		} else {
			dels = append(dels, interval{begin: k, end: k + "\x00"})
		}
	}

	puts := make(map[string]struct{})
	for _, op := range ops {
		t := op.GetRequestTxn()
		if t == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(t.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(t.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, ok := puts[k]; ok || anyContains(dels, k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, ok := puts[k]; ok {
				if _, fromThen := putsThen[k]; !fromThen {
					return nil, nil, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if anyContains(dels, k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}

	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.GetKey())
		if _, ok := puts[k]; ok || anyContains(dels, k) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}

// isTxnReadOnly reports whether a txn only reads. etcd serves such a txn
// without Raft, so the request size limit (a Raft proposal limit) does not
// apply to it.
func isTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			switch v := op.GetRequest().(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !isTxnReadOnly(v.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}
