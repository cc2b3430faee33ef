package translate

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
)

// VirtualService delegation, as Istio has it: an HTTP route of a root
// VirtualService may hand a part of its hosts' traffic to a delegate, a
// VirtualService without hosts (usually another team's, in its own
// namespace). The root's route is replaced by the delegate's HTTP routes,
// each restricted to the root route's match and filling in what it leaves
// unset from the root route. Only the root applies to proxies; a delegate
// on its own does nothing.

// delegateKey names a delegate VirtualService: namespace/name.
type delegateKey struct{ namespace, name string }

// expandDelegates returns spec with every route that delegates replaced by
// the merged routes of its delegate, or spec itself when none does. A
// route whose delegate does not exist, is no delegate (it has hosts), or is
// not exported to the root's namespace is left out, as is a delegate
// route whose match cannot be a part of the root route's (config analysis
// warns about both).
func expandDelegates(spec *v1alpha3.VirtualService, namespace string, delegates map[delegateKey]*config.Resource) *v1alpha3.VirtualService {
	if !slices.ContainsFunc(spec.GetHttp(), func(r *v1alpha3.HTTPRoute) bool { return r.GetDelegate() != nil }) {
		return spec
	}
	out := proto.CloneOf(spec)
	var routes []*v1alpha3.HTTPRoute
	for _, root := range out.GetHttp() {
		d := root.GetDelegate()
		if d == nil {
			routes = append(routes, root)
			continue
		}
		key := delegateKey{namespace: d.GetNamespace(), name: d.GetName()}
		if key.namespace == "" {
			key.namespace = namespace
		}
		r, ok := delegates[key]
		if !ok || !config.ExportedTo(r.Spec.(*v1alpha3.VirtualService).GetExportTo(), key.namespace, namespace) {
			continue
		}
		root.Delegate = nil
		resolveMatchGateways(root, namespace)
		for _, sub := range r.Spec.(*v1alpha3.VirtualService).GetHttp() {
			sub = proto.CloneOf(sub)
			resolveDelegateNames(sub, key.namespace)
			if merged := mergeRoute(root, sub); merged != nil {
				routes = append(routes, merged)
			}
		}
	}
	out.Http = routes
	return out
}

// resolveDelegateNames resolves the short names of a delegate's route in
// the delegate's namespace, where its author wrote them, before the route
// joins its root in another: destination and mirror hosts, and the
// gateways its matches name (as Istio resolves each VirtualService's names
// in its own namespace).
func resolveDelegateNames(r *v1alpha3.HTTPRoute, ns string) {
	for _, d := range r.GetRoute() {
		if d.GetDestination() != nil {
			d.Destination.Host = config.ResolveHost(d.Destination.Host, ns)
		}
	}
	if r.GetMirror() != nil {
		r.Mirror.Host = config.ResolveHost(r.Mirror.Host, ns)
	}
	for _, m := range r.GetMirrors() {
		if m.GetDestination() != nil {
			m.Destination.Host = config.ResolveHost(m.Destination.Host, ns)
		}
	}
	resolveMatchGateways(r, ns)
}

// resolveMatchGateways writes the gateways r's matches name as
// namespace/name, so that a root's and a delegate's can be compared.
func resolveMatchGateways(r *v1alpha3.HTTPRoute, ns string) {
	for _, m := range r.GetMatch() {
		for i, g := range m.GetGateways() {
			m.Gateways[i] = resolveGateway(g, ns)
		}
	}
}

// mergeRoute restricts the delegate route sub to the root route's match,
// and gives it what the root route sets and it does not; nil when sub's
// match cannot be a part of root's.
func mergeRoute(root, sub *v1alpha3.HTTPRoute) *v1alpha3.HTTPRoute {
	match, ok := config.MergeDelegateMatches(root.GetMatch(), sub.GetMatch())
	if !ok {
		return nil
	}
	sub.Match = match
	sub.Name = config.JoinRouteNames(root.GetName(), sub.GetName())
	if sub.Rewrite == nil {
		sub.Rewrite = root.Rewrite
	}
	if sub.Timeout == nil {
		sub.Timeout = root.Timeout
	}
	if sub.Retries == nil {
		sub.Retries = root.Retries
	}
	if sub.Fault == nil {
		sub.Fault = root.Fault
	}
	if sub.Mirror == nil && len(sub.Mirrors) == 0 {
		sub.Mirror, sub.Mirrors = root.Mirror, root.Mirrors
	}
	if sub.MirrorPercentage == nil {
		sub.MirrorPercentage = root.MirrorPercentage
	}
	if sub.MirrorPercent == nil { //nolint:staticcheck // deprecated, still honoured
		sub.MirrorPercent = root.MirrorPercent //nolint:staticcheck
	}
	if sub.CorsPolicy == nil {
		sub.CorsPolicy = root.CorsPolicy
	}
	if sub.Headers == nil {
		sub.Headers = root.Headers
	}
	return sub
}
