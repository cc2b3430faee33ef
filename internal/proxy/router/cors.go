package router

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	corsv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/cors/v3"
)

// CorsFilterName is the name of Envoy's CORS HTTP filter, and the key of
// its per-route configuration in typed_per_filter_config.
const CorsFilterName = "envoy.filters.http.cors"

// Type URLs of the CORS filter's own configuration (an empty message: the
// policies live on the routes) and of its per-route policy.
const (
	CorsTypeURL       = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	CorsPolicyTypeURL = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
)

// CorsPolicy is the CORS filter's compiled configuration for a route: the
// route's CorsPolicy merged with its virtual host's and route
// configuration's as Envoy merges them (each field from the most specific
// level that sets it; filter_enabled and shadow_enabled from the most
// specific policy alone). It is shared by every request and must not be
// modified: the header value slices are set on responses as they are.
type CorsPolicy struct {
	// Enabled is the share of requests, in millionths, for which the
	// policy is enforced (filter_enabled.default_value; every request when
	// filter_enabled is absent).
	Enabled uint32
	// Shadow is the share of requests, in millionths, for which the origin
	// is only checked and counted (shadow_enabled.default_value; none when
	// absent). Enabled takes precedence.
	Shadow uint32

	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are the
	// configured values of the Access-Control-* response headers, as
	// one-element header value slices; nil when not configured.
	// AllowMethods or AllowHeaders "*" echo the preflight's
	// Access-Control-Request-Method or -Headers instead (AllowAnyMethod,
	// AllowAnyHeaders).
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge []string
	AllowAnyMethod, AllowAnyHeaders                   bool
	// AllowCredentials adds Access-Control-Allow-Credentials: true.
	AllowCredentials bool
	// AllowPrivateNetworkAccess answers a preflight carrying
	// Access-Control-Request-Private-Network: true with
	// Access-Control-Allow-Private-Network: true.
	AllowPrivateNetworkAccess bool
	// ForwardNotMatchingPreflights passes a preflight whose origin is not
	// allowed on upstream (Envoy's default) instead of answering it.
	ForwardNotMatchingPreflights bool

	// origins are the allow_origin_string_match matchers; anyOrigin is set
	// when one of them accepts "*", which allows every origin.
	origins   []stringMatcher
	anyOrigin bool

	// What this level sets, for merging with less specific levels.
	setCredentials, setPrivateNetwork, setForward bool
	// off is the policy of a level whose FilterConfig disables the filter.
	off bool
}

// corsOff is the policy of a route whose per-filter configuration disables
// the CORS filter: it does nothing.
var corsOff = &CorsPolicy{off: true}

// AllowsOrigin reports whether origin is allowed: as in Envoy, when one of
// allow_origin_string_match accepts it, or accepts "*".
func (p *CorsPolicy) AllowsOrigin(origin string) bool {
	if p.anyOrigin {
		return true
	}
	for i := range p.origins {
		if p.origins[i].match(origin) {
			return true
		}
	}
	return false
}

// CompileCorsPolicy compiles a route's CORS policy, an Any holding an
// envoy.extensions.filters.http.cors.v3.CorsPolicy, on its own (not merged
// with any other level). Anything invalid is an error naming the field.
func CompileCorsPolicy(a *anypb.Any) (*CorsPolicy, error) {
	pb := &corsv3.CorsPolicy{}
	if err := a.UnmarshalTo(pb); err != nil {
		return nil, err
	}
	return compileCorsPolicy(pb)
}

func compileCorsPolicy(pb *corsv3.CorsPolicy) (*CorsPolicy, error) {
	p := &CorsPolicy{Enabled: Million, ForwardNotMatchingPreflights: true}
	for i, sm := range pb.GetAllowOriginStringMatch() {
		m, err := compileString(sm)
		if err != nil {
			return nil, fmt.Errorf("allow_origin_string_match[%d]: %w", i, err)
		}
		p.origins = append(p.origins, m)
		if m.match("*") {
			p.anyOrigin = true
		}
	}
	var err error
	if p.AllowMethods, p.AllowAnyMethod, err = corsHeaderValue("allow_methods", pb.GetAllowMethods()); err != nil {
		return nil, err
	}
	if p.AllowHeaders, p.AllowAnyHeaders, err = corsHeaderValue("allow_headers", pb.GetAllowHeaders()); err != nil {
		return nil, err
	}
	if p.ExposeHeaders, _, err = corsHeaderValue("expose_headers", pb.GetExposeHeaders()); err != nil {
		return nil, err
	}
	if p.MaxAge, _, err = corsHeaderValue("max_age", pb.GetMaxAge()); err != nil {
		return nil, err
	}
	if v := pb.GetAllowCredentials(); v != nil {
		p.AllowCredentials, p.setCredentials = v.GetValue(), true
	}
	if v := pb.GetAllowPrivateNetworkAccess(); v != nil {
		p.AllowPrivateNetworkAccess, p.setPrivateNetwork = v.GetValue(), true
	}
	if v := pb.GetForwardNotMatchingPreflights(); v != nil {
		p.ForwardNotMatchingPreflights, p.setForward = v.GetValue(), true
	}
	if fe := pb.GetFilterEnabled(); fe != nil {
		if fe.GetDefaultValue() == nil {
			return nil, errors.New("filter_enabled.default_value: missing")
		}
		if p.Enabled, err = fraction(fe.GetDefaultValue()); err != nil {
			return nil, fmt.Errorf("filter_enabled.default_value: %w", err)
		}
	}
	if se := pb.GetShadowEnabled(); se != nil {
		if se.GetDefaultValue() == nil {
			return nil, errors.New("shadow_enabled.default_value: missing")
		}
		if p.Shadow, err = fraction(se.GetDefaultValue()); err != nil {
			return nil, fmt.Errorf("shadow_enabled.default_value: %w", err)
		}
	}
	return p, nil
}

// corsHeaderValue checks that v can be sent as a header value and returns
// it as a shared value slice (nil when empty), and whether it is "*".
func corsHeaderValue(field, v string) ([]string, bool, error) {
	if v == "" {
		return nil, false, nil
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, false, fmt.Errorf("%s %q: control character %#02x is not allowed in a header value", field, v, c)
		}
	}
	return []string{v}, v == "*", nil
}

// mergeCors merges a more specific level's policy over a less specific
// one's, as Envoy reads its list of policies: each field from the first
// policy that sets it, filter_enabled and shadow_enabled from the most
// specific one. A disabled level hides the levels below it.
func mergeCors(specific, general *CorsPolicy) *CorsPolicy {
	switch {
	case specific == nil:
		return general
	case general == nil || general.off || specific.off:
		return specific
	}
	m := *specific
	if len(m.origins) == 0 {
		m.origins, m.anyOrigin = general.origins, general.anyOrigin
	}
	if m.AllowMethods == nil {
		m.AllowMethods, m.AllowAnyMethod = general.AllowMethods, general.AllowAnyMethod
	}
	if m.AllowHeaders == nil {
		m.AllowHeaders, m.AllowAnyHeaders = general.AllowHeaders, general.AllowAnyHeaders
	}
	if m.ExposeHeaders == nil {
		m.ExposeHeaders = general.ExposeHeaders
	}
	if m.MaxAge == nil {
		m.MaxAge = general.MaxAge
	}
	if !m.setCredentials {
		m.AllowCredentials, m.setCredentials = general.AllowCredentials, general.setCredentials
	}
	if !m.setPrivateNetwork {
		m.AllowPrivateNetworkAccess, m.setPrivateNetwork = general.AllowPrivateNetworkAccess, general.setPrivateNetwork
	}
	if !m.setForward {
		m.ForwardNotMatchingPreflights, m.setForward = general.ForwardNotMatchingPreflights, general.setForward
	}
	return &m
}

// perFilterCors reads the CORS filter's entry of a typed_per_filter_config
// map: nil when there is none, corsOff when it disables the filter.
func perFilterCors(cfg map[string]*anypb.Any) (*CorsPolicy, error) {
	a, ok := cfg[CorsFilterName]
	if !ok {
		return nil, nil
	}
	field := "typed_per_filter_config[" + CorsFilterName + "]"
	if a.GetTypeUrl() == filterConfigTypeURL {
		fc := &routev3.FilterConfig{}
		if err := a.UnmarshalTo(fc); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if fc.GetDisabled() {
			return corsOff, nil
		}
		if fc.GetConfig() == nil {
			return nil, fmt.Errorf("%s.config: missing", field)
		}
		a, field = fc.GetConfig(), field+".config"
	}
	if a.GetTypeUrl() != CorsPolicyTypeURL {
		return nil, fmt.Errorf("%s: type %s, want %s", field, a.GetTypeUrl(), CorsPolicyTypeURL)
	}
	p, err := CompileCorsPolicy(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return p, nil
}
