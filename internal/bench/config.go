package bench

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Workload names what each client does per op.
type Workload string

// The workloads.
const (
	// Put writes a random key of the key space.
	Put Workload = "put"
	// Range reads one random key (linearizable unless Config.Serializable).
	Range Workload = "range"
	// TxnPut is a compare-and-swap: Txn(If mod_revision(k) == last seen,
	// Then put(k), Else get(k)). A failed compare is counted as a CAS
	// conflict, not an error; its Else branch refreshes the revision.
	TxnPut Workload = "txn-put"
	// Mixed runs one of the YCSB core mixes (Config.Mix).
	Mixed Workload = "mixed"
	// LeaseKeepAlive grants KeySpace leases first, then renews one random
	// lease per op (LeaseKeepAlive, as clientv3's KeepAliveOnce does):
	// etcd's benchmark lease-keepalive, over many leases.
	LeaseKeepAlive Workload = "lease-keepalive"
)

// Mix is a YCSB core workload.
type Mix string

// The YCSB mixes (Cooper et al., "Benchmarking Cloud Serving Systems with
// YCSB"): reads are Range, updates Put, read-modify-write a Range then a Put
// of the same key, timed as one op.
const (
	MixA Mix = "a" // 50% read, 50% update
	MixB Mix = "b" // 95% read, 5% update
	MixC Mix = "c" // 100% read
	MixF Mix = "f" // 50% read, 50% read-modify-write
)

// readPercent is the share of reads of each mix; the rest are updates
// (read-modify-writes for F).
var readPercent = map[Mix]int{MixA: 50, MixB: 95, MixC: 100, MixF: 50}

// Dist is how keys are drawn from the key space.
type Dist string

// The key distributions.
const (
	Uniform Dist = "uniform"
	// Zipfian is YCSB's scrambled zipfian (theta 0.99): a few keys are hot,
	// and the hot keys are spread over the key space, not clustered at 0.
	Zipfian Dist = "zipfian"
)

// Config is one benchmark run. DefaultConfig gives etcd benchmark's
// defaults where they exist.
type Config struct {
	// Endpoints are host:port client addresses.
	Endpoints []string
	// LeaderOnly pins every connection to the endpoint that reports itself
	// leader in Maintenance.Status; otherwise connections are spread
	// round-robin over Endpoints.
	LeaderOnly bool
	// Conns is the number of gRPC client connections; Clients share them
	// round-robin.
	Conns int
	// Clients is the number of concurrent workers, each with at most one op
	// in flight.
	Clients int

	Workload Workload
	// Serializable makes Range and mixed reads serializable.
	Serializable bool
	// Mix is the YCSB mix for Mixed.
	Mix Mix
	// Dist draws keys for every workload.
	Dist Dist

	// KeySize is the key length in bytes: the key's index, zero-padded.
	KeySize int
	// ValueSize is the value length in bytes (random, incompressible).
	ValueSize int
	// KeySpace is the number of distinct keys.
	KeySpace int
	// Preload writes every key of the key space before measuring. Range,
	// TxnPut and Mixed want it: otherwise they read or compare missing keys.
	Preload bool

	// Total ends the run after this many ops (successful or not); 0 means
	// run for Duration.
	Total int64
	// Duration ends the run when Total is 0.
	Duration time.Duration
	// Rate is the target ops per second over all clients (open loop);
	// 0 means closed loop, every client as fast as it can.
	Rate float64

	// Timeout bounds each op.
	Timeout time.Duration
	// DialTimeout bounds connecting to an endpoint.
	DialTimeout time.Duration
	// ProgressInterval is how often Run writes a progress line; 0 means one
	// second.
	ProgressInterval time.Duration
	// Seed makes key choices and values reproducible.
	Seed uint64

	// OnMeasureStart, if set, is called after the preload, right before the
	// first measured op; OnMeasureEnd right after the last one ends. A
	// caller samples resources (CPU, profiles) over exactly the measured
	// part with them.
	OnMeasureStart, OnMeasureEnd func()
}

// DefaultConfig returns the defaults: 1 connection, 1 client, 8-byte keys,
// 256-byte values, a 100k-key space, uniform keys, 10 seconds, closed loop.
func DefaultConfig() Config {
	return Config{
		Conns:       1,
		Clients:     1,
		Workload:    Put,
		Mix:         MixA,
		Dist:        Uniform,
		KeySize:     8,
		ValueSize:   256,
		KeySpace:    100_000,
		Duration:    10 * time.Second,
		Timeout:     10 * time.Second,
		DialTimeout: 5 * time.Second,
		Seed:        1,
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("bench: no endpoints")
	case c.Conns < 1:
		return fmt.Errorf("bench: conns %d < 1", c.Conns)
	case c.Clients < 1:
		return fmt.Errorf("bench: clients %d < 1", c.Clients)
	case c.KeySpace < 1:
		return fmt.Errorf("bench: key space %d < 1", c.KeySpace)
	case c.KeySize < len(strconv.Itoa(c.KeySpace-1)):
		return fmt.Errorf("bench: key size %d cannot number a key space of %d (needs %d digits)",
			c.KeySize, c.KeySpace, len(strconv.Itoa(c.KeySpace-1)))
	case c.ValueSize < 0:
		return fmt.Errorf("bench: value size %d < 0", c.ValueSize)
	case c.Total < 0:
		return fmt.Errorf("bench: total %d < 0", c.Total)
	case c.Total == 0 && c.Duration <= 0:
		return errors.New("bench: set a total number of ops or a duration")
	case c.Rate < 0:
		return fmt.Errorf("bench: rate %v < 0", c.Rate)
	case c.Timeout <= 0:
		return fmt.Errorf("bench: timeout %v <= 0", c.Timeout)
	}
	switch c.Workload {
	case Put, Range, TxnPut, LeaseKeepAlive:
	case Mixed:
		if _, ok := readPercent[c.Mix]; !ok {
			return fmt.Errorf("bench: unknown YCSB mix %q (a, b, c or f)", c.Mix)
		}
	default:
		return fmt.Errorf("bench: unknown workload %q", c.Workload)
	}
	if c.Dist != Uniform && c.Dist != Zipfian {
		return fmt.Errorf("bench: unknown key distribution %q (uniform or zipfian)", c.Dist)
	}
	return nil
}

// WantsPreload reports whether the workload reads or compares existing
// keys, so that it measures nothing meaningful on an empty key space.
func (w Workload) WantsPreload() bool { return w != Put && w != LeaseKeepAlive }
