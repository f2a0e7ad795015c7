package storage_test

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

func Example() {
	e, err := storage.Open("data", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		panic(err)
	}
	defer func() { _ = e.Close() }()

	b := e.NewBatch()
	for rev, v := range []string{"one", "two"} {
		kv := &kvpb.KeyValue{Key: keys.User([]byte("k")), ModRevision: int64(rev + 1), CreateRevision: 1, Version: int64(rev + 1), Value: []byte(v)}
		if err := b.MVCCPut(kv); err != nil {
			panic(err)
		}
	}
	if err := b.Commit(true /* sync */); err != nil {
		panic(err)
	}
	b.Close()

	old, err := storage.MVCCGet(e, keys.User([]byte("k")), 1)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s at 1: %s\n", keys.StripUser(old.Key), old.Value)
	_ = storage.MVCCScan(e, keys.UserSpan, 0, func(kv *kvpb.KeyValue) error {
		fmt.Printf("%s now: %s (version %d)\n", keys.StripUser(kv.Key), kv.Value, kv.Version)
		return nil
	})
	// Output:
	// k at 1: one
	// k now: two (version 2)
}
