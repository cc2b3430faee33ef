package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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
)

// countingServer is a backend that counts the TCP connections it accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
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
	return s, &conns
}

func endpointFor(t *testing.T, addr string, o PoolsOptions) *Endpoint {
	t.Helper()
	p := NewPools(o)
	t.Cleanup(p.Close)
	return build(t, p, RoundRobin, EndpointSpec{Address: addr}).Pick(nil)
}

func get(t *testing.T, ep *Endpoint, method, path string, body []byte) (int, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+ep.Address()+path, nil)
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	resp, err := ep.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestLeanPoolReusesAndClosesConnections(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		method    string
		body      []byte
		wantBody  string
		wantConns int32
	}{
		{"content-length reused", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, "GET", nil, "hello", 1},
		{"chunked reused", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		}, "GET", nil, "ab", 1},
		{"HEAD reused", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "5") }, "HEAD", nil, "", 1},
		{"POST body echoed, reused", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }, "POST", []byte("payload"), "payload", 1},
		{"Connection: close not reused", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}, "GET", nil, "bye", 3},
		{"100 Continue skipped", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusContinue)
			io.WriteString(w, "after")
		}, "GET", nil, "after", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, conns := countingServer(t, tc.handler)
			ep := endpointFor(t, strings.TrimPrefix(s.URL, "http://"), PoolsOptions{})
			for i := range 3 {
				code, body, err := get(t, ep, tc.method, "/", tc.body)
				if err != nil || code != 200 || body != tc.wantBody {
					t.Fatalf("request %d: %d %q %v; want 200 %q", i, code, body, err, tc.wantBody)
				}
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("backend saw %d connections, want %d", got, tc.wantConns)
			}
		})
	}
}

// TestLeanPoolReplacesConnectionClosedWhileIdle: a backend that closes
// keep-alive connections between requests must not turn into errors, for
// requests with and without a body.
func TestLeanPoolReplacesConnectionClosedWhileIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				// One request per connection, answered as keep-alive, then
				// closed: what a backend with a short idle timeout does.
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	ep := endpointFor(t, ln.Addr().String(), PoolsOptions{})
	for i, body := range [][]byte{nil, nil, []byte("x"), []byte("y"), nil} {
		code, got, err := get(t, ep, map[bool]string{true: "GET", false: "POST"}[body == nil], "/", body)
		if err != nil || code != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, got, err)
		}
		time.Sleep(5 * time.Millisecond) // let the close arrive
	}
	if got := conns.Load(); got != 5 {
		t.Errorf("backend saw %d connections, want 5", got)
	}
}

// slowServer is a counting server that answers "ok" at once, but to /slow
// only when the request's context ends or the test does. It returns the
// server's host:port.
func slowServer(t *testing.T) (string, *atomic.Int32) {
	release := make(chan struct{})
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	t.Cleanup(func() { close(release) })
	return strings.TrimPrefix(s.URL, "http://"), conns
}

// slowEndpoint is an endpoint of a slowServer.
func slowEndpoint(t *testing.T) (*Endpoint, *atomic.Int32) {
	addr, conns := slowServer(t)
	return endpointFor(t, addr, PoolsOptions{}), conns
}

func TestLeanPoolContextCancelAbortsAndDiscards(t *testing.T) {
	ep, conns := slowEndpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ep.Address()+"/slow", nil)
	start := time.Now()
	_, err := ep.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("round trip took %v after its context ended", d)
	}
	// The aborted connection is not reused.
	if code, body, err := get(t, ep, "GET", "/", nil); err != nil || code != 200 || body != "ok" {
		t.Fatalf("next request: %d %q %v", code, body, err)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("backend saw %d connections, want 2", got)
	}
}

func TestLeanPoolClosesIdleAfterTimeout(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ep := endpointFor(t, strings.TrimPrefix(s.URL, "http://"), PoolsOptions{IdleConnTimeout: 20 * time.Millisecond})
	get(t, ep, "GET", "/", nil)
	deadline := time.Now().Add(2 * time.Second)
	for {
		ep.h1.mu.Lock()
		n := len(ep.h1.idle)
		ep.h1.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed after the idle timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _, err := get(t, ep, "GET", "/", nil); err != nil || code != 200 {
		t.Fatalf("after reaping: %d %v", code, err)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("backend saw %d connections, want 2", got)
	}
}

// BenchmarkRoundTrip compares the lean pool with net/http's Transport for
// a small GET over a kept-alive loopback connection.
func BenchmarkRoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer s.Close()
	p := NewPools(PoolsOptions{})
	defer p.Close()
	ep := p.Build([]ClusterSpec{{Name: "c", Endpoints: []EndpointSpec{{Address: strings.TrimPrefix(s.URL, "http://")}}}})["c"].Pick(nil)
	for _, bc := range []struct {
		name string
		rt   func(*http.Request) (*http.Response, error)
	}{{"lean", ep.RoundTrip}, {"transport", ep.httpTransport().RoundTrip}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 4096)
			for b.Loop() {
				req, _ := http.NewRequest("GET", s.URL+"/", nil)
				resp, err := bc.rt(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		})
	}
}

// TestLeanPoolKeepsUnclosedResponses: a response whose body was read to
// its end releases the connection at once, but the connection's next
// exchange must not overwrite that response while its reader has not
// closed it.
func TestLeanPoolKeepsUnclosedResponses(t *testing.T) {
	var n atomic.Int32
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("X-N", fmt.Sprint(i))
		fmt.Fprintf(w, "body %d", i)
	})
	ep := endpointFor(t, strings.TrimPrefix(s.URL, "http://"), PoolsOptions{})
	roundTrip := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+"/", nil)
		resp, err := ep.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := roundTrip()
	if b, err := io.ReadAll(first.Body); err != nil || string(b) != "body 1" {
		t.Fatalf("first body %q %v", b, err)
	}
	second := roundTrip() // on the same connection, first still open
	if got := first.Header.Get("X-N"); got != "1" || first.StatusCode != 200 {
		t.Errorf("first response changed by the next exchange: X-N %q, status %d", got, first.StatusCode)
	}
	if b, err := io.ReadAll(second.Body); err != nil || string(b) != "body 2" || second.Header.Get("X-N") != "2" {
		t.Fatalf("second: %q %v X-N %q", b, err, second.Header.Get("X-N"))
	}
	first.Body.Close()
	second.Body.Close()
	third := roundTrip()
	if b, err := io.ReadAll(third.Body); err != nil || string(b) != "body 3" || third.Header.Get("X-N") != "3" {
		t.Fatalf("third: %q %v X-N %q", b, err, third.Header.Get("X-N"))
	}
	third.Body.Close()
	if got := conns.Load(); got != 1 {
		t.Errorf("backend saw %d connections, want 1", got)
	}
}

// testInterrupter is an Interrupter whose Watch takes an exchange only when
// free is set; it records what it was asked.
type testInterrupter struct {
	context.Context
	free              bool
	mu                sync.Mutex
	watched           interface{ Interrupt() }
	watches, unwatchs int
}

func (c *testInterrupter) Watch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.free || c.watched != nil || c.Err() != nil {
		return false
	}
	c.watched = x
	c.watches++
	return true
}

func (c *testInterrupter) Unwatch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched == x {
		c.watched = nil
	}
	c.unwatchs++
	return c.Err() == nil
}

// end cancels the context, as the lean server's connection context does,
// and interrupts what it watches.
func (c *testInterrupter) end(cancel context.CancelFunc) {
	cancel()
	c.mu.Lock()
	x := c.watched
	c.watched = nil
	c.mu.Unlock()
	if x != nil {
		x.Interrupt()
	}
}

// TestLeanPoolInterrupterContext: a request whose context is an Interrupter
// is watched by it (no context.AfterFunc), released when the exchange ends,
// and interrupted when the context ends; a context that will not take the
// exchange still ends it, through context.AfterFunc.
func TestLeanPoolInterrupterContext(t *testing.T) {
	ep, conns := slowEndpoint(t)
	roundTrip := func(ctx context.Context, path string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ep.Address()+path, nil)
		resp, err := ep.RoundTrip(req)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b), err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ir := &testInterrupter{Context: ctx, free: true}
	if body, err := roundTrip(ir, "/"); err != nil || body != "ok" {
		t.Fatalf("request: %q %v", body, err)
	}
	if ir.watches != 1 || ir.unwatchs != 1 || ir.watched != nil {
		t.Fatalf("watched %d times, unwatched %d, still watching %v; want once each, nothing left", ir.watches, ir.unwatchs, ir.watched)
	}

	for _, free := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		ir := &testInterrupter{Context: ctx, free: free}
		time.AfterFunc(50*time.Millisecond, func() { ir.end(cancel) })
		_, err := roundTrip(ir, "/slow")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("free %v: err = %v; want the context's error", free, err)
		}
		if want := map[bool]int{true: 1, false: 0}[free]; ir.watches != want {
			t.Errorf("free %v: watched %d times, want %d", free, ir.watches, want)
		}
	}
	// The interrupted connections were not reused.
	if body, err := roundTrip(context.Background(), "/"); err != nil || body != "ok" {
		t.Fatalf("next request: %q %v", body, err)
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("backend saw %d connections, want 3", got)
	}
}

func TestTCPConnectionsCountAgainstMaxConnections(t *testing.T) {
	// max_connections 2: a request holds one connection, a TCP proxy
	// connection the other, so a second request waits; when the TCP
	// connection ends, the waiting request gets the freed slot at once.
	addr, conns := slowServer(t)
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	c := p.Build([]ClusterSpec{{Name: "c", Endpoints: []EndpointSpec{{Address: addr}},
		CircuitBreakers: &CircuitBreakers{MaxConnections: 2, MaxPendingRequests: 10, MaxRequests: 10, MaxRetries: 1}}})["c"]
	ep := c.Pick(nil)
	go get(t, ep, "GET", "/slow", nil)
	waitUntil(t, func() bool { return conns.Load() == 1 }, "the slow request's connection to open")

	if err := c.BeginConnection(); err != nil {
		t.Fatalf("BeginConnection with one of two connections open: %v", err)
	}
	var oe *OverflowError
	if err := c.BeginConnection(); !errors.As(err, &oe) || oe.Limit != LimitMaxConnections {
		t.Fatalf("BeginConnection with both open = %v, want a max_connections overflow", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := get(t, ep, "GET", "/fast", nil)
		done <- err
	}()
	waitUntil(t, func() bool { return c.Stats().Snapshot().CxOverflow == 2 }, "the second request to wait for a connection")
	select {
	case err := <-done:
		t.Fatalf("the second request finished (%v) while both connections were taken", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.EndConnection()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("second request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second request still waits after the TCP connection ended")
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// postStream sends a body of unknown length, which goes through the
// endpoint's net/http Transport rather than the lean pool.
func postStream(ctx context.Context, ep *Endpoint, path string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ep.Address()+path, io.NopCloser(strings.NewReader("streamed")))
	req.ContentLength = -1
	resp, err := ep.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func TestTransportConnectionsCountAgainstMaxConnections(t *testing.T) {
	newCluster := func(t *testing.T, addr string, connectTimeout time.Duration) *Cluster {
		p := NewPools(PoolsOptions{})
		t.Cleanup(p.Close)
		return p.Build([]ClusterSpec{{Name: "c", ConnectTimeout: connectTimeout, Endpoints: []EndpointSpec{{Address: addr}},
			CircuitBreakers: &CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 10, MaxRequests: 10, MaxRetries: 1}}})["c"]
	}
	finishes := func(t *testing.T, done <-chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still waits", what)
		}
	}
	waits := func(t *testing.T, c *Cluster, done <-chan error, what string) {
		t.Helper()
		waitUntil(t, func() bool { return c.Stats().Snapshot().CxOverflow == 1 }, what+" to wait for a connection")
		select {
		case err := <-done:
			t.Fatalf("%s finished (%v) while the only connection was taken", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}

	t.Run("a streamed request holds the slot", func(t *testing.T) {
		addr, conns := slowServer(t)
		c := newCluster(t, addr, 0)
		ep := c.Pick(nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go postStream(ctx, ep, "/slow")
		waitUntil(t, func() bool { return conns.Load() == 1 }, "the streamed request's connection to open")
		done := make(chan error, 1)
		go func() { _, _, err := get(t, ep, "GET", "/fast", nil); done <- err }()
		waits(t, c, done, "a lean request")
		cancel() // the Transport closes the streamed request's connection
		finishes(t, done, "the lean request after the streamed one ended")
	})

	t.Run("a lean request holds the slot", func(t *testing.T) {
		addr, conns := slowServer(t)
		c := newCluster(t, addr, 0)
		ep := c.Pick(nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ep.Address()+"/slow", nil)
		go ep.RoundTrip(req)
		waitUntil(t, func() bool { return conns.Load() == 1 }, "the lean request's connection to open")
		done := make(chan error, 1)
		go func() { _, err := postStream(context.Background(), ep, "/fast"); done <- err }()
		waits(t, c, done, "a streamed request")
		cancel()
		finishes(t, done, "the streamed request after the lean one ended")
	})

	t.Run("idle connections of one pool give way to the other", func(t *testing.T) {
		addr, conns := slowServer(t)
		ep := newCluster(t, addr, 0).Pick(nil)
		for i, send := range []func() error{
			func() error { _, _, err := get(t, ep, "GET", "/", nil); return err },
			func() error { _, err := postStream(context.Background(), ep, "/"); return err },
			func() error { _, _, err := get(t, ep, "GET", "/", nil); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- send() }()
			finishes(t, done, fmt.Sprintf("request %d, with the other pool's connection idle", i+1))
		}
		if got := conns.Load(); got != 3 {
			t.Errorf("backend saw %d connections, want 3 (each idle one closed for the next)", got)
		}
	})

	t.Run("a streamed request waits no longer than the connect timeout", func(t *testing.T) {
		addr, conns := slowServer(t)
		c := newCluster(t, addr, 100*time.Millisecond)
		ep := c.Pick(nil)
		go get(t, ep, "GET", "/slow", nil)
		waitUntil(t, func() bool { return conns.Load() == 1 }, "the lean request's connection to open")
		_, err := postStream(context.Background(), ep, "/fast")
		var oe *OverflowError
		if !errors.As(err, &oe) || oe.Limit != LimitMaxConnections {
			t.Fatalf("streamed request at the limit = %v, want a max_connections overflow", err)
		}
	})
}

// endConnectionWakes fills the last slot of c (a TCP connection holds
// another) with a slow request to ep, queues a second request to ep, and
// checks that end, which ends the TCP connection, lets it through.
func endConnectionWakes(t *testing.T, conns *atomic.Int32, c *Cluster, ep *Endpoint, end func(), stuck string) {
	t.Helper()
	go get(t, ep, "GET", "/slow", nil)
	waitUntil(t, func() bool { return conns.Load() == 1 }, "the slow request's connection to open")
	done := make(chan error, 1)
	go func() {
		_, _, err := get(t, ep, "GET", "/fast", nil)
		done <- err
	}()
	waitUntil(t, func() bool { return c.Stats().Snapshot().CxOverflow == 1 }, "the second request to wait for a connection")
	end()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("second request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(stuck)
	}
}

var twoConnections = &CircuitBreakers{MaxConnections: 2, MaxPendingRequests: 10, MaxRequests: 10, MaxRetries: 1}

// A TCP connection that began under an older configuration of the cluster
// wakes, when it ends, the requests waiting in the newest one's endpoints.
func TestEndConnectionWakesTheNewestConfiguration(t *testing.T) {
	addr, conns := slowServer(t)
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	spec := func(idle time.Duration) []ClusterSpec {
		return []ClusterSpec{{Name: "c", IdleTimeout: idle, Endpoints: []EndpointSpec{{Address: addr}}, CircuitBreakers: twoConnections}}
	}
	old := p.Build(spec(time.Minute))["c"]
	if err := old.BeginConnection(); err != nil {
		t.Fatal(err)
	}
	// New settings: a new endpoint (and pool) for the same address.
	c := p.Build(spec(2 * time.Minute))["c"]
	endConnectionWakes(t, conns, c, c.Pick(nil), old.EndConnection,
		"the request in the new configuration still waits after the old configuration's TCP connection ended")
}

// A TCP connection that ends frees a slot for requests waiting on an
// ORIGINAL_DST cluster's destinations too, which are not configured
// endpoints but made per destination.
func TestEndConnectionWakesOriginalDestinations(t *testing.T) {
	addr, conns := slowServer(t)
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	c := p.Build([]ClusterSpec{{Name: "passthrough", OriginalDst: true, CircuitBreakers: twoConnections}})["passthrough"]
	if err := c.BeginConnection(); err != nil {
		t.Fatal(err)
	}
	endConnectionWakes(t, conns, c, c.EndpointFor(addr), c.EndConnection,
		"the request to an original destination still waits after a TCP connection of its cluster ended")
}

// Only a connection that is new or was idle briefly sends its request from
// the read that waits for the answer (holdWithin).
func TestHoldOnlyOnRecentlyUsedConnections(t *testing.T) {
	addr, _ := slowServer(t)
	ep := endpointFor(t, addr, PoolsOptions{})
	if _, _, err := get(t, ep, "GET", "/", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		idle time.Duration
		want bool
	}{{0, true}, {holdWithin + time.Second, false}} {
		ep.h1.mu.Lock()
		if len(ep.h1.idle) != 1 {
			ep.h1.mu.Unlock()
			t.Fatalf("%d idle connections, want 1", len(ep.h1.idle))
		}
		ep.h1.idle[0].idleAt = time.Now().Add(-c.idle)
		ep.h1.mu.Unlock()
		pc := ep.h1.takeIdle(false)
		if pc == nil || pc.holdOK != c.want {
			t.Fatalf("a connection idle %v: holdOK = %v, want %v", c.idle, pc != nil && pc.holdOK, c.want)
		}
		ep.h1.put(pc)
	}
}
