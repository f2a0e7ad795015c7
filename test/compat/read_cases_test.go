package compat

import (
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fixture is the data the read cases run over. Its keys' versions, create
// and mod revisions and values each order the keys differently, a key was
// deleted and re-created, and two keys share a value, so sorting, filtering
// and reading at a revision all have something to get wrong.
//
//	key  value  version  created  modified
//	a    11     2        a1       a2
//	aa   6      1        aa1      aa1
//	ab   6      1        ab1      ab1
//	b    222    3        b1       b3
//	c    33     1        c2       c2     (first created c1, deleted at delc)
//	d    0      1        d1       d1
//	e    5      1        e1       e1
func fixture() []step {
	return steps(
		put("a", "1").as("a1"),
		put("b", "2").as("b1"),
		put("c", "3").as("c1"),
		put("a", "11").as("a2"),
		put("d", "0").as("d1"),
		del("c").as("delc"),
		put("c", "33").as("c2"),
		put("e", "5").as("e1"),
		put("b", "22").as("b2"),
		put("aa", "6").as("aa1"),
		put("b", "222").as("b3"),
		put("ab", "6").as("ab1"),
		get("", withPrefix).as("all"),
	)
}

// shape is the key part of a read: which keys it covers.
type shape struct {
	name string
	key  string
	opts []opt
}

var readShapes = []shape{
	{"key", "a", nil},
	{"missing-key", "zz", nil},
	{"deleted-then-recreated", "c", nil},
	{"prefix", "a", []opt{withPrefix}},
	{"prefix-all", "", []opt{withPrefix}},
	{"prefix-none", "x", []opt{withPrefix}},
	{"range", "a", []opt{withRange("c")}},
	{"range-one", "b", []opt{withRange("b\x00")}},
	{"range-empty", "b", []opt{withRange("b")}},
	{"range-inverted", "c", []opt{withRange("a")}},
	{"from-key", "b", []opt{withFromKey}},
	{"from-key-all", "", []opt{withFromKey}},
}

// readOpts are combined with every shape.
var readOpts = [][]opt{
	nil,
	{withLimit(1)},
	{withLimit(2)},
	{withLimit(100)},
	{withLimit(-1)},
	{withKeysOnly},
	{withCountOnly},
	{withCountOnly, withLimit(1)},
	{withKeysOnly, withLimit(1)},
	{withRev(at("a1"))},
	{withRev(at("c1"))},
	{withRev(at("delc"))},
	{withRev(at("b2"))},
	{withRev(at("all"))},
	{withRev(at("b2")), withLimit(1)},
	{withRev(at("delc")), withCountOnly},
	{withRev(future)},
	{withRev(lit(-1))},
	{withMinMod(at("b2"))},
	{withMaxMod(at("b2"))},
	{withMinCreate(at("c2"))},
	{withMaxCreate(at("c2"))},
	{withMinMod(at("d1")), withMaxMod(at("aa1"))},
	{withMinMod(at("d1")), withLimit(1)},
	{withMaxCreate(at("c2")), withCountOnly},
	{withMinCreate(at("b1")), withRev(at("b2"))},
	{withSort(clientv3.SortByModRevision, clientv3.SortDescend), withLimit(2)},
	{withSort(clientv3.SortByKey, clientv3.SortDescend), withKeysOnly},
	{withSort(clientv3.SortByValue, clientv3.SortAscend), withCountOnly},
}

func TestRead(t *testing.T) {
	var cases []tcase
	for _, sh := range readShapes {
		for _, o := range readOpts {
			all := append(append([]opt(nil), sh.opts...), o...)
			cases = append(cases, tcase{
				name:  sh.name + optNames(o),
				steps: steps(get(sh.key, all...)),
			})
		}
	}
	runGroup(t, group{setup: fixture(), cases: cases})
}

// TestSort covers every sort target and order, with and without a limit
// (a limit with a sort makes etcd fetch everything, sort, then truncate).
func TestSort(t *testing.T) {
	var cases []tcase
	for _, target := range []clientv3.SortTarget{clientv3.SortByKey, clientv3.SortByVersion, clientv3.SortByCreateRevision, clientv3.SortByModRevision, clientv3.SortByValue} {
		for _, order := range []clientv3.SortOrder{clientv3.SortNone, clientv3.SortAscend, clientv3.SortDescend} {
			for _, extra := range [][]opt{nil, {withLimit(3)}, {withKeysOnly}, {withRev(at("b2"))}} {
				o := append([]opt{withPrefix, withSort(target, order)}, extra...)
				cases = append(cases, tcase{
					name:  fmt.Sprintf("%v-%v%s", pb.RangeRequest_SortTarget(target), pb.RangeRequest_SortOrder(order), optNames(extra)),
					steps: steps(get("", o...)),
				})
			}
		}
	}
	runGroup(t, group{setup: fixture(), cases: cases})
}

// TestRangeStream compares etcd 3.7's streaming Range chunk by chunk: the
// chunks' kvs (the first holds 10 keys, then each doubles while small),
// and the last chunk's header, count and more; with Concord's keys split
// over four ranges.
func TestRangeStream(t *testing.T) {
	var setup []step
	for i := 0; i < 60; i++ {
		setup = append(setup, put(fmt.Sprintf("s%03d", i), fmt.Sprint(i)).as(fmt.Sprintf("s%d", i)))
	}
	setup = append(setup, del("s007"), put("s003", "again"))
	var cases []tcase
	for _, o := range [][]opt{
		{withPrefix}, {withPrefix, withLimit(5)}, {withPrefix, withLimit(25)}, {withPrefix, withLimit(100)},
		{withPrefix, withCountOnly}, {withPrefix, withKeysOnly}, {withFromKey}, {withPrefix, withRev(at("s30"))},
		{withPrefix, withSort(clientv3.SortByKey, clientv3.SortDescend)}, {withPrefix, withSort(clientv3.SortByValue, clientv3.SortAscend)},
		{withPrefix, withMinMod(at("s10"))},
	} {
		key := "s"
		if len(o) == 1 && o[0].name == withFromKey.name {
			key = "s030"
		}
		cases = append(cases, tcase{name: strings.TrimSpace(optNames(o)), steps: steps(stream(key, o...))})
	}
	runGroup(t, group{setup: setup, cases: cases, splits: []string{"s010", "s025", "s040"}})
}
