package translate

import (
	"maps"
	"slices"
	"strings"

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
// not exported to the root's namespace is left out (config analysis warns
// about those), as is a delegate route whose match cannot be a part of the
// root route's (not reported yet).
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
	match, ok := mergeMatches(root.GetMatch(), sub.GetMatch())
	if !ok {
		return nil
	}
	sub.Match = match
	sub.Name = joinNames(root.GetName(), sub.GetName())
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

// joinNames names a merged route or match: "root-sub", or whichever is set.
func joinNames(root, sub string) string {
	switch {
	case sub == "":
		return root
	case root == "":
		return sub
	}
	return root + "-" + sub
}

// mergeMatches merges a delegate route's matches with its root route's:
// every delegate match must lie within at least one root match, and
// becomes one merged match per root match it lies within. ok is false when
// some delegate match lies within none.
func mergeMatches(root, sub []*v1alpha3.HTTPMatchRequest) (out []*v1alpha3.HTTPMatchRequest, ok bool) {
	if len(root) == 0 {
		return sub, true
	}
	if len(sub) == 0 {
		return root, true
	}
	for _, s := range sub {
		within := false
		for _, r := range root {
			if matchWithin(r, s) {
				out = append(out, mergeMatch(r, s))
				within = true
			}
		}
		if !within {
			return nil, false
		}
	}
	return out, true
}

// matchWithin reports whether the delegate match sub can be a part of the
// root match root: every condition both set agrees (a delegate's URI
// prefix or exact path extends the root's prefix, or equals its exact
// path; regular expressions only on one side), and sub's port, source
// namespace, source labels and gateways do not widen root's.
func matchWithin(root, sub *v1alpha3.HTTPMatchRequest) bool {
	if !stringWithin(root.GetUri(), sub.GetUri()) || !stringWithin(root.GetScheme(), sub.GetScheme()) ||
		!stringWithin(root.GetMethod(), sub.GetMethod()) || !stringWithin(root.GetAuthority(), sub.GetAuthority()) {
		return false
	}
	for _, m := range []struct {
		root, sub map[string]*v1alpha3.StringMatch
	}{
		{root.GetHeaders(), sub.GetHeaders()},
		{root.GetWithoutHeaders(), sub.GetWithoutHeaders()},
		{root.GetQueryParams(), sub.GetQueryParams()},
	} {
		for k, v := range m.sub {
			if !stringWithin(m.root[k], v) {
				return false
			}
		}
	}
	if root.GetIgnoreUriCase() != sub.GetIgnoreUriCase() {
		return false
	}
	if root.GetPort() != 0 && sub.GetPort() != 0 && root.GetPort() != sub.GetPort() {
		return false
	}
	if root.GetSourceNamespace() != "" && sub.GetSourceNamespace() != root.GetSourceNamespace() {
		return false
	}
	for k, v := range sub.GetSourceLabels() {
		if rv, set := root.GetSourceLabels()[k]; set && rv != v {
			return false
		}
	}
	if len(root.GetGateways()) > 0 && !isSubset(sub.GetGateways(), root.GetGateways()) {
		return false
	}
	return true
}

// isSubset reports whether every element of a is in b.
func isSubset(a, b []string) bool {
	return !slices.ContainsFunc(a, func(s string) bool { return !slices.Contains(b, s) })
}

// stringWithin reports whether the delegate's string match sub can be a
// part of the root's root: either is unset, or sub's exact value equals
// root's, or sub's prefix or exact value starts with root's prefix. A
// regular expression on either side, with the other set, is not.
func stringWithin(root, sub *v1alpha3.StringMatch) bool {
	if root == nil || sub == nil {
		return true
	}
	if root.GetRegex() != "" || sub.GetRegex() != "" {
		return false // which paths two expressions share is not decided here
	}
	if exact := root.GetExact(); exact != "" {
		return sub.GetPrefix() == "" && sub.GetExact() == exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		switch {
		case sub.GetPrefix() != "":
			return strings.HasPrefix(sub.GetPrefix(), prefix)
		case sub.GetExact() != "":
			return strings.HasPrefix(sub.GetExact(), prefix)
		}
	}
	return false
}

// mergeMatch is the delegate match sub with what root sets and it does not.
func mergeMatch(root, sub *v1alpha3.HTTPMatchRequest) *v1alpha3.HTTPMatchRequest {
	out := proto.CloneOf(sub)
	out.Name = joinNames(root.GetName(), sub.GetName())
	if out.Uri == nil {
		out.Uri = root.Uri
	}
	if out.Scheme == nil {
		out.Scheme = root.Scheme
	}
	if out.Method == nil {
		out.Method = root.Method
	}
	if out.Authority == nil {
		out.Authority = root.Authority
	}
	out.Headers = mergeMaps(root.Headers, sub.Headers)
	out.WithoutHeaders = mergeMaps(root.WithoutHeaders, sub.WithoutHeaders)
	out.QueryParams = mergeMaps(root.QueryParams, sub.QueryParams)
	out.SourceLabels = mergeMaps(root.SourceLabels, sub.SourceLabels)
	if out.Port == 0 {
		out.Port = root.Port
	}
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.SourceNamespace
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.Gateways
	}
	return out
}

// mergeMaps is a's entries with b's over them; nil when both are empty.
func mergeMaps[V any](a, b map[string]V) map[string]V {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := maps.Clone(a)
	if out == nil {
		out = make(map[string]V, len(b))
	}
	maps.Copy(out, b)
	return out
}
