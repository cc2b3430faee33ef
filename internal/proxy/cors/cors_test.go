package cors

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

const policyType = `"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy`

// routes is the route configuration of the filter tests: a virtual host
// policy, and routes that override parts of it.
const routes = `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.cors:
      ` + policyType + `
      allow_origin_string_match: [{exact: "https://app.example.com"}]
      allow_methods: GET,PUT
      allow_headers: x-a,x-b
      expose_headers: x-request-id
      max_age: "600"
  routes:
  - match: {prefix: /plain}
    route: {cluster: c}
  - match: {prefix: /creds}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {` + policyType + `, allow_credentials: true}
  - match: {prefix: /regex}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors:
        ` + policyType + `
        allow_origin_string_match: [{safe_regex: {regex: 'https://[a-z0-9-]+\.example\.org(:[0-9]+)?'}}]
  - match: {prefix: /strict}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {` + policyType + `, forward_not_matching_preflights: false}
  - match: {prefix: /echo}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {` + policyType + `, allow_methods: "*", allow_headers: "*", allow_private_network_access: true}
  - match: {prefix: /off}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {` + policyType + `, filter_enabled: {default_value: {numerator: 0}}}
  - match: {prefix: /shadow}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {` + policyType + `, filter_enabled: {default_value: {numerator: 0}}, shadow_enabled: {default_value: {numerator: 100}}}
  - match: {prefix: /direct}
    direct_response: {status: 200, body: {inline_string: direct}}
- name: none
  domains: [none]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
`

// backend is the upstream service: it answers "upstream <method>" and
// counts the requests that reach it. With ?acao it sets its own
// Access-Control-Allow-Origin: *.
type backend struct {
	hits atomic.Int32
	addr string
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Upstream", "1")
		if r.URL.Query().Has("acao") {
			w.Header().Set("Access-Control-Allow-Origin", "*")
		}
		io.WriteString(w, "upstream "+r.Method)
	}))
	t.Cleanup(s.Close)
	b.addr = strings.TrimPrefix(s.URL, "http://")
	return b
}

// front runs the chain (CORS filter, then the forwarder to cluster c at
// addr) behind a real server, selecting routes from config as the listener
// does.
func front(t *testing.T, config, addr string, f func(next chain.Handler) *Filter) *httptest.Server {
	t.Helper()
	tbl, err := router.Compile(xdstest.RouteConfigYAML(t, config))
	if err != nil {
		t.Fatal(err)
	}
	pools := upstream.NewPools(upstream.PoolsOptions{})
	t.Cleanup(pools.Close)
	fwd := forward.New(forward.Options{Clusters: pools.Build([]upstream.ClusterSpec{
		{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: addr}}}})})
	h := f(fwd)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, err := tbl.Select(r)
		h.Serve(&chain.Exchange{W: w, R: r, Route: route, RouteErr: err, RouteConfig: "rc"})
	}))
	t.Cleanup(s.Close)
	return s
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers",
	"Access-Control-Allow-Private-Network",
}

func TestFilter(t *testing.T) {
	b := newBackend(t)
	counters := new(Counters)
	s := front(t, routes, b.addr, func(next chain.Handler) *Filter {
		return New(Options{Next: next, Counters: counters})
	})
	const app = "https://app.example.com"
	tests := []struct {
		name, method, path, host string
		headers                  []string // name, value pairs
		wantStatus               int
		wantBody                 string // "" for an empty body
		wantUpstream             bool
		want                     map[string]string // CORS headers; absent ones must be absent
		valid, invalid           uint64
	}{
		{name: "preflight answered", method: "OPTIONS", path: "/plain",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "x-a"},
			wantStatus: 200,
			want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Methods": "GET,PUT",
				"Access-Control-Allow-Headers": "x-a,x-b", "Access-Control-Max-Age": "600"},
			valid: 1},
		{name: "simple request decorated", method: "GET", path: "/plain", headers: []string{"Origin", app},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true,
			want:  map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Expose-Headers": "x-request-id"},
			valid: 1},
		{name: "upstream's allow-origin replaced", method: "GET", path: "/plain?acao", headers: []string{"Origin", app},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true,
			want:  map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Expose-Headers": "x-request-id"},
			valid: 1},
		{name: "OPTIONS without request method is not a preflight", method: "OPTIONS", path: "/plain", headers: []string{"Origin", app},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true,
			want:  map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Expose-Headers": "x-request-id"},
			valid: 1},
		{name: "origin not allowed", method: "GET", path: "/plain", headers: []string{"Origin", "https://evil.com"},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true, invalid: 1},
		{name: "origin not allowed keeps upstream's headers", method: "GET", path: "/plain?acao", headers: []string{"Origin", "https://evil.com"},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true,
			want: map[string]string{"Access-Control-Allow-Origin": "*"}, invalid: 1},
		{name: "no origin untouched", method: "GET", path: "/plain",
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true},
		{name: "no origin preflight-like OPTIONS goes upstream", method: "OPTIONS", path: "/plain",
			headers:    []string{"Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true},
		{name: "non-matching preflight forwarded", method: "OPTIONS", path: "/plain",
			headers:    []string{"Origin", "https://evil.com", "Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true, invalid: 1},
		{name: "non-matching preflight answered without allow-origin", method: "OPTIONS", path: "/strict",
			headers:    []string{"Origin", "https://evil.com", "Access-Control-Request-Method", "PUT"},
			wantStatus: 200,
			want: map[string]string{"Access-Control-Allow-Methods": "GET,PUT", "Access-Control-Allow-Headers": "x-a,x-b",
				"Access-Control-Max-Age": "600"},
			invalid: 1},
		{name: "credentials on simple request", method: "POST", path: "/creds", headers: []string{"Origin", app},
			wantStatus: 200, wantBody: "upstream POST", wantUpstream: true,
			want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers": "x-request-id"},
			valid: 1},
		{name: "credentials on preflight", method: "OPTIONS", path: "/creds",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "POST"},
			wantStatus: 200,
			want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods": "GET,PUT", "Access-Control-Allow-Headers": "x-a,x-b", "Access-Control-Max-Age": "600"},
			valid: 1},
		{name: "regex origin matches", method: "GET", path: "/regex", headers: []string{"Origin", "https://shop-2.example.org:8443"},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true,
			want:  map[string]string{"Access-Control-Allow-Origin": "https://shop-2.example.org:8443", "Access-Control-Expose-Headers": "x-request-id"},
			valid: 1},
		{name: "regex must match the whole origin", method: "GET", path: "/regex", headers: []string{"Origin", "https://shop.example.org.evil.com"},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true, invalid: 1},
		{name: "regex route does not inherit the virtual host's origins", method: "GET", path: "/regex", headers: []string{"Origin", app},
			wantStatus: 200, wantBody: "upstream GET", wantUpstream: true, invalid: 1},
		{name: "wildcards echo the preflight", method: "OPTIONS", path: "/echo",
			headers: []string{"Origin", app, "Access-Control-Request-Method", "DELETE", "Access-Control-Request-Headers", "x-custom",
				"Access-Control-Request-Private-Network", "true"},
			wantStatus: 200,
			want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Methods": "DELETE",
				"Access-Control-Allow-Headers": "x-custom", "Access-Control-Max-Age": "600", "Access-Control-Allow-Private-Network": "true"},
			valid: 1},
		{name: "disabled policy does nothing", method: "OPTIONS", path: "/off",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true},
		{name: "shadow policy counts only", method: "OPTIONS", path: "/shadow",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true, valid: 1},
		{name: "direct response bypasses the filter", method: "OPTIONS", path: "/direct",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "direct"},
		{name: "route without policy", method: "OPTIONS", path: "/", host: "none",
			headers:    []string{"Origin", app, "Access-Control-Request-Method", "PUT"},
			wantStatus: 200, wantBody: "upstream OPTIONS", wantUpstream: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Add(tt.headers[i], tt.headers[i+1])
			}
			before, hitsBefore := counters.Stats(), b.hits.Load()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("response %d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if reached := b.hits.Load() > hitsBefore; reached != tt.wantUpstream {
				t.Errorf("reached upstream = %v, want %v", reached, tt.wantUpstream)
			}
			if tt.wantUpstream && resp.Header.Get("X-Upstream") != "1" {
				t.Errorf("the upstream's own header was lost: %v", resp.Header)
			}
			for _, k := range corsHeaders {
				got, ok := resp.Header[k]
				want, wantOK := tt.want[k]
				switch {
				case ok != wantOK:
					t.Errorf("%s = %q, want present %v (%q)", k, got, wantOK, want)
				case ok && (len(got) != 1 || got[0] != want):
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			after := counters.Stats()
			if d := (Stats{after.OriginValid - before.OriginValid, after.OriginInvalid - before.OriginInvalid}); d != (Stats{tt.valid, tt.invalid}) {
				t.Errorf("counted %+v, want %+v", d, Stats{tt.valid, tt.invalid})
			}
		})
	}
}

// TestStreamedResponse checks that a streamed response through the
// wrapper is flushed to the client, CORS headers included, before the
// upstream has finished.
func TestStreamedResponse(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "data: last\n\n")
	}))
	defer be.Close()
	defer close(release)
	s := front(t, routes, strings.TrimPrefix(be.URL, "http://"), func(next chain.Handler) *Filter {
		return New(Options{Next: next})
	})
	req, _ := http.NewRequest("GET", s.URL+"/plain/events", nil)
	req.Header.Set("Origin", "https://app.example.com")
	type result struct {
		resp *http.Response
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		got <- result{resp, line, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.resp.Body.Close()
		if r.line != "data: first\n" {
			t.Errorf("first line %q", r.line)
		}
		if v := r.resp.Header.Get("Access-Control-Allow-Origin"); v != "https://app.example.com" {
			t.Errorf("Access-Control-Allow-Origin = %q on a streamed response", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not reach the client while the upstream was still streaming: the wrapper does not flush")
	}
}

// recorder is a ResponseWriter that cannot flush.
type recorder struct {
	h      http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) { r.WriteHeader(200); return len(p), nil }

func TestWrapper(t *testing.T) {
	route := &router.Route{Name: "r", Cluster: "c", Cors: policy(t)}
	tests := []struct {
		name      string
		w         func() http.ResponseWriter
		next      func(x *chain.Exchange)
		wantFlush bool
	}{
		{"handler writes nothing", func() http.ResponseWriter { return httptest.NewRecorder() },
			func(x *chain.Exchange) {}, true},
		{"headers only, 204", func() http.ResponseWriter { return httptest.NewRecorder() },
			func(x *chain.Exchange) { x.W.WriteHeader(http.StatusNoContent) }, true},
		{"interim response first", func() http.ResponseWriter { return httptest.NewRecorder() },
			func(x *chain.Exchange) {
				x.W.WriteHeader(http.StatusEarlyHints)
				if got := x.W.Header().Get("Access-Control-Allow-Origin"); got != "" {
					t.Errorf("headers decorated before the final response")
				}
				x.W.WriteHeader(http.StatusOK)
			}, true},
		{"writer that cannot flush", func() http.ResponseWriter { return &recorder{h: http.Header{}} },
			func(x *chain.Exchange) { io.WriteString(x.W, "x") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w()
			var sawFlusher bool
			f := New(Options{Next: chain.HandlerFunc(func(x *chain.Exchange) {
				_, sawFlusher = x.W.(http.Flusher)
				tt.next(x)
			})})
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Origin", "https://app.example.com")
			x := &chain.Exchange{W: w, R: req, Route: route}
			f.Serve(x)
			if sawFlusher != tt.wantFlush {
				t.Errorf("next saw an http.Flusher: %v, want %v", sawFlusher, tt.wantFlush)
			}
			if x.W != w {
				t.Errorf("x.W was not restored after Serve")
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
				t.Errorf("Access-Control-Allow-Origin = %q", got)
			}
		})
	}
}

// policy compiles a policy allowing https://app.example.com.
func policy(tb testing.TB) *router.CorsPolicy {
	tb.Helper()
	tbl, err := router.Compile(xdstest.RouteConfigYAML(tb, `{name: rc, virtual_hosts: [{name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c},
  typed_per_filter_config: {envoy.filters.http.cors: {`+policyType+`, allow_origin_string_match: [{exact: "https://app.example.com"}], expose_headers: x-a}}}]}]}`))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := tbl.Select(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		tb.Fatal(err)
	}
	return r.Cors
}

func TestNoAllocation(t *testing.T) {
	f := New(Options{Next: chain.HandlerFunc(func(x *chain.Exchange) { x.W.WriteHeader(200) })})
	p := policy(t)
	tests := []struct {
		name   string
		route  *router.Route
		origin string
		method string
		acrm   string
	}{
		{"no policy", &router.Route{Cluster: "c"}, "https://app.example.com", "GET", ""},
		{"no origin", &router.Route{Cluster: "c", Cors: p}, "", "GET", ""},
		{"origin not allowed", &router.Route{Cluster: "c", Cors: p}, "https://evil.com", "GET", ""},
		{"allowed origin (pooled wrapper)", &router.Route{Cluster: "c", Cors: p}, "https://app.example.com", "GET", ""},
		{"preflight", &router.Route{Cluster: "c", Cors: p}, "https://app.example.com", "OPTIONS", "PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.acrm != "" {
				req.Header.Set("Access-Control-Request-Method", tt.acrm)
			}
			w := &recorder{h: make(http.Header, 8)}
			x := &chain.Exchange{W: w, R: req, Route: tt.route}
			if n := testing.AllocsPerRun(100, func() {
				clear(w.h)
				w.status = 0
				f.Serve(x)
			}); n != 0 {
				t.Errorf("%v allocations per request, want 0", n)
			}
		})
	}
}

func BenchmarkServe(b *testing.B) {
	f := New(Options{Next: chain.HandlerFunc(func(x *chain.Exchange) { x.W.WriteHeader(200) })})
	p := policy(b)
	for _, bc := range []struct {
		name   string
		cors   *router.CorsPolicy
		origin string
	}{
		{"NoPolicy", nil, "https://app.example.com"},
		{"NoOrigin", p, ""},
		{"OriginNotAllowed", p, "https://evil.com"},
		{"OriginAllowed", p, "https://app.example.com"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			if bc.origin != "" {
				req.Header.Set("Origin", bc.origin)
			}
			w := &recorder{h: make(http.Header, 8)}
			x := &chain.Exchange{W: w, R: req, Route: &router.Route{Cluster: "c", Cors: bc.cors}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				f.Serve(x)
			}
		})
	}
}
