package router

import (
	"crypto/tls"
	"net/http"
	"reflect"
	"testing"
	"time"
)

// route compiles config and selects the route for GET path on any host.
func route(t *testing.T, config, path string) *Route {
	t.Helper()
	r, err := mustCompile(t, config).Select(newRequest("GET", path, "reviews:9080"))
	if err != nil {
		t.Fatalf("Select %s: %v", path, err)
	}
	return r
}

const faultType = `"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault`

func TestFaultConfig(t *testing.T) {
	config := `
name: rc
typed_per_filter_config:
  envoy.filters.http.fault:
    ` + faultType + `
    abort: {http_status: 500, percentage: {numerator: 1}}
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.fault:
      ` + faultType + `
      delay: {fixed_delay: 2s, percentage: {numerator: 250, denominator: TEN_THOUSAND}}
  routes:
  - match: {prefix: /both}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        ` + faultType + `
        delay: {fixed_delay: 0.05s, percentage: {numerator: 500000, denominator: MILLION}}
        abort: {http_status: 503, percentage: {numerator: 150}}
        max_active_faults: 3
  - match: {prefix: /grpc}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
        config:
          ` + faultType + `
          abort: {grpc_status: 14, response_body: unavailable}
  - match: {prefix: /disabled}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
  - match: {prefix: /other-filter}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
- name: plain
  domains: [plain]
  routes:
  - match: {prefix: /}
    direct_response: {status: 200}
`
	tbl := mustCompile(t, config)
	tests := []struct {
		host, path string
		want       *Fault
	}{
		{"x", "/both", &Fault{
			Delay:       &FaultDelay{Duration: 50 * time.Millisecond, Percent: 500000},
			Abort:       &FaultAbort{HTTPStatus: 503, Percent: Million, Body: "fault filter abort"},
			LimitActive: true, MaxActive: 3,
		}},
		{"x", "/grpc", &Fault{Abort: &FaultAbort{GRPC: true, GRPCStatus: 14, Body: "unavailable"}}},
		{"x", "/disabled", &Fault{}},
		// Inherited from the virtual host: 250/10000 is 2.5%.
		{"x", "/other-filter", &Fault{Delay: &FaultDelay{Duration: 2 * time.Second, Percent: 25000}}},
		// Inherited from the route configuration, on a direct response too.
		{"plain", "/", &Fault{Abort: &FaultAbort{HTTPStatus: 500, Percent: 10000, Body: "fault filter abort"}}},
	}
	for _, tt := range tests {
		r, err := tbl.Select(newRequest("GET", tt.path, tt.host))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.Fault, tt.want) {
			t.Errorf("%s%s: Fault = %+v, want %+v", tt.host, tt.path, r.Fault, tt.want)
		}
	}
}

func TestFaultWithoutConfigIsNil(t *testing.T) {
	if f := oneRoute(t, "{prefix: /}").fallback.routes[0].Fault; f != nil {
		t.Errorf("Fault = %+v, want nil so that the filter's own configuration applies", f)
	}
}

func TestFraction(t *testing.T) {
	tests := []struct {
		pct  string
		want uint32
	}{
		{"{numerator: 50}", 500000},
		{"{numerator: 1, denominator: TEN_THOUSAND}", 100},
		{"{numerator: 7, denominator: MILLION}", 7},
		{"{numerator: 101}", Million},
		{"{numerator: 2000000, denominator: MILLION}", Million},
		{"{}", 0},
	}
	for _, tt := range tests {
		r := route(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c, request_mirror_policies: [{cluster: m, runtime_fraction: {default_value: `+tt.pct+`}}]}
`, "/")
		if got := r.Mirrors[0].Percent; got != tt.want {
			t.Errorf("%s: %d millionths, want %d", tt.pct, got, tt.want)
		}
	}
}

func TestMirrorPolicies(t *testing.T) {
	tbl := mustCompile(t, `
name: rc
request_mirror_policies: [{cluster: rc-mirror}]
virtual_hosts:
- name: vh
  domains: [vh]
  request_mirror_policies: [{cluster: vh-mirror, disable_shadow_host_suffix_append: true}]
  routes:
  - match: {prefix: /own}
    route:
      cluster: c
      request_mirror_policies:
      - {cluster: a, runtime_fraction: {default_value: {numerator: 10}}}
      - {cluster: b, trace_sampled: false}
  - match: {prefix: /}
    route: {cluster: c}
- name: other
  domains: ["*"]
  routes:
  - match: {prefix: /redirect}
    redirect: {host_redirect: x}
  - match: {prefix: /}
    route: {cluster: c}
`)
	tests := []struct {
		host, path string
		want       []Mirror
	}{
		{"vh", "/own", []Mirror{{Cluster: "a", Percent: 100000}, {Cluster: "b", Percent: Million}}},
		{"vh", "/", []Mirror{{Cluster: "vh-mirror", Percent: Million, KeepHost: true}}},
		{"x", "/", []Mirror{{Cluster: "rc-mirror", Percent: Million}}},
		{"x", "/redirect", nil},
	}
	for _, tt := range tests {
		r, err := tbl.Select(newRequest("GET", tt.path, tt.host))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.Mirrors, tt.want) {
			t.Errorf("%s%s: Mirrors = %+v, want %+v", tt.host, tt.path, r.Mirrors, tt.want)
		}
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews:9080":                      "reviews-shadow:9080",
		"reviews":                           "reviews-shadow",
		"reviews.default.svc.cluster.local": "reviews.default.svc.cluster.local-shadow",
		"[::1]:8080":                        "[::1]-shadow:8080",
		"[::1]":                             "[::1]-shadow",
	} {
		if got := ShadowHost(in); got != want {
			t.Errorf("ShadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRegexRewrite(t *testing.T) {
	tests := []struct {
		pattern, sub, path, want string
	}{
		// Envoy's documented examples.
		{`^/service/([^/]+)(/.*)$`, `\2/instance/\1`, "/service/foo/v1/api", "/v1/api/instance/foo"},
		{`one`, `two`, "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/two/zzz"},
		{`^(.*?)one(.*)$`, `\1two\2`, "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/one/zzz"},
		{`(?i)/xxx/`, `/yyy/`, "/aaa/XxX/bbb", "/aaa/yyy/bbb"},
		// \0 is the whole match, \\ a backslash, and $ has no meaning.
		{`[0-9]+`, `<\0>\\$1`, "/a/12/b/3", `/a/<12>\$1/b/<3>\$1`},
	}
	for _, tt := range tests {
		r := route(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      regex_rewrite: {pattern: {regex: '`+tt.pattern+`'}, substitution: '`+tt.sub+`'}
`, "/")
		if got := r.RewritePath(tt.path); got != tt.want {
			t.Errorf("%s -> %s on %s = %q, want %q", tt.pattern, tt.sub, tt.path, got, tt.want)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	tbl := mustCompile(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /keep}
    redirect: {}
  - match: {prefix: /https}
    redirect: {https_redirect: true}
  - match: {prefix: /scheme}
    redirect: {scheme_redirect: HTTPS, response_code: FOUND}
  - match: {prefix: /host}
    redirect: {host_redirect: example.com, response_code: SEE_OTHER}
  - match: {prefix: /port}
    redirect: {port_redirect: 8443, response_code: TEMPORARY_REDIRECT}
  - match: {prefix: /pathq}
    redirect: {path_redirect: "/new?a=b", strip_query: true}
  - match: {prefix: /path}
    redirect: {path_redirect: /new, response_code: PERMANENT_REDIRECT}
  - match: {prefix: /prefix/}
    redirect: {prefix_rewrite: /v2/}
  - match: {path: /exact}
    redirect: {prefix_rewrite: /whole}
  - match: {prefix: /regex}
    redirect: {regex_rewrite: {pattern: {regex: "^/regex/([a-z]+)"}, substitution: '/\1/x'}}
  - match: {prefix: /strip}
    redirect: {strip_query: true, host_redirect: "example.com:8080"}
  - match: {prefix: /rel}
    redirect: {path_redirect: "relative"}
`)
	tests := []struct {
		name     string
		target   string
		host     string
		tls      bool
		xfp      string
		want     string
		wantCode int
	}{
		{"nothing changes", "/keep/a?q=1", "reviews:9080", false, "", "http://reviews:9080/keep/a?q=1", 301},
		{"https drops :80", "/https/a", "web:80", false, "", "https://web/https/a", 301},
		{"https keeps another port", "/https/a", "web:8080", false, "", "https://web:8080/https/a", 301},
		{"https when already https keeps :443", "/https", "web:443", true, "", "https://web:443/https", 301},
		{"x-forwarded-proto decides which port is default", "/https", "web:80", false, "https", "https://web:80/https", 301},
		{"scheme lowercased", "/scheme", "web", false, "", "https://web/scheme", 302},
		{"host replaced, port dropped with it", "/host?x", "web:9080", false, "", "http://example.com/host?x", 303},
		{"port replaced", "/port", "web:9080", false, "", "http://web:8443/port", 307},
		{"port added", "/port", "[::1]", false, "", "http://[::1]:8443/port", 307},
		{"ipv6 port replaced", "/port", "[::1]:80", false, "", "http://[::1]:8443/port", 307},
		{"path keeps query", "/path/a?q=1", "web", false, "", "http://web/new?q=1", 308},
		{"path with query replaces it and ignores strip_query", "/pathq/a?q=1", "web", false, "", "http://web/new?a=b", 301},
		{"prefix rewrite", "/prefix/a/b?c=d", "web", false, "", "http://web/v2/a/b?c=d", 301},
		{"prefix rewrite of an exact route", "/exact?z", "web", false, "", "http://web/whole?z", 301},
		{"regex rewrite", "/regex/abc/def?q", "web", false, "", "http://web/abc/x/def?q", 301},
		{"strip query", "/strip/a?q=1&r=2", "web", false, "", "http://example.com:8080/strip/a", 301},
		{"relative path gets a slash", "/rel", "web", false, "", "http://web/relative", 301},
		{"escaped path kept", "/keep/a%20b", "web", false, "", "http://web/keep/a%20b", 301},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest("GET", tt.target, tt.host)
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			if tt.xfp != "" {
				req.Header.Set("X-Forwarded-Proto", tt.xfp)
			}
			r, err := tbl.Select(req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Redirect == nil {
				t.Fatalf("route %+v is not a redirect", r)
			}
			if got := r.RedirectLocation(req); got != tt.want || r.Redirect.Code != tt.wantCode {
				t.Errorf("Location %q code %d, want %q %d", got, r.Redirect.Code, tt.want, tt.wantCode)
			}
		})
	}
	abs := readRequest(t, "GET http://reviews:9080/host/x?y HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
	r, err := tbl.Select(abs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.RedirectLocation(abs), "http://example.com/host/x?y"; got != want {
		t.Errorf("absolute-form request: Location %q, want %q", got, want)
	}
}

// headerRoutes is a configuration with header mutations at every level.
const headerRoutes = `
name: rc
request_headers_to_add:
- {header: {key: x-level, value: rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
- {header: {key: x-rc, value: "1"}}
response_headers_to_add:
- {header: {key: x-level, value: rc}, append: false}
response_headers_to_remove: [server]
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
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          host_rewrite_literal: a.internal
          request_headers_to_add:
          - {header: {key: x-level, value: cluster-a}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
          - {header: {key: x-cluster, value: a}}
          response_headers_to_add:
          - {header: {key: x-served-by, value: a}}
  - match: {prefix: /actions}
    request_headers_to_remove: [x-drop, x-replace]
    request_headers_to_add:
    - {header: {key: x-append, value: added}}
    - {header: {key: x-append, value: again}, append_action: APPEND_IF_EXISTS_OR_ADD}
    - {header: {key: x-absent, value: added}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-present, value: ignored}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-overwrite, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-if-exists, value: new}, append_action: OVERWRITE_IF_EXISTS}
    - {header: {key: x-if-missing, value: new}, append_action: OVERWRITE_IF_EXISTS}
    - {header: {key: x-replace, value: after-remove}, append_action: OVERWRITE_IF_EXISTS}
    - {header: {key: x-empty, value: ""}}
    - {header: {key: x-kept-empty, value: ""}, keep_empty_value: true}
    - {header: {key: x-percent, value: "100%% sure"}}
    - {header: {key: x-raw, raw_value: "cmF3"}}
    - {header: {key: x-set-then-add, value: one}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-set-then-add, value: two}}
    - {header: {key: X-Appended-Bool, value: b}, append: true}
    route: {cluster: c}
  - match: {prefix: /host}
    request_headers_to_add:
    - {header: {key: ":authority", value: via-header}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    route: {cluster: c}
  - match: {prefix: /host-rewrite}
    request_headers_to_add:
    - {header: {key: host, value: via-header}}
    route: {cluster: c, host_rewrite_literal: rewritten}
  - match: {prefix: /}
    route: {cluster: c}
`

func TestHeaderMutationOrder(t *testing.T) {
	tbl := mustCompile(t, headerRoutes)
	req := newRequest("GET", "/split", "reviews:9080", "X-Level", "client")
	r, err := tbl.Select(req)
	if err != nil {
		t.Fatal(err)
	}
	wc := r.PickWeighted(0)
	if wc == nil || wc.Name != "a" || wc.HostRewrite != "a.internal" {
		t.Fatalf("PickWeighted = %+v", wc)
	}
	h, host := req.Header, req.Host
	wc.RequestHeaders.Apply(h, &host)
	r.RequestHeaders.Apply(h, &host)
	// Weighted cluster, route, virtual host, route configuration: the
	// least specific level is applied last and wins.
	want := http.Header{"X-Level": {"rc"}, "X-Cluster": {"a"}, "X-Vh": {"1"}, "X-Rc": {"1"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("request headers = %v, want %v", h, want)
	}

	resp := http.Header{"Server": {"app"}, "X-Level": {"app"}}
	wc.ResponseHeaders.Apply(resp, nil)
	r.ResponseHeaders.Apply(resp, nil)
	wantResp := http.Header{"X-Level": {"rc"}, "X-Served-By": {"a"}}
	if !reflect.DeepEqual(resp, wantResp) {
		t.Errorf("response headers = %v, want %v", resp, wantResp)
	}

	// most_specific_header_mutations_wins reverses the order.
	tbl = mustCompile(t, "most_specific_header_mutations_wins: true\n"+headerRoutes)
	req = newRequest("GET", "/split", "reviews:9080")
	r, _ = tbl.Select(req)
	host = req.Host
	r.PickWeighted(0).RequestHeaders.Apply(req.Header, &host)
	r.RequestHeaders.Apply(req.Header, &host)
	if got := req.Header.Get("X-Level"); got != "route" {
		t.Errorf("most specific wins: X-Level = %q, want route", got)
	}
}

func TestHeaderActions(t *testing.T) {
	tbl := mustCompile(t, headerRoutes)
	req := newRequest("GET", "/actions", "reviews:9080",
		"X-Drop", "1", "X-Replace", "old", "X-Append", "client", "X-Present", "client",
		"X-Overwrite", "old1", "X-Overwrite", "old2", "X-If-Exists", "old")
	r, err := tbl.Select(req)
	if err != nil {
		t.Fatal(err)
	}
	shared := req.Header["X-Append"]
	host := req.Host
	r.RequestHeaders.Apply(req.Header, &host)
	want := http.Header{
		"X-Append":        {"client", "added", "again"},
		"X-Present":       {"client"},
		"X-Absent":        {"added"},
		"X-Overwrite":     {"new"},
		"X-If-Exists":     {"new"},
		"X-Kept-Empty":    {""},
		"X-Percent":       {"100% sure"},
		"X-Raw":           {"raw"},
		"X-Set-Then-Add":  {"one", "two"},
		"X-Appended-Bool": {"b"},
		// From the virtual host and route configuration.
		"X-Level": {"rc"}, "X-Vh": {"1"}, "X-Rc": {"1"},
	}
	if !reflect.DeepEqual(req.Header, want) {
		t.Errorf("headers =\n  %v\nwant\n  %v", req.Header, want)
	}
	if len(shared) != 1 || shared[0] != "client" {
		t.Errorf("the value slice the request had was written into: %q", shared)
	}

	for _, tt := range []struct{ path, want string }{
		{"/host", "via-header"},
		{"/host-rewrite", "via-header"}, // host_rewrite_literal is applied after, by the forwarder
		{"/", "reviews:9080"},
	} {
		req := newRequest("GET", tt.path, "reviews:9080")
		r, _ := tbl.Select(req)
		host := req.Host
		r.RequestHeaders.Apply(req.Header, &host)
		if host != tt.want {
			t.Errorf("%s: host %q, want %q", tt.path, host, tt.want)
		}
		if _, ok := req.Header["Host"]; ok {
			t.Errorf("%s: a Host header was added: %v", tt.path, req.Header)
		}
	}
}

func TestHeaderMutationsDoNotAllocate(t *testing.T) {
	tbl := mustCompile(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /set}
    request_headers_to_remove: [x-gone]
    request_headers_to_add:
    - {header: {key: x-a, value: "1"}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-b, value: "2"}, append_action: ADD_IF_ABSENT}
    route: {cluster: c}
  - match: {prefix: /}
    route: {cluster: c}
`)
	for _, path := range []string{"/", "/set"} {
		req := newRequest("GET", path, "h", "X-B", "client")
		r, _ := tbl.Select(req)
		h := req.Header
		host := req.Host
		if n := testing.AllocsPerRun(100, func() {
			r.RequestHeaders.Apply(h, &host)
			r.ResponseHeaders.Apply(h, nil)
		}); n != 0 {
			t.Errorf("%s: Apply allocates %.0f times, want 0", path, n)
		}
	}
	if r := route(t, headerRoutes, "/none-at-route-level"); r.RequestHeaders.Empty() {
		t.Error("a route inherits no mutations from its virtual host")
	}
	if r := oneRoute(t, "{prefix: /}").fallback.routes[0]; !r.RequestHeaders.Empty() || !r.ResponseHeaders.Empty() || r.RequestHeaders.levels != nil {
		t.Errorf("a route without mutations has %+v %+v", r.RequestHeaders, r.ResponseHeaders)
	}
}
