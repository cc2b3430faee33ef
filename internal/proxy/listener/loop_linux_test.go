package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/upstream"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// WEFT_TEST_EVENT_LOOPS=n runs the package's tests with Managers serving
// HTTP/1.x on n event loops (make test runs them both ways).
func init() {
	if n, err := strconv.Atoi(os.Getenv("WEFT_TEST_EVENT_LOOPS")); err == nil {
		testEventLoops = n
	}
}

// loopCounts returns how many requests m's loops served and how many
// connections they handed to the goroutine server, as Stats says.
func loopCounts(t *testing.T, m *Manager) (served, handedOff int) {
	t.Helper()
	st := m.Stats()
	return int(st.EventLoopRequests), int(st.EventLoopHandoffs)
}

// loopProxy is proxyManagerWith on one event loop.
func loopProxy(t *testing.T, backend string, edit func(*routev3.Route)) (*Manager, string) {
	t.Helper()
	m, addr := proxyManagerOpts(t, backend, edit, Options{EventLoops: 1})
	if m.loops == nil {
		t.Fatal("the Manager runs no event loop")
	}
	return m, addr
}

// roundTrip sends one request on c and reads the answer.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", req, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of the answer to %.40q: %v", req, err)
	}
	return resp, string(b)
}

// TestLoopServesRequestsAndHandsOffTheRest: requests without a body are
// served by the loop (pipelined ones in order); a connection whose request
// has a body goes to the goroutine server, which serves it and the
// requests after.
func TestLoopServesRequestsAndHandsOffTheRest(t *testing.T) {
	small := strings.Repeat("0123456789abcdef", 1000)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/16k" {
			w.Header().Set("Content-Length", strconv.Itoa(len(small)))
			io.WriteString(w, small)
			return
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	defer backend.Close()
	m, addr := loopProxy(t, strings.TrimPrefix(backend.URL, "http://"), nil)
	c, br := dialClient(t, addr)
	for _, tc := range []struct{ path, want string }{{"/a", "GET /a "}, {"/16k", small}, {"/b", "GET /b "}} {
		resp, body := roundTrip(t, c, br, "GET "+tc.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != tc.want {
			t.Fatalf("GET %s: %d %.60q, want 200 %.60q", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	// Two requests in one write: two answers, in order.
	io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"GET /p1 ", "GET /p2 "} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("pipelined: %q, want %q", b, want)
		}
	}
	served, handedOff := loopCounts(t, m)
	if served != 5 || handedOff != 0 {
		t.Errorf("the loop served %d requests and handed off %d connections; want 5 and 0", served, handedOff)
	}
	// A body: the connection goes to the goroutine server, for good.
	for _, req := range []string{"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", "GET /d HTTP/1.1\r\nHost: h\r\n\r\n"} {
		resp, body := roundTrip(t, c, br, req)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, req[:6]) {
			t.Fatalf("after the hand-off: %d %q", resp.StatusCode, body)
		}
	}
	if served, handedOff = loopCounts(t, m); served != 5 || handedOff != 1 {
		t.Errorf("the loop served %d requests and handed off %d connections; want 5 and 1", served, handedOff)
	}
}

// TestLoopManyPipelinedRequests: requests sent many at once, and a head
// that arrives a byte at a time, are all answered, in order (the loop
// serves a connection a turn at a time).
func TestLoopManyPipelinedRequests(t *testing.T) {
	_, addr := loopProxy(t, echoBackend(t), func(r *routev3.Route) {
		r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/up"}
	})
	c, br := dialClient(t, addr)
	const n = 500
	var all strings.Builder
	for i := range n {
		path := "/nope" // answered by the loop at once: no route
		if i%50 == 0 {
			path = "/up" // and now and then one that goes upstream
		}
		fmt.Fprintf(&all, "GET %s?i=%d HTTP/1.1\r\nHost: h\r\n\r\n", path, i)
	}
	go io.WriteString(c, all.String())
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := 404
		if i%50 == 0 {
			want = 200
			if !strings.Contains(string(b), fmt.Sprintf("i=%d ", i)) {
				t.Fatalf("response %d is another request's: %q", i, b)
			}
		}
		if resp.StatusCode != want {
			t.Fatalf("response %d: %d %q, want %d", i, resp.StatusCode, b, want)
		}
	}
	req := "GET /up/slow HTTP/1.1\r\nHost: h\r\nX-Val: v\r\n\r\n"
	go func() {
		for i := range len(req) {
			c.Write([]byte{req[i]})
			time.Sleep(time.Millisecond)
		}
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "GET /up/slow v " {
		t.Errorf("a head sent a byte at a time: %d %q", resp.StatusCode, b)
	}
}

// TestLoopStreamsResponses: a response whose body is a stream (chunked and
// still coming, or longer than the loop holds) is passed on as it comes,
// and the connection serves on afterwards.
func TestLoopStreamsResponses(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<20/16)
	huge := strings.Repeat("fedcba9876543210", 5<<20/16)
	next := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-next // the client must have the first event by now
			io.WriteString(w, "data: two\n\n")
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		case "/one-chunk":
			io.WriteString(w, huge) // one chunk, larger than the loop holds
		default:
			io.WriteString(w, "after")
		}
	}))
	defer backend.Close()
	_, addr := loopProxy(t, strings.TrimPrefix(backend.URL, "http://"), func(r *routev3.Route) {
		r.GetRoute().Timeout = durationpb.New(5 * time.Second)
	})
	c, br := dialClient(t, addr)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("data: one\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: one\n\n" {
		t.Fatalf("first event: %q %v", first, err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "data: two\n\n" {
		t.Fatalf("second event: %q %v", rest, err)
	}
	for _, tc := range []struct{ path, want string }{{"/big", big}, {"/one-chunk", huge}, {"/after", "after"}} {
		resp, body := roundTrip(t, c, br, "GET "+tc.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != tc.want {
			t.Fatalf("GET %s: %d %d bytes %.30q, want 200 and %d bytes", tc.path, resp.StatusCode, len(body), body, len(tc.want))
		}
	}
}

// TestLoopTimeoutsAndRetries: a route's timeout answers 504 from the loop,
// a retriable answer is retried there, and a dead upstream gets the same
// 503 as on the goroutine server.
func TestLoopTimeoutsAndRetries(t *testing.T) {
	var calls, streamCalls atomic.Int32
	release := make(chan struct{})
	defer close(release)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/flaky":
			if calls.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "second try")
		case "/flaky-stream":
			if streamCalls.Add(1) == 1 {
				// A 503 whose body is still coming: retried on its head.
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			io.WriteString(w, "streamed retry")
		}
	}))
	defer backend.Close()
	_, addr := loopProxy(t, strings.TrimPrefix(backend.URL, "http://"), func(r *routev3.Route) {
		a := r.GetRoute()
		a.Timeout = durationpb.New(200 * time.Millisecond)
		a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(2)}
	})
	c, br := dialClient(t, addr)
	start := time.Now()
	resp, body := roundTrip(t, c, br, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout || body != "upstream request timeout\n" {
		t.Errorf("slow upstream: %d %q, want 504 upstream request timeout", resp.StatusCode, body)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("504 after %v, before the route's 200ms timeout", el)
	}
	resp, body = roundTrip(t, c, br, "GET /flaky HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "second try" || calls.Load() != 2 {
		t.Errorf("flaky upstream: %d %q after %d calls, want 200 second try after 2", resp.StatusCode, body, calls.Load())
	}
	resp, body = roundTrip(t, c, br, "GET /flaky-stream HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "streamed retry" || streamCalls.Load() != 2 {
		t.Errorf("flaky streaming upstream: %d %q after %d calls, want 200 streamed retry after 2", resp.StatusCode, body, streamCalls.Load())
	}

	// Nothing listens at dead.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	_, addr = loopProxy(t, dead, nil)
	c, br = dialClient(t, addr)
	resp, body = roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 503 || !strings.Contains(body, "upstream connect error") || !strings.Contains(body, "connection refused") {
		t.Errorf("dead upstream: %d %q, want 503 upstream connect error ... connection refused", resp.StatusCode, body)
	}
}

// TestLoopRefusedAtOnce: a request its cluster's circuit breaker refuses
// before any attempt gets its one 503, and the connection serves on.
func TestLoopRefusedAtOnce(t *testing.T) {
	backend := echoBackend(t)
	m, addr := proxyManagerCluster(t, upstream.ClusterSpec{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: backend}},
		CircuitBreakers: &upstream.CircuitBreakers{MaxConnections: upstream.DefaultMaxConnections, MaxPendingRequests: upstream.DefaultMaxPendingRequests, MaxRetries: 3}},
		nil, Options{EventLoops: 1})
	c, br := dialClient(t, addr)
	for i := range 2 {
		resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 503 || resp.Header.Get("X-Envoy-Overloaded") != "true" || !strings.Contains(body, "max_requests") {
			t.Fatalf("request %d: %d %q, want 503 overflow (max_requests)", i, resp.StatusCode, body)
		}
	}
	if served, _ := loopCounts(t, m); served != 2 {
		t.Errorf("the loop served %d requests, want 2 (each once)", served)
	}
}

// TestLoopKeepsItsUpstreamConnection: sequential requests, with pauses in
// which the upstream connection sits idle, all go over one connection, with
// the default idle timeout and with none (a DestinationRule's idleTimeout:
// 0s).
func TestLoopKeepsItsUpstreamConnection(t *testing.T) {
	for _, idle := range []time.Duration{0, -1} {
		var opened atomic.Int32
		backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				opened.Add(1)
			}
		}
		backend.Start()
		defer backend.Close()
		spec := upstream.ClusterSpec{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: strings.TrimPrefix(backend.URL, "http://")}}, IdleTimeout: idle}
		_, addr := proxyManagerCluster(t, spec, nil, Options{EventLoops: 1})
		c, br := dialClient(t, addr)
		for i := range 5 {
			if resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("idle timeout %v, request %d: %d %q", idle, i, resp.StatusCode, body)
			}
			time.Sleep(30 * time.Millisecond)
		}
		if n := opened.Load(); n != 1 {
			t.Errorf("idle timeout %v: %d upstream connections for 5 sequential requests, want 1", idle, n)
		}
	}
}

// TestLoopWeightedSplit: a weighted route whose clusters the loop cannot
// all reach keeps its split. (The loop picked a cluster, handed the
// connection off when it could not reach it, and the goroutine server
// picked again: a 10 % cluster the loop cannot reach got about 1 %.)
func TestLoopWeightedSplit(t *testing.T) {
	var hits [2]atomic.Int32
	backend := func(i int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	specs := []upstream.ClusterSpec{
		{Name: "v1", Endpoints: []upstream.EndpointSpec{{Address: backend(0)}}},
		// Tighter than Envoy's default connection limit: not for the loop.
		{Name: "v2", Endpoints: []upstream.EndpointSpec{{Address: backend(1)}},
			CircuitBreakers: &upstream.CircuitBreakers{MaxConnections: 100, MaxPendingRequests: upstream.DefaultMaxPendingRequests, MaxRequests: 1024, MaxRetries: 3}},
	}
	_, addr := proxyManagerClusters(t, specs, func(r *routev3.Route) {
		r.GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
			{Name: "v1", Weight: wrapperspb.UInt32(90)},
			{Name: "v2", Weight: wrapperspb.UInt32(10)},
		}}}
	}, Options{EventLoops: 1})
	const n = 400
	for i := range n {
		c, br := dialClient(t, addr)
		if resp, _ := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		c.Close()
	}
	// 10 % of 400 is 40, with a standard deviation of 6.
	if v2 := hits[1].Load(); v2 < 20 || v2 > 64 {
		t.Errorf("v2 (weight 10 of 100) got %d of %d requests, want about 40", v2, n)
	}
}

// TestLoopShutdownLetsAnArrivingRequestFinish: a request whose head is
// still arriving when a shutdown begins is served (with Connection: close),
// as the goroutine server serves it.
func TestLoopShutdownLetsAnArrivingRequestFinish(t *testing.T) {
	m, addr := loopProxy(t, echoBackend(t), nil)
	c, br := dialClient(t, addr)
	io.WriteString(c, "GET /arriving HTTP/1.1\r\nHo")
	time.Sleep(100 * time.Millisecond) // the loop has read the first piece
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- m.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the shutdown has begun
	io.WriteString(c, "st: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request arriving at shutdown: %v, want its answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "GET /arriving") || !resp.Close {
		t.Errorf("answer %d %q, close %v; want 200 from the backend, and the connection closing", resp.StatusCode, body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestLoopRetriesAStaleConnection: an upstream that closes each kept-alive
// connection after its answer (without saying so) costs the client nothing:
// the request that finds its pooled connection closed goes again on a new
// one.
func TestLoopRetriesAStaleConnection(t *testing.T) {
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
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
			}()
		}
	}()
	_, addr := loopProxy(t, ln.Addr().String(), nil)
	c, br := dialClient(t, addr)
	for i := range 3 {
		resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond) // the upstream closes meanwhile
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("%d upstream connections for 3 requests; the stale ones were not replaced", n)
	}
}

// TestLoopClientGoneWhileUpstream: a client that closes, or ends its side
// of the connection, while its request is upstream is taken to be gone, as
// Envoy takes it: the exchange upstream ends, nothing more is written to
// it (not a made-up answer, nor the answer to a request it sent after),
// and the loop serves on. (A close that comes with the request is a
// half-close as far as the proxy can tell: that request is served, as on
// the goroutine server.)
func TestLoopClientGoneWhileUpstream(t *testing.T) {
	started, gone := make(chan struct{}, 1), make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			started <- struct{}{}
			<-r.Context().Done()
			gone <- struct{}{}
			return
		}
		io.WriteString(w, "fine")
	}))
	defer backend.Close()
	_, addr := loopProxy(t, strings.TrimPrefix(backend.URL, "http://"), nil)
	for _, half := range []bool{false, true} {
		c, br := dialClient(t, addr)
		io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the request did not reach the backend")
		}
		if half {
			c.(*net.TCPConn).CloseWrite()
		} else {
			c.Close()
		}
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatalf("the upstream exchange outlived its client (half-closed: %v)", half)
		}
		if half {
			if b, err := io.ReadAll(br); len(b) > 0 || err != nil {
				t.Errorf("the client read %q (err %v) after it went away, want nothing", b, err)
			}
		}
	}
	c, br := dialClient(t, addr)
	if resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "fine" {
		t.Errorf("after clients went away: %d %q", resp.StatusCode, body)
	}
}

// TestLoopBadRequestAndShutdown: a malformed request gets its 400 before
// the connection closes; at shutdown an idle loop connection is closed at
// once.
func TestLoopBadRequestAndShutdown(t *testing.T) {
	m, addr := loopProxy(t, echoBackend(t), nil)
	c, br := dialClient(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("malformed request: %v %v, want a 400", resp, err)
	}
	idle, ibr := dialClient(t, addr)
	if resp, _ := roundTrip(t, idle, ibr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown waited %v for an idle loop connection", d)
	}
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: read err %v, want EOF", err)
	}
}
