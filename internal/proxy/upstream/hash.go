package upstream

// Consistent hash load balancing: Envoy's RING_HASH and MAGLEV lb_policy.
//
// A request carries a 64-bit hash (computed by the router from the route's
// hash_policy); PickHash maps it to an endpoint through a ring (ring hash)
// or a lookup table (Maglev) built once per endpoint set: Pools.Build keeps
// a cluster's table while its endpoints, weights and table settings stay
// the same, so a configuration version that changes something else (a
// route, another cluster) rebuilds nothing. Lookups take no lock and
// allocate nothing.
//
// Positions are hashed with FNV-1a 64 followed by a 64-bit finalizer (for
// avalanche), not xxHash64 as in Envoy: the same key maps consistently to
// the same endpoint within weft-proxy, but not to the endpoint an Envoy
// with the same endpoints would choose. Nothing needs Envoy-identical
// hashes (a request is always balanced by one proxy's own table).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"

	"github.com/weftmesh/weft/internal/proxy/keyhash"
)

// Envoy's defaults and limits for ring_hash_lb_config and maglev_lb_config.
const (
	DefaultMinRingSize     = 1024
	DefaultMaxRingSize     = 8 << 20
	MaxRingSize            = 8 << 20
	DefaultMaglevTableSize = 65537
	MaxMaglevTableSize     = 5000011
)

// HashConfig holds the table settings of a RING_HASH or MAGLEV cluster;
// zero fields take Envoy's defaults.
type HashConfig struct {
	// MinRingSize and MaxRingSize bound the ring's entries (ring hash).
	MinRingSize, MaxRingSize uint64
	// TableSize is the Maglev lookup table size; it must be prime.
	TableSize uint64
}

// CheckHashConfig reports what is wrong with hc for policy, in words fit
// for a NACK; nil when it is usable.
func CheckHashConfig(policy LBPolicy, hc HashConfig) error {
	switch policy {
	case RingHash:
		lo, hi := hc.withDefaults().MinRingSize, hc.withDefaults().MaxRingSize
		if hi > MaxRingSize {
			return fmt.Errorf("maximum_ring_size %d: must be at most %d", hi, MaxRingSize)
		}
		if lo > hi {
			return fmt.Errorf("minimum_ring_size %d is larger than maximum_ring_size %d", lo, hi)
		}
	case Maglev:
		n := hc.withDefaults().TableSize
		if n > MaxMaglevTableSize {
			return fmt.Errorf("table_size %d: must be at most %d", n, MaxMaglevTableSize)
		}
		if !isPrime(n) {
			return fmt.Errorf("table_size %d: must be a prime number (the default is %d)", n, DefaultMaglevTableSize)
		}
	}
	return nil
}

func (hc HashConfig) withDefaults() HashConfig {
	if hc.MinRingSize == 0 {
		hc.MinRingSize = DefaultMinRingSize
	}
	if hc.MaxRingSize == 0 {
		hc.MaxRingSize = DefaultMaxRingSize
	}
	if hc.TableSize == 0 {
		hc.TableSize = DefaultMaglevTableSize
	}
	return hc
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// hashTable is a built ring or Maglev table over a cluster's endpoints
// (by index), with what it was built from so Build can reuse it.
type hashTable struct {
	policy  LBPolicy
	cfg     HashConfig
	addrs   []string
	weights []uint32

	// ring: sorted positions and the endpoint index at each.
	ring    []uint64
	ringIdx []uint32
	// table is the Maglev lookup table.
	table []uint32
}

func (t *hashTable) same(policy LBPolicy, cfg HashConfig, addrs []string, weights []uint32) bool {
	return t.policy == policy && t.cfg == cfg && slices.Equal(t.addrs, addrs) && slices.Equal(t.weights, weights)
}

// size is the number of entries.
func (t *hashTable) size() int {
	if t.policy == Maglev {
		return len(t.table)
	}
	return len(t.ringIdx)
}

// slot returns the entry for hash h.
func (t *hashTable) slot(h uint64) int {
	if t.policy == Maglev {
		return int(h % uint64(len(t.table)))
	}
	i := sort.Search(len(t.ring), func(i int) bool { return t.ring[i] >= h })
	if i == len(t.ring) {
		i = 0 // wrap around
	}
	return i
}

// at returns the endpoint index of entry i (taken modulo the size).
func (t *hashTable) at(i int) uint32 {
	if t.policy == Maglev {
		return t.table[i%len(t.table)]
	}
	return t.ringIdx[i%len(t.ringIdx)]
}

func newHashTable(policy LBPolicy, cfg HashConfig, addrs []string, weights []uint32) *hashTable {
	t := &hashTable{policy: policy, cfg: cfg, addrs: addrs, weights: weights}
	if len(addrs) == 0 {
		return t
	}
	c := cfg.withDefaults()
	if policy == Maglev {
		t.buildMaglev(c.TableSize)
	} else {
		t.buildRing(c.MinRingSize, c.MaxRingSize)
	}
	return t
}

// buildRing places each endpoint on the ring as Envoy does: the lightest
// endpoint gets at least min_ring_size × its share of the weight entries,
// the ring is at most max_ring_size entries, and each endpoint gets its
// share of them; entry j of an endpoint is at the hash of "address_j".
func (t *hashTable) buildRing(minSize, maxSize uint64) {
	var total float64
	for _, w := range t.weights {
		total += float64(w)
	}
	minNorm := math.MaxFloat64
	for _, w := range t.weights {
		minNorm = min(minNorm, float64(w)/total)
	}
	scale := min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	type entry struct {
		h   uint64
		idx uint32
	}
	entries := make([]entry, 0, int(math.Ceil(scale))+len(t.addrs))
	var cur, target float64
	var key []byte
	for i, a := range t.addrs {
		target += scale * float64(t.weights[i]) / total
		for j := uint64(0); cur < target; j++ {
			key = strconv.AppendUint(append(append(key[:0], a...), '_'), j, 10)
			entries = append(entries, entry{keyhash.String(string(key), 0), uint32(i)})
			cur++
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.idx) - int(b.idx)
	})
	t.ring = make([]uint64, len(entries))
	t.ringIdx = make([]uint32, len(entries))
	for i, e := range entries {
		t.ring[i], t.ringIdx[i] = e.h, e.idx
	}
}

// buildMaglev fills the lookup table with Maglev's permutations: each
// endpoint has an offset and a skip from its address and takes, in turn,
// the next free slot of its permutation; an endpoint of a lower weight
// takes its turn proportionally less often than the heaviest one.
func (t *hashTable) buildMaglev(m uint64) {
	n := len(t.addrs)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	target := make([]uint64, n)
	var maxW uint64
	for i, a := range t.addrs {
		offset[i] = keyhash.String(a, 0) % m
		skip[i] = keyhash.String(a, 1)%(m-1) + 1
		maxW = max(maxW, uint64(t.weights[i]))
	}
	const free = math.MaxUint32
	t.table = make([]uint32, m)
	for i := range t.table {
		t.table[i] = free
	}
	filled := uint64(0)
	for iter := uint64(1); filled < m; iter++ {
		for i := 0; i < n && filled < m; i++ {
			if iter*uint64(t.weights[i]) < target[i] {
				continue
			}
			target[i] += maxW
			c := (offset[i] + skip[i]*next[i]) % m
			for t.table[c] != free {
				next[i]++
				c = (offset[i] + skip[i]*next[i]) % m
			}
			t.table[c] = uint32(i)
			next[i]++
			filled++
		}
	}
}

// HashBased reports whether the cluster balances by request hash
// (RING_HASH or MAGLEV); only then is PickHash worth a request's hash.
func (c *Cluster) HashBased() bool { return c.hash != nil }

// PickHash chooses the endpoint for a request whose hash policy produced
// hash h: the ring (or Maglev table) entry for h, moving on to the next
// entry while the endpoint there is ejected by outlier detection (unless in
// panic mode, as Pick) or is avoid (the endpoint of a failed attempt, when
// there is another). For a cluster that does not balance by hash it is
// Pick. It returns nil when there is no endpoint to pick.
func (c *Cluster) PickHash(h uint64, avoid *Endpoint) *Endpoint {
	t := c.hash
	if t == nil {
		return c.Pick(avoid)
	}
	n := t.size()
	if n == 0 {
		return nil
	}
	skipEjected, candidates := false, len(c.endpoints)
	if c.od != nil && c.od.active.Load() > 0 {
		healthy := 0
		for _, x := range c.endpoints {
			if !x.Ejected() {
				healthy++
			}
		}
		switch {
		case healthy == len(c.endpoints):
		case float64(healthy)*100 < c.panic*float64(len(c.endpoints)):
			c.stats.lbHealthyPanic.Add(1)
		case healthy == 0:
			return nil
		default:
			skipEjected, candidates = true, healthy
		}
	}
	start := t.slot(h)
	var fallback *Endpoint
	for i := range n {
		e := c.endpoints[t.at(start+i)]
		if skipEjected && e.Ejected() {
			continue
		}
		if e == avoid && candidates > 1 {
			if fallback == nil {
				fallback = e
			}
			continue
		}
		return e
	}
	return fallback
}

// pickHashRandom is a hash cluster's pick for a request without a hash: a
// random entry, as Envoy does.
func (c *Cluster) pickHashRandom() *Endpoint {
	t := c.hash
	return c.endpoints[t.at(t.slot(rand.Uint64()))]
}
