package upstream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/keyhash"
)

var hashPolicies = []LBPolicy{RingHash, Maglev}

func threeEndpoints() []EndpointSpec {
	return []EndpointSpec{{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"}, {Address: "10.0.0.3:80"}}
}

func keyHash(i int) uint64 { return keyhash.String(fmt.Sprintf("user-%d", i), 0) }

func TestPickHashSameKeySameEndpoint(t *testing.T) {
	for _, lb := range hashPolicies {
		t.Run(lb.String(), func(t *testing.T) {
			c := build(t, NewPools(PoolsOptions{}), lb, threeEndpoints()...)
			if !c.HashBased() {
				t.Fatal("HashBased() = false")
			}
			for i := range 50 {
				first := c.PickHash(keyHash(i), nil)
				for range 5 {
					if got := c.PickHash(keyHash(i), nil); got != first {
						t.Fatalf("key %d: picked %s then %s", i, first.Address(), got.Address())
					}
				}
			}
			// A rebuilt cluster with the same endpoints maps keys the same way.
			c2 := build(t, NewPools(PoolsOptions{}), lb, threeEndpoints()...)
			for i := range 50 {
				if a, b := c.PickHash(keyHash(i), nil).Address(), c2.PickHash(keyHash(i), nil).Address(); a != b {
					t.Fatalf("key %d: %s in one proxy, %s in another", i, a, b)
				}
			}
		})
	}
}

func TestPickHashSpreadsKeys(t *testing.T) {
	tests := []struct {
		name   string
		eps    []EndpointSpec
		lo, hi map[string]float64 // share of keys, in percent
	}{
		{"equal weights", threeEndpoints(),
			map[string]float64{"10.0.0.1:80": 20, "10.0.0.2:80": 20, "10.0.0.3:80": 20},
			map[string]float64{"10.0.0.1:80": 47, "10.0.0.2:80": 47, "10.0.0.3:80": 47}},
		{"weights 1:1:2", []EndpointSpec{{Address: "10.0.0.1:80", Weight: 1}, {Address: "10.0.0.2:80", Weight: 1}, {Address: "10.0.0.3:80", Weight: 2}},
			map[string]float64{"10.0.0.1:80": 15, "10.0.0.2:80": 15, "10.0.0.3:80": 40},
			map[string]float64{"10.0.0.1:80": 35, "10.0.0.2:80": 35, "10.0.0.3:80": 60}},
	}
	for _, lb := range hashPolicies {
		for _, tc := range tests {
			t.Run(lb.String()+"/"+tc.name, func(t *testing.T) {
				c := build(t, NewPools(PoolsOptions{}), lb, tc.eps...)
				got := map[string]int{}
				for i := range 1000 {
					got[c.PickHash(keyHash(i), nil).Address()]++
				}
				for a, lo := range tc.lo {
					if p := float64(got[a]) / 10; p < lo || p > tc.hi[a] {
						t.Errorf("%s has %.1f%% of the keys, want %g%%..%g%% (all: %v)", a, p, lo, tc.hi[a], got)
					}
				}
			})
		}
	}
}

func TestPickHashRemovingEndpointMovesOnlyItsKeys(t *testing.T) {
	tests := []struct {
		lb LBPolicy
		// maxOthersMoved is the share of keys on the remaining endpoints
		// allowed to move. On Envoy's ring the remaining endpoints get more
		// entries each (the ring keeps min_ring_size entries), which moves
		// some keys between them; Maglev's disruption is small. Hashing
		// modulo the endpoint count would move about half of them.
		maxOthersMoved float64
	}{
		{RingHash, 0.20},
		{Maglev, 0.05},
	}
	for _, tc := range tests {
		t.Run(tc.lb.String(), func(t *testing.T) {
			p := NewPools(PoolsOptions{})
			before := build(t, p, tc.lb, threeEndpoints()...)
			after := build(t, p, tc.lb, threeEndpoints()[:2]...)
			moved, others, othersMoved := 0, 0, 0
			for i := range 1000 {
				a, b := before.PickHash(keyHash(i), nil).Address(), after.PickHash(keyHash(i), nil).Address()
				if b == "10.0.0.3:80" {
					t.Fatalf("key %d still goes to the removed endpoint", i)
				}
				if a != b {
					moved++
				}
				if a != "10.0.0.3:80" {
					others++
					if a != b {
						othersMoved++
					}
				}
			}
			if moved > 1000/3+120 {
				t.Errorf("%d of 1000 keys moved, want a third and some slack at most", moved)
			}
			if float64(othersMoved) > tc.maxOthersMoved*float64(others) {
				t.Errorf("%d of the %d keys on the remaining endpoints moved, want at most %g%%", othersMoved, others, tc.maxOthersMoved*100)
			}
		})
	}
}

func TestPickHashSkipsEjectedEndpoints(t *testing.T) {
	for _, lb := range hashPolicies {
		t.Run(lb.String(), func(t *testing.T) {
			od := DefaultOutlierDetection()
			p := NewPools(PoolsOptions{})
			c := p.Build([]ClusterSpec{{Name: "c", LB: lb, Endpoints: threeEndpoints(), Outlier: &od}})["c"]
			defer p.Close()
			var ejected *Endpoint
			home := map[int]*Endpoint{}
			for i := range 300 {
				home[i] = c.PickHash(keyHash(i), nil)
			}
			ejected = c.Endpoints()[2]
			ejected.od.ejected.Store(true)
			c.od.active.Add(1)
			for i := range 300 {
				got := c.PickHash(keyHash(i), nil)
				if got == ejected {
					t.Fatalf("key %d picked the ejected endpoint", i)
				}
				if home[i] != ejected && got != home[i] {
					t.Fatalf("key %d moved from %s to %s though its endpoint is healthy", i, home[i].Address(), got.Address())
				}
			}
			// Retrying avoids the endpoint of the failed attempt.
			for i := range 50 {
				first := c.PickHash(keyHash(i), nil)
				if again := c.PickHash(keyHash(i), first); again == first || again == ejected {
					t.Fatalf("key %d: retry picked %s again (or the ejected one)", i, first.Address())
				}
			}
		})
	}
}

func TestHashClusterWithoutHashPicksRandomly(t *testing.T) {
	for _, lb := range hashPolicies {
		t.Run(lb.String(), func(t *testing.T) {
			got := counts(build(t, NewPools(PoolsOptions{}), lb, threeEndpoints()...), 900)
			for _, e := range threeEndpoints() {
				if n := got[e.Address]; n < 200 || n > 400 {
					t.Errorf("%s picked %d of 900 times, want about 300 (%v)", e.Address, n, got)
				}
			}
		})
	}
}

func TestBuildKeepsHashTableOfUnchangedEndpoints(t *testing.T) {
	p := NewPools(PoolsOptions{})
	spec := ClusterSpec{Name: "c", LB: Maglev, Endpoints: threeEndpoints()}
	t1 := p.Build([]ClusterSpec{spec})["c"].hash
	t2 := p.Build([]ClusterSpec{spec, {Name: "other"}})["c"].hash
	if t1 != t2 {
		t.Error("the Maglev table was rebuilt though the cluster's endpoints did not change")
	}
	spec.Endpoints = append(threeEndpoints(), EndpointSpec{Address: "10.0.0.4:80"})
	if t3 := p.Build([]ClusterSpec{spec})["c"].hash; t3 == t2 || len(t3.addrs) != 4 {
		t.Error("the Maglev table was not rebuilt for a new endpoint")
	}
}

func TestCheckHashConfig(t *testing.T) {
	tests := []struct {
		lb      LBPolicy
		hc      HashConfig
		wantErr string
	}{
		{Maglev, HashConfig{}, ""},
		{Maglev, HashConfig{TableSize: 251}, ""},
		{Maglev, HashConfig{TableSize: 65536}, "table_size 65536: must be a prime number"},
		{Maglev, HashConfig{TableSize: 5000012}, "must be at most 5000011"},
		{RingHash, HashConfig{}, ""},
		{RingHash, HashConfig{MinRingSize: 4096, MaxRingSize: 2048}, "minimum_ring_size 4096 is larger than maximum_ring_size 2048"},
		{RingHash, HashConfig{MaxRingSize: 1 << 30}, "must be at most 8388608"},
	}
	for _, tc := range tests {
		err := CheckHashConfig(tc.lb, tc.hc)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s %+v: %v", tc.lb, tc.hc, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s %+v: error %v, want %q", tc.lb, tc.hc, err, tc.wantErr)
		}
	}
}

func BenchmarkPickHash(b *testing.B) {
	for _, lb := range hashPolicies {
		b.Run(lb.String(), func(b *testing.B) {
			c := NewPools(PoolsOptions{}).Build([]ClusterSpec{{Name: "c", LB: lb, Endpoints: threeEndpoints()}})["c"]
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				c.PickHash(uint64(i)*0x9e3779b97f4a7c15, nil)
			}
		})
	}
}
