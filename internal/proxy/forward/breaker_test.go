package forward

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// cbFront runs a Forwarder for route in front of the cluster spec (named
// "c"); rebuild applies spec again, as a new configuration version would.
type cbFront struct {
	srv   *httptest.Server
	pools *upstream.Pools
	fwd   atomic.Pointer[Forwarder]
	spec  upstream.ClusterSpec
}

func newCBFront(t *testing.T, route *router.Route, spec upstream.ClusterSpec) *cbFront {
	t.Helper()
	spec.Name = "c"
	route.Cluster = "c"
	f := &cbFront{pools: upstream.NewPools(upstream.PoolsOptions{}), spec: spec}
	t.Cleanup(f.pools.Close)
	f.rebuild()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fwd.Load().Serve(&chain.Exchange{W: w, R: r, Route: route, RouteConfig: "rc"})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *cbFront) rebuild() {
	f.fwd.Store(New(Options{Clusters: f.pools.Build([]upstream.ClusterSpec{f.spec})}))
}

func (f *cbFront) stats() upstream.StatsSnapshot { return f.pools.Stats()["c"] }

func (f *cbFront) get(t *testing.T) (int, string, http.Header) {
	t.Helper()
	return do(t, mustReq(t, "GET", f.srv.URL+"/"))
}

// backend is a 127.0.0.1 server that counts accepted connections.
func backend(t *testing.T, h http.HandlerFunc) (string, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return addrOf(s), &conns
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestCircuitBreakerOverflow(t *testing.T) {
	tests := []struct {
		name  string
		cb    upstream.CircuitBreakers
		limit string
		// waiting is true when the second request queues (pending) rather
		// than being refused.
		waiting bool
	}{
		{"max_pending_requests", upstream.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 100, MaxRetries: 3}, "max_pending_requests (1)", true},
		{"max_requests", upstream.CircuitBreakers{MaxConnections: 100, MaxPendingRequests: 100, MaxRequests: 1, MaxRetries: 3}, "max_requests (1)", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var arrived atomic.Int32
			addr, conns := backend(t, func(w http.ResponseWriter, r *http.Request) {
				arrived.Add(1)
				<-release
				io.WriteString(w, "ok")
			})
			cb := tc.cb
			f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{Endpoints: []upstream.EndpointSpec{{Address: addr}}, CircuitBreakers: &cb})
			var wg sync.WaitGroup
			codes := make(chan int, 2)
			send := func() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get(f.srv.URL + "/")
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					codes <- resp.StatusCode
				}()
			}
			send()
			eventually(t, "the first request at the backend", func() bool { return arrived.Load() == 1 })
			if tc.waiting {
				send()
				eventually(t, "the second request to wait for a connection", func() bool { return f.stats().CxOverflow == 1 })
			}
			code, body, h := f.get(t)
			if code != http.StatusServiceUnavailable || h.Get("X-Envoy-Overloaded") != "true" {
				t.Errorf("got %d, x-envoy-overloaded %q; want 503 and true", code, h.Get("X-Envoy-Overloaded"))
			}
			for _, want := range []string{"overflow", "cluster c", tc.limit} {
				if !strings.Contains(body, want) {
					t.Errorf("body %q does not mention %q", body, want)
				}
			}
			close(release)
			wg.Wait()
			close(codes)
			for c := range codes {
				if c != http.StatusOK {
					t.Errorf("a request within the limits got %d", c)
				}
			}
			if n := f.stats().PendingOverflow; n != 1 {
				t.Errorf("upstream_rq_pending_overflow = %d, want 1", n)
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("backend accepted %d connections, want 1", n)
			}
			// The limits are free again.
			if code, _, _ := f.get(t); code != http.StatusOK {
				t.Errorf("after the burst: %d", code)
			}
		})
	}
}

// max_retries bounds the retries in flight; a retry budget replaces it
// (with max_retries 0 a request still retries, up to the budget's minimum
// concurrency when nothing else is in flight).
func TestRetryOverflow(t *testing.T) {
	var hits atomic.Int32
	addr, _ := backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	retry := router.RetryPolicy{RetryOn: router.RetryOn5xx, NumRetries: 2, BackOffBase: time.Millisecond}
	for _, tc := range []struct {
		name         string
		cb           upstream.CircuitBreakers
		wantHits     int32
		wantOverflow uint64
	}{
		{"max_retries 0", upstream.CircuitBreakers{MaxRetries: 0}, 1, 1},
		{"max_retries 3", upstream.CircuitBreakers{MaxRetries: 3}, 3, 0},
		{"budget, minimum 0", upstream.CircuitBreakers{RetryBudget: true, BudgetPercent: 20}, 1, 1},
		{"budget, minimum 3", upstream.CircuitBreakers{RetryBudget: true, BudgetPercent: 20, MinRetryConcurrency: 3}, 3, 0},
	} {
		hits.Store(0)
		cb := upstream.DefaultCircuitBreakers()
		cb.MaxRetries, cb.RetryBudget, cb.BudgetPercent, cb.MinRetryConcurrency = tc.cb.MaxRetries, tc.cb.RetryBudget, tc.cb.BudgetPercent, tc.cb.MinRetryConcurrency
		f := newCBFront(t, &router.Route{Retry: retry}, upstream.ClusterSpec{Endpoints: []upstream.EndpointSpec{{Address: addr}}, CircuitBreakers: &cb})
		code, _, _ := f.get(t)
		if code != http.StatusServiceUnavailable || hits.Load() != tc.wantHits {
			t.Errorf("%s: %d after %d attempts, want 503 after %d", tc.name, code, hits.Load(), tc.wantHits)
		}
		if got := f.stats().RetryOverflow; got != tc.wantOverflow {
			t.Errorf("%s: upstream_rq_retry_overflow = %d, want %d", tc.name, got, tc.wantOverflow)
		}
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	for _, tc := range []struct {
		max       uint32
		wantConns int32
	}{{0, 1}, {1, 3}, {2, 2}} {
		addr, conns := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{Endpoints: []upstream.EndpointSpec{{Address: addr}}, MaxRequestsPerConnection: tc.max})
		for range 3 {
			if code, _, _ := f.get(t); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
		}
		if n := conns.Load(); n != tc.wantConns {
			t.Errorf("max_requests_per_connection %d: %d connections for 3 requests, want %d", tc.max, n, tc.wantConns)
		}
	}
}

func TestIdleTimeoutClosesPooledConnections(t *testing.T) {
	addr, conns := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{Endpoints: []upstream.EndpointSpec{{Address: addr}}, IdleTimeout: 50 * time.Millisecond})
	f.get(t)
	time.Sleep(150 * time.Millisecond)
	f.get(t)
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the first closed after idling past idle_timeout)", n)
	}
}

// whoBackend answers with its name and status.
func whoBackend(t *testing.T, name string, status *atomic.Int32) string {
	t.Helper()
	addr, _ := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, name)
	})
	return addr
}

func TestOutlierDetectionEjectsAndReturns(t *testing.T) {
	var goodStatus, badStatus atomic.Int32
	goodStatus.Store(200)
	badStatus.Store(503)
	good, bad := whoBackend(t, "good", &goodStatus), whoBackend(t, "bad", &badStatus)
	od := upstream.DefaultOutlierDetection()
	od.Consecutive5xx, od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = 3, 20*time.Millisecond, 300*time.Millisecond, 50
	f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{LB: upstream.RoundRobin, Outlier: &od,
		Endpoints: []upstream.EndpointSpec{{Address: good}, {Address: bad}}})
	// Round robin alternates: the bad endpoint sees its third 503 within
	// six requests and is ejected.
	for range 6 {
		f.get(t)
	}
	st := f.stats()
	if st.EjectionsEnforced != 1 || st.EjectionsActive != 1 || st.EjectionsEnforced5xx != 1 {
		t.Fatalf("ejections enforced %d (5xx %d), active %d; want 1, 1, 1", st.EjectionsEnforced, st.EjectionsEnforced5xx, st.EjectionsActive)
	}
	// A new configuration version keeping the endpoint keeps the ejection.
	f.rebuild()
	for i := range 10 {
		if code, body, _ := f.get(t); code != 200 || body != "good" {
			t.Fatalf("request %d while bad is ejected: %d %q", i, code, body)
		}
	}
	// The backend recovers; after base_ejection_time it gets traffic again.
	badStatus.Store(200)
	eventually(t, "the ejected endpoint to return", func() bool {
		_, body, _ := f.get(t)
		return body == "bad"
	})
	if st := f.stats(); st.EjectionsActive != 0 {
		t.Errorf("ejections_active = %d after the return", st.EjectionsActive)
	}
}

func TestOutlierDetectionPanicMode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold *float64
		wantBody  string
	}{
		{"default threshold: panic, traffic to all", nil, "backend"},
		{"threshold 0: no panic, no healthy upstream", new(float64), "no healthy upstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status atomic.Int32
			status.Store(502)
			a, b := whoBackend(t, "backend", &status), whoBackend(t, "backend", &status)
			od := upstream.DefaultOutlierDetection()
			od.Consecutive5xx, od.ConsecutiveGatewayFailure, od.EnforcingGatewayFailure = 2, 100, 100
			od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = time.Hour, time.Hour, 100
			f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{LB: upstream.RoundRobin, Outlier: &od, HealthyPanicThreshold: tc.threshold,
				Endpoints: []upstream.EndpointSpec{{Address: a}, {Address: b}}})
			for i := 0; f.stats().EjectionsActive < 2; i++ {
				if i > 20 {
					t.Fatalf("ejections_active %d after %d requests", f.stats().EjectionsActive, i)
				}
				f.get(t)
			}
			code, body, _ := f.get(t)
			if code != http.StatusServiceUnavailable && code != http.StatusBadGateway || !strings.Contains(body, tc.wantBody) {
				t.Errorf("with every endpoint ejected: %d %q, want a body with %q", code, body, tc.wantBody)
			}
			if panics := f.stats().LBHealthyPanic; (tc.threshold == nil) != (panics > 0) {
				t.Errorf("lb_healthy_panic = %d", panics)
			}
		})
	}
}

// With split_external_local_origin_errors, connect failures eject an
// endpoint through the local origin detector (consecutive 5xx never sees
// them) and a 5xx answer counts on its own; without it, they count as
// 503s on the 5xx detector, as in Envoy.
func TestOutlierDetectionLocalOrigin(t *testing.T) {
	for _, split := range []bool{true, false} {
		t.Run(fmt.Sprint("split=", split), func(t *testing.T) {
			var ok atomic.Int32
			ok.Store(200)
			good := whoBackend(t, "good", &ok)
			od := upstream.DefaultOutlierDetection()
			od.Consecutive5xx, od.ConsecutiveGatewayFailure = 3, 3
			od.SplitLocalOrigin, od.ConsecutiveLocalOriginFailure = split, 2
			od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = time.Hour, time.Hour, 50
			f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{LB: upstream.RoundRobin, Outlier: &od,
				Endpoints: []upstream.EndpointSpec{{Address: good}, {Address: deadAddr(t)}}})
			// Round robin alternates: the dead endpoint fails its second
			// connection within four requests, its third within six.
			for range 4 {
				f.get(t)
			}
			st := f.stats()
			if split {
				if st.EjectionsActive != 1 || st.EjectionsEnforcedLocalOriginFailure != 1 || st.EjectionsDetected5xx != 0 {
					t.Fatalf("after two connect failures: ejected %d, local origin %d, 5xx detected %d; want 1, 1, 0",
						st.EjectionsActive, st.EjectionsEnforcedLocalOriginFailure, st.EjectionsDetected5xx)
				}
			} else {
				if st.EjectionsActive != 0 {
					t.Fatalf("ejected after two connect failures, with consecutive5xx 3 and no split")
				}
				f.get(t)
				f.get(t)
				st = f.stats()
				if st.EjectionsActive != 1 || st.EjectionsEnforced5xx != 1 || st.EjectionsDetectedLocalOriginFailure != 0 {
					t.Fatalf("after three connect failures: ejected %d, 5xx %d, local origin detected %d; want 1, 1, 0",
						st.EjectionsActive, st.EjectionsEnforced5xx, st.EjectionsDetectedLocalOriginFailure)
				}
			}
			for i := range 6 {
				if code, body, _ := f.get(t); code != 200 || body != "good" {
					t.Fatalf("request %d with the dead endpoint ejected: %d %q", i, code, body)
				}
			}
		})
	}
}

// With the split, a 5xx answer is an external error: the 5xx detector
// counts it, the local origin detector does not.
func TestOutlierDetectionSplitCounts5xx(t *testing.T) {
	var bad atomic.Int32
	bad.Store(500)
	b := whoBackend(t, "bad", &bad)
	od := upstream.DefaultOutlierDetection()
	od.Consecutive5xx, od.SplitLocalOrigin, od.ConsecutiveLocalOriginFailure = 2, true, 1
	od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = time.Hour, time.Hour, 100
	f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{Outlier: &od, Endpoints: []upstream.EndpointSpec{{Address: b}}})
	f.get(t)
	if st := f.stats(); st.EjectionsActive != 0 {
		t.Fatal("one 500 ejected the endpoint (consecutive5xx 2; local origin must not count answers)")
	}
	f.get(t)
	if st := f.stats(); st.EjectionsEnforced5xx != 1 || st.EjectionsDetectedLocalOriginFailure != 0 {
		t.Fatalf("after two 500s: 5xx ejections %d, local origin detected %d; want 1, 0", st.EjectionsEnforced5xx, st.EjectionsDetectedLocalOriginFailure)
	}
}

// With the split, a connection that is made and then broken counts once:
// the connection itself is a local origin success first, as in Envoy. So
// resets in a row never reach a threshold of 2, and reach one of 1.
func TestOutlierDetectionSplitResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close() // no answer, ever
		}
	}()
	for _, tc := range []struct {
		threshold   uint32
		wantEjected int64
	}{{2, 0}, {1, 1}} {
		od := upstream.DefaultOutlierDetection()
		od.SplitLocalOrigin, od.ConsecutiveLocalOriginFailure = true, tc.threshold
		od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = time.Hour, time.Hour, 100
		f := newCBFront(t, &router.Route{}, upstream.ClusterSpec{Outlier: &od, Endpoints: []upstream.EndpointSpec{{Address: ln.Addr().String()}}})
		for range 4 {
			if code, _, _ := f.get(t); code != http.StatusServiceUnavailable {
				t.Fatalf("a backend that closes every connection: %d, want 503", code)
			}
			if f.stats().EjectionsActive > 0 {
				break
			}
		}
		if st := f.stats(); st.EjectionsActive != tc.wantEjected {
			t.Errorf("threshold %d: %d ejected after resets in a row, want %d", tc.threshold, st.EjectionsActive, tc.wantEjected)
		}
	}
}

// A request that times out while it still waits for a connection (the
// cluster's only one is busy) never reached the endpoint: outlier
// detection does not hold it against it, as in Envoy.
func TestTimeoutWhilePendingIsNotTheEndpoints(t *testing.T) {
	release := make(chan struct{})
	var served atomic.Int32
	b, _ := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 1 {
			<-release
		}
		io.WriteString(w, "ok")
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	od := upstream.DefaultOutlierDetection()
	od.Consecutive5xx, od.ConsecutiveGatewayFailure = 1, 1
	od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = time.Hour, time.Hour, 100
	pools := upstream.NewPools(upstream.PoolsOptions{})
	t.Cleanup(pools.Close)
	fwd := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Outlier: &od,
		CircuitBreakers: &upstream.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 10, MaxRequests: 100, MaxRetries: 3},
		Endpoints:       []upstream.EndpointSpec{{Address: b}}}})})
	// The first request has no timeout and holds the only connection; the
	// second has 100 ms to get one.
	slow, quick := &router.Route{Cluster: "c"}, &router.Route{Cluster: "c", Timeout: 100 * time.Millisecond}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := slow
		if r.Header.Get("Quick") != "" {
			route = quick
		}
		fwd.Serve(&chain.Exchange{W: w, R: r, Route: route, RouteConfig: "rc"})
	}))
	t.Cleanup(front.Close)
	t.Cleanup(unblock) // first: the servers' Close waits for their handlers
	first := make(chan int, 1)
	go func() { code, _, _ := do(t, mustReq(t, "GET", front.URL+"/")); first <- code }()
	eventually(t, "the first request to hold the only connection", func() bool { return served.Load() == 1 })
	req := mustReq(t, "GET", front.URL+"/")
	req.Header.Set("Quick", "1")
	if code, _, _ := do(t, req); code != http.StatusGatewayTimeout {
		t.Fatalf("a request waiting for the busy connection: %d, want 504", code)
	}
	if st := pools.Stats()["c"]; st.EjectionsActive != 0 {
		t.Fatalf("the endpoint was ejected for a request that never reached it (%+v)", st)
	}
	unblock()
	if code := <-first; code != http.StatusOK {
		t.Errorf("the first request: %d, want 200", code)
	}
}
