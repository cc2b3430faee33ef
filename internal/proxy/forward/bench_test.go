package forward

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/rawhttp"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

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
	date := time.Now().UTC().Format(http.TimeFormat)
	be := rawhttp.Backend(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: "+date+"\r\nContent-Length: 2\r\n\r\nok")
	pools := upstream.NewPools(upstream.PoolsOptions{})
	b.Cleanup(pools.Close)
	clusters := pools.Build([]upstream.ClusterSpec{
		{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Endpoints: []upstream.EndpointSpec{{Address: be}}},
		{Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Endpoints: []upstream.EndpointSpec{{Address: be}}},
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
	// Istio's headers.request.set and headers.response.set on a route.
	headerSet, err := compileTable(b, `
name: http_proxy
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    request_headers_to_add: [{header: {key: x-canary, value: "false"}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
    response_headers_to_add: [{header: {key: x-served-by, value: weft}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
    route: {cluster: "`+v1+`", timeout: 0s}
`).Select(httptest.NewRequest("GET", "http://reviews:9080/", nil))
	if err != nil {
		b.Fatal(err)
	}
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
		{"header-set", headerSet, get},
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
