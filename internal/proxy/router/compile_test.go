package router

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRouteActions(t *testing.T) {
	tbl := mustCompile(t, `
name: http_proxy
virtual_hosts:
- name: vh
  domains: ["*"]
  retry_policy: {retry_on: "5xx", num_retries: 4}
  routes:
  - name: istio-default-retries
    match: {prefix: /istio}
    route:
      cluster: reviews
      timeout: 0s
      retry_policy:
        retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
        num_retries: 2
        retry_host_predicate:
        - name: envoy.retry_host_predicates.previous_hosts
          typed_config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}
        host_selection_retry_max_attempts: 5
        retriable_status_codes: [503]
  - name: tuned
    match: {prefix: /tuned}
    route:
      cluster: ratings
      timeout: 3s
      prefix_rewrite: /v2/
      host_rewrite_literal: ratings.internal
      retry_policy:
        retry_on: "gateway-error, reset"
        per_try_timeout: 0.5s
        retry_back_off: {base_interval: 0.1s}
  - name: inherits
    match: {prefix: /inherit}
    route: {cluster: details}
  - name: direct
    match: {prefix: /direct}
    direct_response: {status: 418, body: {inline_string: "short and stout"}}
`)
	get := func(path string) *Route {
		t.Helper()
		r, err := tbl.Select(newRequest("GET", path, "any"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return r
	}
	tests := []struct {
		path string
		want Route
	}{
		{"/istio", Route{
			Name: "istio-default-retries", VirtualHost: "vh", Cluster: "reviews",
			Retry: RetryPolicy{
				RetryOn:                  RetryOnConnectFailure | RetryOnRefusedStream | RetryOnUnavailable | RetryOnCancelled | RetryOnRetriableStatusCodes,
				NumRetries:               2,
				RetriableStatusCodes:     []uint32{503},
				AvoidPreviousHosts:       true,
				HostSelectionMaxAttempts: 5,
				BackOffBase:              25 * time.Millisecond,
				BackOffMax:               250 * time.Millisecond,
			},
		}},
		{"/tuned", Route{
			Name: "tuned", VirtualHost: "vh", Cluster: "ratings", Timeout: 3 * time.Second,
			PrefixRewrite: "/v2/", HostRewrite: "ratings.internal",
			Retry: RetryPolicy{
				RetryOn: RetryOnGatewayError | RetryOnReset, NumRetries: 1, PerTryTimeout: 500 * time.Millisecond,
				RetriableStatusCodes: []uint32{}, HostSelectionMaxAttempts: 1,
				BackOffBase: 100 * time.Millisecond, BackOffMax: time.Second,
			},
		}},
		// No timeout field: Envoy's 15s. No route retry policy: the virtual
		// host's.
		{"/inherit", Route{
			Name: "inherits", VirtualHost: "vh", Cluster: "details", Timeout: 15 * time.Second,
			Retry: RetryPolicy{
				RetryOn: RetryOn5xx, NumRetries: 4, RetriableStatusCodes: []uint32{}, HostSelectionMaxAttempts: 1,
				BackOffBase: 25 * time.Millisecond, BackOffMax: 250 * time.Millisecond,
			},
		}},
		{"/direct", Route{Name: "direct", VirtualHost: "vh", Direct: &DirectResponse{Status: 418, Body: "short and stout"}}},
	}
	for _, tt := range tests {
		got := *get(tt.path)
		got.match, got.cumulative, got.total = routeMatch{}, nil, 0
		if got.Retry.RetriableStatusCodes == nil {
			got.Retry.RetriableStatusCodes = []uint32{}
		}
		if tt.want.Retry.RetriableStatusCodes == nil {
			tt.want.Retry.RetriableStatusCodes = []uint32{}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.path, got, tt.want)
		}
	}
	if c := get("/direct").PickCluster(7); c != "" {
		t.Errorf("direct response PickCluster = %q, want empty", c)
	}
	if c := get("/istio").PickCluster(7); c != "reviews" {
		t.Errorf("single cluster PickCluster = %q, want reviews", c)
	}
}

func TestRetryOnString(t *testing.T) {
	on, err := ParseRetryOn(" 5xx,connect-failure ,,deadline-exceeded")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := on.String(), "5xx,connect-failure,deadline-exceeded"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !on.Has(RetryOn5xx|RetryOnConnectFailure) || on.Has(RetryOnReset) {
		t.Errorf("Has is wrong for %s", on)
	}
}

const weightedConfig = `
name: w
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - {name: v1, weight: 70}
        - {name: idle, weight: 0}
        - {name: v2, weight: 20}
        - {name: v3, weight: 10}
`

func TestPickClusterBands(t *testing.T) {
	r, err := mustCompile(t, weightedConfig).Select(newRequest("GET", "/", "x"))
	if err != nil {
		t.Fatal(err)
	}
	want := []WeightedCluster{{Name: "v1", Weight: 70}, {Name: "idle", Weight: 0}, {Name: "v2", Weight: 20}, {Name: "v3", Weight: 10}}
	if !reflect.DeepEqual(r.Weighted, want) {
		t.Errorf("Weighted = %v, want %v", r.Weighted, want)
	}
	tests := []struct {
		rnd  uint64
		want string
	}{
		{0, "v1"}, {69, "v1"}, {70, "v2"}, {89, "v2"}, {90, "v3"}, {99, "v3"},
		{100, "v1"}, {170, "v2"},
		{1<<64 - 1, "v1"}, // 18446744073709551615 % 100 == 15
	}
	for _, tt := range tests {
		if got := r.PickCluster(tt.rnd); got != tt.want {
			t.Errorf("PickCluster(%d) = %q, want %q", tt.rnd, got, tt.want)
		}
	}
}

func TestPickClusterDistribution(t *testing.T) {
	r, err := mustCompile(t, weightedConfig).Select(newRequest("GET", "/", "x"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	counts := map[string]int{}
	for range n {
		counts[r.PickCluster(rng.Uint64())]++
	}
	want := map[string]float64{"v1": 70, "v2": 20, "v3": 10, "idle": 0}
	for name, pct := range want {
		got := 100 * float64(counts[name]) / n
		if got < pct-2 || got > pct+2 {
			t.Errorf("%s got %.1f%% of %d picks, want %.0f%% ± 2", name, got, n, pct)
		}
	}
	if counts["idle"] != 0 {
		t.Errorf("zero-weight cluster picked %d times", counts["idle"])
	}
}

func TestCompileErrors(t *testing.T) {
	vh := func(routes string) string {
		return `
name: http_proxy
virtual_hosts:
- name: reviews.default.svc.cluster.local:9080
  domains: [reviews:9080]
  routes:
` + routes
	}
	tests := []struct {
		name   string
		config string
		want   string // the whole message, or a part of it after "..."
	}{
		{"bad path regex", vh(`
  - name: jason
    match: {safe_regex: {regex: "([a-z]"}}
    route: {cluster: c}`),
			"route config http_proxy: virtual host \"reviews.default.svc.cluster.local:9080\": route 0 (\"jason\"): safe_regex \"([a-z]\": error parsing regexp: missing closing ): `([a-z]`"},
		{"bad header regex", vh(`
  - match: {prefix: /}
    route: {cluster: c}
  - match: {prefix: /, headers: [{name: end-user, string_match: {safe_regex: {regex: "a**"}}}]}
    route: {cluster: c}`),
			"route config http_proxy: virtual host \"reviews.default.svc.cluster.local:9080\": route 1: headers[0] (\"end-user\"): string_match: safe_regex \"a**\": error parsing regexp: invalid nested repetition operator: `**`"},
		{"bad query regex", vh(`
  - name: q
    match: {prefix: /, query_parameters: [{name: id, string_match: {safe_regex: {regex: "[0-9"}}}]}
    route: {cluster: c}`),
			`...route 0 ("q"): query_parameters[0] ("id"): string_match: safe_regex "[0-9": error parsing regexp: missing closing ]`},
		{"zero weights", vh(`
  - name: split
    match: {prefix: /}
    route: {weighted_clusters: {clusters: [{name: a, weight: 0}, {name: b}]}}`),
			`...route 0 ("split"): route: weighted_clusters: all cluster weights are zero`},
		{"weight overflow", vh(`
  - match: {prefix: /}
    route: {weighted_clusters: {clusters: [{name: a, weight: 4294967295}, {name: b, weight: 1}]}}`),
			`...weighted_clusters: sum of weights 4294967296 exceeds 4294967295`},
		{"redirect response code", vh(`
  - name: r
    match: {prefix: /}
    redirect: {host_redirect: example.com, response_code: 9}`),
			`...route 0 ("r"): redirect: response_code 9 is not supported`},
		{"redirect path_rewrite", vh(`
  - name: r
    match: {prefix: /}
    redirect: {path_rewrite: "/x"}`),
			`...route 0 ("r"): redirect: path_rewrite is not supported`},
		{"redirect bad scheme", vh(`
  - match: {prefix: /}
    redirect: {scheme_redirect: "ht tp"}`),
			`...redirect: scheme_redirect "ht tp" is not a URI scheme`},
		{"redirect regex substitution", vh(`
  - match: {prefix: /}
    redirect: {regex_rewrite: {pattern: {regex: "^/(a)"}, substitution: '/\2'}}`),
			`...redirect: regex_rewrite: substitution "/\\2": \2 refers to a group the pattern does not have (it has 1)`},
		{"no action", vh(`
  - match: {prefix: /}`),
			`...route 0: no action`},
		{"no path specifier", vh(`
  - match: {headers: [{name: x}]}
    route: {cluster: c}`),
			`...route 0: match has no path specifier`},
		{"runtime fraction", vh(`
  - match: {prefix: /, runtime_fraction: {default_value: {numerator: 50}}}
    route: {cluster: c}`),
			`...route 0: match.runtime_fraction is not supported`},
		{"unsupported pseudo-header", vh(`
  - match: {prefix: /, headers: [{name: ":protocol", present_match: true}]}
    route: {cluster: c}`),
			`...headers[0] (":protocol"): pseudo-header ":protocol" is not supported`},
		{"empty range", vh(`
  - match: {prefix: /, headers: [{name: v, range_match: {start: 5, end: 5}}]}
    route: {cluster: c}`),
			`...headers[0] ("v"): range_match [5, 5) is empty`},
		{"cluster header", vh(`
  - match: {prefix: /}
    route: {cluster_header: x-cluster}`),
			`...route: cluster_header "x-cluster" is not supported`},
		{"prefix and regex rewrite", vh(`
  - match: {prefix: /}
    route: {cluster: c, prefix_rewrite: /x, regex_rewrite: {pattern: {regex: "a"}, substitution: b}}`),
			`...route 0: route: prefix_rewrite and regex_rewrite are both set; only one may be`},
		{"regex rewrite bad pattern", vh(`
  - match: {prefix: /}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "a("}, substitution: b}}`),
			"...route 0: route: regex_rewrite: pattern \"a(\": error parsing regexp: missing closing ): `a(`"},
		{"regex rewrite bad escape", vh(`
  - match: {prefix: /}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "a"}, substitution: '\n'}}`),
			`...regex_rewrite: substitution "\\n": a backslash must be followed by a digit or a backslash`},
		{"fault header abort", vh(`
  - name: f
    match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        abort: {header_abort: {}, percentage: {numerator: 1}}`),
			`...route 0 ("f"): typed_per_filter_config[envoy.filters.http.fault]: abort.header_abort is not supported`},
		{"fault header delay", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        delay: {header_delay: {}}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: delay.header_delay is not supported`},
		{"fault upstream cluster", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        upstream_cluster: c
        abort: {http_status: 503, percentage: {numerator: 1}}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: upstream_cluster "c" is not supported`},
		{"fault headers", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        headers: [{name: x}]
        abort: {http_status: 503}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: headers is not supported`},
		{"fault rate limit", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        response_rate_limit: {fixed_limit: {limit_kbps: 1}}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: response_rate_limit is not supported`},
		{"fault downstream nodes", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        downstream_nodes: [a]`),
			`...typed_per_filter_config[envoy.filters.http.fault]: downstream_nodes is not supported`},
		{"fault status out of range", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        abort: {http_status: 600}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: abort.http_status 600: must be between 200 and 599`},
		{"fault zero delay", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        delay: {fixed_delay: 0s}`),
			`...typed_per_filter_config[envoy.filters.http.fault]: delay.fixed_delay 0s: must be greater than zero`},
		{"fault config of another type", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
        config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}`),
			`...typed_per_filter_config[envoy.filters.http.fault].config: type type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate, want type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault`},
		{"fault on a weighted cluster", vh(`
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          typed_per_filter_config:
            envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}`),
			`...weighted_clusters: clusters[0]: typed_per_filter_config[envoy.filters.http.fault] is not supported on a weighted cluster`},
		{"hop-by-hop header", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: x-ok, value: "1"}}, {header: {key: Connection, value: close}}]`),
			`...route 0: request_headers_to_add[1]: header.key "Connection": hop-by-hop and framing headers cannot be modified`},
		{"pseudo-header", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: ":path", value: /x}}]`),
			`...route 0: request_headers_to_add[0]: header.key ":path": pseudo-headers cannot be modified`},
		{"authority on a response", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    response_headers_to_add: [{header: {key: ":authority", value: x}}]`),
			`...route 0: response_headers_to_add[0]: header.key ":authority": pseudo-headers cannot be modified`},
		{"remove host", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_remove: [Host]`),
			`...route 0: request_headers_to_remove[0]: "Host" may not be removed`},
		{"format command", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}]`),
			`...route 0: request_headers_to_add[0]: header.value "%DOWNSTREAM_REMOTE_ADDRESS%": format commands (%NAME%) are not supported by weft-proxy`},
		{"append and append_action", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    response_headers_to_add: [{header: {key: x, value: "1"}, append: false, append_action: ADD_IF_ABSENT}]`),
			`...response_headers_to_add[0]: append and append_action are both set; use append_action only`},
		{"bad header name", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: "x y", value: "1"}}]`),
			`...request_headers_to_add[0]: header.key "x y" is not a valid header name`},
		{"newline in value", vh(`
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: x, value: "a\r\nb: c"}}]`),
			`...request_headers_to_add[0]: header.value "a\r\nb: c": CR, LF and NUL are not allowed in a header value`},
		{"mirror cluster header", vh(`
  - match: {prefix: /}
    route: {cluster: c, request_mirror_policies: [{cluster_header: x-mirror}]}`),
			`...route 0: route: request_mirror_policies[0].cluster_header is not supported`},
		{"mirror without cluster", vh(`
  - match: {prefix: /}
    route: {cluster: c, request_mirror_policies: [{runtime_fraction: {default_value: {numerator: 5}}}]}`),
			`...route 0: route: request_mirror_policies[0].cluster is empty`},
		{"negative timeout", vh(`
  - match: {prefix: /}
    route: {cluster: c, timeout: -1s}`),
			`...route 0: route: timeout: -1s is negative`},
		{"unknown retry condition", vh(`
  - match: {prefix: /}
    route: {cluster: c, retry_policy: {retry_on: "5xx,connect-failures"}}`),
			`...route: retry_policy: retry_on: unknown retry condition "connect-failures"`},
		{"direct status", vh(`
  - match: {prefix: /}
    direct_response: {status: 99}`),
			`...direct_response: status 99: must be between 200 and 599`},
		{"direct body too large", vh(`
  - match: {prefix: /}
    direct_response: {status: 200, body: {inline_string: "` + strings.Repeat("x", 4097) + `"}}`),
			`...direct_response: body is 4097 bytes, more than the 4096 allowed`},
		{"separated prefix ending in slash", vh(`
  - match: {path_separated_prefix: /api/}
    route: {cluster: c}`),
			`...path_separated_prefix "/api/": must be non-empty, without '?' or '#', and not end in '/'`},
		{"duplicate domain", `
name: http_proxy
virtual_hosts:
- name: a
  domains: [reviews:9080]
- name: b
  domains: [Reviews:9080]`,
			`route config http_proxy: virtual host "b": domains: domain "Reviews:9080" is already used by virtual host "a"`},
		{"no domains", `
name: http_proxy
virtual_hosts:
- name: a`,
			`route config http_proxy: virtual host "a": domains: at least one domain is required`},
		{"bad virtual host retry policy", `
name: http_proxy
virtual_hosts:
- name: a
  domains: ["*"]
  retry_policy: {retry_on: "sometimes"}`,
			`route config http_proxy: virtual host "a": retry_policy: retry_on: unknown retry condition "sometimes"`},
		{"virtual host header mutation", `
name: http_proxy
virtual_hosts:
- name: a
  domains: ["*"]
  response_headers_to_remove: [":status"]`,
			`route config http_proxy: virtual host "a": response_headers_to_remove[0]: ":status" may not be removed (pseudo-headers and host cannot be modified)`},
		{"route config fault", `
name: http_proxy
typed_per_filter_config:
  envoy.filters.http.fault:
    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
    abort: {grpc_status: 14, percentage: {numerator: 1, denominator: 7}}`,
			`route config http_proxy: typed_per_filter_config[envoy.filters.http.fault]: abort.percentage: denominator 7 is not supported`},
		{"vhds", `
name: http_proxy
vhds: {config_source: {ads: {}}}`,
			`route config http_proxy: vhds (on-demand virtual hosts) is not supported`},
		{"virtual host without a name", `
name: http_proxy
virtual_hosts:
- domains: ["*"]`,
			`route config http_proxy: virtual host 0: name is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := parseConfig(t, tt.config)
			_, err := Compile(rc)
			if err == nil {
				t.Fatalf("Compile succeeded, want error %q", tt.want)
			}
			// The encoded path (the proxy's) says the same.
			if _, encErr := encode(t, rc).Compile(nil); encErr == nil || encErr.Error() != err.Error() {
				t.Errorf("from the encoding: %v\nfrom the message: %v", encErr, err)
			}
			if part, ok := strings.CutPrefix(tt.want, "..."); ok {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error:\n  %s\nwant it to contain:\n  %s", err, part)
				}
				if !strings.HasPrefix(err.Error(), "route config http_proxy: ") {
					t.Errorf("error %q does not name the route config", err)
				}
			} else if err.Error() != tt.want {
				t.Errorf("error:\n  %s\nwant:\n  %s", err, tt.want)
			}
		})
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}
