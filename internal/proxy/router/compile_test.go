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
	want := []WeightedCluster{{"v1", 70}, {"idle", 0}, {"v2", 20}, {"v3", 10}}
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
		{"redirect", vh(`
  - name: r
    match: {prefix: /}
    redirect: {host_redirect: example.com}`),
			`...route 0 ("r"): redirect action is not supported`},
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
		{"regex rewrite", vh(`
  - match: {prefix: /}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "a"}, substitution: b}}`),
			`...route 0: route: regex_rewrite is not supported`},
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
			_, err := Compile(parseConfig(t, tt.config))
			if err == nil {
				t.Fatalf("Compile succeeded, want error %q", tt.want)
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
