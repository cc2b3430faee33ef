package listener

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/rawhttp"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// The end-to-end proxy path in one process: a raw client writes a fixed
// keep-alive request to the lean server, whose chain is the real router and
// Forwarder, which sends it over the lean upstream pool to a raw backend that
// answers fixed bytes. Client and backend parse by hand and do not allocate,
// so allocs/op is the proxy's own (both directions of one request).

// benchRequest is what a typical client sends: a handful of headers that
// repeat on every request of the connection.
const benchRequest = "GET /api/v1/reviews/42?verbose=1 HTTP/1.1\r\n" +
	"Host: reviews.default.svc.cluster.local:9080\r\n" +
	"User-Agent: bench/1.0\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate\r\n" +
	"X-B3-Traceid: 80f198ee56343ba864fe8b2a57d3eff7\r\n" +
	"X-Custom-Tenant: acme\r\n" +
	"\r\n"

// benchResponse is the backend's fixed answer, with a Date as net/http
// and Envoy send.
const benchResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Sun, 22 Nov 2026 13:00:00 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Server: raw\r\n" +
	"Cache-Control: no-store\r\n" +
	"Content-Length: 13\r\n" +
	"\r\n" +
	`{"rating":5}` + "\n"

// proxyTo starts a Manager whose one listener routes everything to a
// cluster with the single endpoint backend, through the real Forwarder.
func proxyTo(tb testing.TB, backend string) string {
	tb.Helper()
	_, addr := proxyManager(tb, backend)
	return addr
}

// proxyManager is proxyTo that also returns the Manager.
func proxyManager(tb testing.TB, backend string) (*Manager, string) {
	tb.Helper()
	return proxyManagerWith(tb, backend, nil)
}

// proxyManagerWith is proxyManager with its one route changed by edit
// (when not nil) before it is compiled.
func proxyManagerWith(tb testing.TB, backend string, edit func(*routev3.Route)) (*Manager, string) {
	tb.Helper()
	return proxyManagerOpts(tb, backend, edit, Options{})
}

// proxyManagerOpts is proxyManagerWith for a Manager with options o.
func proxyManagerOpts(tb testing.TB, backend string, edit func(*routev3.Route), o Options) (*Manager, string) {
	tb.Helper()
	return proxyManagerCluster(tb, upstream.ClusterSpec{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: backend}}}, edit, o)
}

// proxyManagerCluster is proxyManagerOpts with the cluster (named "c") as
// spec says.
func proxyManagerCluster(tb testing.TB, spec upstream.ClusterSpec, edit func(*routev3.Route), o Options) (*Manager, string) {
	tb.Helper()
	return proxyManagerClusters(tb, []upstream.ClusterSpec{spec}, edit, o)
}

// proxyManagerClusters is proxyManagerCluster with clusters as specs say
// (the route goes to "c" unless edit says otherwise).
func proxyManagerClusters(tb testing.TB, specs []upstream.ClusterSpec, edit func(*routev3.Route), o Options) (*Manager, string) {
	tb.Helper()
	route := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		// No route timeout, as Weft's control plane configures a route
		// whose user set none.
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, Timeout: durationpb.New(0)}},
	}
	if edit != nil {
		edit(route)
	}
	table, err := router.Compile(&routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{route},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	pools := upstream.NewPools(upstream.PoolsOptions{})
	tb.Cleanup(pools.Close)
	clusters := pools.Build(specs)
	var fwd chain.Handler = forward.New(forward.Options{Clusters: clusters})
	m := New(o)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := &model.Listener{Name: "l", Address: addr, FilterChains: []*model.FilterChain{{RouteConfig: "rc", Routes: table, Chain: fwd}}}
	m.Apply(&model.Model{Listeners: []*model.Listener{l}, Clusters: clusters})
	if m.Addr("l") == "" {
		tb.Fatalf("listener not bound: %v", m.Pending())
	}
	return m, addr
}

// rawClient reads responses with a fixed buffer: it finds the head's end
// and the Content-Length, and copies the body into a reused buffer.
type rawClient struct {
	c    net.Conn
	buf  []byte
	n    int // bytes in buf
	body []byte
}

// readResponse reads one response and returns its status code and body
// (valid until the next call).
func (rc *rawClient) readResponse() (int, []byte, error) {
	for {
		if i := bytes.Index(rc.buf[:rc.n], []byte("\r\n\r\n")); i >= 0 {
			head := rc.buf[:i+2]
			code := rawhttp.Atoi(head[9:12])
			length := rawhttp.ContentLength(head)
			if length < 0 {
				return 0, nil, fmt.Errorf("bad response head %q", head)
			}
			total := i + 4 + length
			for rc.n < total {
				if rc.n == len(rc.buf) {
					return 0, nil, io.ErrShortBuffer
				}
				m, err := rc.c.Read(rc.buf[rc.n:])
				if err != nil {
					return 0, nil, err
				}
				rc.n += m
			}
			rc.body = append(rc.body[:0], rc.buf[i+4:total]...)
			rc.n = copy(rc.buf, rc.buf[total:rc.n])
			return code, rc.body, nil
		}
		if rc.n == len(rc.buf) {
			return 0, nil, io.ErrShortBuffer
		}
		m, err := rc.c.Read(rc.buf[rc.n:])
		if err != nil {
			return 0, nil, err
		}
		rc.n += m
	}
}

// BenchmarkProxyH1 measures one proxied keep-alive request, client to
// backend and back, through the lean server, router, Forwarder and lean
// upstream pool. Client and backend do not allocate in the loop (but for
// the statuses and bodies checked), so allocs/op is the proxy's.
func BenchmarkProxyH1(b *testing.B) {
	c, rc, req := rawProxied(b)
	b.ReportAllocs()
	benchRequests(b, c, rc, req)
}

// BenchmarkRelayFloor is BenchmarkProxyH1 through rawhttp.Relay instead of
// the proxy: the same client, backend and loopback sockets, and a relay of
// the same shape that only frames messages. Its user-ns/op is the floor;
// what BenchmarkProxyH1 spends above it is the proxy's work per request.
func BenchmarkRelayFloor(b *testing.B) {
	c, rc, req := rawClientTo(b, rawhttp.Relay(b, rawhttp.Backend(b, benchResponse)))
	benchRequests(b, c, rc, req)
}

// benchRequests sends req and reads its response for every iteration of
// b, and reports the process's user and system CPU time per request.
func benchRequests(b *testing.B, c net.Conn, rc *rawClient, req []byte) {
	user0, sys0 := cpuTime()
	n := 0
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if code, _, err := rc.readResponse(); err != nil || code != 200 {
			b.Fatalf("%d %v", code, err)
		}
		n++
	}
	// Wall time per request mostly measures loopback round trips and
	// scheduling; the CPU time the process used in user space (the proxy's
	// code, and the little the raw client and backend use) is what this
	// path's code costs; system time is mostly the sockets'.
	user1, sys1 := cpuTime()
	b.ReportMetric(float64(user1-user0)/float64(n), "user-ns/op")
	b.ReportMetric(float64(sys1-sys0)/float64(n), "sys-ns/op")
}

// rawProxied connects a raw client to a proxy in front of a raw backend,
// and warms the path up (the first request dials upstream). The client
// sends req.
func rawProxied(tb testing.TB) (c net.Conn, rc *rawClient, req []byte) {
	return rawClientTo(tb, proxyTo(tb, rawhttp.Backend(tb, benchResponse)))
}

// rawClientTo connects a raw client to addr, a proxy or relay in front of a
// raw backend, and warms the path up.
func rawClientTo(tb testing.TB, addr string) (c net.Conn, rc *rawClient, req []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	rc = &rawClient{c: c, buf: make([]byte, 16<<10)}
	req = []byte(benchRequest)
	for range 3 {
		c.Write(req)
		if code, body, err := rc.readResponse(); err != nil || code != 200 || string(body) != `{"rating":5}`+"\n" {
			tb.Fatalf("warm-up: %d %q %v", code, body, err)
		}
	}
	return c, rc, req
}

// TestProxiedRequestAllocations holds the proxy's allocations per proxied
// request (both directions) to what BenchmarkProxyH1 reports: none, but
// for a buffer of X-Request-Id values now and then. (The response's fields
// pass through without a map, and so without the header value slab a map's
// values take.)
func TestProxiedRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers; `make test` runs this without it")
	}
	c, rc, req := rawProxied(t)
	n := allocsPerRun(500, func() {
		c.Write(req)
		if code, _, err := rc.readResponse(); err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
	})
	if n > 0.1 {
		t.Errorf("%.2f allocations per proxied request, want none (but a buffer of request ids now and then)", n)
	}
}

// allocsPerRun is testing.AllocsPerRun without its GOMAXPROCS(1), which
// would leave nothing but an event loop's P to run the test (the loop
// holds its P while it waits).
func allocsPerRun(runs int, f func()) float64 {
	if testEventLoops == 0 {
		return testing.AllocsPerRun(runs, f)
	}
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}

// cpuTime returns the user and system CPU time the process used.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
