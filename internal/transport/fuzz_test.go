package transport

import (
	"testing"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/protobuf/proto"
)

func FuzzValidateBatch(f *testing.F) {
	seeds := []*rpcpb.RaftBatch{
		{ClusterId: 1, FromNode: 3, ToNode: 2, Msgs: []*rpcpb.RaftMessage{msg(1, 1), snapMsg(2, 8)}, FromAddr: "http://h:1"},
		{ClusterId: 2, FromNode: 3, ToNode: 2},
		{ClusterId: 1, ToNode: 2, Msgs: []*rpcpb.RaftMessage{{}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{0x22, 0x02, 0x12, 0x00}) // one message with an empty raft message
	f.Fuzz(func(t *testing.T, data []byte) {
		var b rpcpb.RaftBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			return
		}
		if err := validateBatch(&b, 1, 2); err != nil {
			return
		}
		if b.GetClusterId() != 1 || b.GetToNode() != 2 || b.GetFromNode() == 0 || b.GetFromNode() == 2 {
			t.Fatalf("accepted %v", &b)
		}
		for _, m := range b.GetMsgs() {
			if m.GetMsg() == nil || m.GetRangeId() == 0 {
				t.Fatalf("accepted message %v", m)
			}
			_ = isSnap(m)
		}
	})
}
