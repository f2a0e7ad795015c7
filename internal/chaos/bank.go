package chaos

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// The bank workload: Config.BankAccounts accounts, each one key holding a
// decimal balance, split at setup over Config.BankRanges ranges (one
// account per range by default), so that a transfer is a transaction
// across ranges. Clients mix two operations:
//
//   - a transfer picks two distinct accounts, reads both in ONE Range (the
//     accounts from the lower to the higher key, so both balances come
//     from one revision), picks an amount no larger than the payer's
//     balance, and commits a Txn that compares both keys' mod revisions
//     with what it read and puts both new balances. A false comparison
//     (another transfer got there first) wrote nothing.
//   - a read gets every account in one Range with the prefix, at one
//     revision.
//
// The check (CheckBank): every read sees every account and the balances
// sum to the total set up; a read that began after a transfer was
// acknowledged sees it; no balance is ever negative; and each version of
// an account (its mod revision) has one value and at most one successor.
// A store that commits a transaction's ranges one after the other, with
// no transaction record to make them one, fails it: a read between the
// two commits sees money missing or doubled. --unsafe-txn-no-record
// starts the nodes as exactly such a store (internal/txn's UnsafeNoRecord),
// to show the check catches it.

// WorkloadBank transfers between accounts spread over ranges while
// readers sum them.
const WorkloadBank = "bank"

// KindTransfer is a bank transfer: a read of both accounts, then a Txn
// that compares their mod revisions and puts both balances.
const KindTransfer Kind = "transfer"

// Tunables and bounds of the bank workload.
const (
	// bankPrefix holds the accounts, bankPrefix + three digits each; a
	// reader's Range over the prefix returns all of them.
	bankPrefix = "chaos/bank/"
	// bankInitialBalance is every account's balance at setup.
	bankInitialBalance = 100
	// maxBankAccounts bounds Config.BankAccounts: account keys have three
	// digits, and every read returns all accounts.
	maxBankAccounts = 1000
	// bankSetupAttempts bounds the tries of each setup step (a split, a
	// create, the check read) on a cluster whose ranges may still be
	// electing leaders.
	bankSetupAttempts = 20
	// bankSetupBackoff is the pause between two tries of a setup step.
	bankSetupBackoff = 250 * time.Millisecond
	// maxBankViolations bounds the violations a run reports (CheckBank
	// still counts them all).
	maxBankViolations = 20
)

// BankOp is what one bank operation read and wrote, beside its Op.
type BankOp struct {
	// ReadRevision is the header revision of the operation's one Range,
	// the revision every balance in Read was read at; 0 when the Range
	// failed (then Read is empty and nothing was written).
	ReadRevision int64 `json:"read_revision,omitempty"`
	// Read is every key the Range returned, in key order: all accounts
	// for a read; the accounts from the lower of From and To to the
	// higher for a transfer.
	Read []BankKV `json:"read,omitempty"`
	// From pays Amount to To: a transfer's accounts, numbered from 0
	// (all zero in a read).
	From   int   `json:"from"`
	To     int   `json:"to"`
	Amount int64 `json:"amount"`
}

// BankKV is one key as a bank read returned it.
type BankKV struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ModRevision int64  `json:"mod_revision"`
}

// bankKey is account i's key.
func bankKey(i int) string { return fmt.Sprintf("%s%03d", bankPrefix, i) }

// bankAccount is the account a key names, or -1 for a key that names
// none.
func bankAccount(key string) int {
	s, ok := strings.CutPrefix(key, bankPrefix)
	if !ok || len(s) != 3 {
		return -1
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// validateBank reports what is wrong with c's bank settings.
func (c Config) validateBank() error {
	switch {
	case c.BankAccounts < 2 || c.BankAccounts > maxBankAccounts:
		return fmt.Errorf("chaos: %d bank accounts: want 2..%d", c.BankAccounts, maxBankAccounts)
	case c.BankRanges < 0 || c.BankRanges > c.BankAccounts:
		return fmt.Errorf("chaos: %d bank ranges: want 0 (one per account) .. %d", c.BankRanges, c.BankAccounts)
	}
	return nil
}

// bankTotal is the sum of all balances the setup makes.
func bankTotal(accounts int) int64 { return int64(accounts) * bankInitialBalance }

// bankSplits returns the keys to split at so that accounts accounts lie
// in ranges ranges (0: one per account): contiguous groups, as even as
// they divide, each starting a range but the first (which shares its
// range with whatever lies left of the prefix).
func bankSplits(accounts, ranges int) []string {
	if ranges <= 0 {
		ranges = accounts
	}
	var out []string
	for g := 1; g < ranges; g++ {
		out = append(out, bankKey(g*accounts/ranges))
	}
	return out
}

// bankSplitKey is where a split-range fault splits when the bank runs: an
// account key, so that the faults move accounts between ranges, in
// every pick when the bank is the only workload and in a third of them
// beside others (whose keys take the rest). ok is false when the bank
// does not run.
func bankSplitKey(workloads []string, accounts int, pick uint64) (key string, ok bool) {
	if !contains(workloads, WorkloadBank) || (len(workloads) > 1 && pick%3 != 0) {
		return "", false
	}
	return bankKey(int((pick / 3) % uint64(accounts))), true
}

// setupBank makes the accounts before the clients start: it splits the
// keyspace at the groups' first accounts (through the nodes in turn),
// creates every account absent with bankInitialBalance (a Txn on its
// create revision, so a retry after an ambiguous try creates nothing
// twice), then reads them back and checks that they sum to
// bankTotal. It returns how many ranges hold the accounts, counted
// through the admin Ranges RPC, and fails if that is fewer than asked
// for: a run meant to transact across ranges that does not is no test of
// that.
func setupBank(ctx context.Context, c *Cluster, cli *clientv3.Client, cfg Config) (ranges int, err error) {
	try := func(what string, f func(ctx context.Context, attempt int) error) error {
		var err error
		for attempt := range bankSetupAttempts {
			actx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
			err = f(actx, attempt)
			cancel()
			if err == nil || ctx.Err() != nil {
				return err
			}
			if wait(ctx, bankSetupBackoff) != nil {
				return ctx.Err()
			}
		}
		return fmt.Errorf("chaos: bank setup: %s: %d tries: %w", what, bankSetupAttempts, err)
	}
	for _, key := range bankSplits(cfg.BankAccounts, cfg.BankRanges) {
		err := try("split at "+key, func(ctx context.Context, attempt int) error {
			return c.Split(ctx, attempt%c.Size(), key)
		})
		if err != nil {
			return 0, err
		}
	}
	for i := range cfg.BankAccounts {
		key := bankKey(i)
		err := try("create "+key, func(ctx context.Context, _ int) error {
			_, err := cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, strconv.Itoa(bankInitialBalance))).
				Commit()
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	err = try("read the accounts back", func(ctx context.Context, _ int) error {
		resp, err := cli.Get(ctx, bankPrefix, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		var sum int64
		for _, kv := range resp.Kvs {
			v, err := strconv.ParseInt(string(kv.Value), 10, 64)
			if err != nil {
				return fmt.Errorf("%s holds %q", kv.Key, kv.Value)
			}
			sum += v
		}
		if len(resp.Kvs) != cfg.BankAccounts || sum != bankTotal(cfg.BankAccounts) {
			return fmt.Errorf("%d accounts summing to %d, want %d summing to %d", len(resp.Kvs), sum, cfg.BankAccounts, bankTotal(cfg.BankAccounts))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = try("count the accounts' ranges", func(ctx context.Context, attempt int) error {
		var err error
		ranges, err = bankRangeCount(ctx, c, attempt%c.Size(), cfg.BankAccounts)
		return err
	})
	if err != nil {
		return 0, err
	}
	if want := len(bankSplits(cfg.BankAccounts, cfg.BankRanges)) + 1; ranges < want {
		return ranges, fmt.Errorf("chaos: bank setup: the accounts lie in %d ranges after the splits, want %d", ranges, want)
	}
	return ranges, nil
}

// bankRangeCount asks node i how many ranges hold the accounts.
func bankRangeCount(ctx context.Context, c *Cluster, i, accounts int) (int, error) {
	cli, err := newClient(c.ClientAddr(i))
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	resp, err := rpcpb.NewAdminClient(cli.ActiveConnection()).Ranges(ctx, &rpcpb.RangesRequest{})
	if err != nil {
		return 0, err
	}
	holding := map[uint64]bool{}
	for a := range accounts {
		key := bankKey(a)
		for _, r := range resp.GetRanges() {
			// Keys are etcd keys; an empty start or end is the keyspace's.
			start, end := string(r.GetStartKey()), string(r.GetEndKey())
			if start <= key && (end == "" || key < end) {
				holding[r.GetRangeId()] = true
				break
			}
		}
	}
	return len(holding), nil
}

// bank performs one bank operation, half of them reads; op.Start is set.
func (c *client) bank(ctx context.Context, op *Op) {
	op.Key, op.Bank = bankPrefix, &BankOp{}
	if c.rng.IntN(2) == 0 {
		op.Kind = KindRead
		resp, err := c.cli.Get(ctx, bankPrefix, clientv3.WithPrefix())
		if err != nil {
			op.Result, op.Err = Fail, err.Error()
			return
		}
		op.Result = Ok
		recordBankRead(op.Bank, resp)
		return
	}
	op.Kind = KindTransfer
	n := c.cfg.BankAccounts
	from := c.rng.IntN(n)
	to := (from + 1 + c.rng.IntN(n-1)) % n
	c.transfer(ctx, op, from, to)
}

// transfer moves money between accounts from and to (the payer may turn
// out to be to, if from has nothing). Only the Txn can have written: a
// failed read, or a read that does not show both accounts as balances,
// fails the transfer with nothing written (the check reports such a
// read).
func (c *client) transfer(ctx context.Context, op *Op, from, to int) {
	op.Bank.From, op.Bank.To = from, to
	resp, err := c.cli.Get(ctx, bankKey(min(from, to)), clientv3.WithRange(bankKey(max(from, to))+"\x00"))
	if err != nil {
		op.Result, op.Err = Fail, err.Error()
		return
	}
	recordBankRead(op.Bank, resp)
	fkv, tkv := findKV(op.Bank.Read, bankKey(from)), findKV(op.Bank.Read, bankKey(to))
	if fkv == nil || tkv == nil {
		op.Result, op.Err = Fail, "read: an account is missing"
		return
	}
	fv, ferr := strconv.ParseInt(fkv.Value, 10, 64)
	tv, terr := strconv.ParseInt(tkv.Value, 10, 64)
	if ferr != nil || terr != nil {
		op.Result, op.Err = Fail, "read: a balance is not a number"
		return
	}
	if fv <= 0 && tv > fv {
		// Nothing to pay with: the other way round.
		from, to, fv, tv, fkv, tkv = to, from, tv, fv, tkv, fkv
		op.Bank.From, op.Bank.To = from, to
	}
	if fv > 0 {
		op.Bank.Amount = 1 + c.rng.Int64N(fv)
	}
	nf, nt := strconv.FormatInt(fv-op.Bank.Amount, 10), strconv.FormatInt(tv+op.Bank.Amount, 10)
	tresp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(fkv.Key), "=", fkv.ModRevision),
			clientv3.Compare(clientv3.ModRevision(tkv.Key), "=", tkv.ModRevision)).
		Then(clientv3.OpPut(fkv.Key, nf), clientv3.OpPut(tkv.Key, nt)).
		Commit()
	if err != nil {
		finishTransfer(op, err)
		return
	}
	op.Result, op.Succeeded = Ok, tresp.Succeeded
	if tresp.Succeeded {
		op.Revision = tresp.Header.Revision
	}
}

// finishTransfer sets a transfer's result from its Txn's error: a
// request the server refused before it did anything (InvalidArgument;
// Unimplemented, today's answer to a Txn across ranges) fails; any other
// error (Unavailable, DeadlineExceeded, "request timed out", an ambiguous
// commit) may have committed, so it is info, as the register workload's
// writes are.
func finishTransfer(op *Op, err error) {
	switch errCode(err) {
	case codes.InvalidArgument, codes.Unimplemented:
		op.Result, op.Err = Fail, err.Error()
	default:
		op.Result, op.Err = Info, err.Error()
	}
}

func recordBankRead(b *BankOp, resp *clientv3.GetResponse) {
	b.ReadRevision = resp.Header.Revision
	for _, kv := range resp.Kvs {
		b.Read = append(b.Read, BankKV{Key: string(kv.Key), Value: string(kv.Value), ModRevision: kv.ModRevision})
	}
}

func findKV(kvs []BankKV, key string) *BankKV {
	for i := range kvs {
		if kvs[i].Key == key {
			return &kvs[i]
		}
	}
	return nil
}

// BankReport is the verdict on a history's bank operations.
type BankReport struct {
	// Accounts and Total are what the check was given: the number of
	// accounts and the sum of their balances.
	Accounts int
	Total    int64
	// Ranges is how many ranges held the accounts after the setup's
	// splits (set by Run; the split and merge faults change it later).
	Ranges int
	// Reads counts the reads that returned, Transfers the acknowledged
	// transfers (their comparison held), and Raced the transfers whose
	// comparison failed, certainly writing nothing.
	Reads, Transfers, Raced int
	// Violations describe what went wrong, the first ones found (reads
	// in the order they began, then transfers, then visibility); Found
	// counts them all.
	Violations []string
	Found      int
}

// bankVersion is one version of an account: its value since a revision.
type bankVersion struct {
	account int
	rev     int64
}

type bankBalance struct {
	value, modRev int64
}

// bankAck is an acknowledged transfer as the visibility check needs it.
type bankAck struct {
	end, rev int64
	op       *Op
}

// CheckBank checks the bank operations of ops (those of other workloads
// are ignored) over accounts accounts holding total between them, and
// returns at most maxViolations violations:
//
//   - every read shows the accounts it asked for (all of them for a read,
//     the span from the lower to the higher account for a transfer's
//     read), each a decimal balance at a mod revision no newer than the
//     read's revision, and a read's balances sum to total: a read torn
//     across ranges, or a transfer committed range by range, breaks it;
//   - a read that began after a transfer was acknowledged has a header
//     revision at least the transfer's, and shows both of its accounts
//     at a mod revision at least the transfer's;
//   - no balance read or written is negative;
//   - each version (account, mod revision) has one value, whoever saw
//     or wrote it, and at most one acknowledged transfer replaced it,
//     with a newer revision.
//
// Info transfers may or may not have committed: they count only through
// what the reads show. Failed operations wrote nothing; a transfer's read
// is checked whatever its Txn did.
func CheckBank(ops []Op, accounts int, total int64, maxViolations int) BankReport {
	rep := BankReport{Accounts: accounts, Total: total}
	add := func(format string, args ...any) {
		rep.Found++
		if len(rep.Violations) < maxViolations {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}
	var bank []*Op
	for i := range ops {
		if ops[i].Workload == WorkloadBank && ops[i].Bank != nil {
			bank = append(bank, &ops[i])
		}
	}
	sort.SliceStable(bank, func(i, j int) bool { return bank[i].Start < bank[j].Start })

	type sighting struct {
		value int64
		by    *Op
	}
	seen := map[bankVersion]sighting{}
	observe := func(v bankVersion, value int64, by *Op) {
		s, ok := seen[v]
		if !ok {
			seen[v] = sighting{value, by}
			return
		}
		if s.value != value {
			add("account %03d at mod revision %d holds %d to the %s but %d to the %s", v.account, v.rev, s.value, describeBankOp(s.by), value, describeBankOp(by))
		}
	}

	// The reads: what each shows, checked on its own.
	read := map[*Op]map[int]bankBalance{}
	for _, op := range bank {
		if op.Bank.ReadRevision == 0 {
			continue
		}
		lo, hi := 0, accounts-1
		if op.Kind == KindTransfer {
			lo, hi = min(op.Bank.From, op.Bank.To), max(op.Bank.From, op.Bank.To)
		} else {
			rep.Reads++
		}
		bals := checkBankRead(op, lo, hi, add)
		read[op] = bals
		var sum int64
		for a, b := range bals {
			observe(bankVersion{a, b.modRev}, b.value, op)
			sum += b.value
		}
		if op.Kind == KindRead && len(bals) == accounts && sum != total {
			add("the %s: balances sum to %d, not %d: %s", describeBankOp(op), sum, total, describeBalances(bals))
		}
	}

	// The acknowledged transfers: what each wrote, and whose version it
	// replaced.
	replaced := map[bankVersion]*Op{}
	all, per := []bankAck(nil), make([][]bankAck, accounts)
	for _, op := range bank {
		if op.Kind != KindTransfer || op.Result != Ok {
			continue
		}
		if !op.Succeeded {
			rep.Raced++
			continue
		}
		rep.Transfers++
		b := op.Bank
		f, fok := read[op][b.From]
		t, tok := read[op][b.To]
		if !fok || !tok || b.From == b.To || op.Revision <= 0 {
			add("the %s was acknowledged without reading both accounts as balances or without a revision", describeBankOp(op))
			continue
		}
		nf, nt := f.value-b.Amount, t.value+b.Amount
		if nf < 0 || b.Amount < 0 {
			add("the %s wrote account %03d negative: %d", describeBankOp(op), b.From, nf)
		}
		observe(bankVersion{b.From, op.Revision}, nf, op)
		observe(bankVersion{b.To, op.Revision}, nt, op)
		for _, x := range []struct {
			account int
			was     bankBalance
		}{{b.From, f}, {b.To, t}} {
			v := bankVersion{x.account, x.was.modRev}
			if prev := replaced[v]; prev != nil {
				add("account %03d's version at mod revision %d was replaced twice: by the %s and by the %s", x.account, v.rev, describeBankOp(prev), describeBankOp(op))
			} else {
				replaced[v] = op
			}
			if op.Revision <= x.was.modRev {
				add("the %s committed at revision %d over account %03d's version at mod revision %d", describeBankOp(op), op.Revision, x.account, x.was.modRev)
			}
		}
		a := bankAck{end: op.End, rev: op.Revision, op: op}
		all = append(all, a)
		per[b.From] = append(per[b.From], a)
		per[b.To] = append(per[b.To], a)
	}

	// Visibility: every read against the newest acknowledged transfer
	// that ended before it began, over all accounts and per account.
	newestAll := newestAcked(all)
	newest := make([]func(int64) (bankAck, bool), accounts)
	for a := range per {
		newest[a] = newestAcked(per[a])
	}
	for _, op := range bank {
		bals, ok := read[op]
		if !ok {
			continue
		}
		if t, ok := newestAll(op.Start); ok && op.Bank.ReadRevision < t.rev {
			add("the %s began after the %s was acknowledged, yet reads below it", describeBankOp(op), describeBankOp(t.op))
		}
		for _, a := range sortedAccounts(bals) {
			if t, ok := newest[a](op.Start); ok && bals[a].modRev < t.rev {
				add("the %s began after the %s was acknowledged, yet shows account %03d at mod revision %d (%d)", describeBankOp(op), describeBankOp(t.op), a, bals[a].modRev, bals[a].value)
			}
		}
	}
	return rep
}

// checkBankRead parses a read that asked for accounts lo..hi and reports
// what is wrong with it through add; it returns the balances it could
// parse, by account.
func checkBankRead(op *Op, lo, hi int, add func(string, ...any)) map[int]bankBalance {
	bals := map[int]bankBalance{}
	for _, kv := range op.Bank.Read {
		a := bankAccount(kv.Key)
		if a < lo || a > hi {
			add("the %s returned %s=%q, not one of the accounts %03d..%03d", describeBankOp(op), kv.Key, kv.Value, lo, hi)
			continue
		}
		if _, dup := bals[a]; dup {
			add("the %s returned account %03d twice", describeBankOp(op), a)
			continue
		}
		v, err := strconv.ParseInt(kv.Value, 10, 64)
		if err != nil {
			add("the %s: account %03d holds %q, not a balance", describeBankOp(op), a, kv.Value)
			continue
		}
		if kv.ModRevision <= 0 || kv.ModRevision > op.Bank.ReadRevision {
			add("the %s: account %03d at mod revision %d, outside the read's revision %d", describeBankOp(op), a, kv.ModRevision, op.Bank.ReadRevision)
		}
		if v < 0 {
			add("the %s: account %03d is negative: %d", describeBankOp(op), a, v)
		}
		bals[a] = bankBalance{value: v, modRev: kv.ModRevision}
	}
	var missing []string
	for a := lo; a <= hi; a++ {
		if _, ok := bals[a]; !ok {
			missing = append(missing, fmt.Sprintf("%03d", a))
		}
	}
	if len(missing) > 0 {
		add("the %s is missing account(s) %s", describeBankOp(op), strings.Join(missing, " "))
	}
	return bals
}

// newestAcked returns a function from a time to the transfer of acks
// with the highest revision among those acknowledged before that time.
func newestAcked(acks []bankAck) func(before int64) (bankAck, bool) {
	sort.Slice(acks, func(i, j int) bool { return acks[i].end < acks[j].end })
	top := make([]bankAck, len(acks)) // top[i]: the highest revision of acks[:i+1]
	for i, a := range acks {
		top[i] = a
		if i > 0 && top[i-1].rev > a.rev {
			top[i] = top[i-1]
		}
	}
	return func(before int64) (bankAck, bool) {
		i := sort.Search(len(acks), func(i int) bool { return acks[i].end >= before })
		if i == 0 {
			return bankAck{}, false
		}
		return top[i-1], true
	}
}

func sortedAccounts(bals map[int]bankBalance) []int {
	out := make([]int, 0, len(bals))
	for a := range bals {
		out = append(out, a)
	}
	sort.Ints(out)
	return out
}

func describeBalances(bals map[int]bankBalance) string {
	var parts []string
	for _, a := range sortedAccounts(bals) {
		parts = append(parts, fmt.Sprintf("%03d=%d@%d", a, bals[a].value, bals[a].modRev))
	}
	return strings.Join(parts, " ")
}

// describeBankOp names an operation for a violation: what it did, at
// which revision, by whom and when.
func describeBankOp(op *Op) string {
	who := fmt.Sprintf("client %d via n%d, %.3fs-%.3fs", op.Client, op.Node+1, float64(op.Start)/1e9, float64(op.End)/1e9)
	if op.Kind == KindRead {
		return fmt.Sprintf("read at revision %d (%s)", op.Bank.ReadRevision, who)
	}
	s := fmt.Sprintf("transfer of %d from %03d to %03d", op.Bank.Amount, op.Bank.From, op.Bank.To)
	if op.Revision > 0 {
		s += fmt.Sprintf(" at revision %d", op.Revision)
	}
	if op.Bank.ReadRevision > 0 {
		s += fmt.Sprintf(", read at revision %d", op.Bank.ReadRevision)
	}
	return s + " (" + who + ")"
}
