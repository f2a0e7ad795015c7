package bench

import (
	"math/rand/v2"
	"testing"
)

func TestKeyIsZeroPaddedAndOrdered(t *testing.T) {
	if got := Key(42, 8); got != "00000042" {
		t.Fatalf("Key(42, 8) = %q", got)
	}
	if got := Key(0, 3); got != "000" {
		t.Fatalf("Key(0, 3) = %q", got)
	}
	for i := 1; i < 1000; i++ {
		if !(Key(i-1, 4) < Key(i, 4)) {
			t.Fatalf("Key(%d) >= Key(%d)", i-1, i)
		}
	}
}

func TestUniformCoversTheSpaceEvenly(t *testing.T) {
	const n, draws = 100, 200_000
	g := NewKeyGen(Uniform, n, rand.New(rand.NewPCG(1, 2)))
	counts := make([]int, n)
	for i := 0; i < draws; i++ {
		k := g.Next()
		if k < 0 || k >= n {
			t.Fatalf("key %d out of [0, %d)", k, n)
		}
		counts[k]++
	}
	for k, c := range counts {
		if c < draws/n*8/10 || c > draws/n*12/10 {
			t.Fatalf("key %d drawn %d times, want about %d", k, c, draws/n)
		}
	}
}

func TestZipfianIsSkewedAndScrambled(t *testing.T) {
	const n, draws = 100_000, 200_000
	g := NewKeyGen(Zipfian, n, rand.New(rand.NewPCG(3, 4)))
	counts := map[int]int{}
	for i := 0; i < draws; i++ {
		k := g.Next()
		if k < 0 || k >= n {
			t.Fatalf("key %d out of [0, %d)", k, n)
		}
		counts[k]++
	}
	hot, hotCount := 0, 0
	for k, c := range counts {
		if c > hotCount {
			hot, hotCount = k, c
		}
	}
	// With theta 0.99 and n = 100k, rank 0 has probability 1/zeta(n) ≈ 8%;
	// a uniform key would get 2 of 200k draws.
	if hotCount < draws/20 {
		t.Fatalf("hottest key drawn %d of %d times; not zipfian", hotCount, draws)
	}
	if hot != scramble(0, n) {
		t.Fatalf("hottest key %d, want rank 0 scrambled to %d", hot, scramble(0, n))
	}
	// Far fewer distinct keys than draws: skewed, yet spread beyond a
	// clustered prefix of the space.
	if len(counts) > draws/2 {
		t.Fatalf("%d distinct keys in %d draws; not skewed", len(counts), draws)
	}
	var low, high int
	for k := range counts {
		if k < n/2 {
			low++
		} else {
			high++
		}
	}
	if low < len(counts)/3 || high < len(counts)/3 {
		t.Fatalf("keys cluster: %d below n/2, %d above", low, high)
	}
}

func TestZipfRankRespectsBounds(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10} {
		p := newZipfParams(n, zipfTheta)
		for _, u := range []float64{0, 0.1, 0.5, 0.9, 0.999999} {
			if r := p.rank(u); r < 0 || r >= n {
				t.Fatalf("n=%d u=%v: rank %d out of range", n, u, r)
			}
		}
	}
}
