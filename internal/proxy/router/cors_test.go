package router

import (
	"reflect"
	"strings"
	"testing"
)

const corsType = `"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy`

// corsView is what a test compares of a CorsPolicy: its exported fields and
// which of a fixed set of origins it allows.
type corsView struct {
	Enabled, Shadow                                   uint32
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
	AnyMethod, AnyHeaders, Credentials, PNA, Forward  bool
	Allowed                                           []string
}

var corsProbeOrigins = []string{
	"https://app.example.com", "https://APP.example.com", "http://app.example.com",
	"https://admin.example.com", "https://evil.com", "https://sub.trusted.org", "null",
}

func viewCors(p *CorsPolicy) *corsView {
	if p == nil {
		return nil
	}
	first := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	v := &corsView{Enabled: p.Enabled, Shadow: p.Shadow,
		AllowMethods: first(p.AllowMethods), AllowHeaders: first(p.AllowHeaders),
		ExposeHeaders: first(p.ExposeHeaders), MaxAge: first(p.MaxAge),
		AnyMethod: p.AllowAnyMethod, AnyHeaders: p.AllowAnyHeaders, Credentials: p.AllowCredentials,
		PNA: p.AllowPrivateNetworkAccess, Forward: p.ForwardNotMatchingPreflights}
	for _, o := range corsProbeOrigins {
		if p.AllowsOrigin(o) {
			v.Allowed = append(v.Allowed, o)
		}
	}
	return v
}

func TestCorsConfig(t *testing.T) {
	config := `
name: rc
typed_per_filter_config:
  envoy.filters.http.cors:
    ` + corsType + `
    max_age: "600"
    allow_credentials: true
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.cors:
      ` + corsType + `
      allow_origin_string_match: [{exact: https://app.example.com}]
      allow_methods: GET,POST
      expose_headers: x-request-id
  routes:
  - match: {prefix: /inherit}
    route: {cluster: c}
  - match: {prefix: /own}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors:
        ` + corsType + `
        allow_origin_string_match:
        - {suffix: .example.com, ignore_case: true}
        - {safe_regex: {regex: 'https://[a-z]+\.trusted\.org'}}
        allow_headers: "*"
        allow_credentials: false
        forward_not_matching_preflights: false
        filter_enabled: {default_value: {numerator: 25}}
        shadow_enabled: {default_value: {numerator: 5000, denominator: TEN_THOUSAND}}
  - match: {prefix: /wrapped}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors:
        "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
        config:
          ` + corsType + `
          allow_origin_string_match: [{prefix: "*"}]
          allow_methods: "*"
          allow_private_network_access: true
  - match: {prefix: /disabled}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
- name: bare
  domains: [bare]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
`
	tbl := mustCompile(t, config)
	tests := []struct {
		host, path string
		want       *corsView
	}{
		{"x", "/inherit", &corsView{Enabled: Million, AllowMethods: "GET,POST", ExposeHeaders: "x-request-id", MaxAge: "600",
			Credentials: true, Forward: true, Allowed: []string{"https://app.example.com"}}},
		{"x", "/own", &corsView{Enabled: 250000, Shadow: 500000, AllowMethods: "GET,POST", AllowHeaders: "*", AnyHeaders: true,
			ExposeHeaders: "x-request-id", MaxAge: "600", Credentials: false, Forward: false,
			Allowed: []string{"https://app.example.com", "https://APP.example.com", "http://app.example.com", "https://admin.example.com", "https://sub.trusted.org"}}},
		{"x", "/wrapped", &corsView{Enabled: Million, AllowMethods: "*", AnyMethod: true, ExposeHeaders: "x-request-id", MaxAge: "600",
			Credentials: true, PNA: true, Forward: true, Allowed: corsProbeOrigins}},
		{"x", "/disabled", &corsView{}},
		{"bare", "/", &corsView{Enabled: Million, MaxAge: "600", Credentials: true, Forward: true}},
	}
	for _, tt := range tests {
		r, err := tbl.Select(newRequest("GET", tt.path, tt.host))
		if err != nil {
			t.Fatalf("Select %s%s: %v", tt.host, tt.path, err)
		}
		if got := viewCors(r.Cors); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s%s: Cors = %+v, want %+v", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestCorsAbsentIsNil(t *testing.T) {
	if p := oneRoute(t, "{prefix: /}").fallback.routes[0].Cors; p != nil {
		t.Errorf("Cors = %+v, want nil so that the filter leaves the route alone", viewCors(p))
	}
}

func TestCorsCompileErrors(t *testing.T) {
	route := func(cfg string) string {
		return `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - name: r
    match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors: ` + cfg
	}
	const pre = `route config rc: virtual host "vh": route 0 ("r"): typed_per_filter_config[envoy.filters.http.cors]`
	tests := []struct {
		name, config, want string
	}{
		{"bad regex", route(`{` + corsType + `, allow_origin_string_match: [{exact: a}, {safe_regex: {regex: "(x"}}]}`),
			pre + `: allow_origin_string_match[1]: safe_regex "(x": error parsing regexp: missing closing ): ` + "`(x`"},
		{"no pattern", route(`{` + corsType + `, allow_origin_string_match: [{ignore_case: true}]}`),
			pre + `: allow_origin_string_match[0]: no match pattern: one of exact, prefix, suffix, contains or safe_regex is required`},
		{"header injection", route(`{` + corsType + `, allow_headers: "a\r\nx-evil: 1"}`),
			pre + `: allow_headers "a\r\nx-evil: 1": control character 0x0d is not allowed in a header value`},
		{"filter_enabled without value", route(`{` + corsType + `, filter_enabled: {runtime_key: k}}`),
			pre + `: filter_enabled.default_value: missing`},
		{"shadow_enabled without value", route(`{` + corsType + `, shadow_enabled: {runtime_key: k}}`),
			pre + `: shadow_enabled.default_value: missing`},
		{"wrong type", route(`{"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}`),
			pre + `: type type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors, want type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy`},
		{"wrapper without config", route(`{"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig}`),
			pre + `.config: missing`},
		{"virtual host level", `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.cors: {` + corsType + `, max_age: "1\n"}
  routes:
  - {match: {prefix: /}, route: {cluster: c}}`,
			`route config rc: virtual host "vh": typed_per_filter_config[envoy.filters.http.cors]: max_age "1\n": control character 0x0a is not allowed in a header value`},
		{"weighted cluster", `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          typed_per_filter_config:
            envoy.filters.http.cors: {` + corsType + `}`,
			`route config rc: virtual host "vh": route 0: route: weighted_clusters: clusters[0]: typed_per_filter_config[envoy.filters.http.cors] is not supported on a weighted cluster`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(parseConfig(t, tt.config))
			if err == nil {
				t.Fatalf("Compile succeeded, want error %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

func TestCorsDenominator(t *testing.T) {
	// A share the filter cannot honour must not silently become 0%.
	_, err := Compile(parseConfig(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.cors: {`+corsType+`, filter_enabled: {default_value: {numerator: 1, denominator: 7}}}
  routes:
  - {match: {prefix: /}, route: {cluster: c}}`))
	if err == nil || !strings.Contains(err.Error(), "filter_enabled.default_value: denominator") {
		t.Errorf("error = %v, want it to name filter_enabled.default_value's denominator", err)
	}
}
