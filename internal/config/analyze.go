package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Warning is a problem that spans resources: each resource is valid on its
// own, but together they will not do what the user meant.
type Warning struct {
	// Code is the istioctl analyze message code, e.g. IST0101.
	Code      string
	Kind      Kind
	Namespace string
	Name      string
	Path      string
	Message   string
}

// String formats the warning the way istioctl analyze does:
// "Warning [IST0101] (VirtualService default/reviews) PATH: MESSAGE".
func (w Warning) String() string {
	s := fmt.Sprintf("Warning [%s] (%s %s/%s)", w.Code, w.Kind, w.Namespace, w.Name)
	if w.Path != "" {
		s += " " + w.Path + ":"
	}
	return s + " " + w.Message
}

// CodeReferencedResourceNotFound is istioctl's code for a reference to a
// resource that does not exist.
const CodeReferencedResourceNotFound = "IST0101"

// Analyze looks at a whole set of resources and warns about references
// that lead nowhere: a VirtualService destination (route, mirror, tcp or
// tls route) naming a subset that no DestinationRule for its host defines.
// Hosts are compared after ResolveHost in each resource's own namespace; a
// DestinationRule for a wildcard host ("*.example.com") covers the hosts it
// matches. Warnings are sorted by resource, and by
// position within a resource.
func Analyze(all []*Resource) []Warning {
	// subsets[host] = subset names defined for that host.
	subsets := map[string]map[string]bool{}
	for _, r := range all {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok || r.Kind != KindDestinationRule {
			continue
		}
		host := ResolveHost(dr.Host, r.Namespace)
		if subsets[host] == nil {
			subsets[host] = map[string]bool{}
		}
		for _, s := range dr.Subsets {
			subsets[host][s.Name] = true
		}
	}
	defined := func(host, subset string) bool {
		for h, names := range subsets {
			if names[subset] && hostCovers(h, host) {
				return true
			}
		}
		return false
	}

	var out []Warning
	for _, r := range all {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || r.Kind != KindVirtualService {
			continue
		}
		check := func(path string, d *networking.Destination) {
			if d == nil || d.Subset == "" {
				return
			}
			host := ResolveHost(d.Host, r.Namespace)
			if defined(host, d.Subset) {
				return
			}
			out = append(out, Warning{
				Code: CodeReferencedResourceNotFound, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Path:    path,
				Message: fmt.Sprintf("referenced subset %q of host %s is not defined by any DestinationRule", d.Subset, host),
			})
		}
		for i, h := range vs.Http {
			p := index("spec.http", i)
			for j, rd := range h.Route {
				check(index(p+".route", j)+".destination", rd.Destination)
			}
			check(p+".mirror", h.Mirror)
			for j, m := range h.Mirrors {
				check(index(p+".mirrors", j)+".destination", m.Destination)
			}
		}
		for i, t := range vs.Tcp {
			for j, rd := range t.Route {
				check(index(index("spec.tcp", i)+".route", j)+".destination", rd.Destination)
			}
		}
		for i, t := range vs.Tls {
			for j, rd := range t.Route {
				check(index(index("spec.tls", i)+".route", j)+".destination", rd.Destination)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Warning) int {
		return cmp.Or(
			cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name),
		)
	})
	return out
}

// hostCovers reports whether a DestinationRule host (possibly a wildcard)
// applies to host.
func hostCovers(drHost, host string) bool {
	switch {
	case drHost == host || drHost == "*":
		return true
	case strings.HasPrefix(drHost, "*."):
		return strings.HasSuffix(host, drHost[1:])
	}
	return false
}
