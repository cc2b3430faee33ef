package forward

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// benchBackend is a minimal HTTP/1.1 server for benchmarks: it answers every
// request on a kept-alive connection with a fixed response and does not
// allocate per request, so that a benchmark's allocs/op are the proxy's.
// It understands just enough HTTP for requests the Forwarder sends (a head,
// then a body of Content-Length bytes).
type benchBackend struct {
	ln   net.Listener
	resp []byte
}

func newBenchBackend(tb testing.TB) *benchBackend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	date := time.Now().UTC().Format(http.TimeFormat)
	be := &benchBackend{ln: ln, resp: []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: " + date + "\r\nContent-Length: 2\r\n\r\nok")}
	go be.accept()
	tb.Cleanup(func() { ln.Close() })
	return be
}

func (be *benchBackend) addr() string { return be.ln.Addr().String() }

func (be *benchBackend) accept() {
	for {
		c, err := be.ln.Accept()
		if err != nil {
			return
		}
		go be.serve(c)
	}
}

func (be *benchBackend) serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			reqLen := end + 4 + contentLength(buf[:end])
			if reqLen > n {
				break
			}
			if _, err := c.Write(be.resp); err != nil {
				return
			}
			n = copy(buf, buf[reqLen:n])
		}
		if n == len(buf) {
			return
		}
	}
}

// contentLength returns the Content-Length of a request head, 0 if none.
func contentLength(head []byte) int {
	const k = "\r\nContent-Length: "
	i := bytes.Index(head, []byte(k))
	if i < 0 {
		return 0
	}
	n := 0
	for _, c := range head[i+len(k):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// benchWriter is an http.ResponseWriter and http.Flusher that keeps its
// header map across requests, as the listener's does.
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) Flush() {}

func (w *benchWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// BenchmarkServe measures the forwarding path alone: a parsed request (as
// the listener hands it over, with a cancelable connection context) given to
// the Forwarder, sent over a kept-alive connection to a backend that does
// not allocate, and the response copied to a reused ResponseWriter. The
// allocations counted are the Forwarder's and the upstream pool's
// (BenchmarkRoundTrip in upstream measures the latter alone).
func BenchmarkServe(b *testing.B) {
	be := newBenchBackend(b)
	pools := upstream.NewPools(upstream.PoolsOptions{})
	b.Cleanup(pools.Close)
	clusters := pools.Build([]upstream.ClusterSpec{
		{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Endpoints: []upstream.EndpointSpec{{Address: be.addr()}}},
		{Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Endpoints: []upstream.EndpointSpec{{Address: be.addr()}}},
	})
	f := New(Options{Clusters: clusters})
	const v1, v2 = "outbound|9080|v1|reviews.default.svc.cluster.local", "outbound|9080|v2|reviews.default.svc.cluster.local"
	// Istio's default retry policy for a sidecar route.
	istioRetry := router.RetryPolicy{
		RetryOn:                  router.RetryOnConnectFailure | router.RetryOnRefusedStream | router.RetryOnUnavailable | router.RetryOnCancelled | router.RetryOnRetriableStatusCodes,
		NumRetries:               2,
		RetriableStatusCodes:     []uint32{503},
		AvoidPreviousHosts:       true,
		HostSelectionMaxAttempts: 5,
		BackOffBase:              25 * time.Millisecond,
		BackOffMax:               250 * time.Millisecond,
	}
	weighted := mustCompileRoute(b, v1, v2)
	get := "GET /reviews/0 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n"
	cases := []struct {
		name  string
		route *router.Route
		req   string
	}{
		{"plain", &router.Route{Cluster: v1}, get},
		{"request-id-set", &router.Route{Cluster: v1}, strings.Replace(get, "Accept:", "X-Request-Id: 9c1b4a1e-1f2d-4c8e-9a57-3f4d2b6e8a10\r\nAccept:", 1)},
		{"keep-alive", &router.Route{Cluster: v1}, strings.Replace(get, "Accept:", "Connection: keep-alive\r\nAccept:", 1)},
		{"istio-retry", &router.Route{Cluster: v1, Retry: istioRetry}, get},
		{"weighted", weighted, get},
		{"timeout", &router.Route{Cluster: v1, Timeout: 15 * time.Second}, get},
		{"post-retry", &router.Route{Cluster: v1, Retry: istioRetry}, "POST /reviews HTTP/1.1\r\nHost: reviews:9080\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"reviewer\":\"x\",\"stars\":5}\n"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// The listener hands over a parsed request with a cancelable
			// connection context. The Forwarder edits the request's header
			// map and reads its body; both are restored before each
			// iteration without allocating, so that allocs/op are the
			// forwarding path's.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(c.req)))
			if err != nil {
				b.Fatal(err)
			}
			req = req.WithContext(ctx)
			tmpl := req.Header.Clone()
			body, _ := io.ReadAll(req.Body)
			rb := &rewindBody{}
			w := &benchWriter{h: make(http.Header, 8)}
			x := &chain.Exchange{W: w, R: req, Route: c.route, RouteConfig: "http_proxy"}
			serve := func() {
				clear(req.Header)
				for k, v := range tmpl {
					req.Header[k] = v
				}
				if len(body) > 0 {
					rb.Reset(body)
					req.Body = rb
				}
				w.reset()
				f.Serve(x)
			}
			serve()
			if w.code != 200 || w.n != 2 {
				b.Fatalf("response %d, %d bytes; want 200, 2", w.code, w.n)
			}
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
			if w.code != 200 {
				b.Fatalf("response %d", w.code)
			}
		})
	}
}

// rewindBody is a request body that can be reset without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// mustCompileRoute returns a 90/10 weighted route over clusters a and b.
func mustCompileRoute(tb testing.TB, a, b string) *router.Route {
	tb.Helper()
	rc := &routev3.RouteConfiguration{Name: "http_proxy", VirtualHosts: []*routev3.VirtualHost{{
		Name:    "reviews.default.svc.cluster.local:9080",
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
					Clusters: []*routev3.WeightedCluster_ClusterWeight{
						{Name: a, Weight: wrapperspb.UInt32(90)},
						{Name: b, Weight: wrapperspb.UInt32(10)},
					},
				}},
				Timeout: durationpb.New(0),
			}},
		}},
	}}}
	tbl, err := router.Compile(rc)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := tbl.Select(httptest.NewRequest("GET", "http://reviews:9080/", nil))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
