package config

import (
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// How Istio merges a delegate VirtualService's HTTP matches into its root
// route's (used by the translation, which merges them, and by analysis,
// which reports the delegate routes that cannot be merged). Gateway names
// in the matches must be resolved (namespace/name) on both sides.

// JoinRouteNames names a merged route or match: "root-sub", or whichever is set.
func JoinRouteNames(root, sub string) string {
	switch {
	case sub == "":
		return root
	case root == "":
		return sub
	}
	return root + "-" + sub
}

// MergeDelegateMatches merges a delegate route's matches with its root route's:
// every delegate match must lie within at least one root match, and
// becomes one merged match per root match it lies within. ok is false when
// some delegate match lies within none.
func MergeDelegateMatches(root, sub []*networking.HTTPMatchRequest) (out []*networking.HTTPMatchRequest, ok bool) {
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
func matchWithin(root, sub *networking.HTTPMatchRequest) bool {
	if !stringWithin(root.GetUri(), sub.GetUri()) || !stringWithin(root.GetScheme(), sub.GetScheme()) ||
		!stringWithin(root.GetMethod(), sub.GetMethod()) || !stringWithin(root.GetAuthority(), sub.GetAuthority()) {
		return false
	}
	for _, m := range []struct {
		root, sub map[string]*networking.StringMatch
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
func stringWithin(root, sub *networking.StringMatch) bool {
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
func mergeMatch(root, sub *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	out := proto.CloneOf(sub)
	out.Name = JoinRouteNames(root.GetName(), sub.GetName())
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
