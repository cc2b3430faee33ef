package upstream

import (
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
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

// TestBuildRebuildsOnlyChangedClusters: a cluster whose spec did not change
// is the same Cluster after Build (its round robin position included); a
// changed one is rebuilt, keeping the endpoints it still has; the
// endpoints of a changed or removed cluster that nothing uses any more are
// gone, and those of unchanged clusters stay.
func TestBuildRebuildsOnlyChangedClusters(t *testing.T) {
	p := NewPools(PoolsOptions{})
	defer p.Close()
	eps := func(addrs ...string) []EndpointSpec {
		var out []EndpointSpec
		for _, a := range addrs {
			out = append(out, EndpointSpec{Address: a})
		}
		return out
	}
	a := []EndpointSpec{{Address: "a:1"}, {Address: "a:2"}}
	v1 := p.Build([]ClusterSpec{{Name: "a", Endpoints: a}, {Name: "b", Endpoints: eps("b:1", "b:2")}, {Name: "c", Endpoints: eps("c:1")}})
	v1["a"].Pick(nil)
	// The compiler hands the same endpoints again, or equal ones.
	v2 := p.Build([]ClusterSpec{{Name: "a", Endpoints: eps("a:1", "a:2")}, {Name: "b", Endpoints: eps("b:2", "b:3")}})
	if v2["a"] != v1["a"] {
		t.Error("an unchanged cluster was rebuilt")
	}
	if v2["b"] == v1["b"] {
		t.Fatal("a changed cluster was not rebuilt")
	}
	if got := v2["b"].Endpoints()[0]; got != v1["b"].Endpoints()[1] {
		t.Error("b:2 got a new endpoint though it stayed in its cluster")
	}
	if v2["c"] != nil {
		t.Error("a removed cluster is still there")
	}
	for _, k := range []poolKey{{"b", "b:1"}, {"c", "c:1"}} {
		if p.eps[k] != nil {
			t.Errorf("endpoint %v outlived its cluster's change", k)
		}
	}
	for _, k := range []poolKey{{"a", "a:1"}, {"a", "a:2"}, {"b", "b:2"}, {"b", "b:3"}} {
		if p.eps[k] == nil {
			t.Errorf("endpoint %v is gone though its cluster uses it", k)
		}
	}
	// Changing the endpoints the last spec was built from, in place, is
	// seen as a change: Build kept a copy.
	a[1].Address = "a:9"
	v3 := p.Build([]ClusterSpec{{Name: "a", Endpoints: a}})
	if v3["a"] == v1["a"] || v3["a"].Endpoints()[1].Address() != "a:9" {
		t.Error("a change to the endpoints' slice in place was missed")
	}
	if p.stats["b"] != nil || p.breakers["b"] != nil {
		t.Error("a removed cluster's stats and breaker were kept")
	}
}

// TestSameSpecSeesEveryField: a change to any field of a ClusterSpec makes
// it another spec, so that Build never keeps a cluster whose settings
// changed (a field added to ClusterSpec must be added to sameSpec).
func TestSameSpecSeesEveryField(t *testing.T) {
	base := ClusterSpec{Name: "c", Endpoints: []EndpointSpec{{Address: "a:1"}}, CircuitBreakers: &CircuitBreakers{MaxRequests: 1},
		Outlier: &OutlierDetection{Consecutive5xx: 1}, HealthyPanicThreshold: new(float64), TCPKeepalive: &TCPKeepalive{},
		SlowStart: &SlowStart{}, TLS: &TLS{}}
	if !sameSpec(&base, &base) {
		t.Fatal("a spec differs from itself")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		other := base
		other.Endpoints = slices.Clone(base.Endpoints)
		cb, od, pt, ka, ss, tl := *base.CircuitBreakers, *base.Outlier, *base.HealthyPanicThreshold, *base.TCPKeepalive, *base.SlowStart, *base.TLS
		other.CircuitBreakers, other.Outlier, other.HealthyPanicThreshold, other.TCPKeepalive, other.SlowStart, other.TLS = &cb, &od, &pt, &ka, &ss, &tl
		if !sameSpec(&base, &other) {
			t.Fatal("a spec differs from an equal copy")
		}
		changeField(t, reflect.ValueOf(&other).Elem().Field(i))
		if sameSpec(&base, &other) {
			t.Errorf("sameSpec misses a change to ClusterSpec.%s", typ.Field(i).Name)
		}
	}
}

// changeField changes v, a field of a ClusterSpec, to another value.
func changeField(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		e := v.Index(0)
		changeField(t, e.Field(0))
	case reflect.Pointer:
		changeField(t, v.Elem())
	case reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Struct:
		changeField(t, v.Field(0))
	default:
		t.Fatalf("changeField does not know how to change a %s", v.Kind())
	}
}

// With a retry budget, the retries allowed at once follow the requests in
// flight (budget percent of them, at least the minimum) and max_retries no
// longer applies.
func TestRetryBudgetLimit(t *testing.T) {
	b := &breaker{name: "c", stats: &Stats{}}
	b.set(CircuitBreakers{MaxRetries: 100, RetryBudget: true, BudgetPercent: 20, MinRetryConcurrency: 3})
	for _, tc := range []struct{ inFlight, want int64 }{{0, 3}, {10, 3}, {25, 5}, {100, 20}} {
		b.reqs.Store(tc.inFlight)
		if got := b.retryLimit(); got != tc.want {
			t.Errorf("%d requests in flight: %d retries allowed, want %d", tc.inFlight, got, tc.want)
		}
	}
	b.reqs.Store(10)
	for i := range 3 {
		if !b.beginRetry() {
			t.Fatalf("retry %d refused within the minimum of 3", i+1)
		}
	}
	if b.beginRetry() {
		t.Fatal("a fourth retry was allowed with 10 requests in flight (20 % of 10 is 2, the minimum 3)")
	}
	b.set(CircuitBreakers{MaxRetries: 7})
	if got := b.retryLimit(); got != 7 {
		t.Errorf("without a budget: %d retries allowed, want max_retries 7", got)
	}
}

// Slow start scales a young endpoint's weight as Envoy does.
func TestSlowStartFactor(t *testing.T) {
	for _, tc := range []struct {
		ss   SlowStart
		age  time.Duration
		want float64
	}{
		{SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}, 0, 0.1},
		{SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}, 5 * time.Second, 0.5},
		{SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}, 5900 * time.Millisecond, 0.5},
		{SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}, 10 * time.Second, 1},
		{SlowStart{Window: 100 * time.Second, Aggression: 2, MinWeightPercent: 0}, 25 * time.Second, 0.5},
		{SlowStart{Window: 100 * time.Second, Aggression: 1, MinWeightPercent: 30}, 10 * time.Second, 0.3},
	} {
		if got := tc.ss.factor(tc.age); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%+v at %v: factor %g, want %g", tc.ss, tc.age, got, tc.want)
		}
	}
}

// While an endpoint warms up it gets its scaled share of the picks; once
// the window is over, round robin alternates again.
func TestSlowStartPicks(t *testing.T) {
	p := NewPools(PoolsOptions{})
	defer p.Close()
	c := p.Build([]ClusterSpec{{Name: "c", LB: RoundRobin, Endpoints: []EndpointSpec{{Address: "old:1"}, {Address: "new:1"}},
		SlowStart: &SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}}})["c"]
	now := time.Now()
	c.endpoints[0].since, c.endpoints[1].since = now.Add(-time.Hour), now.Add(-5*time.Second)
	c.warmUntil = now.Add(5 * time.Second)
	c.warming.Store(true)
	picks := map[string]int{}
	for range 3000 {
		picks[c.Pick(nil).Address()]++
	}
	// The new endpoint weighs 0.5 against 1: a third of the picks (sd 26).
	if n := picks["new:1"]; n < 850 || n > 1150 {
		t.Errorf("a 5 s old endpoint in a 10 s window got %d of 3000 picks, want about 1000", n)
	}
	c.warmUntil = now.Add(-time.Second) // every endpoint has warmed up
	first := c.Pick(nil)
	for i := range 10 {
		if e := c.Pick(nil); (e == first) != (i%2 == 1) {
			t.Fatalf("after the window, round robin does not alternate (pick %d)", i+2)
		}
	}
}

// The endpoints a cluster starts with are not in slow start; one that
// joins later is, for the window, and keeps its join time across a change
// of the cluster's settings.
func TestSlowStartOnlyForEndpointsThatJoinLater(t *testing.T) {
	p := NewPools(PoolsOptions{})
	defer p.Close()
	ss := &SlowStart{Window: time.Minute, Aggression: 1, MinWeightPercent: 10}
	spec := func(timeout time.Duration, addrs ...string) []ClusterSpec {
		var eps []EndpointSpec
		for _, a := range addrs {
			eps = append(eps, EndpointSpec{Address: a})
		}
		return []ClusterSpec{{Name: "c", LB: LeastRequest, SlowStart: ss, ConnectTimeout: timeout, Endpoints: eps}}
	}
	c := p.Build(spec(time.Second, "a:1", "b:1"))["c"]
	if now := time.Now(); now.Before(c.warmUntil) || c.warming.Load() {
		t.Fatalf("a new cluster's endpoints are in slow start until %v", c.warmUntil)
	}
	c = p.Build(spec(time.Second, "a:1", "b:1", "new:1"))["c"]
	if d := time.Until(c.warmUntil); d < 50*time.Second || d > time.Minute {
		t.Fatalf("an endpoint that joined warms up for %v more, want about a minute", d)
	}
	joined := c.endpoints[2].since
	c = p.Build(spec(2*time.Second, "a:1", "b:1", "new:1"))["c"] // new endpoints, same addresses
	if c.endpoints[2].since != joined || !c.endpoints[0].since.IsZero() {
		t.Error("a change of settings reset the endpoints' join times")
	}
	picks := map[string]int{}
	for range 3000 {
		picks[c.Pick(nil).Address()]++
	}
	// new:1 weighs 0.1 against 1 and 1 (power of two choices on scaled
	// weights): far fewer picks than the others.
	if picks["new:1"] > 600 || picks["a:1"] < 1000 {
		t.Errorf("while new:1 warms up: %v", picks)
	}
}
