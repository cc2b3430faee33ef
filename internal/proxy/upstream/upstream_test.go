package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func build(t *testing.T, p *Pools, lb LBPolicy, eps ...EndpointSpec) *Cluster {
	t.Helper()
	return p.Build([]ClusterSpec{{Name: "c", LB: lb, Endpoints: eps}})["c"]
}

func counts(c *Cluster, n int) map[string]int {
	out := map[string]int{}
	for range n {
		out[c.Pick(nil).Address()]++
	}
	return out
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		eps  []EndpointSpec
		n    int
		want map[string]int
	}{
		{"equal weights", []EndpointSpec{{Address: "a:1"}, {Address: "b:1"}, {Address: "c:1"}}, 300,
			map[string]int{"a:1": 100, "b:1": 100, "c:1": 100}},
		{"weights 1:2:3", []EndpointSpec{{Address: "a:1", Weight: 1}, {Address: "b:1", Weight: 2}, {Address: "c:1", Weight: 3}}, 600,
			map[string]int{"a:1": 100, "b:1": 200, "c:1": 300}},
		{"single endpoint", []EndpointSpec{{Address: "a:1"}}, 10, map[string]int{"a:1": 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, NewPools(PoolsOptions{}), RoundRobin, tc.eps...)
			got := counts(c, tc.n)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("picks = %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}

func TestRoundRobinSpreadsWeightedTurns(t *testing.T) {
	// Smooth weighted round robin: weight 3 vs 1 must not give a burst of
	// three in a row followed by one.
	c := build(t, NewPools(PoolsOptions{}), RoundRobin, EndpointSpec{Address: "a:1", Weight: 3}, EndpointSpec{Address: "b:1", Weight: 1})
	var seq []string
	for range 8 {
		seq = append(seq, c.Pick(nil).Address()[:1])
	}
	if s := strings.Join(seq, ""); strings.Contains(s, "aaaa") || strings.Count(s, "b") != 2 {
		t.Errorf("sequence %s: want 6 a and 2 b, never 4 a in a row", s)
	}
}

func TestLeastRequestAvoidsBusyEndpoint(t *testing.T) {
	c := build(t, NewPools(PoolsOptions{}), LeastRequest, EndpointSpec{Address: "a:1"}, EndpointSpec{Address: "b:1"}, EndpointSpec{Address: "c:1"})
	busy := c.Endpoints()[0]
	for range 5 {
		busy.Begin()
	}
	c.Endpoints()[1].Begin()
	got := counts(c, 300)
	if got["a:1"] != 0 {
		t.Errorf("the busiest endpoint was picked %d times: %v", got["a:1"], got)
	}
	if got["c:1"] <= got["b:1"] {
		t.Errorf("the idle endpoint should win most picks: %v", got)
	}
	for range 5 {
		busy.End()
	}
	if busy.InFlight() != 0 {
		t.Errorf("in flight = %d after End", busy.InFlight())
	}
}

func TestRandomWeighted(t *testing.T) {
	c := build(t, NewPools(PoolsOptions{}), Random, EndpointSpec{Address: "a:1", Weight: 1}, EndpointSpec{Address: "b:1", Weight: 9})
	got := counts(c, 2000)
	if got["a:1"] < 100 || got["a:1"] > 320 {
		t.Errorf("weight 1:9 gave %v", got)
	}
}

func TestPickAvoidsPreviousEndpoint(t *testing.T) {
	for _, lb := range []LBPolicy{RoundRobin, LeastRequest, Random} {
		c := build(t, NewPools(PoolsOptions{}), lb, EndpointSpec{Address: "a:1"}, EndpointSpec{Address: "b:1"})
		a := c.Endpoints()[0]
		for range 50 {
			if c.Pick(a) == a {
				t.Fatalf("%s: Pick(avoid a) returned a", lb)
			}
		}
	}
	empty := build(t, NewPools(PoolsOptions{}), RoundRobin)
	if e := empty.Pick(nil); e != nil {
		t.Errorf("empty cluster picked %v", e.Address())
	}
}

func TestBuildKeepsPoolsOfUnchangedEndpoints(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	p := NewPools(PoolsOptions{})
	get := func(c *Cluster) {
		t.Helper()
		ep := c.Pick(nil)
		req, _ := http.NewRequest("GET", "http://"+ep.Address()+"/", nil)
		resp, err := ep.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	v1 := build(t, p, RoundRobin, EndpointSpec{Address: addr}, EndpointSpec{Address: "gone:1"})
	get(v1)
	// The second version drops one endpoint and adds another; addr stays.
	v2 := p.Build([]ClusterSpec{{Name: "c", Endpoints: []EndpointSpec{{Address: addr}}}, {Name: "d", Endpoints: []EndpointSpec{{Address: "new:1"}}}})
	if v2["c"].Endpoints()[0] != v1.Endpoints()[0] {
		t.Errorf("unchanged endpoint got a new pool")
	}
	get(v2["c"])
	get(v2["c"])
	if n := conns.Load(); n != 1 {
		t.Errorf("%d upstream connections, want 1 reused across versions", n)
	}
	// A different connect timeout is a different pool.
	v3 := p.Build([]ClusterSpec{{Name: "c", ConnectTimeout: time.Second, Endpoints: []EndpointSpec{{Address: addr}}}})
	if v3["c"].Endpoints()[0] == v1.Endpoints()[0] {
		t.Errorf("endpoint with other connection settings shares the pool")
	}
}

// A cluster without idle_timeout keeps idle connections for Envoy's hour,
// not net/http's 90 s; one that sets it, or the pools' option, wins.
func TestIdleTimeoutDefaultsToAnHour(t *testing.T) {
	for _, c := range []struct {
		name  string
		pools PoolsOptions
		spec  time.Duration
		want  time.Duration
	}{
		{"unset", PoolsOptions{}, 0, time.Hour},
		{"cluster idle_timeout", PoolsOptions{}, 5 * time.Second, 5 * time.Second},
		{"pools option", PoolsOptions{IdleConnTimeout: time.Minute}, 0, time.Minute},
	} {
		p := NewPools(c.pools)
		ep := p.Build([]ClusterSpec{{Name: "c", IdleTimeout: c.spec, Endpoints: []EndpointSpec{{Address: "127.0.0.1:1"}}}})["c"].Pick(nil)
		if ep.transport.Load() != nil {
			t.Errorf("%s: the Transport was made before any request needed it", c.name)
		}
		if tr := ep.httpTransport(); ep.h1.idleTimeout != c.want || tr.IdleConnTimeout != c.want || ep.httpTransport() != tr {
			t.Errorf("%s: idle timeout = %v (lean pool) and %v (Transport), want %v; or a second Transport", c.name, ep.h1.idleTimeout, tr.IdleConnTimeout, c.want)
		}
		p.Close()
	}
}
