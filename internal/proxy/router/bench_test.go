package router

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// benchConfig is a sidecar's http_proxy route configuration for 50 services:
// every virtual host has all the names of its service as domains and, like a
// typical VirtualService, a header route, a canary header route, an API
// prefix route and a weighted default.
func benchConfig() string {
	var b strings.Builder
	b.WriteString("name: http_proxy\nvirtual_hosts:\n")
	for i := range 50 {
		svc := fmt.Sprintf("svc%02d", i)
		fqdn := svc + ".default.svc.cluster.local"
		fmt.Fprintf(&b, `- name: %[2]s:9080
  domains: [%[2]s:9080, %[1]s.default.svc:9080, %[1]s.default:9080, %[1]s:9080]
  routes:
  - name: jason
    match: {prefix: /, headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: "outbound|9080|v2|%[2]s", timeout: 0s}
  - name: canary
    match: {prefix: /, headers: [{name: x-canary, string_match: {prefix: "yes"}}]}
    route: {cluster: "outbound|9080|canary|%[2]s", timeout: 0s}
  - name: api
    match: {prefix: /api/v1/}
    route: {cluster: "outbound|9080|v1|%[2]s", timeout: 0s}
  - name: default
    match: {prefix: /}
    route:
      weighted_clusters: {clusters: [{name: "outbound|9080|v1|%[2]s", weight: 90}, {name: "outbound|9080|v3|%[2]s", weight: 10}]}
      timeout: 0s
      retry_policy: {retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", num_retries: 2}
`, svc, fqdn)
	}
	return b.String()
}

func BenchmarkSelect(b *testing.B) {
	tbl := mustCompile(b, benchConfig())
	cases := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"header", newRequest("GET", "/reviews/0", "svc25:9080", "end-user", "jason", "accept", "*/*"), "jason"},
		{"prefix", newRequest("GET", "/api/v1/items?page=2", "svc49.default.svc.cluster.local:9080", "accept", "*/*"), "api"},
		{"fallthrough", newRequest("GET", "/index.html", "svc00:9080", "x-canary", "no", "accept", "*/*"), "default"},
		{"absolute-form", readRequest(b, "GET http://svc10.default:9080/api/v1/x HTTP/1.1\r\nHost: svc10.default:9080\r\n\r\n"), "api"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if r, err := tbl.Select(c.req); err != nil || r.Name != c.want {
				b.Fatalf("Select = %v, %v; want route %q", r, err, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				r, _ := tbl.Select(c.req)
				_ = r.PickCluster(12345)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		req := cases[0].req
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = tbl.Select(req)
			}
		})
	})
}

// BenchmarkSelectUncommon covers requests off the common paths: a host in
// upper case, a :path matcher on a request with a query, a range matcher on
// a value that is not a number, and the two errors.
func BenchmarkSelectUncommon(b *testing.B) {
	tbl := mustCompile(b, `
name: http_proxy
virtual_hosts:
- name: reviews:9080
  domains: [reviews:9080, reviews]
  routes:
  - name: by-path
    match: {prefix: /, headers: [{name: ":path", string_match: {suffix: "?debug=1"}}]}
    route: {cluster: debug}
  - name: by-range
    match: {prefix: /, headers: [{name: x-shard, range_match: {start: 0, end: 8}}]}
    route: {cluster: shard}
  - name: api
    match: {prefix: /api/}
    route: {cluster: api}
`)
	cases := []struct {
		name string
		req  *http.Request
		want string // route name, or "" for an error
	}{
		{"upper-case-host", newRequest("GET", "/api/x", "Reviews:9080"), "api"},
		{"path-with-query", newRequest("GET", "/api/x?debug=1", "reviews:9080"), "by-path"},
		{"range-not-a-number", newRequest("GET", "/api/x", "reviews:9080", "x-shard", "abc"), "api"},
		{"no-route", newRequest("GET", "/other", "reviews:9080"), ""},
		{"no-virtual-host", newRequest("GET", "/api/x", "details:9080"), ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r, err := tbl.Select(c.req)
			if (c.want == "") != (err != nil) || (r != nil && r.Name != c.want) {
				b.Fatalf("Select = %v, %v; want route %q", r, err, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = tbl.Select(c.req)
			}
		})
	}
}
