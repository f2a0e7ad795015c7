package eval_test

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

func Example() {
	e, err := storage.Open("data", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		panic(err)
	}
	defer func() { _ = e.Close() }()

	// The apply loop: each command at its revision, in one batch.
	b := e.NewBatch()
	for ts, v := range []string{"one", "two"} {
		put := &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte("k"), Value: []byte(v)}}}
		if _, _, err := eval.Write(b, keys.UserSpan, int64(ts+1), put); err != nil {
			panic(err)
		}
	}
	if err := b.Commit(true /* sync */); err != nil {
		panic(err)
	}
	b.Close()

	resp, err := eval.Read(e, keys.UserSpan, &kvpb.RangeRequest{Key: []byte("k")}, 2 /* current */, 0 /* compacted */)
	if err != nil {
		panic(err)
	}
	kv := resp.Kvs[0]
	fmt.Printf("%s=%s version %d created at %d\n", kv.Key, kv.Value, kv.Version, kv.CreateRevision)
	// Output: k=two version 2 created at 1
}
