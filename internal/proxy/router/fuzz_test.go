package router

import (
	"errors"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// fuzzConfig exercises every matcher kind.
const fuzzConfig = `
name: fuzz
ignore_path_parameters_in_path_matching: true
virtual_hosts:
- name: reviews
  domains: [reviews:9080, "*.reviews.svc", "reviews.*"]
  retry_policy: {retry_on: 5xx}
  routes:
  - name: regex
    match: {safe_regex: {regex: "/reviews/[0-9]+"}, headers: [{name: end-user, string_match: {exact: jason, ignore_case: true}}]}
    route: {cluster: v2}
  - name: headers
    match:
      path_separated_prefix: /api
      case_sensitive: false
      headers:
      - {name: ":method", string_match: {safe_regex: {regex: "GET|HEAD"}}}
      - {name: ":authority", string_match: {suffix: "9080"}}
      - {name: ":path", string_match: {contains: "v", ignore_case: true}}
      - {name: ":scheme", string_match: {prefix: "http"}}
      - {name: x-version, range_match: {start: 1, end: 10}, invert_match: true}
      - {name: x-missing, present_match: false}
      - {name: x-empty, string_match: {exact: ""}, treat_missing_header_as_empty: true}
    route: {cluster: api, timeout: 1s}
  - name: query
    match:
      path: /q
      query_parameters:
      - {name: a, string_match: {safe_regex: {regex: "[a-z]*"}}}
      - {name: b, present_match: true}
      - {name: c}
    direct_response: {status: 200, body: {inline_string: ok}}
  - name: split
    match: {prefix: /}
    route: {weighted_clusters: {clusters: [{name: v1, weight: 3}, {name: v3, weight: 1}]}}
- name: other
  domains: ["*"]
  routes:
  - match: {prefix: /only, headers: [{name: x-any}]}
    route: {cluster: other}
`

func FuzzSelect(f *testing.F) {
	tbl := mustCompile(f, fuzzConfig)
	f.Add("GET", "reviews:9080", "/reviews/1", "End-User", "JASON")
	f.Fuzz(func(t *testing.T, method, host, target, name, value string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: target}
		}
		req := &http.Request{Method: method, Host: host, URL: u, Header: http.Header{}, RequestURI: target}
		if v := newRequestView(req); v.hasQ && v.pathWithQuery() != v.path+"?"+v.query {
			t.Fatalf(":path = %q, want %q", v.pathWithQuery(), v.path+"?"+v.query)
		}
		if a, b := tbl.findVirtualHost(host, "http"), tbl.findVirtualHost(asciiLower(host), "http"); a != b {
			t.Fatalf("host %q selects virtual host %v, lower-cased %v", host, a, b)
		}
		if name != "" {
			key := http.CanonicalHeaderKey(name)
			req.Header[key] = []string{value}
			req.Header["X-Twice"] = []string{value, name}
		}
		r, err := tbl.Select(req)
		if err != nil {
			if r != nil || !(errors.Is(err, ErrNoVirtualHost) || errors.Is(err, ErrNoRoute)) {
				t.Fatalf("Select = %v, %v: want a nil route and a sentinel error", r, err)
			}
			return
		}
		if r.VirtualHost == "" {
			t.Fatalf("route %+v has no virtual host", r)
		}
		h := fnv.New64a()
		h.Write([]byte(value))
		if c := r.PickCluster(h.Sum64()); (c == "") != (r.Direct != nil) {
			t.Fatalf("route %q: PickCluster = %q with Direct = %v", r.Name, c, r.Direct)
		}
		if again, err := tbl.Select(req); err != nil || again != r {
			t.Fatalf("Select is not deterministic: %v then %v, %v", r, again, err)
		}
	})
}

// redirectFuzzConfig has a redirect and a regex rewrite that read the
// request's host and path.
const redirectFuzzConfig = `
name: fuzz
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /old}
    redirect: {https_redirect: true, prefix_rewrite: /new, strip_query: true}
  - match: {prefix: /}
    redirect: {port_redirect: 8443, regex_rewrite: {pattern: {regex: "/([a-z]+)/"}, substitution: '/\1-x/'}}
`

// FuzzRedirect builds Location headers from arbitrary hosts and request
// targets: it must not panic, and the parts the redirect sets must be there.
func FuzzRedirect(f *testing.F) {
	tbl := mustCompile(f, redirectFuzzConfig)
	f.Add("shop:80", "/old/a?b=c")
	f.Fuzz(func(t *testing.T, host, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: target}
		}
		req := &http.Request{Method: "GET", Host: host, URL: u, Header: http.Header{}, RequestURI: target}
		r, err := tbl.Select(req)
		if err != nil {
			return
		}
		loc := r.RedirectLocation(req)
		switch {
		case r.Redirect.Scheme == "https":
			// strip_query: the Location ends with the rewritten path.
			path := r.match.rewrite(newRequestView(req).path, r.Redirect.PrefixRewrite, r.Redirect.RegexRewrite)
			rest, ok := strings.CutPrefix(loc, "https://")
			if !ok || !strings.HasSuffix(rest, path) {
				t.Fatalf("Location %q for host %q target %q", loc, host, target)
			}
		default:
			if !strings.HasPrefix(loc, "http://") || !strings.Contains(loc, ":8443/") {
				t.Fatalf("Location %q for host %q target %q has no port 8443", loc, host, target)
			}
		}
	})
}

// FuzzEncoded compiles arbitrary RouteConfiguration encodings both ways:
// decoded whole (Compile) and split on the wire (Split, Encoded.Compile),
// from scratch and reusing the table of fuzzConfig. The three must accept
// the same encodings, and the tables they build must pick the same virtual
// host and route for a host and path.
func FuzzEncoded(f *testing.F) {
	seed := parseConfig(f, fuzzConfig)
	prevEnc, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	e, err := Split(prevEnc)
	if err != nil {
		f.Fatal(err)
	}
	prev, err := e.Compile(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(prevEnc, "reviews:9080", "/reviews/1")
	changed := proto.Clone(seed).(*routev3.RouteConfiguration)
	changed.VirtualHosts[1].Domains = []string{"other", "*"}
	changed.VirtualHosts = append(changed.VirtualHosts, parseConfig(f, redirectFuzzConfig).VirtualHosts[0])
	if b, err := proto.Marshal(changed); err == nil {
		f.Add(b, "x.reviews.svc", "/api/v1")
	}
	f.Fuzz(func(t *testing.T, b []byte, host, path string) {
		rc := &routev3.RouteConfiguration{}
		var whole *Table
		wholeErr := proto.Unmarshal(b, rc)
		if wholeErr == nil {
			whole, wholeErr = Compile(rc)
		}
		var fresh, reused *Table
		enc, splitErr := Split(b)
		freshErr, reusedErr := splitErr, splitErr
		if splitErr == nil {
			fresh, freshErr = enc.Compile(nil)
			reused, reusedErr = enc.Compile(prev)
		}
		if (wholeErr == nil) != (freshErr == nil) || (freshErr == nil) != (reusedErr == nil) {
			t.Fatalf("decoded whole: %v; split: %v; split reusing: %v", wholeErr, freshErr, reusedErr)
		}
		if wholeErr != nil {
			return
		}
		req := &http.Request{Method: "GET", Host: host, URL: &url.URL{Path: path}, Header: http.Header{}, RequestURI: path}
		pick := func(tbl *Table) string {
			r, err := tbl.Select(req)
			if err != nil {
				return "error: " + err.Error()
			}
			return r.VirtualHost + "/" + r.Name + "/" + r.Cluster
		}
		if a, b, c := pick(whole), pick(fresh), pick(reused); a != b || b != c {
			t.Fatalf("host %q path %q: decoded whole %q, split %q, split reusing %q", host, path, a, b, c)
		}
	})
}
