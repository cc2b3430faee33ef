package router

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

const domainsConfig = `
name: http_proxy
virtual_hosts:
- name: reviews.default.svc.cluster.local:9080
  domains: [reviews.default.svc.cluster.local:9080, reviews.default.svc:9080, reviews.default:9080, reviews:9080]
  routes: [{match: {prefix: /}, route: {cluster: "outbound|9080||reviews.default.svc.cluster.local"}}]
- name: productpage.default.svc.cluster.local:80
  domains: [productpage.default.svc.cluster.local, productpage.default.svc.cluster.local:80, productpage, productpage:80]
  routes: [{match: {prefix: /}, route: {cluster: "outbound|80||productpage.default.svc.cluster.local"}}]
- name: ratings
  domains: [Ratings.Example.com]
  routes: [{match: {prefix: /}, route: {cluster: ratings}}]
- name: suffix-long
  domains: ["*.api.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: suffix-short
  domains: ["*.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: suffix-dash
  domains: ["*-bar.foo.com"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: prefix-long
  domains: ["foo.bar.*"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: prefix-short
  domains: ["foo.*"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: gateway
  domains: [gw.example.org, "gw.example.org:*"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: v6
  domains: ["[::1]"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
- name: default
  domains: ["*"]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
`

func TestSelectVirtualHost(t *testing.T) {
	tbl := mustCompile(t, domainsConfig)
	tests := []struct {
		host string
		want string
	}{
		// Exact, with the port as the domain lists it, case-insensitively.
		{"reviews:9080", "reviews.default.svc.cluster.local:9080"},
		{"REVIEWS.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local:9080"},
		{"reviews.default:9080", "reviews.default.svc.cluster.local:9080"},
		// A port the domains do not list is a different authority.
		{"reviews:9081", "default"},
		{"reviews", "default"},
		// Both forms listed for a port 80 service.
		{"productpage", "productpage.default.svc.cluster.local:80"},
		{"productpage:80", "productpage.default.svc.cluster.local:80"},
		// The scheme's default port is the same authority as no port.
		{"ratings.example.com:80", "ratings"},
		{"RATINGS.EXAMPLE.COM", "ratings"},
		{"ratings.example.com:8080", "default"},
		// Exact beats wildcards; the longest suffix wins; a wildcard needs
		// at least one character.
		{"v1.api.example.com", "suffix-long"},
		{"api.example.com", "suffix-short"},
		{"www.example.com", "suffix-short"},
		{"example.com", "default"},
		{"x-bar.foo.com", "suffix-dash"},
		{"-bar.foo.com", "default"},
		// Suffix wildcards beat prefix wildcards; the longest prefix wins.
		{"foo.x-bar.foo.com", "suffix-dash"},
		{"foo.bar.baz", "prefix-long"},
		{"foo.baz", "prefix-short"},
		{"foo.", "default"},
		// HOST and HOST:* as the gateway lists them.
		{"gw.example.org", "gateway"},
		{"gw.example.org:8443", "gateway"},
		{"[::1]:80", "v6"},
		{"[::1]:81", "default"},
		{"", "default"},
		{"unknown.svc:1234", "default"},
		// Longer than the stack buffer for lower-casing.
		{strings.Repeat("A", 300) + ".API.example.com", "suffix-long"},
		{strings.Repeat("a", 300) + ".api.example.com", "suffix-long"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := selectedVH(tbl, newRequest("GET", "/", tt.host)); got != tt.want {
				t.Errorf("host %q: got %q, want %q", tt.host, got, tt.want)
			}
		})
	}
}

func TestSelectHTTPSDefaultPort(t *testing.T) {
	tbl := mustCompile(t, domainsConfig)
	req := newRequest("GET", "https://ratings.example.com:443/", "")
	if got := selectedVH(tbl, req); got != "ratings" {
		t.Errorf("https on :443: got %q, want ratings", got)
	}
	req = newRequest("GET", "http://ratings.example.com:443/", "")
	if got := selectedVH(tbl, req); got != "default" {
		t.Errorf("http on :443: got %q, want default", got)
	}
}

func TestSelectIgnorePortInHostMatching(t *testing.T) {
	tbl := mustCompile(t, `
name: gw
ignore_port_in_host_matching: true
virtual_hosts:
- name: bookinfo
  domains: [bookinfo.example.com]
  routes: [{match: {prefix: /}, route: {cluster: a}}]
`)
	if got := selectedVH(tbl, newRequest("GET", "/", "bookinfo.example.com:8080")); got != "bookinfo" {
		t.Errorf("got %q, want bookinfo", got)
	}
}

func TestSelectErrors(t *testing.T) {
	tbl := mustCompile(t, `
name: http_proxy
virtual_hosts:
- name: reviews:9080
  domains: [reviews:9080]
  routes: [{match: {path: /only}, route: {cluster: a}}]
`)
	_, err := tbl.Select(newRequest("GET", "/", "details:9080"))
	if !errors.Is(err, ErrNoVirtualHost) || err.Error() != `no virtual host for host "details:9080"` {
		t.Errorf("unknown host: got %v, want ErrNoVirtualHost naming the host", err)
	}
	_, err = tbl.Select(newRequest("GET", "/other", "reviews:9080"))
	if !errors.Is(err, ErrNoRoute) || err.Error() != `no matching route in virtual host "reviews:9080"` {
		t.Errorf("no route: got %v, want ErrNoRoute naming the virtual host", err)
	}
	if tbl.Name() != "http_proxy" {
		t.Errorf("Name() = %q", tbl.Name())
	}
}

func TestPathMatch(t *testing.T) {
	tests := []struct {
		name  string
		match string
		path  string
		want  bool
	}{
		{"prefix", `{prefix: /reviews}`, "/reviews/0", true},
		{"prefix exact length", `{prefix: /reviews}`, "/reviews", true},
		{"prefix is not a path segment match", `{prefix: /reviews}`, "/reviewsX", true},
		{"prefix miss", `{prefix: /reviews}`, "/ratings", false},
		{"prefix is case sensitive", `{prefix: /reviews}`, "/Reviews/0", false},
		{"prefix case insensitive", `{prefix: /Reviews, case_sensitive: false}`, "/rEVIEWS/0", true},
		{"empty prefix matches all", `{prefix: ""}`, "/anything", true},
		{"path", `{path: /login}`, "/login", true},
		{"path ignores query", `{path: /login}`, "/login?next=/", true},
		{"path is exact", `{path: /login}`, "/login/", false},
		{"path case insensitive", `{path: /LOGIN, case_sensitive: false}`, "/Login", true},
		{"path case sensitive", `{path: /LOGIN}`, "/Login", false},
		{"regex full match", `{safe_regex: {regex: "/reviews/[0-9]+"}}`, "/reviews/12", true},
		{"regex is anchored at the end", `{safe_regex: {regex: "/reviews/[0-9]+"}}`, "/reviews/12/x", false},
		{"regex is anchored at the start", `{safe_regex: {regex: "[0-9]+"}}`, "/12", false},
		{"regex alternation is anchored", `{safe_regex: {regex: "/a|/b"}}`, "/bx", false},
		{"regex ignores query", `{safe_regex: {regex: "/r/[0-9]+"}}`, "/r/1?x=2", true},
		{"regex ignores case_sensitive", `{safe_regex: {regex: "/r"}, case_sensitive: false}`, "/R", false},
		{"separated prefix equal", `{path_separated_prefix: /api}`, "/api", true},
		{"separated prefix segment", `{path_separated_prefix: /api}`, "/api/v1", true},
		{"separated prefix with query", `{path_separated_prefix: /api}`, "/api?x", true},
		{"separated prefix not a segment", `{path_separated_prefix: /api}`, "/apix", false},
		{"separated prefix case insensitive", `{path_separated_prefix: /API, case_sensitive: false}`, "/api/x", true},
		// The escaped path is matched: an encoded slash is not a slash.
		{"escaped slash", `{prefix: /a/b}`, "/a%2Fb", false},
		{"escaped slash literal", `{path: /a%2Fb}`, "/a%2Fb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := oneRoute(t, tt.match)
			_, err := tbl.Select(newRequest("GET", tt.path, "x"))
			if got := err == nil; got != tt.want {
				t.Errorf("match %s, path %q: matched=%v (err %v), want %v", tt.match, tt.path, got, err, tt.want)
			}
		})
	}
}

func TestHeaderMatch(t *testing.T) {
	tests := []struct {
		name    string
		matcher string
		method  string
		target  string
		headers []string
		want    bool
	}{
		{"exact", `{name: end-user, string_match: {exact: jason}}`, "", "/", []string{"End-User", "jason"}, true},
		{"exact miss", `{name: end-user, string_match: {exact: jason}}`, "", "/", []string{"End-User", "Jason"}, false},
		{"exact ignore case", `{name: end-user, string_match: {exact: Jason, ignore_case: true}}`, "", "/", []string{"end-user", "jASON"}, true},
		{"exact missing header", `{name: end-user, string_match: {exact: jason}}`, "", "/", nil, false},
		{"exact empty value", `{name: x, string_match: {exact: ""}}`, "", "/", []string{"x", ""}, true},
		{"prefix", `{name: x, string_match: {prefix: ab}}`, "", "/", []string{"x", "abc"}, true},
		{"prefix ignore case", `{name: x, string_match: {prefix: AB, ignore_case: true}}`, "", "/", []string{"x", "aBc"}, true},
		{"prefix miss", `{name: x, string_match: {prefix: ab}}`, "", "/", []string{"x", "cab"}, false},
		{"suffix", `{name: x, string_match: {suffix: bc}}`, "", "/", []string{"x", "abc"}, true},
		{"suffix ignore case", `{name: x, string_match: {suffix: BC, ignore_case: true}}`, "", "/", []string{"x", "abc"}, true},
		{"suffix longer than value", `{name: x, string_match: {suffix: abcd, ignore_case: true}}`, "", "/", []string{"x", "bcd"}, false},
		{"contains", `{name: x, string_match: {contains: "b"}}`, "", "/", []string{"x", "abc"}, true},
		{"contains ignore case", `{name: x, string_match: {contains: BC, ignore_case: true}}`, "", "/", []string{"x", "xabcx"}, true},
		{"contains miss", `{name: x, string_match: {contains: bd}}`, "", "/", []string{"x", "abcd"}, false},
		{"regex", `{name: x, string_match: {safe_regex: {regex: "v[0-9]"}}}`, "", "/", []string{"x", "v2"}, true},
		{"regex full match", `{name: x, string_match: {safe_regex: {regex: "v[0-9]"}}}`, "", "/", []string{"x", "v22"}, false},
		{"regex ignores ignore_case", `{name: x, string_match: {safe_regex: {regex: "v"}, ignore_case: true}}`, "", "/", []string{"x", "V"}, false},
		{"deprecated safe_regex_match", `{name: x, safe_regex_match: {regex: "a+"}}`, "", "/", []string{"x", "aaa"}, true},
		{"multiple values joined with comma", `{name: x, string_match: {exact: "a,b"}}`, "", "/", []string{"x", "a", "x", "b"}, true},
		{"present", `{name: x, present_match: true}`, "", "/", []string{"x", ""}, true},
		{"present missing", `{name: x, present_match: true}`, "", "/", nil, false},
		{"absent", `{name: x, present_match: false}`, "", "/", nil, true},
		{"absent but present", `{name: x, present_match: false}`, "", "/", []string{"x", "1"}, false},
		{"present inverted", `{name: x, present_match: true, invert_match: true}`, "", "/", nil, true},
		{"no specifier means present", `{name: x}`, "", "/", []string{"x", "1"}, true},
		{"no specifier missing", `{name: x}`, "", "/", nil, false},
		{"invert", `{name: x, string_match: {exact: a}, invert_match: true}`, "", "/", []string{"x", "b"}, true},
		{"invert matching value", `{name: x, string_match: {exact: a}, invert_match: true}`, "", "/", []string{"x", "a"}, false},
		{"invert missing header", `{name: x, string_match: {exact: a}, invert_match: true}`, "", "/", nil, false},
		{"invert missing as empty", `{name: x, string_match: {exact: a}, invert_match: true, treat_missing_header_as_empty: true}`, "", "/", nil, true},
		{"missing as empty", `{name: x, string_match: {exact: ""}, treat_missing_header_as_empty: true}`, "", "/", nil, true},
		{"range", `{name: x, range_match: {start: 1, end: 11}}`, "", "/", []string{"x", "10"}, true},
		{"range end exclusive", `{name: x, range_match: {start: 1, end: 11}}`, "", "/", []string{"x", "11"}, false},
		{"range not a number", `{name: x, range_match: {start: 1, end: 11}}`, "", "/", []string{"x", "5a"}, false},
		{"range with sign and spaces", `{name: x, range_match: {start: -10, end: 11}}`, "", "/", []string{"x", " +5 "}, true},
		{"range negative", `{name: x, range_match: {start: -10, end: 11}}`, "", "/", []string{"x", "-10"}, true},
		{"range sign alone", `{name: x, range_match: {start: -10, end: 11}}`, "", "/", []string{"x", "-"}, false},
		{"range empty", `{name: x, range_match: {start: -10, end: 11}}`, "", "/", []string{"x", ""}, false},
		{"range overflow", `{name: x, range_match: {start: -10, end: 11}}`, "", "/", []string{"x", "99999999999999999999"}, false},
		{"range max int64", `{name: x, range_match: {start: 0, end: 9223372036854775807}}`, "", "/", []string{"x", "9223372036854775806"}, true},
		{"deprecated exact empty is any value", `{name: x, exact_match: ""}`, "", "/", []string{"x", "zz"}, true},
		{"deprecated prefix", `{name: x, prefix_match: "z"}`, "", "/", []string{"x", "zz"}, true},
		{":method", `{name: ":method", string_match: {exact: POST}}`, "POST", "/", nil, true},
		{":method miss", `{name: ":method", string_match: {exact: POST}}`, "GET", "/", nil, false},
		{":authority", `{name: ":authority", string_match: {prefix: "reviews"}}`, "", "/", nil, true},
		{"host is :authority", `{name: host, string_match: {exact: "reviews:9080"}}`, "", "/", nil, true},
		{":path has the query", `{name: ":path", string_match: {exact: "/a?b=1"}}`, "", "/a?b=1", nil, true},
		{":path without query", `{name: ":path", string_match: {exact: "/a"}}`, "", "/a", nil, true},
		{":scheme", `{name: ":scheme", string_match: {exact: "http"}}`, "", "/", nil, true},
		{"header name is case-insensitive", `{name: X-Canary, string_match: {exact: "1"}}`, "", "/", []string{"x-canary", "1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := oneRoute(t, `{prefix: /, headers: [`+tt.matcher+`]}`)
			method := tt.method
			if method == "" {
				method = "GET"
			}
			_, err := tbl.Select(newRequest(method, tt.target, "reviews:9080", tt.headers...))
			if got := err == nil; got != tt.want {
				t.Errorf("matcher %s, headers %q: matched=%v (err %v), want %v", tt.matcher, tt.headers, got, err, tt.want)
			}
		})
	}
}

func TestQueryParameterMatch(t *testing.T) {
	tests := []struct {
		name    string
		matcher string
		target  string
		want    bool
	}{
		{"exact", `{name: u, string_match: {exact: jason}}`, "/?u=jason", true},
		{"exact miss", `{name: u, string_match: {exact: jason}}`, "/?u=json", false},
		{"exact ignore case", `{name: u, string_match: {exact: JASON, ignore_case: true}}`, "/?a=1&u=Jason", true},
		{"prefix", `{name: u, string_match: {prefix: ja}}`, "/?u=jason", true},
		{"regex", `{name: id, string_match: {safe_regex: {regex: "[0-9]+"}}}`, "/?id=42", true},
		{"regex full match", `{name: id, string_match: {safe_regex: {regex: "[0-9]+"}}}`, "/?id=42x", false},
		{"missing", `{name: u, string_match: {exact: jason}}`, "/?v=jason", false},
		{"first value wins", `{name: u, string_match: {exact: a}}`, "/?u=a&u=b", true},
		{"first value only", `{name: u, string_match: {exact: b}}`, "/?u=a&u=b", false},
		{"raw, not decoded", `{name: q, string_match: {exact: "a%20b"}}`, "/?q=a%20b", true},
		{"key without value", `{name: debug, string_match: {exact: ""}}`, "/?debug", true},
		{"present", `{name: debug, present_match: true}`, "/?x=1&debug", true},
		{"present missing", `{name: debug, present_match: true}`, "/?x=1", false},
		{"absent", `{name: debug, present_match: false}`, "/?x=1", true},
		{"absent but present", `{name: debug, present_match: false}`, "/?debug=1", false},
		{"no specifier means present", `{name: debug}`, "/?debug=0", true},
		{"name is case sensitive", `{name: Debug}`, "/?debug=0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := oneRoute(t, `{prefix: /, query_parameters: [`+tt.matcher+`]}`)
			_, err := tbl.Select(newRequest("GET", tt.target, "x"))
			if got := err == nil; got != tt.want {
				t.Errorf("matcher %s, target %q: matched=%v (err %v), want %v", tt.matcher, tt.target, got, err, tt.want)
			}
		})
	}
}

func TestAllMatchersMustMatch(t *testing.T) {
	tbl := oneRoute(t, `{prefix: /api, headers: [{name: x, present_match: true}], query_parameters: [{name: q}]}`)
	tests := []struct {
		target  string
		headers []string
		want    bool
	}{
		{"/api?q", []string{"x", "1"}, true},
		{"/api?q", nil, false},
		{"/api", []string{"x", "1"}, false},
		{"/web?q", []string{"x", "1"}, false},
	}
	for _, tt := range tests {
		_, err := tbl.Select(newRequest("GET", tt.target, "h", tt.headers...))
		if got := err == nil; got != tt.want {
			t.Errorf("%s %q: matched=%v, want %v", tt.target, tt.headers, got, tt.want)
		}
	}
}

const bookinfoReviews = `
name: http_proxy
virtual_hosts:
- name: reviews.default.svc.cluster.local:9080
  domains: [reviews:9080, reviews.default.svc.cluster.local:9080]
  routes:
  - name: jason
    match: {prefix: /, headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: "outbound|9080|v2|reviews.default.svc.cluster.local", timeout: 0s}
  - name: reviews-api
    match: {prefix: /reviews}
    route: {cluster: "outbound|9080|v1|reviews.default.svc.cluster.local", timeout: 0s}
  - name: shadowed
    match: {path: /reviews/0}
    route: {cluster: never, timeout: 0s}
  - name: default
    match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - {name: "outbound|9080|v1|reviews.default.svc.cluster.local", weight: 50}
        - {name: "outbound|9080|v3|reviews.default.svc.cluster.local", weight: 50}
      timeout: 0s
`

func TestFirstMatchWins(t *testing.T) {
	tbl := mustCompile(t, bookinfoReviews)
	tests := []struct {
		target  string
		headers []string
		want    string
	}{
		{"/reviews/0", []string{"end-user", "jason"}, "jason"},
		{"/reviews/0", nil, "reviews-api"},
		{"/reviews/0", []string{"end-user", "mike"}, "reviews-api"},
		{"/health", nil, "default"},
	}
	for _, tt := range tests {
		r, err := tbl.Select(newRequest("GET", tt.target, "reviews:9080", tt.headers...))
		if err != nil {
			t.Fatalf("%s: %v", tt.target, err)
		}
		if r.Name != tt.want {
			t.Errorf("%s %q: route %q, want %q", tt.target, tt.headers, r.Name, tt.want)
		}
	}
}

func TestAbsoluteFormRequest(t *testing.T) {
	tbl := mustCompile(t, bookinfoReviews+`
- name: details:9080
  domains: [details:9080]
  routes:
  - name: details-q
    match: {path: /details/0, query_parameters: [{name: v, string_match: {exact: "2"}}]}
    route: {cluster: details-v2}
`)
	tests := []struct {
		name string
		raw  string
		want string
	}{
		// What an application using HTTP_PROXY sends: the URL's authority
		// wins over a Host header (RFC 9112, section 3.2.2).
		{"proxy request", "GET http://reviews:9080/reviews/0 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n", "reviews-api"},
		{"authority beats Host header", "GET http://details:9080/details/0?v=2 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n", "details-q"},
		{"upper-case authority", "GET http://DETAILS:9080/details/0?v=2 HTTP/1.1\r\n\r\n", "details-q"},
		{"header match", "GET http://reviews:9080/x HTTP/1.1\r\nHost: reviews:9080\r\nEnd-User: jason\r\n\r\n", "jason"},
		{"origin form", "GET /details/0?v=2 HTTP/1.1\r\nHost: details:9080\r\n\r\n", "details-q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tbl.Select(readRequest(t, tt.raw))
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if r.Name != tt.want {
				t.Errorf("route %q, want %q", r.Name, tt.want)
			}
		})
	}
	// A client-side request built from an absolute URL has no Host header.
	req, _ := http.NewRequest("GET", "http://details:9080/details/0?v=2", nil)
	if r, err := tbl.Select(req); err != nil || r.Name != "details-q" {
		t.Errorf("client request: %v, %v", r, err)
	}
}

func TestSelectAllocations(t *testing.T) {
	tbl := mustCompile(t, bookinfoReviews+`
- name: details
  domains: [details:9080]
  routes:
  - name: debug
    match: {prefix: /, headers: [{name: ":path", string_match: {suffix: "?debug=1"}}]}
    route: {cluster: debug}
  - name: shard
    match: {prefix: /, headers: [{name: x-shard, range_match: {start: 0, end: 8}}]}
    route: {cluster: shard}
  - name: details
    match: {prefix: /details/}
    route: {cluster: details}
`)
	tests := []struct {
		name string
		req  *http.Request
		want string // route name; "" for ErrNoRoute
	}{
		{"header", newRequest("GET", "/reviews/0", "reviews:9080", "end-user", "jason"), "jason"},
		{"prefix", newRequest("GET", "/reviews/0?x=1", "reviews:9080"), "reviews-api"},
		{"last", newRequest("GET", "/health", "reviews.default.svc.cluster.local:9080"), "default"},
		{"upper-case host", newRequest("GET", "/reviews/0", "Reviews.Default.Svc.Cluster.Local:9080"), "reviews-api"},
		{":path with query", newRequest("GET", "/details/0?debug=1", "details:9080"), "debug"},
		{":path with query, absolute-form", readRequest(t, "GET http://details:9080/details/0?debug=1 HTTP/1.1\r\nHost: details:9080\r\n\r\n"), "debug"},
		{"range, not a number", newRequest("GET", "/details/0", "details:9080", "x-shard", "abc"), "details"},
		{"no route", newRequest("GET", "/other", "details:9080"), ""},
	}
	for _, tt := range tests {
		var r *Route
		var err error
		allocs := testing.AllocsPerRun(100, func() { r, err = tbl.Select(tt.req) })
		switch {
		case tt.want == "" && !errors.Is(err, ErrNoRoute):
			t.Errorf("%s: Select = %v, %v; want ErrNoRoute", tt.name, r, err)
		case tt.want != "" && (err != nil || r.Name != tt.want):
			t.Errorf("%s: Select = %v, %v; want route %q", tt.name, r, err, tt.want)
		}
		if allocs != 0 {
			t.Errorf("%s: Select allocates %.1f times per call, want 0", tt.name, allocs)
		}
	}
}

// TestPathHeaderWithQuery checks the :path a matcher sees when the request
// target as received cannot supply it: a request built by a client (no
// RequestURI), and a path whose parameters ignore_path_parameters strips.
func TestPathHeaderWithQuery(t *testing.T) {
	tbl := oneRoute(t, `{prefix: /, headers: [{name: ":path", string_match: {exact: "/a?b=1"}}]}`)
	client, err := http.NewRequest("GET", "http://reviews:9080/a?b=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Select(client); err != nil {
		t.Errorf("client request for /a?b=1: %v", err)
	}
	if _, err := tbl.Select(newRequest("GET", "/a?b=12", "x")); err == nil {
		t.Errorf("/a?b=12 matched exact :path /a?b=1")
	}
	tbl = mustCompile(t, `
name: test
ignore_path_parameters_in_path_matching: true
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, headers: [{name: ":path", string_match: {exact: "/a?b=1"}}]}
    route: {cluster: hit}
`)
	if _, err := tbl.Select(newRequest("GET", "/a;v=2?b=1", "x")); err != nil {
		t.Errorf("/a;v=2?b=1 with path parameters ignored: %v", err)
	}
}

func TestRewritePath(t *testing.T) {
	rc := parseConfig(t, `
name: rc
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/api/", case_sensitive: false}
    route: {cluster: c, prefix_rewrite: "/v2/"}
  - match: {path: "/old"}
    route: {cluster: c, prefix_rewrite: "/new"}
  - match: {path_separated_prefix: "/svc"}
    route: {cluster: c, prefix_rewrite: "/"}
  - match: {safe_regex: {regex: "/r/[0-9]+"}}
    route: {cluster: c, prefix_rewrite: "/numbered"}
  - match: {prefix: "/"}
    route: {cluster: c}`)
	table, err := Compile(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/api/users", "/v2/users"},
		{"/API/users", "/v2/users"},
		{"/old", "/new"},
		{"/svc/a/b", "//a/b"},
		{"/svc", "/"},
		{"/r/42", "/numbered"},
		{"/other", "/other"},
	} {
		rt, err := table.Select(newRequest("GET", tc.path, "h"))
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if got := rt.RewritePath(tc.path); got != tc.want {
			t.Errorf("%s: rewritten to %q, want %q", tc.path, got, tc.want)
		}
	}
}
