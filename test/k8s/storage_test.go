package k8s

import (
	"testing"

	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

// storageCase is one run of a RunTest* function, with the arguments and
// feature gates pkg/storage/etcd3's store_test.go or watcher_test.go gives
// it.
type storageCase struct {
	name string
	// gates are set for the case before its store is built.
	gates map[featuregate.Feature]bool
	// freshChecker gives the case a new feature support checker, as the
	// etcd3 tests that switch RangeStream do.
	freshChecker bool
	// root: the case compares etcd keys, and needs a store at etcd's root
	// (see withRoot).
	root bool
	// compacts: the case compacts the system. Compaction is cluster-wide
	// and apiserver's tests start each from a new etcd, so some watch from
	// revision 1: every case that compacts runs after all the others.
	compacts bool
	// leases: the case creates objects with a TTL.
	leases bool
	// slow: the case waits seconds by design (timeouts, periodic
	// notifications); -short leaves it out.
	slow bool
	// etcdFails, when set, is why the case fails against etcd 3.7.3 in
	// this harness: it is skipped on both systems with that reason.
	etcdFails string
	// run gets a store built by setup; runOn, for the cases that build
	// their own (a failing codec or transformer), gets the system.
	run   func(t *testing.T, e *env)
	runOn func(t *testing.T, s *system)
}

func gate(f featuregate.Feature, on bool) map[featuregate.Feature]bool {
	return map[featuregate.Feature]bool{f: on}
}

var storageCases = []storageCase{
	{name: "Create", run: func(t *testing.T, e *env) {
		storagetesting.RunTestCreate(e.ctx, t, e.store, e.checkStoredObject())
	}},
	{name: "CreateWithTTL", leases: true, slow: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestCreateWithTTL(e.ctx, t, e.store)
	}},
	{name: "CreateWithKeyExist", run: func(t *testing.T, e *env) {
		storagetesting.RunTestCreateWithKeyExist(e.ctx, t, e.store)
	}},
	{name: "Get", leases: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestGet(e.ctx, t, e.store)
	}},
	{name: "UnconditionalDelete", run: func(t *testing.T, e *env) {
		storagetesting.RunTestUnconditionalDelete(e.ctx, t, e.store)
	}},
	{name: "ConditionalDelete", run: func(t *testing.T, e *env) {
		storagetesting.RunTestConditionalDelete(e.ctx, t, e.store)
	}},
	{name: "DeleteWithSuggestion", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDeleteWithSuggestion(e.ctx, t, e.store)
	}},
	{name: "DeleteWithSuggestionAndConflict", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDeleteWithSuggestionAndConflict(e.ctx, t, e.store)
	}},
	{name: "DeleteWithSuggestionOfDeletedObject", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(e.ctx, t, e.store)
	}},
	{name: "ValidateDeletionWithSuggestion", run: func(t *testing.T, e *env) {
		storagetesting.RunTestValidateDeletionWithSuggestion(e.ctx, t, e.store)
	}},
	{name: "ValidateDeletionWithOnlySuggestionValid", run: func(t *testing.T, e *env) {
		storagetesting.RunTestValidateDeletionWithOnlySuggestionValid(e.ctx, t, e.store)
	}},
	{name: "DeleteWithConflict", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDeleteWithConflict(e.ctx, t, e.store)
	}},
	{name: "DeleteWithConflictAndMissingExpectedTransformOrDecodeError",
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		runOn: func(t *testing.T, s *system) {
			codec := switchedCodec{Codec: newTestCodec(), failSwitch: &failSwitch{}}
			e := setup(t, s, withCodec(codec))
			storagetesting.RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError(e.ctx, t, e.store, codec.setFailing)
		}},
	{name: "DeleteWithConflictAndExpectedTransformError",
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		runOn: func(t *testing.T, s *system) {
			tr := switchedTransformer{Transformer: storagetesting.NewPrefixTransformer([]byte(testPrefix), false), failSwitch: &failSwitch{}}
			e := setup(t, s, withTransformer(tr))
			storagetesting.RunTestDeleteExpectedTransformOrDecodeError(e.ctx, t, e.store, tr.setFailing)
		}},
	{name: "DeleteWithConflictAndExpectedDecodeError",
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		runOn: func(t *testing.T, s *system) {
			codec := switchedCodec{Codec: newTestCodec(), failSwitch: &failSwitch{}}
			e := setup(t, s, withCodec(codec))
			storagetesting.RunTestDeleteExpectedTransformOrDecodeError(e.ctx, t, e.store, codec.setFailing)
		}},
	{name: "DeleteWithSuggestionAndMissingExpectedTransformOrDecodeFailure",
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(e.ctx, t, e.store)
		}},
	{name: "PreconditionalDeleteWithSuggestion", run: func(t *testing.T, e *env) {
		storagetesting.RunTestPreconditionalDeleteWithSuggestion(e.ctx, t, e.store)
	}},
	{name: "PreconditionalDeleteWithSuggestionPass", run: func(t *testing.T, e *env) {
		storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass(e.ctx, t, e.store)
	}},
	{name: "ListPaging", run: func(t *testing.T, e *env) {
		storagetesting.RunTestListPaging(e.ctx, t, e.store)
	}},
	{name: "GetListNonRecursive", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGetListNonRecursive(e.ctx, t, e.increaseRV(), e.store)
	}},
	{name: "GetListRecursivePrefix", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGetListRecursivePrefix(e.ctx, t, e.store)
	}},
	{name: "KeySchema", run: func(t *testing.T, e *env) {
		storagetesting.RunTestKeySchema(e.ctx, t, e.store)
	}},
	{name: "GetListWithErrorAggregation", root: true,
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		run: func(t *testing.T, e *env) {
			st := etcd3.NewStoreWithUnsafeCorruptObjectDeletion(e.store, podsResource)
			storagetesting.RunTestGetListWithErrorAggregation(e.ctx, t, e.withTransformerOverride(st), newCorruptObjectError())
		}},
	{name: "GetListWithoutErrorAggregation", root: true,
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestGetListWithoutErrorAggregation(e.ctx, t, e.withTransformerOverride(e.store), newCorruptObjectError())
		}},
	{name: "GuaranteedUpdate", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGuaranteedUpdate(e.ctx, t, e.withPrefixTransformer(), e.checkStoredObject())
	}},
	{name: "GuaranteedUpdateWithTTL", leases: true, slow: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestGuaranteedUpdateWithTTL(e.ctx, t, e.store)
	}},
	{name: "GuaranteedUpdateChecksStoredData", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGuaranteedUpdateChecksStoredData(e.ctx, t, e.withPrefixTransformer())
	}},
	{name: "GuaranteedUpdateWithConflict", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGuaranteedUpdateWithConflict(e.ctx, t, e.store)
	}},
	{name: "GuaranteedUpdateWithSuggestionAndConflict", run: func(t *testing.T, e *env) {
		storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(e.ctx, t, e.store)
	}},
	{name: "TransformationFailure", run: func(t *testing.T, e *env) {
		storagetesting.RunTestTransformationFailure(e.ctx, t, e.withPrefixTransformer())
	}},
	{name: "List/rangeStream=false", compacts: true, freshChecker: true,
		gates: gate((features.EtcdRangeStream), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestList(e.ctx, t, e.store, e.compaction(), false, e.lists)
			if n := e.kv.GetStreamReadsAndReset(); n > 0 {
				t.Errorf("%d RangeStream requests with EtcdRangeStream off, want none", n)
			}
		}},
	{name: "List/rangeStream=true", compacts: true, freshChecker: true,
		gates: gate((features.EtcdRangeStream), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestList(e.ctx, t, e.store, e.compaction(), false, e.lists)
			if e.kv.GetStreamReadsAndReset() == 0 {
				t.Error("no list was served by RangeStream with EtcdRangeStream on")
			}
		}},
	{name: "ConsistentList/rangeStream=false", freshChecker: true,
		gates: gate((features.EtcdRangeStream), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestConsistentList(e.ctx, t, e.store, e.increaseRV(), false, true, false)
		}},
	{name: "ConsistentList/rangeStream=true", freshChecker: true,
		gates: gate((features.EtcdRangeStream), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestConsistentList(e.ctx, t, e.store, e.increaseRV(), false, true, false)
		}},
	{name: "CompactRevision", compacts: true,
		// The store sees compactions made by others only through the
		// compactor's watch of the compact key, which this gate starts.
		gates: gate((features.ListFromCacheSnapshot), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestCompactRevision(e.ctx, t, e.store, e.increaseRV(), e.compaction())
		}},
	{name: "ListContinuation", run: func(t *testing.T, e *env) {
		storagetesting.RunTestListContinuation(e.ctx, t, e.store, e.checkCalls())
	}},
	{name: "ListPaginationRareObject",
		// The compactor's read of the compact key would count as a call.
		gates: gate((features.ListFromCacheSnapshot), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestListPaginationRareObject(e.ctx, t, e.store, e.checkCalls())
		}},
	{name: "ListContinuationWithFilter", run: func(t *testing.T, e *env) {
		storagetesting.RunTestListContinuationWithFilter(e.ctx, t, e.store, e.checkCalls())
	}},
	{name: "NamespaceScopedList", run: func(t *testing.T, e *env) {
		storagetesting.RunTestNamespaceScopedList(e.ctx, t, e.store)
	}},
	{name: "ListInconsistentContinuation", compacts: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestListInconsistentContinuation(e.ctx, t, e.store, e.compaction())
	}},
	{name: "ListResourceVersionMatch", run: func(t *testing.T, e *env) {
		storagetesting.RunTestListResourceVersionMatch(e.ctx, t, e.withPrefixTransformer())
	}},
	{name: "Stats/SizeBasedListCostEstimate=true", run: func(t *testing.T, e *env) {
		e.enableSizeEstimation(t)
		storagetesting.RunTestStats(e.ctx, t, e.store, e.codec, e.tr, true)
	}},
	{name: "Stats/SizeBasedListCostEstimate=false", run: func(t *testing.T, e *env) {
		storagetesting.RunTestStats(e.ctx, t, e.store, e.codec, e.tr, false)
	}},

	// watcher_test.go's TestWatch.
	{name: "Watch", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatch(e.ctx, t, e.store)
	}},
	{name: "ClusterScopedWatch", run: func(t *testing.T, e *env) {
		storagetesting.RunTestClusterScopedWatch(e.ctx, t, e.store)
	}},
	{name: "NamespaceScopedWatch", run: func(t *testing.T, e *env) {
		storagetesting.RunTestNamespaceScopedWatch(e.ctx, t, e.store)
	}},
	{name: "DeleteTriggerWatch", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDeleteTriggerWatch(e.ctx, t, e.store)
	}},
	{name: "WatchFromZero", compacts: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchFromZero(e.ctx, t, e.store, e.compaction())
	}},
	{name: "WatchFromNonZero", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchFromNonZero(e.ctx, t, e.store)
	}},
	{name: "DelayedWatchDelivery", run: func(t *testing.T, e *env) {
		storagetesting.RunTestDelayedWatchDelivery(e.ctx, t, e.store)
	}},
	{name: "WatchError", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchError(e.ctx, t, e.withPrefixTransformer())
	}},
	{name: "WatchContextCancel", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchContextCancel(e.ctx, t, e.store)
	}},
	{name: "WatcherTimeout", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatcherTimeout(e.ctx, t, e.store)
	}},
	{name: "WatchDeleteEventObjectHaveLatestRV", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(e.ctx, t, e.store)
	}},
	{name: "WatchInitializationSignal", run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchInitializationSignal(e.ctx, t, e.store)
	}},
	{name: "ProgressNotify", slow: true, run: func(t *testing.T, e *env) {
		storagetesting.RunOptionalTestProgressNotify(e.ctx, t, e.store, e.increaseRV())
	}},
	{name: "WatchWithUnsafeDelete",
		gates: gate((features.AllowUnsafeMalformedObjectDeletion), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestWatchWithUnsafeDelete(e.ctx, t, e.withTransformerOverride(e.store), newCorruptObjectError())
		}},
	{name: "WatchDispatchBookmarkEvents", slow: true, run: func(t *testing.T, e *env) {
		storagetesting.RunTestWatchDispatchBookmarkEvents(e.ctx, t, e.store, false)
	}},
	{name: "SendInitialEventsBackwardCompatibility", run: func(t *testing.T, e *env) {
		storagetesting.RunSendInitialEventsBackwardCompatibility(e.ctx, t, e.store)
	}},
	{name: "RangeStream=false/WatchSemantics",
		gates: gate((features.EtcdRangeStream), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemantics(e.ctx, t, e.store)
		}},
	{name: "RangeStream=false/WatchSemanticsWithConcurrentDecode",
		gates: map[featuregate.Feature]bool{features.EtcdRangeStream: false, features.ConcurrentWatchObjectDecode: true},
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemantics(e.ctx, t, e.store)
		}},
	{name: "RangeStream=false/WatchSemanticInitialEventsExtended",
		gates: gate((features.EtcdRangeStream), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemanticInitialEventsExtended(e.ctx, t, e.store)
		}},
	{name: "RangeStream=false/WatchListMatchSingle",
		gates: gate((features.EtcdRangeStream), false),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchListMatchSingle(e.ctx, t, e.store)
		}},
	{name: "RangeStream=true/WatchSemantics",
		gates: gate((features.EtcdRangeStream), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemantics(e.ctx, t, e.store)
		}},
	{name: "RangeStream=true/WatchSemanticsWithConcurrentDecode",
		gates: map[featuregate.Feature]bool{features.EtcdRangeStream: true, features.ConcurrentWatchObjectDecode: true},
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemantics(e.ctx, t, e.store)
		}},
	{name: "RangeStream=true/WatchSemanticInitialEventsExtended",
		gates: gate((features.EtcdRangeStream), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchSemanticInitialEventsExtended(e.ctx, t, e.store)
		}},
	{name: "RangeStream=true/WatchListMatchSingle",
		gates: gate((features.EtcdRangeStream), true),
		run: func(t *testing.T, e *env) {
			storagetesting.RunWatchListMatchSingle(e.ctx, t, e.store)
		}},
	{name: "WatchErrorEventIsBlockingFurtherEvent", run: func(t *testing.T, e *env) {
		storagetesting.RunWatchErrorIsBlockingFurtherEvents(e.ctx, t, e.withPrefixTransformer())
	}},
	// Not run by pkg/storage/etcd3 (the watch cache runs it): exported all
	// the same, so it is here.
	{name: "OptionalWatchBookmarksWithCorrectResourceVersion",
		etcdFails: "the etcd3 store sends bookmarks only when etcd sends progress notifications, which it asks for only with ProgressNotify; the watch cache, whose test this is, sends its own",
		run: func(t *testing.T, e *env) {
			storagetesting.RunTestOptionalWatchBookmarksWithCorrectResourceVersion(e.ctx, t, e.store)
		}},
}

// TestStorage runs every case on etcd, then on Concord; the cases that
// compact run last.
func TestStorage(t *testing.T) {
	for _, compacting := range []bool{false, true} {
		for _, c := range storageCases {
			if c.compacts == compacting {
				t.Run(c.name, func(t *testing.T) { runCase(t, c) })
			}
		}
	}
}

func runCase(t *testing.T, c storageCase) {
	for _, s := range systems {
		t.Run(s.name, func(t *testing.T) {
			if c.etcdFails != "" {
				t.Skipf("fails against etcd 3.7.3 in this harness: %s", c.etcdFails)
			}
			if c.slow && testing.Short() {
				t.Skip("slow (waits for timeouts or periodic notifications by design); run without -short")
			}
			if c.leases && s.noLeases != "" {
				t.Skip(s.noLeases)
			}
			for name, on := range c.gates {
				featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, name, on)
			}
			s.useChecker(t, c.freshChecker)
			if c.runOn != nil {
				c.runOn(t, s)
				return
			}
			var opts []setupOption
			if c.root {
				opts = append(opts, withRoot())
			}
			c.run(t, setup(t, s, opts...))
		})
	}
}
