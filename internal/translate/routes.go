package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/registry"
)

// Istio's retry policy for routes whose VirtualService says nothing.
const (
	defaultRetryOn  = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetries  = 2
	retriableStatus = "retriable-status-codes"
)

// routeContext is where a VirtualService's routes are being placed.
type routeContext struct {
	// port is the virtual host's port: the service port for sidecars, the
	// server port for gateways.
	port uint32
	// gateways are the gateways the virtual host serves: {"mesh"} for
	// sidecars, namespace/name of the bound Gateways for gateways.
	gateways map[string]bool
}

// httpProxyRoutes is the sidecar's explicit outbound route configuration:
// one virtual host per HTTP service port.
func (t *translator) httpProxyRoutes() *routev3.RouteConfiguration {
	return t.shared.routeConfig(t, httpProxyRouteName, 0)
}

// outboundRoutes builds a route configuration with one virtual host per
// HTTP (or undeclared) service port. With only set, it holds just the
// services on that port, reachable by their VIP too: the route
// configuration PORT of transparent mode.
func (t *translator) outboundRoutes(name string, only uint32) *routev3.RouteConfiguration {
	claimed := t.meshHosts(func(vs *virtualService) bool { return len(vs.spec.GetHttp()) > 0 })
	mesh := map[string]bool{meshGateway: true}
	seen := map[string]bool{}
	rc := &routev3.RouteConfiguration{Name: name}
	for _, svc := range t.snap.Services {
		for _, port := range svc.Ports {
			if !isHTTP(port.Protocol) || (only != 0 && port.Number != only) {
				continue
			}
			domains := t.serviceDomains(svc, port.Number, only != 0, seen)
			if len(domains) == 0 {
				continue
			}
			vh := &routev3.VirtualHost{Name: fmt.Sprintf("%s:%d", svc.Hostname, port.Number), Domains: domains}
			if vs := claimed[svc.Hostname]; vs != nil {
				vh.Routes = t.vsRoutes(vs, routeContext{port: port.Number, gateways: mesh})
			} else {
				vh.Routes = []*routev3.Route{t.defaultRoute(svc.Hostname, port.Number)}
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
	}
	sortVirtualHosts(rc.VirtualHosts)
	limitDirectResponses(rc)
	return rc
}

// meshHosts maps each host to the VirtualService that applies to sidecars
// for it (see exportedVSs), among those that have routes of the kind the
// caller asks for (with): HTTP routes for HTTP ports, TCP routes for TCP
// ones, so that a VirtualService with only one kind does not hide another
// one's routes of the other kind. Wildcard hosts only apply at gateways.
func (t *translator) meshHosts(with func(*virtualService) bool) map[string]*virtualService {
	out := map[string]*virtualService{}
	for _, vs := range t.exportedVSs() {
		if !vs.gateways[meshGateway] || !with(vs) {
			continue
		}
		for _, h := range vs.hosts {
			if _, taken := out[h]; !taken && !isWildcard(h) {
				out[h] = vs
			}
		}
	}
	return out
}

// exportedVSs lists the VirtualServices exported to the proxy's namespace
// in the order in which they claim hosts, as Istio picks among them: those
// kept to that namespace first, then those exported to it by name, then
// the public ones, each oldest first.
func (t *translator) exportedVSs() []*virtualService {
	var byRank [3][]*virtualService
	for i := range t.vss {
		vs := &t.vss[i]
		if r, ok := config.ExportRank(vs.spec.GetExportTo(), vs.res.Namespace, t.proxy.Namespace); ok {
			byRank[r] = append(byRank[r], vs)
		}
	}
	return slices.Concat(byRank[0], byRank[1], byRank[2])
}

// serviceDomains lists every name that reaches svc on port, and with vip
// its VIP, skipping names an earlier virtual host already uses (Envoy
// rejects duplicate domains).
func (t *translator) serviceDomains(svc *registry.Service, port uint32, vip bool, seen map[string]bool) []string {
	names := []string{svc.Hostname}
	if vip && svc.VIP != "" {
		names = append(names, svc.VIP)
	}
	if svc.Hostname == registry.Hostname(svc.Name, svc.Namespace) {
		names = append(names, svc.Name+"."+svc.Namespace+".svc", svc.Name+"."+svc.Namespace)
		if svc.Namespace == t.proxy.Namespace {
			names = append(names, svc.Name)
		}
	}
	var out []string
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, n := range names {
		add(fmt.Sprintf("%s:%d", n, port))
		if port == 80 {
			add(n)
		}
	}
	return out
}

// isHTTP reports whether a service port's protocol is routed as HTTP. An
// undeclared protocol counts as HTTP.
func isHTTP(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "", "HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

// gatewayRoutes is the route configuration http.PORT of a gateway: one
// virtual host per VirtualService host bound to a server on the port. The
// oldest VirtualService wins a host.
func (t *translator) gatewayRoutes(port uint32, servers []gatewayServer) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: gatewayRouteName(port)}
	claimed := map[string]bool{}
	for _, vs := range t.exportedVSs() {
		for _, host := range vs.hosts {
			if claimed[host] {
				continue
			}
			via := map[string]bool{}
			for _, srv := range servers {
				if vs.gateways[srv.gateway] && srv.admits(vs.res.Namespace, host) {
					via[srv.gateway] = true
				}
			}
			if len(via) == 0 {
				continue
			}
			claimed[host] = true
			domains := []string{"*"}
			if host != "*" {
				domains = []string{host, host + ":*"}
			}
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
				Name:    fmt.Sprintf("%s:%d", host, port),
				Domains: domains,
				Routes:  t.vsRoutes(vs, routeContext{port: port, gateways: via}),
			})
		}
	}
	sortVirtualHosts(rc.VirtualHosts)
	limitDirectResponses(rc)
	return rc
}

func sortVirtualHosts(vhs []*routev3.VirtualHost) {
	slices.SortFunc(vhs, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
}

// defaultRoute sends everything to the whole service, as Istio does for a
// service without a VirtualService.
func (t *translator) defaultRoute(host string, port uint32) *routev3.Route {
	k := clusterKey{host: host, port: port}
	t.refs[k] = true
	return &routev3.Route{
		Name:  "default",
		Match: prefixMatch("/"),
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: k.name()},
			Timeout:          noTimeout(),
			RetryPolicy:      defaultRetryPolicy(),
			HashPolicy:       t.hashPolicies(k),
		}},
	}
}

// vsRoutes translates a VirtualService's HTTP routes for one virtual host,
// in order. Each applicable match becomes its own Envoy route with the same
// action; a route without matches matches everything.
func (t *translator) vsRoutes(vs *virtualService, ctx routeContext) []*routev3.Route {
	var out []*routev3.Route
	for _, hr := range vs.spec.GetHttp() {
		tmpl := t.httpRoute(hr, vs.res.Namespace, ctx.port)
		if tmpl == nil {
			continue
		}
		tmpl.Name = hr.GetName()
		tmpl.Metadata = configMetadata("virtual-service", vs.res, "")
		if len(hr.GetMatch()) == 0 {
			tmpl.Match = prefixMatch("/")
			out = append(out, tmpl)
			continue
		}
		for _, m := range hr.GetMatch() {
			if !t.matchApplies(m, vs.res.Namespace, ctx) {
				continue
			}
			r := proto.CloneOf(tmpl)
			r.Match = routeMatch(m)
			out = append(out, r)
		}
	}
	return out
}

// httpRoute translates everything an Istio HTTP route does but its name
// and match: its action (forward, redirect or direct response), its header
// operations, its fault injection and its CORS policy. It returns nil when Envoy cannot act
// on the route: no destination, or a redirect code Envoy cannot send.
// (A route that delegates is replaced before, see expandDelegates.)
func (t *translator) httpRoute(hr *v1alpha3.HTTPRoute, vsNamespace string, vhostPort uint32) *routev3.Route {
	r := &routev3.Route{}
	ops := headerOperations(hr.GetHeaders())
	ops.applyToRoute(r)
	switch {
	case hr.GetRedirect() != nil:
		ra := redirectAction(hr.GetRedirect(), vhostPort)
		if ra == nil {
			return nil
		}
		r.Action = &routev3.Route_Redirect{Redirect: ra}
	case hr.GetDirectResponse() != nil:
		r.Action = &routev3.Route_DirectResponse{DirectResponse: directResponseAction(hr.GetDirectResponse())}
	default:
		action := t.routeAction(hr, vsNamespace, vhostPort, r, ops.authority)
		if action == nil {
			return nil
		}
		r.Action = &routev3.Route_Route{Route: action}
	}
	if f := routeFault(hr.GetFault()); f != nil {
		perFilter(r)[wellknown.Fault] = mustAny(f)
	}
	if c := routeCors(hr.GetCorsPolicy()); c != nil {
		perFilter(r)[wellknown.CORS] = mustAny(c)
	}
	return r
}

// perFilter returns r's typed_per_filter_config, creating it if need be.
func perFilter(r *routev3.Route) map[string]*anypb.Any {
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	return r.TypedPerFilterConfig
}

// matchApplies reports whether an Istio match can apply on this virtual
// host and proxy: its port, gateways, source labels and source namespace.
func (t *translator) matchApplies(m *v1alpha3.HTTPMatchRequest, vsNamespace string, ctx routeContext) bool {
	if m.GetPort() != 0 && m.GetPort() != ctx.port {
		return false
	}
	if gws := m.GetGateways(); len(gws) > 0 {
		if !slices.ContainsFunc(gws, func(g string) bool { return ctx.gateways[resolveGateway(g, vsNamespace)] }) {
			return false
		}
	}
	return t.fromSource(m.GetSourceLabels(), m.GetSourceNamespace())
}

// fromSource reports whether a match's sourceLabels and sourceNamespace
// (each applying when set) take this proxy's traffic.
func (t *translator) fromSource(labels map[string]string, namespace string) bool {
	return hasLabels(t.proxy.Labels, labels) && (namespace == "" || namespace == t.proxy.Namespace)
}

// routeMatch converts an Istio match into an Envoy one.
func routeMatch(m *v1alpha3.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	switch u := m.GetUri().GetMatchType().(type) {
	case *v1alpha3.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *v1alpha3.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *v1alpha3.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if stringMatcher(m.GetUri()) == nil {
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, pseudo := range []struct {
		name string
		sm   *v1alpha3.StringMatch
	}{{":authority", m.GetAuthority()}, {":method", m.GetMethod()}, {":scheme", m.GetScheme()}} {
		if pseudo.sm != nil {
			rm.Headers = append(rm.Headers, headerMatcher(pseudo.name, pseudo.sm, false))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetHeaders()[name], false))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetWithoutHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetWithoutHeaders()[name], true))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		qm := &routev3.QueryParameterMatcher{Name: name}
		if s := stringMatcher(m.GetQueryParams()[name]); s != nil {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: s}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

// headerMatcher matches header name against sm, or its presence when sm
// has no value; invert turns it into "must not match" (withoutHeaders).
func headerMatcher(name string, sm *v1alpha3.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// stringMatcher converts an Istio string match; nil when it has no value.
func stringMatcher(sm *v1alpha3.StringMatch) *matcherv3.StringMatcher {
	switch v := sm.GetMatchType().(type) {
	case *v1alpha3.StringMatch_Exact:
		if v.Exact != "" {
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
		}
	case *v1alpha3.StringMatch_Prefix:
		if v.Prefix != "" {
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
		}
	case *v1alpha3.StringMatch_Regex:
		if v.Regex != "" {
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex},
			}}
		}
	}
	return nil
}

// routeAction builds the forwarding action of an Istio route, or nil when
// the route has no destination. authority is the host the route's header
// operations set. The headers of a single destination go on r, as in
// Istio; those of weighted destinations on their weighted_clusters entry.
func (t *translator) routeAction(hr *v1alpha3.HTTPRoute, vsNamespace string, vhostPort uint32, r *routev3.Route, authority string) *routev3.RouteAction {
	type weighted struct {
		key     clusterKey
		weight  uint32
		headers *v1alpha3.Headers
	}
	var dests []weighted
	var total uint32
	for _, d := range hr.GetRoute() {
		if d.GetDestination().GetHost() == "" {
			continue
		}
		w := uint32(max(d.GetWeight(), 0))
		dests = append(dests, weighted{t.destination(d.GetDestination(), vsNamespace, vhostPort), w, d.GetHeaders()})
		total += w
	}
	if total > 0 {
		// Istio drops zero-weight destinations when others carry weight.
		dests = slices.DeleteFunc(dests, func(w weighted) bool { return w.weight == 0 })
	}
	if len(dests) == 0 {
		return nil
	}
	action := &routev3.RouteAction{Timeout: noTimeout(), RetryPolicy: retryPolicy(hr.GetRetries())}
	if hr.GetTimeout() != nil {
		action.Timeout = durationpb.New(hr.GetTimeout().AsDuration())
	}
	if rw := hr.GetRewrite(); rw != nil {
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: rr.GetMatch()},
				Substitution: rr.GetRewrite(),
			}
		} else if rw.GetUri() != "" {
			action.PrefixRewrite = rw.GetUri()
		}
		authority = cmp.Or(rw.GetAuthority(), authority)
	}
	if authority != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
	}
	action.RequestMirrorPolicies = t.mirrorPolicies(hr, vsNamespace, vhostPort)
	for _, d := range dests {
		t.refs[d.key] = true
		action.HashPolicy = append(action.HashPolicy, t.hashPolicies(d.key)...)
	}
	if len(dests) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].key.name()}
		ops := headerOperations(dests[0].headers)
		ops.applyToRoute(r)
		if ops.authority != "" && action.HostRewriteSpecifier == nil {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
		}
		return action
	}
	wc := &routev3.WeightedCluster{}
	for _, d := range dests {
		w := d.weight
		if total == 0 {
			w = 1 // no weights at all: split evenly
		}
		cw := &routev3.WeightedCluster_ClusterWeight{Name: d.key.name(), Weight: wrapperspb.UInt32(w)}
		headerOperations(d.headers).applyToCluster(cw)
		wc.Clusters = append(wc.Clusters, cw)
	}
	action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	return action
}

// hashPolicies is the hash policy of the routes to cluster k: its merged
// DestinationRule policy's consistentHash key (see trafficPolicy and
// hashPolicy), or none. A route with weighted destinations gets one entry
// per destination whose cluster hashes, in order, as Istio emits them
// (Envoy combines them into one hash).
func (t *translator) hashPolicies(k clusterKey) []*routev3.RouteAction_HashPolicy {
	if hp := hashPolicy(t.trafficPolicy(k).GetLoadBalancer().GetConsistentHash()); hp != nil {
		return []*routev3.RouteAction_HashPolicy{hp}
	}
	return nil
}

// hashPolicy converts a consistentHash key into Envoy's route hash policy,
// as Istio does: httpHeaderName hashes a header, httpCookie a cookie (which
// Envoy sets with path and ttl when the request has none and ttl is given),
// useSourceIp the client's address, httpQueryParameterName a query
// parameter. nil when ch is nil or names no key. Cookie attributes are not
// translated (config.Unsupported warns).
func hashPolicy(ch *v1alpha3.LoadBalancerSettings_ConsistentHashLB) *routev3.RouteAction_HashPolicy {
	switch key := ch.GetHashKey().(type) {
	case *v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: key.HttpHeaderName},
		}}
	case *v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: key.HttpCookie.GetName(), Path: key.HttpCookie.GetPath()}
		if ttl := key.HttpCookie.GetTtl(); ttl != nil {
			c.Ttl = durationpb.New(ttl.AsDuration())
		}
		for _, a := range key.HttpCookie.GetAttributes() {
			c.Attributes = append(c.Attributes, &routev3.RouteAction_HashPolicy_CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case *v1alpha3.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: key.UseSourceIp},
		}}
	case *v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: key.HttpQueryParameterName},
		}}
	}
	return nil
}

// destination resolves an Istio destination to its cluster. Without a
// port, a single-port service uses that port; otherwise the virtual host's
// port is used.
func (t *translator) destination(d *v1alpha3.Destination, vsNamespace string, vhostPort uint32) clusterKey {
	k := clusterKey{host: resolveHost(t.snap, d.GetHost(), vsNamespace), port: d.GetPort().GetNumber(), subset: d.GetSubset()}
	if k.port == 0 {
		k.port = vhostPort
		if svc := t.snap.Service(k.host); svc != nil && len(svc.Ports) == 1 {
			k.port = svc.Ports[0].Number
		}
	}
	return k
}

// retryPolicy converts Istio retries; nil retries get Istio's default and
// zero attempts disable retries.
func retryPolicy(r *v1alpha3.HTTPRetry) *routev3.RetryPolicy {
	if r == nil {
		return defaultRetryPolicy()
	}
	if r.GetAttempts() <= 0 {
		return nil
	}
	p := defaultRetryPolicy()
	p.NumRetries = wrapperspb.UInt32(uint32(r.GetAttempts()))
	if r.GetRetryOn() != "" {
		p.RetryOn, p.RetriableStatusCodes = parseRetryOn(r.GetRetryOn())
	}
	if r.GetPerTryTimeout() != nil {
		p.PerTryTimeout = durationpb.New(r.GetPerTryTimeout().AsDuration())
	}
	if r.GetBackoff() != nil {
		p.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(r.GetBackoff().AsDuration())}
	}
	return p
}

// defaultRetryPolicy is Istio's default retry policy.
func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:              defaultRetryOn,
		NumRetries:           wrapperspb.UInt32(defaultRetries),
		RetriableStatusCodes: []uint32{503},
	}
}

// parseRetryOn splits Istio's retryOn into Envoy's retry_on conditions and
// retriable status codes: "gateway-error,503" retries on gateway errors and
// on status 503.
func parseRetryOn(s string) (string, []uint32) {
	var conds []string
	var codes []uint32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if code, err := strconv.ParseUint(part, 10, 32); err == nil {
			codes = append(codes, uint32(code))
			continue
		}
		conds = append(conds, part)
	}
	if len(codes) > 0 && !slices.Contains(conds, retriableStatus) {
		conds = append(conds, retriableStatus)
	}
	return strings.Join(conds, ","), codes
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// noTimeout is an explicit 0s route timeout: no timeout, as in Istio.
func noTimeout() *durationpb.Duration { return durationpb.New(0) }
