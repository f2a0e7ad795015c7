package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPlanCheckpoints(t *testing.T) {
	const perKey = 1000
	for _, tc := range []struct {
		name  string
		total int64
		sizes []int64
		want  []checkpoint
	}{
		{"total only", 10_000, nil, []checkpoint{{10_000, 10}}},
		{"total added, sorted", 10_000, []int64{5000, 1000}, []checkpoint{{1000, 1}, {5000, 5}, {10_000, 10}}},
		{"a partial key rounds up", 10_500, []int64{1}, []checkpoint{{1, 1}, {10_500, 11}}},
		{"duplicates merge", 10_000, []int64{1000, 1000, 10_000}, []checkpoint{{1000, 1}, {10_000, 10}}},
		{"same key count merges, keeping the larger", 10_000, []int64{1001, 1999}, []checkpoint{{1999, 2}, {10_000, 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planCheckpoints(tc.total, tc.sizes, perKey)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("planCheckpoints(%d, %v) = %v, %v; want %v", tc.total, tc.sizes, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		total int64
		sizes []int64
	}{{0, nil}, {-1, nil}, {10_000, []int64{20_000}}, {10_000, []int64{0}}, {10_000, []int64{-5}}} {
		if got, err := planCheckpoints(tc.total, tc.sizes, perKey); err == nil {
			t.Errorf("planCheckpoints(%d, %v) = %v, want an error", tc.total, tc.sizes, got)
		}
	}
}

func TestLoadConfigValidate(t *testing.T) {
	ok := LoadConfig{Config: DefaultConfig(), Bytes: 10 << 30, Measure: 1, MaxDuration: 1}
	ok.Endpoints = []string{"127.0.0.1:2379"}
	ok.ValueSize = 64 << 10
	if err := ok.Validate(); err != nil {
		t.Fatalf("10GiB of 64KiB values with 8-byte keys: %v", err)
	}
	for name, mutate := range map[string]func(c *LoadConfig){
		"no bytes":                func(c *LoadConfig) { c.Bytes = 0 },
		"no measure":              func(c *LoadConfig) { c.Measure = 0 },
		"no max":                  func(c *LoadConfig) { c.MaxDuration = 0 },
		"empty values":            func(c *LoadConfig) { c.ValueSize = 0 },
		"keys too short":          func(c *LoadConfig) { c.KeySize = 4 }, // 10^4 keys < 2 x 163840
		"keys too long":           func(c *LoadConfig) { c.KeySize = 20 },
		"no endpoints":            func(c *LoadConfig) { c.Endpoints = nil },
		"checkpoint past --bytes": func(c *LoadConfig) { c.Checkpoints = []int64{11 << 30} },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
}

// TestKeyPermutationIsABijection: the load writes every key once only if
// no two write numbers map to one key index.
func TestKeyPermutationIsABijection(t *testing.T) {
	for digits := 1; digits <= 5; digits++ {
		for _, seed := range []uint64{0, 1, 42} {
			p := newKeyPermutation(digits, seed)
			seen := make([]bool, p.space)
			for i := uint64(0); i < p.space; i++ {
				j := p.index(i)
				if j >= p.space || seen[j] {
					t.Fatalf("digits %d seed %d: write %d maps to %d, taken or out of range", digits, seed, i, j)
				}
				seen[j] = true
			}
		}
	}
	// At 19 digits the product needs 128 bits; indexes stay in range
	// and consecutive writes land far apart.
	p := newKeyPermutation(maxKeyDigits, 1)
	prev := p.index(0)
	for i := uint64(1); i < 1000; i++ {
		j := p.index(i)
		if j >= p.space || j == prev {
			t.Fatalf("write %d maps to %d (space %d, previous %d)", i, j, p.space, prev)
		}
		prev = j
	}
}

func TestFillRandomIsFreshEveryCall(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := make([]byte, 1003), make([]byte, 1003)
	fillRandom(rng, a)
	fillRandom(rng, b)
	if slices.Equal(a, b) {
		t.Fatal("two values alike")
	}
	counts := [256]int{}
	for _, c := range a {
		counts[c]++
	}
	if counts[0] > 20 { // about 4 expected
		t.Errorf("%d zero bytes in 1003: not random", counts[0])
	}
}

func TestIsNoSpace(t *testing.T) {
	for _, err := range []error{rpctypes.ErrNoSpace, rpctypes.ErrGRPCNoSpace, fmt.Errorf("put: %w", rpctypes.ErrNoSpace),
		status.Error(codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")} {
		if !IsNoSpace(err) {
			t.Errorf("IsNoSpace(%v) = false", err)
		}
	}
	for _, err := range []error{nil, rpctypes.ErrTooManyRequests, status.Error(codes.ResourceExhausted, "grpc: received message larger than max")} {
		if IsNoSpace(err) {
			t.Errorf("IsNoSpace(%v) = true", err)
		}
	}
}
