package bench

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// Key returns key i of a key space as a size-byte string: i in decimal,
// zero-padded on the left, so keys sort in index order and read well in
// etcdctl. The caller ensures i fits in size digits (Config.Validate).
func Key(i, size int) string {
	b := make([]byte, size)
	for j := size - 1; j >= 0; j-- {
		b[j] = byte('0' + i%10)
		i /= 10
	}
	return string(b)
}

// KeyGen draws key indexes in [0, n). A KeyGen is not safe for concurrent
// use: each worker has its own, built by NewKeyGen over a shared
// keyGenParams.
type KeyGen interface {
	Next() int
}

// keyGenParams holds what is costly to compute once per run (zeta(n) for
// zipfian) and read-only afterwards, so workers can share it.
type keyGenParams struct {
	dist Dist
	n    int
	zipf *zipfParams
}

func newKeyGenParams(d Dist, n int) *keyGenParams {
	p := &keyGenParams{dist: d, n: n}
	if d == Zipfian {
		p.zipf = newZipfParams(n, zipfTheta)
	}
	return p
}

// NewKeyGen returns a generator for distribution d over [0, n) drawing from
// rng.
func NewKeyGen(d Dist, n int, rng *rand.Rand) KeyGen {
	return newKeyGenParams(d, n).gen(rng)
}

func (p *keyGenParams) gen(rng *rand.Rand) KeyGen {
	if p.dist == Zipfian {
		return &scrambledZipf{p: p.zipf, rng: rng}
	}
	return &uniform{n: p.n, rng: rng}
}

type uniform struct {
	n   int
	rng *rand.Rand
}

func (u *uniform) Next() int { return u.rng.IntN(u.n) }

// zipfTheta is YCSB's default skew (its ZipfianGenerator.ZIPFIAN_CONSTANT).
const zipfTheta = 0.99

// zipfParams are Gray et al.'s constants ("Quickly Generating
// Billion-Record Synthetic Databases", SIGMOD 1994), as in YCSB's
// ZipfianGenerator: rank 0 is the most popular.
type zipfParams struct {
	n                   int
	theta, alpha, zetan float64
	eta, half           float64
}

func newZipfParams(n int, theta float64) *zipfParams {
	zeta := func(k int) float64 {
		var s float64
		for i := 1; i <= k; i++ {
			s += 1 / math.Pow(float64(i), theta)
		}
		return s
	}
	p := &zipfParams{n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zeta(n)}
	p.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2)/p.zetan)
	p.half = 1 + math.Pow(0.5, theta)
	return p
}

// rank maps a uniform u in [0, 1) to a zipfian rank in [0, n).
func (p *zipfParams) rank(u float64) int {
	uz := u * p.zetan
	switch {
	case uz < 1:
		return 0
	case uz < p.half:
		return min(1, p.n-1)
	}
	r := int(float64(p.n) * math.Pow(p.eta*u-p.eta+1, p.alpha))
	return min(r, p.n-1)
}

// scrambledZipf hashes the zipfian rank so that the hot keys are spread
// over the key space (YCSB's ScrambledZipfianGenerator): otherwise they
// would be the first keys, all in one range of a sharded store.
type scrambledZipf struct {
	p   *zipfParams
	rng *rand.Rand
}

func (z *scrambledZipf) Next() int { return scramble(z.p.rank(z.rng.Float64()), z.p.n) }

// scramble maps rank to a key index with FNV-1a, as YCSB does; distinct
// ranks may collide, which only merges two keys' popularity.
func scramble(rank, n int) int {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(uint64(rank) >> (8 * i))
	}
	h.Write(b[:])
	return int(h.Sum64() % uint64(n))
}
