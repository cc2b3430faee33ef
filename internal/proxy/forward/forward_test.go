package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

func addrOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// front runs a Forwarder with a fixed route in front of cluster "c".
func front(t *testing.T, route *router.Route, eps ...string) *httptest.Server {
	t.Helper()
	spec := upstream.ClusterSpec{Name: "c"}
	for _, e := range eps {
		spec.Endpoints = append(spec.Endpoints, upstream.EndpointSpec{Address: e})
	}
	pools := upstream.NewPools(upstream.PoolsOptions{})
	t.Cleanup(pools.Close)
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{spec})})
	if route.Cluster == "" && route.Direct == nil {
		route.Cluster = "c"
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Serve(&chain.Exchange{W: w, R: r, Route: route, RouteConfig: "rc"})
	}))
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestRetries(t *testing.T) {
	retry := func(on router.RetryOn, n uint32, codes ...uint32) router.RetryPolicy {
		return router.RetryPolicy{RetryOn: on, NumRetries: n, RetriableStatusCodes: codes, BackOffBase: time.Millisecond}
	}
	tests := []struct {
		name         string
		policy       router.RetryPolicy
		failFirst    int // the backend answers failCode this many times, then 200
		failCode     int
		body         io.Reader // request body; nil for GET
		chunked      bool
		wantCode     int
		wantAttempts int32
		grpcStatus   string // the failing answers' Grpc-Status (a trailers-only gRPC response)
	}{
		{"5xx retried until success", retry(router.RetryOn5xx, 2), 2, 503, nil, false, 200, 3, ""},
		{"retries exhausted gives the last response", retry(router.RetryOn5xx, 2), 9, 503, nil, false, 503, 3, ""},
		{"no policy, no retry", router.RetryPolicy{}, 9, 503, nil, false, 503, 1, ""},
		{"retriable status code", retry(router.RetryOnRetriableStatusCodes, 1, 418), 1, 418, nil, false, 200, 2, ""},
		{"gateway-error ignores 500", retry(router.RetryOnGatewayError, 3), 9, 500, nil, false, 500, 1, ""},
		{"gateway-error retries 502", retry(router.RetryOnGatewayError, 3), 1, 502, nil, false, 200, 2, ""},
		{"small body is replayed", retry(router.RetryOn5xx, 1), 1, 503, strings.NewReader("hello"), false, 200, 2, ""},
		{"streamed body is not retried", retry(router.RetryOn5xx, 3), 9, 503, strings.NewReader("hello"), true, 503, 1, ""},
		{"grpc unavailable retried", retry(router.RetryOnUnavailable, 2), 2, 200, nil, false, 200, 3, "14"},
		{"grpc status not retried unless asked", retry(router.RetryOnUnavailable, 2), 9, 200, nil, false, 200, 1, "13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if int(n.Add(1)) <= tc.failFirst {
					if tc.grpcStatus != "" {
						w.Header().Set("Grpc-Status", tc.grpcStatus)
					}
					w.WriteHeader(tc.failCode)
					return
				}
				fmt.Fprintf(w, "ok %s", b)
			}))
			defer be.Close()
			s := front(t, &router.Route{Retry: tc.policy}, addrOf(be))
			method := "GET"
			if tc.body != nil {
				method = "POST"
			}
			req, _ := http.NewRequest(method, s.URL+"/", tc.body)
			if tc.chunked {
				req.ContentLength = -1
				req.Body = io.NopCloser(req.Body)
			}
			code, body, _ := do(t, req)
			if code != tc.wantCode || n.Load() != tc.wantAttempts {
				t.Errorf("got %d after %d attempts, want %d after %d", code, n.Load(), tc.wantCode, tc.wantAttempts)
			}
			if tc.body != nil && code == 200 && body != "ok hello" {
				t.Errorf("body = %q, want the request body replayed", body)
			}
		})
	}
}

func TestConnectFailure(t *testing.T) {
	dead := deadAddr(t)
	s := front(t, &router.Route{}, dead)
	code, body, _ := do(t, mustReq(t, "GET", s.URL+"/"))
	want := "upstream connect error: cluster c endpoint " + dead + ": connection refused"
	if code != 503 || !strings.Contains(body, want) {
		t.Errorf("got %d %q, want 503 %q", code, body, want)
	}

	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live") }))
	defer be.Close()
	s = front(t, &router.Route{Retry: router.RetryPolicy{RetryOn: router.RetryOnConnectFailure, NumRetries: 2, BackOffBase: time.Millisecond}}, dead, addrOf(be))
	for i := range 20 {
		if code, body, _ := do(t, mustReq(t, "GET", s.URL+"/")); code != 200 || body != "live" {
			t.Fatalf("request %d with one dead endpoint and connect-failure retries: %d %q", i, code, body)
		}
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRouteTimeout(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer be.Close()
	s := front(t, &router.Route{Timeout: 50 * time.Millisecond}, addrOf(be))
	start := time.Now()
	code, body, _ := do(t, mustReq(t, "GET", s.URL+"/"))
	if code != 504 || body != "upstream request timeout\n" {
		t.Errorf("got %d %q, want 504 upstream request timeout", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestHeaders(t *testing.T) {
	var got atomic.Pointer[http.Request]
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r)
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "1")
		w.Header().Set("X-App", "yes")
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	tests := []struct {
		name      string
		route     router.Route
		reqHeader map[string]string
		check     func(t *testing.T, r *http.Request)
	}{
		{"host kept, hop-by-hop removed, id generated", router.Route{}, map[string]string{"Connection": "X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5"},
			func(t *testing.T, r *http.Request) {
				if r.Host != "reviews:9080" {
					t.Errorf("Host = %q", r.Host)
				}
				if r.Header.Get("X-Hop") != "" || r.Header.Get("Keep-Alive") != "" {
					t.Errorf("hop-by-hop headers forwarded: %v", r.Header)
				}
				if id := r.Header.Get("X-Request-Id"); !uuidRE.MatchString(id) {
					t.Errorf("x-request-id = %q, want a UUID", id)
				}
				if r.Header.Get("X-Forwarded-Proto") != "http" {
					t.Errorf("x-forwarded-proto = %q", r.Header.Get("X-Forwarded-Proto"))
				}
				if _, ok := r.Header["User-Agent"]; ok {
					t.Errorf("a User-Agent was added: %q", r.Header.Get("User-Agent"))
				}
			}},
		{"id propagated, host rewritten", router.Route{HostRewrite: "other.example"}, map[string]string{"X-Request-Id": "abc", "User-Agent": "curl/8"},
			func(t *testing.T, r *http.Request) {
				if r.Host != "other.example" || r.Header.Get("X-Request-Id") != "abc" || r.Header.Get("User-Agent") != "curl/8" {
					t.Errorf("host %q id %q ua %q", r.Host, r.Header.Get("X-Request-Id"), r.Header.Get("User-Agent"))
				}
			}},
		{"prefix rewritten, query kept", router.Route{PrefixRewrite: "/v2"}, nil,
			func(t *testing.T, r *http.Request) {
				if r.URL.Path != "/v2/p" || r.URL.RawQuery != "q=1" {
					t.Errorf("upstream got %s, want /v2/p?q=1", r.URL.RequestURI())
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route := tc.route
			s := front(t, &route, addrOf(be))
			req := mustReq(t, "GET", s.URL+"/p?q=1")
			req.Host = "reviews:9080"
			req.Header["User-Agent"] = []string{""} // Go's client sends none then
			for k, v := range tc.reqHeader {
				req.Header.Set(k, v)
			}
			code, _, h := do(t, req)
			if code != 200 {
				t.Fatalf("code %d", code)
			}
			if h.Get("X-Secret") != "" || h.Get("X-App") != "yes" {
				t.Errorf("response headers: %v", h)
			}
			tc.check(t, got.Load())
		})
	}
}

func TestStreamsResponse(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}))
	defer be.Close()
	defer close(release)
	s := front(t, &router.Route{}, addrOf(be))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk = %q, %v; want it before the upstream finishes", line, err)
	}
}

func TestLocalAnswers(t *testing.T) {
	tests := []struct {
		name     string
		x        chain.Exchange
		wantCode int
		wantBody string
	}{
		{"no virtual host", chain.Exchange{RouteErr: fmt.Errorf("%w for host %q", router.ErrNoVirtualHost, "nope:80"), RouteConfig: "http_proxy"},
			404, `no virtual host for "nope:80" in route config http_proxy`},
		{"no route", chain.Exchange{RouteErr: fmt.Errorf("%w in virtual host %q", router.ErrNoRoute, "reviews:9080"), RouteConfig: "http_proxy"},
			404, `no matching route in virtual host "reviews:9080" in route config http_proxy`},
		{"unknown cluster", chain.Exchange{Route: &router.Route{Cluster: "missing"}}, 503, "no healthy upstream for cluster missing"},
		{"direct response", chain.Exchange{Route: &router.Route{Direct: &router.DirectResponse{Status: 418, Body: "teapot"}}}, 418, "teapot"},
	}
	f := New(Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			x := tc.x
			x.W, x.R = rec, httptest.NewRequest("GET", "http://nope:80/", nil)
			f.Serve(&x)
			if rec.Code != tc.wantCode || strings.TrimSpace(rec.Body.String()) != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}
}

// TestRequestIDIsUUID: ids are random UUIDs, and one stays as it was made
// while later ones are cut from the same buffer and from new ones.
func TestRequestIDIsUUID(t *testing.T) {
	var ids requestIDs
	var made, copies []string
	for range 3*idsPerBuffer + 1 {
		id := ids.next()
		made, copies = append(made, id), append(copies, strings.Clone(id))
	}
	seen := map[string]bool{}
	for i, id := range made {
		if !uuidRE.MatchString(id) || seen[id] || id != copies[i] {
			t.Fatalf("id %d: %q, made as %q: bad, repeated or changed", i, id, copies[i])
		}
		seen[id] = true
	}
}

// TestIsHopHeader: the switch agrees with the list.
func TestIsHopHeader(t *testing.T) {
	for _, k := range hopHeaders {
		if !isHopHeader(k) {
			t.Errorf("isHopHeader(%q) = false", k)
		}
	}
	for _, k := range []string{"Content-Type", "Connections", "te", "X-Request-Id", ""} {
		if isHopHeader(k) {
			t.Errorf("isHopHeader(%q) = true", k)
		}
	}
}

// TestRemoveHopHeaders checks that the hop-by-hop headers and those the
// Connection header names are removed exactly as http.Header.Del would
// remove them, and without allocating for the usual Connection options.
func TestRemoveHopHeaders(t *testing.T) {
	// reference is the plain implementation with http.Header.Del.
	reference := func(h http.Header) {
		for _, v := range h["Connection"] {
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					h.Del(f)
				}
			}
		}
		for _, k := range hopHeaders {
			delete(h, k)
		}
	}
	base := func(connection ...string) http.Header {
		h := http.Header{
			"Accept": {"*/*"}, "Close": {"1"}, "X-Hop": {"1"}, "X-Other": {"1"},
			"Keep-Alive": {"timeout=5"}, "Upgrade": {"h2c"}, "Te": {"trailers"},
			"\u212aeep-Alive": {"kelvin"}, "x hop": {"not canonical"}, "X-Request-Id": {"abc"},
		}
		if connection != nil {
			h["Connection"] = connection
		}
		return h
	}
	tests := []struct {
		name       string
		connection []string
		want       []string // headers left
		allocFree  bool
	}{
		{"no Connection", nil, []string{"Accept", "Close", "X-Hop", "X-Other", "X-Request-Id", "\u212aeep-Alive", "x hop"}, true},
		{"keep-alive", []string{"keep-alive"}, []string{"Accept", "Close", "X-Hop", "X-Other", "X-Request-Id", "\u212aeep-Alive", "x hop"}, true},
		{"close, any case", []string{"CLOSE"}, []string{"Accept", "X-Hop", "X-Other", "X-Request-Id", "\u212aeep-Alive", "x hop"}, true},
		{"several options and values", []string{"Keep-Alive, upgrade", " x-hop ,, te", "x-other"}, []string{"Accept", "Close", "X-Request-Id", "\u212aeep-Alive", "x hop"}, false},
		{"not ASCII: only an exact key", []string{"\u212aeep-Alive"}, []string{"Accept", "Close", "X-Hop", "X-Other", "X-Request-Id", "x hop"}, true},
		{"name that is not canonicalized", []string{"x hop"}, []string{"Accept", "Close", "X-Hop", "X-Other", "X-Request-Id", "\u212aeep-Alive"}, true},
		{"empty options", []string{"", " , "}, []string{"Accept", "Close", "X-Hop", "X-Other", "X-Request-Id", "\u212aeep-Alive", "x hop"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := base(tt.connection...), base(tt.connection...)
			removeHopHeaders(got)
			reference(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v (as http.Header.Del)", got, want)
			}
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, slices.Sorted(slices.Values(tt.want))) {
				t.Errorf("headers left %q, want %q", keys, tt.want)
			}
			// A head with fewer fields than there are hop-by-hop names
			// takes the other path.
			got, want = base(tt.connection...), base(tt.connection...)
			for _, h := range []http.Header{got, want} {
				delete(h, "Accept")
				delete(h, "X-Request-Id")
			}
			if len(got) > len(hopHeaders) {
				t.Fatalf("the small head has %d fields", len(got))
			}
			removeHopHeaders(got)
			reference(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("small head: got %v, want %v (as http.Header.Del)", got, want)
			}
			// What a response passes on.
			src, dst := base(tt.connection...), http.Header{}
			copyEndToEnd(dst, src)
			if keys := slices.Sorted(maps.Keys(dst)); !slices.Equal(keys, slices.Sorted(slices.Values(tt.want))) {
				t.Errorf("copied %q, want %q", keys, tt.want)
			}
			if !tt.allocFree {
				return
			}
			h := base(tt.connection...)
			if n := testing.AllocsPerRun(50, func() { removeHopHeaders(h) }); n != 0 {
				t.Errorf("removeHopHeaders allocates %.0f times, want 0", n)
			}
		})
	}
}

// TestSharedHeaderValues checks that the header values the Forwarder shares
// between requests cannot be changed through one request's header.
func TestSharedHeaderValues(t *testing.T) {
	var got atomic.Value
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(strings.Join(r.Header["X-Forwarded-Proto"], ",") + "|" + strings.Join(r.Header["User-Agent"], ","))
	}))
	defer be.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	defer pools.Close()
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: addrOf(be)}}}})})
	serve := func() *http.Request {
		req := httptest.NewRequest("GET", "http://reviews:9080/", nil)
		f.Serve(&chain.Exchange{W: httptest.NewRecorder(), R: req, Route: &router.Route{Cluster: "c"}})
		return req
	}
	first := serve()
	// A filter that runs after the Forwarder appends to the values it set.
	first.Header.Add("X-Forwarded-Proto", "https")
	first.Header.Add("User-Agent", "later")
	serve()
	if g := got.Load(); g != "http|" {
		t.Errorf("second request sent X-Forwarded-Proto|User-Agent %q, want %q", g, "http|")
	}
}

// TestRecycledRequestState: the state of a body-less request is reused by
// the next one, so nothing of the first may keep pointing into it; the
// generated request id must not change under the first request's header.
func TestRecycledRequestState(t *testing.T) {
	seen := make(chan string, 2)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Request-Id")
	}))
	defer be.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	defer pools.Close()
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: addrOf(be)}}}})})
	route := &router.Route{Cluster: "c"}
	first := httptest.NewRequest("GET", "http://reviews:9080/a", nil)
	f.Serve(&chain.Exchange{W: httptest.NewRecorder(), R: first, Route: route})
	kept := first.Header["X-Request-Id"]
	f.Serve(&chain.Exchange{W: httptest.NewRecorder(), R: httptest.NewRequest("GET", "http://reviews:9080/b", nil), Route: route})
	var ids []string
	for range 2 {
		select {
		case id := <-seen:
			ids = append(ids, id)
		default:
			t.Fatalf("the backend saw %d of the 2 requests", len(ids))
		}
	}
	if len(ids) != 2 || ids[0] == "" || ids[0] == ids[1] {
		t.Fatalf("upstream saw ids %q, want two different ones", ids)
	}
	if len(kept) > 0 && kept[0] != ids[0] {
		t.Errorf("the first request's X-Request-Id changed to %q after the second request (was %q)", kept[0], ids[0])
	}
}

// TestUpstreamProtocolFollowsTheDownstream: a cluster that uses the
// downstream's protocol (Istio's useClientProtocol) sends an HTTP/2
// request upstream over HTTP/2 and an HTTP/1.1 one over HTTP/1.1.
func TestUpstreamProtocolFollowsTheDownstream(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	be.Config.Protocols = new(http.Protocols)
	be.Config.Protocols.SetHTTP1(true)
	be.Config.Protocols.SetUnencryptedHTTP2(true)
	be.Start()
	defer be.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	defer pools.Close()
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Protocol: upstream.Downstream, Endpoints: []upstream.EndpointSpec{{Address: addrOf(be)}}}})})
	for _, major := range []int{1, 2} {
		req := httptest.NewRequest("GET", "http://reviews:9080/", nil)
		req.Proto, req.ProtoMajor, req.ProtoMinor = fmt.Sprintf("HTTP/%d.%d", major, 2-major), major, 2-major
		w := httptest.NewRecorder()
		f.Serve(&chain.Exchange{W: w, R: req, Route: &router.Route{Cluster: "c"}})
		if want := fmt.Sprintf("HTTP/%d.%d", major, 2-major); w.Body.String() != want {
			t.Errorf("an HTTP/%d request reached the upstream as %q, want %s", major, w.Body.String(), want)
		}
	}
}

// TestTrailersAndTE follows a gRPC-like exchange through the Forwarder
// over HTTP/2 both ways: the client's "TE: trailers" reaches the upstream,
// and the upstream's trailers reach the client after the body. From an
// HTTP/1.1 client, which may send other TE options, only "trailers" is
// passed on.
func TestTrailersAndTE(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Te-Seen", r.Header.Get("Te"))
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "message")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "5")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "no such thing")
	}))
	be.Config.Protocols = new(http.Protocols)
	be.Config.Protocols.SetUnencryptedHTTP2(true)
	be.Start()
	defer be.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	defer pools.Close()
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Protocol: upstream.HTTP2, Endpoints: []upstream.EndpointSpec{{Address: addrOf(be)}}}})})
	fe := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Serve(&chain.Exchange{W: w, R: r, Route: &router.Route{Cluster: "c"}, RouteConfig: "rc"})
	}))
	fe.Config.Protocols = new(http.Protocols)
	fe.Config.Protocols.SetHTTP1(true)
	fe.Config.Protocols.SetUnencryptedHTTP2(true)
	fe.Start()
	defer fe.Close()

	for _, tc := range []struct {
		h2       bool
		te, want string
	}{
		{true, "trailers", "trailers"},
		{false, "gzip;q=0.5, Trailers", "trailers"},
		{false, "gzip", ""},
	} {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(!tc.h2)
		tr.Protocols.SetUnencryptedHTTP2(tc.h2)
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("POST", fe.URL+"/pkg.Service/Method", strings.NewReader("request"))
		req.Header.Set("Te", tc.te)
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("TE %q: %v", tc.te, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if got := resp.Header.Get("X-Te-Seen"); got != tc.want {
			t.Errorf("TE %q reached the upstream as %q, want %q", tc.te, got, tc.want)
		}
		if string(body) != "message" {
			t.Errorf("TE %q: body %q, want %q", tc.te, body, "message")
		}
		if got, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message"); tc.h2 && (got != "5" || msg != "no such thing") {
			t.Errorf("trailers %v, want grpc-status 5 and its message: the upstream's trailers were not passed on", resp.Trailer)
		}
	}
}

// TestGRPCLocalReply checks that the Forwarder's own answers to a gRPC
// request are gRPC statuses a gRPC client can show: 200, no body, the
// cause in grpc-status and grpc-message.
func TestGRPCLocalReply(t *testing.T) {
	dead := deadAddr(t)
	s := front(t, &router.Route{}, dead)
	for _, tc := range []struct {
		ctype string
		grpc  bool
	}{
		{"application/grpc", true},
		{"application/grpc+proto", true},
		{"application/grpc-web", false},
		{"text/plain", false},
	} {
		req := mustReq(t, "POST", s.URL+"/pkg.Service/Method")
		req.Header.Set("Content-Type", tc.ctype)
		code, body, h := do(t, req)
		want := "upstream connect error: cluster c endpoint " + dead + ": connection refused"
		if !tc.grpc {
			if code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
				t.Errorf("%s: %d %q, want 503 %q", tc.ctype, code, body, want)
			}
			continue
		}
		if code != http.StatusOK || body != "" || h.Get("Content-Type") != "application/grpc" {
			t.Errorf("%s: %d %q, Content-Type %q; want 200 with no body, application/grpc", tc.ctype, code, body, h.Get("Content-Type"))
		}
		if got := h.Get("Grpc-Status"); got != "14" {
			t.Errorf("%s: grpc-status %q, want 14 (UNAVAILABLE)", tc.ctype, got)
		}
		if got := h.Get("Grpc-Message"); got != want {
			t.Errorf("%s: grpc-message %q, want %q", tc.ctype, got, want)
		}
	}
}
