package translate

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
)

// CORS is emitted in two places only, so that it can be switched off by
// removing two calls: corsFilter in hcm (listeners.go) and routeCors in
// httpRoute (routes.go). config.Unsupported must then warn about
// corsPolicy again.

// corsFilter is the CORS filter every HTTP connection manager runs, after
// fault injection and before the router, as in Istio. Its own
// configuration is empty: it does nothing on a route without a
// typed_per_filter_config CorsPolicy.
func corsFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.CORS,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})},
	}
}

// routeCors converts a VirtualService corsPolicy into the CORS filter's
// per-route configuration, or nil without one. As in Istio: allowOrigins
// (or the deprecated allowOrigin, as exact matches) become
// allow_origin_string_match; methods and headers are joined with ","; maxAge
// is whole seconds; the policy is enabled for 100% of requests; and
// preflight requests whose origin does not match are forwarded upstream
// unless unmatchedPreflights is IGNORE.
func routeCors(in *v1alpha3.CorsPolicy) *corsv3.CorsPolicy {
	if in == nil {
		return nil
	}
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(in.GetAllowMethods(), ","),
		AllowHeaders:  strings.Join(in.GetAllowHeaders(), ","),
		ExposeHeaders: strings.Join(in.GetExposeHeaders(), ","),
		FilterEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED,
		}},
		ForwardNotMatchingPreflights: wrapperspb.Bool(in.GetUnmatchedPreflights() != v1alpha3.CorsPolicy_IGNORE),
	}
	if in.GetAllowOrigins() != nil {
		for _, o := range in.GetAllowOrigins() {
			if m := stringMatcher(o); m != nil {
				out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, m)
			}
		}
	} else {
		for _, o := range in.GetAllowOrigin() { //nolint:staticcheck // deprecated, still honoured as in Istio
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch,
				&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
		}
	}
	if in.GetAllowCredentials() != nil {
		out.AllowCredentials = wrapperspb.Bool(in.GetAllowCredentials().GetValue())
	}
	if in.GetMaxAge() != nil {
		out.MaxAge = strconv.FormatInt(in.GetMaxAge().GetSeconds(), 10)
	}
	return out
}
