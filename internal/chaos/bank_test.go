package chaos

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bal is "value@modRevision" for the synthetic bank histories.
type bal struct{ value, mod int64 }

// bankRead is a read op over accounts from 0 at revision rev.
func bankRead(start, end, rev int64, bals ...bal) Op {
	op := Op{Workload: WorkloadBank, Kind: KindRead, Key: bankPrefix, Result: Ok, Start: start, End: end,
		Bank: &BankOp{ReadRevision: rev}}
	for i, b := range bals {
		op.Bank.Read = append(op.Bank.Read, BankKV{Key: bankKey(i), Value: strconv.FormatInt(b.value, 10), ModRevision: b.mod})
	}
	return op
}

// bankTransfer is a transfer of amount from from to to whose read at
// readRev showed the accounts from the lower to the higher as bals, with
// result res; rev > 0 means its comparison held and it committed there.
func bankTransfer(start, end int64, from, to int, amount int64, res Result, rev, readRev int64, bals ...bal) Op {
	op := Op{Workload: WorkloadBank, Kind: KindTransfer, Key: bankPrefix, Result: res, Start: start, End: end,
		Succeeded: res == Ok && rev > 0, Revision: rev,
		Bank: &BankOp{ReadRevision: readRev, From: from, To: to, Amount: amount}}
	for i, b := range bals {
		op.Bank.Read = append(op.Bank.Read, BankKV{Key: bankKey(min(from, to) + i), Value: strconv.FormatInt(b.value, 10), ModRevision: b.mod})
	}
	return op
}

// goodBank is a history over three accounts (300 in all) that passes:
// one acknowledged transfer, one info transfer that applied, one that
// lost its race, one refused, and reads before, during and after.
func goodBank() []Op {
	return []Op{
		bankRead(0, 10, 4, bal{100, 2}, bal{100, 3}, bal{100, 4}),
		bankTransfer(20, 30, 0, 1, 30, Ok, 5, 4, bal{100, 2}, bal{100, 3}),
		bankRead(25, 28, 4, bal{100, 2}, bal{100, 3}, bal{100, 4}), // concurrent with the transfer: may miss it
		bankRead(40, 50, 5, bal{70, 5}, bal{130, 5}, bal{100, 4}),
		bankTransfer(60, 70, 1, 2, 10, Info, 0, 5, bal{130, 5}, bal{100, 4}),
		bankRead(80, 90, 6, bal{70, 5}, bal{120, 6}, bal{110, 6}),                       // the info transfer applied
		bankTransfer(81, 91, 2, 0, 50, Ok, 0, 5, bal{70, 5}, bal{130, 5}, bal{100, 4}),  // lost its race
		bankTransfer(82, 92, 0, 2, 5, Fail, 0, 6, bal{70, 5}, bal{120, 6}, bal{110, 6}), // refused: Unimplemented
		{Workload: WorkloadBank, Kind: KindRead, Key: bankPrefix, Result: Fail, Start: 93, End: 94, Bank: &BankOp{}, Err: "unavailable"},
		// Ops of other workloads are not the bank's business.
		{Workload: WorkloadRegister, Kind: KindWrite, Key: "chaos/r/0/0", Value: "1", Result: Ok, Revision: 7, Start: 95, End: 96},
	}
}

// without returns ops but the one that started at start.
func without(ops []Op, start int64) []Op {
	var out []Op
	for _, op := range ops {
		if op.Start != start {
			out = append(out, op)
		}
	}
	return out
}

func TestCheckBankPasses(t *testing.T) {
	rep := CheckBank(goodBank(), 3, 300, 10)
	if rep.Found != 0 {
		t.Fatalf("violations in a good history: %v", rep.Violations)
	}
	if rep.Reads != 4 || rep.Transfers != 1 || rep.Raced != 1 {
		t.Fatalf("counted %d reads, %d transfers, %d raced; want 4, 1, 1", rep.Reads, rep.Transfers, rep.Raced)
	}
}

// TestCheckBankFails proves the checker can fail: each history is the
// good one with one thing wrong, and the violation must name it.
func TestCheckBankFails(t *testing.T) {
	with := func(extra ...Op) []Op { return append(goodBank(), extra...) }
	for _, tc := range []struct {
		name string
		ops  []Op
		want string
	}{
		// A read between a cross-range transfer's two commits (range by
		// range, no txn record): the payer paid, the payee has nothing
		// yet. Concurrent with the transfer, so only the sum tells.
		{"torn read", with(bankRead(22, 27, 5, bal{70, 5}, bal{100, 3}, bal{100, 4})), "balances sum to 270, not 300"},
		{"money made", with(bankRead(22, 27, 5, bal{100, 2}, bal{130, 5}, bal{100, 4})), "balances sum to 330, not 300"},
		// Began after the transfer's ack, read from before it.
		{"read misses an acknowledged transfer", with(bankRead(35, 38, 4, bal{100, 2}, bal{100, 3}, bal{100, 4})),
			"began after the transfer of 30 from 000 to 001 at revision 5, read at revision 4 (client 0 via n1, 0.000s-0.000s) was acknowledged, yet reads below it"},
		// The header is new enough, but one range served an old version.
		{"one range misses it", with(bankRead(35, 38, 5, bal{100, 2}, bal{70, 5}, bal{130, 5})),
			"yet shows account 000 at mod revision 2"},
		{"a transfer's read misses it", with(bankTransfer(35, 38, 0, 1, 1, Fail, 0, 5, bal{100, 2}, bal{100, 3})),
			"shows account 000 at mod revision 2"},
		// The same version of account 0 with another value (the sum is
		// right: only the version check sees it).
		{"two values at one mod revision", with(bankRead(55, 58, 5, bal{75, 5}, bal{125, 5}, bal{100, 4})),
			"account 000 at mod revision 5 holds 70"},
		// No read saw the acknowledged transfer's version before this
		// one: it contradicts the transfer's own write.
		{"an acknowledged write contradicted", append(without(goodBank(), 40), bankRead(55, 58, 5, bal{80, 5}, bal{120, 5}, bal{100, 4})),
			"but 70 to the transfer of 30 from 000 to 001 at revision 5"},
		{"negative balance", with(bankRead(95, 99, 7, bal{-10, 7}, bal{200, 7}, bal{110, 6})), "account 000 is negative: -10"},
		{"missing account", with(bankRead(95, 99, 6, bal{70, 5}, bal{120, 6})), "missing account(s) 002"},
		{"mod revision above the read's", with(bankRead(95, 99, 6, bal{70, 5}, bal{120, 6}, bal{110, 7})), "account 002 at mod revision 7, outside the read's revision 6"},
		// Two acknowledged transfers both replaced account 0's first
		// version: a lost update, as a Txn's comparison on one range
		// and its write on another would allow.
		{"double spend", with(bankTransfer(21, 31, 0, 2, 100, Ok, 6, 4, bal{100, 2}, bal{100, 3}, bal{100, 4})),
			"account 000's version at mod revision 2 was replaced twice"},
		{"not a balance", with(func() Op {
			op := bankRead(95, 99, 6, bal{70, 5}, bal{120, 6}, bal{110, 6})
			op.Bank.Read[1].Value = "lots"
			return op
		}()), `account 001 holds "lots"`},
		{"a stranger's key", with(func() Op {
			op := bankRead(95, 99, 6, bal{70, 5}, bal{120, 6}, bal{110, 6})
			op.Bank.Read = append(op.Bank.Read, BankKV{Key: bankPrefix + "x", Value: "1", ModRevision: 6})
			return op
		}()), `not one of the accounts 000..002`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := CheckBank(tc.ops, 3, 300, 10)
			if got := strings.Join(rep.Violations, "\n"); !strings.Contains(got, tc.want) {
				t.Fatalf("violations:\n%s\nwant one with %q", got, tc.want)
			}
		})
	}
}

func TestCheckBankBoundsViolations(t *testing.T) {
	var ops []Op
	for i := range 5 {
		ops = append(ops, bankRead(int64(i), int64(i), 4, bal{1, 2}, bal{1, 3}))
	}
	rep := CheckBank(ops, 2, 200, 3)
	if rep.Found != 5 || len(rep.Violations) != 3 {
		t.Fatalf("found %d, kept %d; want 5, 3", rep.Found, len(rep.Violations))
	}
}

// TestTransferErrors: a Txn the server refused (today's answer to one
// across ranges is Unimplemented) wrote nothing; anything that may have
// committed is info.
func TestTransferErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Result
	}{
		{status.Error(codes.Unimplemented, "concord: keys span ranges 2, 3: a txn or delete across ranges is not supported yet"), Fail},
		{rpctypes.ErrKeyNotFound, Fail}, // an etcd error with InvalidArgument
		{status.Error(codes.Unavailable, "no leader"), Info},
		{rpctypes.ErrTimeout, Info}, // "etcdserver: request timed out", also Concord's AMBIGUOUS
		{context.DeadlineExceeded, Info},
		{status.Error(codes.Internal, "concord: apply failed"), Info},
	} {
		var op Op
		finishTransfer(&op, tc.err)
		if op.Result != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, op.Result, tc.want)
		}
	}
}

func TestBankLayout(t *testing.T) {
	if got := bankSplits(8, 0); len(got) != 7 || got[0] != bankKey(1) || got[6] != bankKey(7) {
		t.Errorf("one range per account: %v", got)
	}
	if got := bankSplits(8, 1); len(got) != 0 {
		t.Errorf("one range: %v", got)
	}
	if got := strings.Join(bankSplits(8, 3), " "); got != bankKey(2)+" "+bankKey(5) {
		t.Errorf("three ranges: %s", got)
	}
	for i := range maxBankAccounts {
		if a := bankAccount(bankKey(i)); a != i {
			t.Fatalf("account %d's key %s parses as %d", i, bankKey(i), a)
		}
	}
	for _, k := range []string{"chaos/bank/", "chaos/bank/1", "chaos/bank/0001", "chaos/r/0/001", "chaos/bank/-01"} {
		if a := bankAccount(k); a != -1 {
			t.Errorf("%q parses as account %d", k, a)
		}
	}
	if _, ok := bankSplitKey([]string{WorkloadRegister}, 8, 0); ok {
		t.Error("a split at a bank key without the bank")
	}
	for pick := range uint64(30) {
		key, ok := bankSplitKey([]string{WorkloadBank}, 8, pick)
		if !ok || bankAccount(key) < 0 {
			t.Fatalf("bank alone, pick %d: %q %v", pick, key, ok)
		}
	}
}

func TestBankConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Binary, cfg.OutDir, cfg.Workloads = "concord", "out", []string{WorkloadBank, WorkloadRegister}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ accounts, ranges int }{{1, 0}, {maxBankAccounts + 1, 0}, {8, 9}, {8, -1}} {
		c := cfg
		c.BankAccounts, c.BankRanges = bad.accounts, bad.ranges
		if c.Validate() == nil {
			t.Errorf("%d accounts in %d ranges accepted", bad.accounts, bad.ranges)
		}
	}
}

// TestChaosBank runs the bank workload on a real cluster with one account
// per range: on nodes that commit a txn's ranges one after the other with
// no txn record (--unsafe-txn-no-record) the check must fail; under kills
// and splits, with every transfer a txn across two ranges, it must pass
// with transfers acknowledged; and with no faults too. It needs root,
// iproute2 and iptables, and takes under a minute.
func TestChaosBank(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: starts a 3-node cluster in network namespaces three times; skipped in -short")
	}
	if err := CheckPrerequisites(); err != nil {
		t.Skipf("chaos: cannot run here: %v", err)
	}
	bin := buildConcord(t)
	common := []string{"--nodes", "3", "--clients", "4", "--interval", "2s", "--seed", "1", "--workload", "bank"}
	acked := regexp.MustCompile(`(\d+) reads, (\d+) transfers acknowledged`)
	counts := func(out string) (reads, transfers int) {
		m := acked.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no bank line in the summary")
		}
		reads, _ = strconv.Atoi(m[1])
		transfers, _ = strconv.Atoi(m[2])
		return reads, transfers
	}

	out, err := runChaos(t, bin, append(common, "--duration", "8s", "--nemesis", "none", "--unsafe-txn-no-record", "--out", t.TempDir())...)
	if err == nil || !strings.Contains(out, "MONEY WRONG") || !strings.Contains(out, "balances sum to") {
		t.Fatalf("with --unsafe-txn-no-record: exit %v, want the money wrong", err)
	}

	out, err = runChaos(t, bin, append(common, "--duration", "12s", "--nemesis", "kill,split", "--out", t.TempDir())...)
	if err != nil || !strings.Contains(out, "PASS") || !strings.Contains(out, "total 800 kept") {
		t.Fatalf("accounts in 8 ranges under kills and splits: exit %v, want PASS", err)
	}
	if reads, transfers := counts(out); reads == 0 || transfers == 0 {
		t.Fatalf("accounts in 8 ranges: %d reads, %d transfers acknowledged; want some of each", reads, transfers)
	}

	out, err = runChaos(t, bin, append(common, "--duration", "6s", "--nemesis", "none", "--out", t.TempDir())...)
	if err != nil || !strings.Contains(out, "PASS") || !strings.Contains(out, fmt.Sprintf("8 accounts in %d range(s)", 8)) {
		t.Fatalf("one account per range: exit %v, want PASS with the accounts in 8 ranges", err)
	}
	if reads, _ := counts(out); reads == 0 {
		t.Fatal("one account per range: no read returned")
	}
	if dead := leftovers(); len(dead) > 0 {
		t.Fatalf("namespaces, links or iptables rules of harness pids %v left behind", dead)
	}
}
