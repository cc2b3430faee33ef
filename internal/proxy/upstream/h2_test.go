package upstream

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// protoServer answers with the HTTP version each request came in with; it
// speaks HTTP/1.1 and HTTP/2 with prior knowledge on the same port, as a
// weft-proxy inbound listener does.
func protoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Proto, r.Header.Get("X-Test"), len(b))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// protoOf sends one request through ep to protoServer at addr, with
// others more requests counted in flight on ep, and returns the HTTP
// version the server saw.
func protoOf(t *testing.T, ep *Endpoint, addr string, others int) string {
	t.Helper()
	for range others {
		ep.Begin()
	}
	defer func() {
		for range others {
			ep.End()
		}
	}()
	if err := ep.BeginRequest(); err != nil {
		t.Fatal(err)
	}
	defer ep.EndRequest()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	resp, err := ep.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	proto, _, _ := strings.Cut(string(b), " ")
	return proto
}

func TestClusterProtocol(t *testing.T) {
	addr := protoServer(t)
	for _, tc := range []struct {
		protocol  Protocol
		reqMajor  int
		upgrade   bool
		wantProto string
	}{
		{HTTP1, 1, false, "HTTP/1.1"},
		{HTTP2, 1, false, "HTTP/2.0"},
		{HTTP2, 1, true, "HTTP/1.1"}, // an Upgrade request keeps HTTP/1.1
		{Downstream, 1, false, "HTTP/1.1"},
		{Downstream, 2, false, "HTTP/2.0"},
	} {
		t.Run(fmt.Sprintf("%s request HTTP/%d upgrade %v", tc.protocol, tc.reqMajor, tc.upgrade), func(t *testing.T) {
			p := NewPools(PoolsOptions{})
			t.Cleanup(p.Close)
			c := p.Build([]ClusterSpec{{Name: "c", Protocol: tc.protocol, Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
			ep := c.Pick(nil)
			var wg sync.WaitGroup
			errs := make(chan error, 21)
			// One request first, then twenty at once: over HTTP/2 they
			// share its connection.
			for i := range 21 {
				wg.Add(1)
				send := func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
					req.ProtoMajor = tc.reqMajor
					req.Header.Set("X-Test", fmt.Sprint(i))
					if tc.upgrade {
						req.Header.Set("Upgrade", "websocket")
					}
					resp, err := ep.RoundTrip(req)
					if err != nil {
						errs <- err
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf("%s %d 0", tc.wantProto, i); string(b) != want {
						errs <- fmt.Errorf("answered %q, want %q", b, want)
					}
				}
				if i == 0 {
					send()
				} else {
					go send()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			h2 := c.Stats().Snapshot().CxHTTP2
			if tc.wantProto == "HTTP/2.0" && h2 != 1 {
				t.Errorf("%d HTTP/2 connections for one request and then 20 at once, want 1 carrying them all", h2)
			}
			if tc.wantProto != "HTTP/2.0" && h2 != 0 {
				t.Errorf("%d HTTP/2 connections, want none", h2)
			}
		})
	}
}

// TestHTTP2ConnectionsFollowDemand: ten requests at once to an endpoint
// with no connection yet share one HTTP/2 connection (net/http would dial
// one per request); a connection whose streams are all in use is joined by
// another rather than making requests wait.
func TestHTTP2ConnectionsFollowDemand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	hold := make(chan struct{})
	srv := &http.Server{Protocols: p, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 10},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				<-hold
			}
			io.WriteString(w, "ok")
		})}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	burst := func(t *testing.T, c *Cluster, path string, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
				resp, err := c.Pick(nil).RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				io.ReadAll(resp.Body)
				resp.Body.Close()
			}()
		}
		if path == "/hold" {
			time.Sleep(200 * time.Millisecond)
			close(hold)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	t.Run("cold burst", func(t *testing.T) {
		pools := NewPools(PoolsOptions{})
		defer pools.Close()
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
		burst(t, c, "/", 10) // as many as a connection's streams
		if n := c.Stats().Snapshot().CxHTTP2; n != 1 {
			t.Errorf("%d HTTP/2 connections for 10 requests at once, want 1", n)
		}
	})
	t.Run("beyond the stream limit", func(t *testing.T) {
		pools := NewPools(PoolsOptions{})
		defer pools.Close()
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
		burst(t, c, "/hold", 30) // 30 held at once, 10 streams per connection
		if n := c.Stats().Snapshot().CxHTTP2; n < 3 {
			t.Errorf("%d HTTP/2 connections carried 30 requests held at once with 10 streams each, want at least 3", n)
		}
	})
}

// TestHTTP2FailedDialSharedByWaiters: requests that waited for a dial that
// failed fail with it, rather than dialing one after another (each waiting
// its connect timeout against an endpoint that never answers as HTTP/2).
func TestHTTP2FailedDialSharedByWaiters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	pools := NewPools(PoolsOptions{})
	defer pools.Close()
	c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, ConnectTimeout: 300 * time.Millisecond,
		Endpoints: []EndpointSpec{{Address: ln.Addr().String()}}}})["c"]
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
			resp, err := c.Pick(nil).RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("a request to an endpoint that never sent its HTTP/2 settings succeeded")
		}
	}
	if n := len(accepted); n != 1 {
		t.Errorf("%d connections for 5 requests at once to an endpoint whose first dial failed, want 1", n)
	}
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
}

// TestHTTP2MaxRequestsPerConnection: max_requests_per_connection holds
// over HTTP/2 too: a connection carries that many requests, then closes.
func TestHTTP2MaxRequestsPerConnection(t *testing.T) {
	addr := protoServer(t)
	for _, tc := range []struct{ max, requests, wantConns uint32 }{{1, 3, 3}, {2, 5, 3}, {0, 5, 1}} {
		pools := NewPools(PoolsOptions{})
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, MaxRequestsPerConnection: tc.max,
			Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
		for i := range tc.requests {
			if got := protoOf(t, c.Pick(nil), addr, 0); got != "HTTP/2.0" {
				t.Fatalf("max %d, request %d: %s, want HTTP/2.0", tc.max, i, got)
			}
		}
		if n := c.Stats().Snapshot().CxHTTP2; n != uint64(tc.wantConns) {
			t.Errorf("max_requests_per_connection %d: %d HTTP/2 connections for %d requests, want %d", tc.max, n, tc.requests, tc.wantConns)
		}
		pools.Close()
	}
}

// TestH2WhenBusy: with PoolsOptions.H2WhenBusy, a request for an HTTP/2
// cluster's endpoint that a mesh proxy serves goes over HTTP/1.1 while few
// are in flight to it, and over HTTP/2 once more are; an endpoint not
// marked so speaks HTTP/2 always (it may speak nothing else).
func TestH2WhenBusy(t *testing.T) {
	addr := protoServer(t)
	pools := NewPools(PoolsOptions{H2WhenBusy: 2})
	defer pools.Close()
	cs := pools.Build([]ClusterSpec{
		{Name: "c", Protocol: HTTP2, Endpoints: []EndpointSpec{{Address: addr, Sidecar: true}}},
		{Name: "plain", Protocol: HTTP2, Endpoints: []EndpointSpec{{Address: addr}}},
	})
	ep := cs["c"].Pick(nil)
	for _, tc := range []struct {
		others int
		want   string
	}{{0, "HTTP/1.1"}, {1, "HTTP/1.1"}, {2, "HTTP/2.0"}, {5, "HTTP/2.0"}} {
		if got := protoOf(t, ep, addr, tc.others); got != tc.want {
			t.Errorf("with %d other requests in flight: %s, want %s", tc.others, got, tc.want)
		}
	}
	if got := protoOf(t, cs["plain"].Pick(nil), addr, 0); got != "HTTP/2.0" {
		t.Errorf("an HTTP/2 cluster's endpoint not marked Sidecar, alone: %s, want HTTP/2.0", got)
	}
	// A request that takes trailers (gRPC) stays on HTTP/2, alone too:
	// over HTTP/1.1 its trailers would be lost.
	if err := ep.BeginRequest(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set("Te", "trailers")
	resp, err := ep.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ep.EndRequest()
	if !strings.HasPrefix(string(b), "HTTP/2.0") {
		t.Errorf("a request with TE: trailers, alone: %.20s, want HTTP/2.0", b)
	}
}

// TestHTTP2IdleTimeout: an HTTP/2 connection that has carried no stream
// for the cluster's idle timeout closes, as an HTTP/1.1 one does; the next
// request dials a new one.
func TestHTTP2IdleTimeout(t *testing.T) {
	addr := protoServer(t)
	for _, tc := range []struct {
		idle      time.Duration
		wantConns uint64
	}{{100 * time.Millisecond, 2}, {time.Hour, 1}} {
		pools := NewPools(PoolsOptions{})
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, IdleTimeout: tc.idle,
			Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
		protoOf(t, c.Pick(nil), addr, 0)
		time.Sleep(400 * time.Millisecond)
		protoOf(t, c.Pick(nil), addr, 0)
		if n := c.Stats().Snapshot().CxHTTP2; n != tc.wantConns {
			t.Errorf("idle timeout %v, two requests 400ms apart: %d HTTP/2 connections, want %d", tc.idle, n, tc.wantConns)
		}
		pools.Close()
	}
}

// TestH2WhenBusyForSidecars: with PoolsOptions.H2WhenBusy, an HTTP/1.1
// cluster's endpoint that a mesh proxy serves takes HTTP/2 while more than
// that many requests are in flight to it; another endpoint never does.
func TestH2WhenBusyForSidecars(t *testing.T) {
	addr := protoServer(t)
	for _, tc := range []struct {
		sidecar  bool
		busyWant string
	}{{true, "HTTP/2.0"}, {false, "HTTP/1.1"}} {
		pools := NewPools(PoolsOptions{H2WhenBusy: 2})
		c := pools.Build([]ClusterSpec{{Name: "c", Endpoints: []EndpointSpec{{Address: addr, Sidecar: tc.sidecar}}}})["c"]
		ep := c.Pick(nil)
		for _, others := range []int{0, 5} {
			want := "HTTP/1.1"
			if others > 0 {
				want = tc.busyWant
			}
			if got := protoOf(t, ep, addr, others); got != want {
				t.Errorf("sidecar %v, %d other requests in flight: %s, want %s", tc.sidecar, others, got, want)
			}
		}
		pools.Close()
	}
}
