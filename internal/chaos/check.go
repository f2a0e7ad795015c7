package chaos

import (
	"fmt"
	"hash/fnv"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The models are per key (the checker partitions the history by key
// itself, so a violation names its key and its visualisation holds only
// that key). Inputs and outputs are both the Op: Kind and arguments on
// the input side, Result/Out/Succeeded on the output side.

// RegisterModel is etcd's semantics for one key used as a register. The
// state is the key's value, "" while the key does not exist (the workload
// never writes "").
//
//   - read: returns the current value.
//   - write: Put; sets the value.
//   - cas: Txn(If Value(key) = old, Then Put(key, new)). etcd fails a
//     value comparison on a missing key, so it succeeds iff the key exists
//     and holds old. An indeterminate cas that is linearized took effect
//     exactly as the comparison dictates at that point.
var RegisterModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, _ any) (bool, any) {
		s, op := state.(string), input.(Op)
		switch op.Kind {
		case KindRead:
			return op.Out == s, s
		case KindWrite:
			return true, op.Value
		case KindCAS:
			match := s != "" && s == op.Old
			if op.Result == Info {
				if match {
					return true, op.Value
				}
				return true, s
			}
			if op.Succeeded {
				return match, op.Value
			}
			return !match, s
		}
		return false, s
	},
	Hash:              hashString,
	DescribeOperation: describeOp,
	DescribeState:     func(s any) string { return quote(s.(string)) },
}

// AppendModel is one key holding a list: a space-separated string of
// unique elements that only ever grows at the end.
//
//   - read: returns the whole list.
//   - append: adds one element at the end (the workload does it with a
//     Txn that compares the mod revision it read, retried on a failed
//     comparison), so a lost or reordered append shows up in later reads.
var AppendModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, _ any) (bool, any) {
		s, op := state.(string), input.(Op)
		switch op.Kind {
		case KindRead:
			return op.Out == s, s
		case KindAppend:
			return true, appendElem(s, op.Value)
		}
		return false, s
	},
	Hash:              hashString,
	DescribeOperation: describeOp,
	DescribeState:     func(s any) string { return tail(s.(string)) },
}

func appendElem(list, v string) string {
	if list == "" {
		return v
	}
	return list + " " + v
}

func hashString(s any) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s.(string)))
	return h.Sum64()
}

func quote(s string) string {
	if s == "" {
		return "∅"
	}
	return fmt.Sprintf("%q", s)
}

// tail shortens a long list to its last elements for the visualisation.
func tail(list string) string {
	const keep = 6
	f := strings.Fields(list)
	if len(f) <= keep {
		return "[" + list + "]"
	}
	return fmt.Sprintf("[(%d more) %s]", len(f)-keep, strings.Join(f[len(f)-keep:], " "))
}

func describeOp(input, _ any) string {
	op := input.(Op)
	res := ""
	if op.Result == Info {
		res = " ?"
	}
	switch op.Kind {
	case KindRead:
		if op.Workload == WorkloadAppend {
			return "read → " + tail(op.Out)
		}
		return "read → " + quote(op.Out)
	case KindWrite:
		return "write " + quote(op.Value) + res
	case KindCAS:
		out := " ✗"
		switch {
		case op.Result == Info:
			out = " ?"
		case op.Succeeded:
			out = " ✓"
		}
		return fmt.Sprintf("cas %s→%s%s", quote(op.Old), quote(op.Value), out)
	case KindAppend:
		return "append " + op.Value + res
	}
	return string(op.Kind)
}

// KeyResult is the verdict on one key's history.
type KeyResult struct {
	Workload string
	Key      string
	// Ops counts the key's ok and info operations (fails have no effect
	// and are left out of the check).
	Ops    int
	Result porcupine.CheckResult
	// HTML is the visualisation's path, written for an Illegal result.
	HTML string
}

// Report is the verdict on a whole history.
type Report struct {
	Keys []KeyResult
}

// Anomalies returns the keys whose history is not linearizable.
func (r Report) Anomalies() []KeyResult {
	var out []KeyResult
	for _, k := range r.Keys {
		if k.Result == porcupine.Illegal {
			out = append(out, k)
		}
	}
	return out
}

// Unknown counts the keys the checker gave up on (timeout).
func (r Report) Unknown() int {
	n := 0
	for _, k := range r.Keys {
		if k.Result == porcupine.Unknown {
			n++
		}
	}
	return n
}

// Model returns the porcupine model of a workload.
func Model(workload string) (porcupine.Model, error) {
	switch workload {
	case WorkloadRegister:
		return RegisterModel, nil
	case WorkloadAppend, WorkloadLock:
		// A lock's data key is an append-only list too.
		return AppendModel, nil
	}
	return porcupine.Model{}, fmt.Errorf("chaos: unknown workload %q", workload)
}

// Operations turns one key's ops into porcupine's form: fails dropped
// (they had no effect), infos left open (Return at infinity, so they may
// linearize anywhere after their invocation, or effectively never), and
// client ids made dense for the visualisation.
func Operations(ops []Op) []porcupine.Operation {
	ids := map[int]int{}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Result == Fail {
			continue
		}
		id, ok := ids[op.Process]
		if !ok {
			id = len(ids)
			ids[op.Process] = id
		}
		ret := op.End
		if op.Result == Info {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: id, Input: op, Call: op.Start, Output: op, Return: ret,
			Metadata: fmt.Sprintf("client %d via n%d, %s", op.Client, op.Node+1, op.Err)})
	}
	return out
}

// CheckOptions configures Check.
type CheckOptions struct {
	// Timeout bounds the check of one key; past it the key is Unknown.
	Timeout time.Duration
	// OutDir, if set, receives anomaly-WORKLOAD-KEY.html for each
	// violation.
	OutDir string
	// Annotations are drawn on every visualisation (the nemesis's faults).
	Annotations []porcupine.Annotation
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Check checks every key's history, one key at a time (a partitioned
// model would check them in parallel; one at a time keeps the harness's
// CPU use modest on a shared machine).
func Check(ops []Op, opts CheckOptions) (Report, error) {
	type pk struct{ workload, key string }
	byKey := map[pk][]Op{}
	for _, op := range ops {
		if op.Workload == WorkloadBank || isAP(op.Workload) {
			continue // across keys: CheckBank; AP keys: CheckAP
		}
		k := pk{op.Workload, op.Key}
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]pk, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].workload != keys[j].workload {
			return keys[i].workload < keys[j].workload
		}
		return keys[i].key < keys[j].key
	})
	var rep Report
	for _, k := range keys {
		model, err := Model(k.workload)
		if err != nil {
			return rep, err
		}
		hist := Operations(byKey[k])
		kr := KeyResult{Workload: k.workload, Key: k.key, Ops: len(hist)}
		kr.Result = porcupine.CheckOperationsTimeout(model, hist, opts.Timeout)
		if kr.Result == porcupine.Illegal && opts.OutDir != "" {
			_, info := porcupine.CheckOperationsVerbose(model, hist, opts.Timeout)
			info.AddAnnotations(opts.Annotations)
			kr.HTML = filepath.Join(opts.OutDir, "anomaly-"+unsafeFileChars.ReplaceAllString(k.workload+"-"+k.key, "_")+".html")
			if err := porcupine.VisualizePath(model, info, kr.HTML); err != nil {
				return rep, err
			}
		}
		rep.Keys = append(rep.Keys, kr)
	}
	return rep, nil
}

// RevisionOrderViolation is a pair of acknowledged writes whose revisions
// contradict real time: Earlier completed before Later began, yet Later's
// revision is not above Earlier's. etcd's revisions (numbered by Concord's
// TSO) must increase across the whole cluster in real time, the property a
// deposed TSO leader or a TSO leader change would break.
type RevisionOrderViolation struct {
	Earlier, Later Op
}

// CheckRevisionOrder returns every write (up to max) whose revision is not
// above the revision of some write that completed before it began.
func CheckRevisionOrder(ops []Op, max int) []RevisionOrderViolation {
	var writes []Op
	for _, op := range ops {
		if op.Result == Ok && op.Revision > 0 {
			writes = append(writes, op)
		}
	}
	byEnd := append([]Op(nil), writes...)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].End < byEnd[j].End })
	sort.Slice(writes, func(i, j int) bool { return writes[i].Start < writes[j].Start })
	var out []RevisionOrderViolation
	var top Op // the highest-revision write among those ended so far
	j := 0
	for _, w := range writes {
		for j < len(byEnd) && byEnd[j].End < w.Start {
			if byEnd[j].Revision > top.Revision {
				top = byEnd[j]
			}
			j++
		}
		if top.Revision > 0 && w.Revision <= top.Revision {
			out = append(out, RevisionOrderViolation{Earlier: top, Later: w})
			if len(out) >= max {
				break
			}
		}
	}
	return out
}
