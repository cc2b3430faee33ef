package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// compileTable compiles a RouteConfiguration written as YAML.
func compileTable(t testing.TB, y string) *router.Table {
	t.Helper()
	tbl, err := router.Compile(xdstest.RouteConfigYAML(t, y))
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// proxy runs a Forwarder over clusters (name to endpoint addresses) in
// front of tbl, selecting the route of every request as the listener does.
func proxy(t *testing.T, tbl *router.Table, o Options, clusters map[string][]string) (*httptest.Server, *Forwarder) {
	t.Helper()
	var specs []upstream.ClusterSpec
	for name, eps := range clusters {
		spec := upstream.ClusterSpec{Name: name}
		for _, e := range eps {
			spec.Endpoints = append(spec.Endpoints, upstream.EndpointSpec{Address: e})
		}
		specs = append(specs, spec)
	}
	pools := upstream.NewPools(upstream.PoolsOptions{})
	t.Cleanup(pools.Close)
	o.Clusters = pools.Build(specs)
	f := New(o)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &chain.Exchange{W: w, R: r, RouteConfig: tbl.Name()}
		x.Route, x.RouteErr = tbl.Select(r)
		f.Serve(x)
	}))
	t.Cleanup(s.Close)
	return s, f
}

// noFollow is a client that returns redirects instead of following them.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// seen is what a backend saw of a request.
type seen struct {
	host, uri, body string
	header          http.Header
}

// recorder is a backend that sends what it sees to a channel.
func recorder(t *testing.T, respond func(w http.ResponseWriter)) (*httptest.Server, chan seen) {
	t.Helper()
	ch := make(chan seen, 16)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- seen{host: r.Host, uri: r.RequestURI, body: string(b), header: r.Header.Clone()}
		if respond != nil {
			respond(w)
		}
		io.WriteString(w, "backend")
	}))
	t.Cleanup(s.Close)
	return s, ch
}

func next(t *testing.T, ch chan seen) seen {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the backend saw no request")
		return seen{}
	}
}

const mutationConfig = `
name: rc
request_headers_to_add:
- {header: {key: x-level, value: rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
response_headers_to_add:
- {header: {key: x-level, value: rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
- {header: {key: x-proxy, value: weft}}
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: x-level, value: vh}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - {header: {key: x-vh, value: "1"}}
  routes:
  - match: {prefix: /split}
    request_headers_to_add:
    - {header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    request_headers_to_remove: [x-secret]
    response_headers_to_remove: [x-internal]
    route:
      timeout: 0s
      weighted_clusters:
        clusters:
        - name: c
          weight: 1
          host_rewrite_literal: c.internal
          request_headers_to_add:
          - {header: {key: x-cluster, value: c}}
          - {header: {key: x-level, value: cluster}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
          response_headers_to_add:
          - {header: {key: x-served-by, value: c}}
  - match: {prefix: /host}
    request_headers_to_add:
    - {header: {key: ":authority", value: from-header}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    route: {cluster: c, timeout: 0s}
  - match: {prefix: /rewrite}
    route:
      cluster: c
      timeout: 0s
      regex_rewrite: {pattern: {regex: '^/rewrite/([^/]+)/(.*)$'}, substitution: '/\2/by-\1'}
  - match: {prefix: /direct}
    direct_response: {status: 202, body: {inline_string: "done"}}
  - match: {prefix: /moved}
    redirect: {host_redirect: new.example, prefix_rewrite: /v2, response_code: FOUND}
  - match: {prefix: /dead}
    route: {cluster: nobody, timeout: 0s}
`

func TestHeaderMutations(t *testing.T) {
	be, ch := recorder(t, func(w http.ResponseWriter) {
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("X-Level", "backend")
	})
	s, _ := proxy(t, compileTable(t, mutationConfig), Options{}, map[string][]string{"c": {addrOf(be)}})

	req := mustReq(t, "GET", s.URL+"/split?q=1")
	req.Host = "reviews:9080"
	req.Header.Set("X-Secret", "s")
	req.Header.Set("X-Level", "client")
	code, body, h := do(t, req)
	if code != 200 || body != "backend" {
		t.Fatalf("got %d %q", code, body)
	}
	got := next(t, ch)
	if got.host != "c.internal" {
		t.Errorf("upstream Host %q, want the weighted cluster's host_rewrite_literal", got.host)
	}
	if got.header.Get("X-Level") != "rc" || len(got.header["X-Level"]) != 1 {
		t.Errorf("upstream X-Level %q, want rc (weighted cluster, route, virtual host, route config: the least specific wins)", got.header["X-Level"])
	}
	if got.header.Get("X-Cluster") != "c" || got.header.Get("X-Vh") != "1" || got.header.Get("X-Secret") != "" {
		t.Errorf("upstream headers %v: want X-Cluster and X-Vh added, X-Secret removed", got.header)
	}
	if h.Get("X-Internal") != "" || h.Get("X-Served-By") != "c" || h.Get("X-Proxy") != "weft" || h.Get("X-Level") != "rc" {
		t.Errorf("response headers %v: want X-Internal removed, X-Served-By, X-Proxy and X-Level: rc", h)
	}

	req = mustReq(t, "GET", s.URL+"/host")
	if code, _, _ := do(t, req); code != 200 {
		t.Fatalf("got %d", code)
	}
	if got := next(t, ch); got.host != "from-header" {
		t.Errorf("upstream Host %q, want from-header (an :authority mutation)", got.host)
	}

	// Router answers get the response mutations too.
	for _, path := range []string{"/direct", "/moved", "/dead"} {
		code, _, h := doWith(t, noFollow, mustReq(t, "GET", s.URL+path))
		if h.Get("X-Proxy") != "weft" || h.Get("X-Level") != "rc" {
			t.Errorf("%s: %d with headers %v, want the route configuration's response headers", path, code, h)
		}
	}
}

func doWith(t *testing.T, c *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestRegexRewriteForwarded(t *testing.T) {
	be, ch := recorder(t, nil)
	s, _ := proxy(t, compileTable(t, mutationConfig), Options{}, map[string][]string{"c": {addrOf(be)}})
	if code, _, _ := do(t, mustReq(t, "GET", s.URL+"/rewrite/alice/items/7?sort=asc")); code != 200 {
		t.Fatalf("got %d", code)
	}
	if got := next(t, ch); got.uri != "/items/7/by-alice?sort=asc" {
		t.Errorf("upstream got %s, want /items/7/by-alice?sort=asc", got.uri)
	}
}

func TestRedirect(t *testing.T) {
	tbl := compileTable(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /old/}
    redirect: {prefix_rewrite: /new/, response_code: PERMANENT_REDIRECT}
    response_headers_to_add: [{header: {key: cache-control, value: no-store}}]
  - match: {prefix: /secure}
    redirect: {https_redirect: true, strip_query: true}
  - match: {prefix: /elsewhere}
    redirect: {host_redirect: example.com, port_redirect: 8443, scheme_redirect: https, path_redirect: /landing, response_code: SEE_OTHER}
`)
	s, _ := proxy(t, tbl, Options{}, nil)
	tests := []struct {
		target, host string
		wantCode     int
		wantLocation string
	}{
		{"/old/a/b?x=1", "shop:8080", 308, "http://shop:8080/new/a/b?x=1"},
		{"/secure/login?next=/", "shop:80", 301, "https://shop/secure/login"},
		{"/elsewhere?a", "shop", 303, "https://example.com:8443/landing?a"},
	}
	for _, tt := range tests {
		req := mustReq(t, "POST", s.URL+tt.target)
		req.Host = tt.host
		code, body, h := doWith(t, noFollow, req)
		if code != tt.wantCode || h.Get("Location") != tt.wantLocation || body != "" {
			t.Errorf("%s: got %d Location %q body %q, want %d %q and no body", tt.target, code, h.Get("Location"), body, tt.wantCode, tt.wantLocation)
		}
		if tt.target == "/old/a/b?x=1" && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: response_headers_to_add not applied: %v", tt.target, h)
		}
	}
}

const mirrorConfig = `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /keep-host}
    route: {cluster: main, timeout: 0s, request_mirror_policies: [{cluster: mirror, disable_shadow_host_suffix_append: true}]}
  - match: {prefix: /none}
    route:
      cluster: main
      timeout: 0s
      request_mirror_policies: [{cluster: mirror, runtime_fraction: {default_value: {numerator: 0}}}]
  - match: {prefix: /unknown}
    route: {cluster: main, timeout: 0s, request_mirror_policies: [{cluster: nowhere}]}
  - match: {prefix: /}
    request_headers_to_add: [{header: {key: x-mutated, value: "yes"}}]
    route:
      cluster: main
      timeout: 5s
      prefix_rewrite: /api/
      request_mirror_policies: [{cluster: mirror}]
`

func TestMirror(t *testing.T) {
	mainBE, mainCh := recorder(t, nil)
	mirrorBE, mirrorCh := recorder(t, func(w http.ResponseWriter) { w.WriteHeader(500) })
	s, f := proxy(t, compileTable(t, mirrorConfig), Options{}, map[string][]string{"main": {addrOf(mainBE)}, "mirror": {addrOf(mirrorBE)}})

	req := mustReq(t, "POST", s.URL+"/orders?id=7")
	req.Body = io.NopCloser(strings.NewReader("payload"))
	req.ContentLength = 7
	req.Host = "reviews:9080"
	req.Header.Set("X-Request-Id", "abc")
	code, body, _ := do(t, req)
	if code != 200 || body != "backend" {
		t.Fatalf("main response %d %q, want the main backend's", code, body)
	}
	mainSaw, shadow := next(t, mainCh), next(t, mirrorCh)
	if shadow.host != "reviews-shadow:9080" {
		t.Errorf("shadow Host %q, want reviews-shadow:9080", shadow.host)
	}
	if shadow.uri != mainSaw.uri || shadow.uri != "/api/orders?id=7" || shadow.body != "payload" || mainSaw.body != "payload" {
		t.Errorf("main saw %s %q, shadow %s %q; want both /api/orders?id=7 \"payload\"", mainSaw.uri, mainSaw.body, shadow.uri, shadow.body)
	}
	if shadow.header.Get("X-Mutated") != "yes" || shadow.header.Get("X-Request-Id") != "abc" {
		t.Errorf("shadow headers %v, want the mutated request's", shadow.header)
	}
	waitStats(t, f, MirrorStats{Sent: 1})

	// disable_shadow_host_suffix_append, a 0% mirror, an unknown cluster
	// and a streamed body.
	req = mustReq(t, "GET", s.URL+"/keep-host")
	req.Host = "reviews:9080"
	do(t, req)
	next(t, mainCh)
	if got := next(t, mirrorCh); got.host != "reviews:9080" {
		t.Errorf("shadow Host %q, want reviews:9080 unchanged", got.host)
	}
	for _, path := range []string{"/none", "/unknown"} {
		do(t, mustReq(t, "GET", s.URL+path))
		next(t, mainCh)
	}
	req = mustReq(t, "POST", s.URL+"/streamed")
	req.Body = io.NopCloser(strings.NewReader("chunked"))
	req.ContentLength = -1
	if code, _, _ := do(t, req); code != 200 {
		t.Errorf("streamed POST got %d", code)
	}
	if got := next(t, mainCh); got.body != "chunked" {
		t.Errorf("main backend got body %q", got.body)
	}
	waitStats(t, f, MirrorStats{Sent: 2, Dropped: 2})
	select {
	case got := <-mirrorCh:
		t.Errorf("mirror backend got an unexpected shadow %+v", got)
	default:
	}
}

// waitStats waits for the shadows in flight to end and checks the counters.
func waitStats(t *testing.T, f *Forwarder, want MirrorStats) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.MirrorStats() != want && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := f.MirrorStats(); got != want {
		t.Errorf("mirror stats %+v, want %+v", got, want)
	}
}

func TestMirrorNeverHurtsTheRequest(t *testing.T) {
	mainBE, mainCh := recorder(t, nil)
	release := make(chan struct{})
	var slowGot atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowGot.Add(1)
		<-release
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	tbl := compileTable(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /dead}
    route: {cluster: main, timeout: 0s, request_mirror_policies: [{cluster: dead}]}
  - match: {prefix: /slow}
    route: {cluster: main, timeout: 0s, request_mirror_policies: [{cluster: slow}]}
`)
	s, f := proxy(t, tbl, Options{MaxMirrors: 1, MirrorTimeout: 10 * time.Second},
		map[string][]string{"main": {addrOf(mainBE)}, "dead": {deadAddr(t)}, "slow": {addrOf(slow)}})

	if code, body, _ := do(t, mustReq(t, "GET", s.URL+"/dead")); code != 200 || body != "backend" {
		t.Errorf("with a dead mirror: %d %q", code, body)
	}
	next(t, mainCh)
	waitStats(t, f, MirrorStats{Failed: 1})

	// The slow mirror holds its shadow; the request is answered all the
	// same, and a second shadow is dropped at the in-flight limit of 1.
	if code, body, _ := do(t, mustReq(t, "GET", s.URL+"/slow")); code != 200 || body != "backend" {
		t.Errorf("with a slow mirror: %d %q", code, body)
	}
	next(t, mainCh)
	for slowGot.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if code, _, _ := do(t, mustReq(t, "GET", s.URL+"/slow")); code != 200 {
		t.Errorf("second request with a slow mirror: %d", code)
	}
	next(t, mainCh)
	if st := f.MirrorStats(); st != (MirrorStats{Failed: 1, Dropped: 1, InFlight: 1}) {
		t.Errorf("stats %+v, want 1 failed, 1 dropped, 1 in flight", st)
	}
	if n := slowGot.Load(); n != 1 {
		t.Errorf("slow mirror got %d shadows, want 1", n)
	}
}

// TestShadowSharesNothing: the listener recycles the request and its
// header map once the chain returns, while a shadow may still be on its
// way; the shadow's header is its own.
func TestShadowSharesNothing(t *testing.T) {
	r := httptest.NewRequest("GET", "http://reviews:9080/p?q=1", nil)
	r.Header.Set("X-A", "a")
	r.Header["X-Shared"] = valHTTP
	s := newShadow(r, &router.Mirror{Cluster: "m"}, r.Header, r.Host, "/p", "", nil, time.Second)
	r.Header["X-A"][0] = "clobbered"
	clear(r.Header)
	r.URL.RawQuery = "changed"
	if s.header.Get("X-A") != "a" || s.header.Get("X-Shared") != "http" || s.query != "q=1" || s.host != "reviews-shadow:9080" {
		t.Errorf("shadow %+v changed with the request", s)
	}
	defer func() { valHTTP[0] = "http" }()
	s.header["X-Shared"][0] = "https"
	if valHTTP[0] != "http" {
		t.Error("the shadow's header shares a value slice with the request")
	}
}
