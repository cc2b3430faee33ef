package translate

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
)

// maxDirectResponseBody is the body size limit of route configurations
// with direct responses: 1 MiB, Istio's, instead of Envoy's 4 KiB.
const maxDirectResponseBody = 1 << 20

// headerOps is an Istio header manipulation in Envoy's terms.
type headerOps struct {
	requestAdd     []*corev3.HeaderValueOption
	requestRemove  []string
	responseAdd    []*corev3.HeaderValueOption
	responseRemove []string
	// authority is the value the request's set or add gives to Host or
	// :authority, which Envoy cannot touch as a header: it becomes a host
	// rewrite instead.
	authority string
}

// headerOperations converts Istio's headers: set overwrites
// (OVERWRITE_IF_EXISTS_OR_ADD), add appends (APPEND_IF_EXISTS_OR_ADD), each
// sorted by name, sets first. Pseudo-headers and Host are left out, as in
// Istio; a request set or add of Host or :authority rewrites the host
// (set wins over add).
func headerOperations(h *v1alpha3.Headers) headerOps {
	var ops headerOps
	var setAuthority, addAuthority string
	ops.requestAdd, setAuthority = headerValues(h.GetRequest().GetSet(), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	add, addAuthority := headerValues(h.GetRequest().GetAdd(), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	ops.requestAdd = append(ops.requestAdd, add...)
	ops.authority = cmp.Or(setAuthority, addAuthority)
	ops.responseAdd, _ = headerValues(h.GetResponse().GetSet(), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	add, _ = headerValues(h.GetResponse().GetAdd(), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	ops.responseAdd = append(ops.responseAdd, add...)
	ops.requestRemove = removable(h.GetRequest().GetRemove())
	ops.responseRemove = removable(h.GetResponse().GetRemove())
	return ops
}

// headerValues turns a map of headers into Envoy's header options sorted by
// name, and returns the Host or :authority value it holds, if any.
func headerValues(m map[string]string, action corev3.HeaderValueOption_HeaderAppendAction) ([]*corev3.HeaderValueOption, string) {
	var out []*corev3.HeaderValueOption
	var authority string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if strings.EqualFold(name, "host") || strings.EqualFold(name, ":authority") {
			authority = m[name]
		}
		if internalHeader(name) {
			continue
		}
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: name, Value: m[name]},
			AppendAction: action,
		})
	}
	return out, authority
}

// removable drops the names Envoy cannot remove: empty ones, pseudo-headers
// and Host.
func removable(names []string) []string {
	var out []string
	for _, n := range names {
		if !internalHeader(n) {
			out = append(out, n)
		}
	}
	return out
}

// internalHeader reports whether Envoy refuses to modify a header: pseudo-
// headers and Host (and, here, an empty name).
func internalHeader(name string) bool {
	return name == "" || strings.HasPrefix(name, ":") || strings.EqualFold(name, "host")
}

// applyToRoute appends the operations to a route's header lists.
func (o headerOps) applyToRoute(r *routev3.Route) {
	r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, o.requestAdd...)
	r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, o.requestRemove...)
	r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, o.responseAdd...)
	r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, o.responseRemove...)
}

// applyToCluster sets the operations (and the host rewrite they imply) on
// one entry of a weighted cluster.
func (o headerOps) applyToCluster(c *routev3.WeightedCluster_ClusterWeight) {
	c.RequestHeadersToAdd = o.requestAdd
	c.RequestHeadersToRemove = o.requestRemove
	c.ResponseHeadersToAdd = o.responseAdd
	c.ResponseHeadersToRemove = o.responseRemove
	if o.authority != "" {
		c.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: o.authority}
	}
}

// redirectCodes maps Istio's redirectCode to Envoy's; 0 means 301.
var redirectCodes = map[uint32]routev3.RedirectAction_RedirectResponseCode{
	0:   routev3.RedirectAction_MOVED_PERMANENTLY,
	301: routev3.RedirectAction_MOVED_PERMANENTLY,
	302: routev3.RedirectAction_FOUND,
	303: routev3.RedirectAction_SEE_OTHER,
	307: routev3.RedirectAction_TEMPORARY_REDIRECT,
	308: routev3.RedirectAction_PERMANENT_REDIRECT,
}

// redirectAction converts an Istio redirect served on port, or returns nil
// for a redirect code Envoy cannot send.
//
// As in Istio: derivePort FROM_REQUEST_PORT redirects to the port the
// request came in on, which for a route configuration is its port;
// FROM_PROTOCOL_DEFAULT leaves the port to the scheme; and a port that is
// the default of the scheme (80 for http, the scheme when none is given,
// 443 for https) is left out of the Location.
func redirectAction(r *v1alpha3.HTTPRedirect, port uint32) *routev3.RedirectAction {
	code, ok := redirectCodes[r.GetRedirectCode()]
	if !ok {
		return nil
	}
	out := &routev3.RedirectAction{HostRedirect: r.GetAuthority(), ResponseCode: code}
	switch {
	case r.GetUri() != "":
		out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.GetUri()}
	case r.GetPrefixRewrite() != "":
		out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: r.GetPrefixRewrite()}
	}
	if r.GetScheme() != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.GetScheme()}
	}
	if r.GetRedirectPort() != nil {
		switch p := r.GetRedirectPort().(type) {
		case *v1alpha3.HTTPRedirect_Port:
			out.PortRedirect = p.Port
		case *v1alpha3.HTTPRedirect_DerivePort:
			if p.DerivePort == v1alpha3.HTTPRedirect_FROM_REQUEST_PORT {
				out.PortRedirect = port
			}
		}
		// Weft's listeners are plain HTTP, so no scheme means http.
		scheme := cmp.Or(r.GetScheme(), "http")
		if (out.PortRedirect == 80 && scheme == "http") || (out.PortRedirect == 443 && scheme == "https") {
			out.PortRedirect = 0
		}
	}
	return out
}

// directResponseAction converts an Istio direct response.
func directResponseAction(d *v1alpha3.HTTPDirectResponse) *routev3.DirectResponseAction {
	out := &routev3.DirectResponseAction{Status: d.GetStatus()}
	switch b := d.GetBody().GetSpecifier().(type) {
	case *v1alpha3.HTTPBody_String_:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String_}}
	case *v1alpha3.HTTPBody_Bytes:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.Bytes}}
	}
	return out
}

// limitDirectResponses raises the body size limit of a route
// configuration that has direct responses to Istio's 1 MiB.
func limitDirectResponses(rc *routev3.RouteConfiguration) {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetDirectResponse().GetBody() != nil {
				rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(maxDirectResponseBody)
				return
			}
		}
	}
}

// mirrorPolicies converts the route's mirror and mirrors, in that order,
// skipping those with a percentage of 0.
func (t *translator) mirrorPolicies(hr *v1alpha3.HTTPRoute, vsNamespace string, vhostPort uint32) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	add := func(d *v1alpha3.Destination, f *corev3.RuntimeFractionalPercent) {
		if d.GetHost() == "" || f == nil {
			return
		}
		k := t.destination(d, vsNamespace, vhostPort)
		t.refs[k] = true
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         k.name(),
			RuntimeFraction: f,
			TraceSampled:    wrapperspb.Bool(false), // as in Istio
		})
	}
	if hr.GetMirror() != nil {
		add(hr.GetMirror(), mirrorFraction(hr))
	}
	for _, m := range hr.GetMirrors() {
		add(m.GetDestination(), policyFraction(m.GetPercentage()))
	}
	return out
}

// mirrorFraction is the share of requests the route's single mirror gets,
// or nil when it gets none. mirrorPercentage wins over the deprecated
// mirrorPercent; an explicit 0 turns mirroring off; with neither, all
// requests are mirrored.
func mirrorFraction(hr *v1alpha3.HTTPRoute) *corev3.RuntimeFractionalPercent {
	switch {
	case hr.GetMirrorPercentage() != nil:
		return policyFraction(hr.GetMirrorPercentage())
	case hr.GetMirrorPercent() != nil: //nolint:staticcheck // deprecated, still honoured as in Istio
		n := hr.GetMirrorPercent().GetValue() //nolint:staticcheck // as above
		if n == 0 {
			return nil
		}
		return &corev3.RuntimeFractionalPercent{DefaultValue: hundredths(int64(n))}
	}
	return &corev3.RuntimeFractionalPercent{DefaultValue: hundredths(100)}
}

// policyFraction is the share of requests a mirror with percentage p gets,
// or nil when it gets none: all of them when p is nil, none when it is 0.
func policyFraction(p *v1alpha3.Percent) *corev3.RuntimeFractionalPercent {
	switch {
	case p == nil:
		return &corev3.RuntimeFractionalPercent{DefaultValue: hundredths(100)}
	case p.GetValue() <= 0:
		return nil
	}
	return &corev3.RuntimeFractionalPercent{DefaultValue: millionths(p)}
}
