package replica

import (
	"encoding/binary"
	"fmt"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"google.golang.org/protobuf/proto"
)

// System requests operate on the meta range's raw (non-MVCC) keys.

func checkSysKey(span keys.Span, key []byte) error {
	if !keys.MetaSpan.Contains(key) || !span.Contains(key) {
		return concordpb.Errorf(concordpb.ErrorCode_KEY_MISMATCH, "replica: system key %q outside range %v", key, span)
	}
	return nil
}

// IsSysRead reports whether a system request only reads.
func IsSysRead(req *concordpb.SysRequest) bool {
	return req.GetGet() != nil || req.GetScan() != nil
}

func evalSysRead(r storage.Reader, span keys.Span, req *concordpb.SysRequest) (*concordpb.SysResponse, error) {
	switch {
	case req.GetGet() != nil:
		key := req.GetGet().GetKey()
		if err := checkSysKey(span, key); err != nil {
			return nil, err
		}
		v, ok, err := storage.SysGet(r, key)
		if err != nil || !ok {
			return &concordpb.SysResponse{}, err
		}
		return &concordpb.SysResponse{Kvs: []*concordpb.SysKV{{Key: key, Value: v}}}, nil
	case req.GetScan() != nil:
		s := keys.Span{Start: req.GetScan().GetStart(), End: req.GetScan().GetEnd()}
		if !span.ContainsSpan(s) {
			return nil, concordpb.Errorf(concordpb.ErrorCode_KEY_MISMATCH, "replica: scan %v outside range %v", s, span)
		}
		out := &concordpb.SysResponse{}
		err := storage.SysScan(r, s, func(k, v []byte) error {
			out.Kvs = append(out.Kvs, &concordpb.SysKV{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
			return nil
		})
		return out, err
	}
	return nil, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "replica: not a system read")
}

func evalSysWrite(b *storage.Batch, span keys.Span, req *concordpb.SysRequest) (*concordpb.SysResponse, error) {
	switch {
	case req.GetPut() != nil:
		p := req.GetPut()
		if err := checkSysKey(span, p.GetKey()); err != nil {
			return nil, err
		}
		return &concordpb.SysResponse{}, b.SysPut(p.GetKey(), p.GetValue())
	case req.GetDelete() != nil:
		k := req.GetDelete().GetKey()
		if err := checkSysKey(span, k); err != nil {
			return nil, err
		}
		return &concordpb.SysResponse{}, b.SysDelete(k)
	case req.GetAdvance() != nil:
		a := req.GetAdvance()
		if err := checkSysKey(span, a.GetKey()); err != nil {
			return nil, err
		}
		cur, err := sysInt(b, a.GetKey())
		if err != nil {
			return nil, err
		}
		if a.GetValue() > cur {
			cur = a.GetValue()
			if err := b.SysPut(a.GetKey(), binary.BigEndian.AppendUint64(nil, uint64(cur))); err != nil {
				return nil, err
			}
		}
		return &concordpb.SysResponse{Value: cur}, nil
	case req.GetAddNode() != nil:
		return addNode(b, span, req.GetAddNode().GetNode())
	}
	return nil, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "replica: not a system write")
}

// sysInt reads a big-endian int64 system value (0 if absent).
func sysInt(r storage.Reader, key []byte) (int64, error) {
	v, ok, err := storage.SysGet(r, key)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("replica: system value %q has %d bytes, want 8", key, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// addNode registers a node: a node whose name is already known keeps its id
// (its record is refreshed); a new one gets the next id.
func addNode(b *storage.Batch, span keys.Span, n *concordpb.NodeRecord) (*concordpb.SysResponse, error) {
	if n.GetName() == "" {
		return nil, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "replica: a node needs a name")
	}
	if err := checkSysKey(span, keys.NodeSeq); err != nil {
		return nil, err
	}
	var existing uint64
	err := storage.SysScan(b, keys.NodeSpan(), func(_, v []byte) error {
		var rec concordpb.NodeRecord
		if err := proto.Unmarshal(v, &rec); err != nil {
			return err
		}
		if rec.GetName() == n.GetName() {
			existing = rec.GetNodeId()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rec := proto.Clone(n).(*concordpb.NodeRecord)
	if existing != 0 {
		rec.NodeId = existing
	} else {
		seq, err := sysInt(b, keys.NodeSeq)
		if err != nil {
			return nil, err
		}
		rec.NodeId = uint64(seq) + 1
		if err := b.SysPut(keys.NodeSeq, binary.BigEndian.AppendUint64(nil, rec.NodeId)); err != nil {
			return nil, err
		}
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := b.SysPut(keys.Node(rec.NodeId), data); err != nil {
		return nil, err
	}
	return &concordpb.SysResponse{Node: rec}, nil
}
