// Package config is Weft's model of user configuration: Istio resources
// (VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry)
// decoded from YAML into the istio.io/api types, validated, and analyzed.
//
// It does no I/O beyond what its caller hands it; storage lives in package
// store.
package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// Kind names a resource type the way its YAML does.
type Kind string

// The kinds Weft accepts.
const (
	KindVirtualService  Kind = "VirtualService"
	KindDestinationRule Kind = "DestinationRule"
	KindGateway         Kind = "Gateway"
	KindServiceEntry    Kind = "ServiceEntry"
	KindWorkloadEntry   Kind = "WorkloadEntry"
)

// Meta is the part of Kubernetes ObjectMeta that Weft keeps.
type Meta struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// ResourceVersion is the store revision that last wrote the resource.
	ResourceVersion int64 `json:"resourceVersion,omitempty"`
	// Generation counts changes to the spec, starting at 1.
	Generation        int64     `json:"generation,omitempty"`
	CreationTimestamp time.Time `json:"creationTimestamp,omitzero"`
}

// Resource is one decoded configuration object.
type Resource struct {
	// APIVersion as written by the user, e.g. networking.istio.io/v1beta1.
	APIVersion string
	Kind       Kind
	Meta
	// Spec is the istio.io/api message for Kind, e.g.
	// *v1alpha3.VirtualService (the v1 and v1beta1 types are aliases of it).
	Spec proto.Message
}

// Key identifies a resource in the store.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k Key) String() string { return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name) }

// Key returns the resource's identity.
func (r *Resource) Key() Key { return Key{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name} }

// ExportedTo reports whether a resource in namespace own whose exportTo is
// exportTo applies to proxies in namespace ns, as Istio reads exportTo:
// empty or "*" is every namespace, "." the resource's own, "~" none, and
// any other entry a namespace by name.
func ExportedTo(exportTo []string, own, ns string) bool {
	_, ok := ExportRank(exportTo, own, ns)
	return ok
}

// ExportRank is how a resource exported by exportTo from namespace own
// ranks for proxies in namespace ns, where several claim the same host, as
// Istio ranks VirtualServices: 0 for one kept to its own namespace (".",
// or that namespace by name) when ns is it, 1 for one exported to ns by
// name, 2 for a public one (no exportTo, or "*"). ok is false when it is
// not exported to ns at all.
func ExportRank(exportTo []string, own, ns string) (rank int, ok bool) {
	if len(exportTo) == 0 {
		return 2, true
	}
	rank = 3
	for _, e := range exportTo {
		switch {
		case (e == "." || e == own) && ns == own:
			rank = 0
		case e == ns:
			rank = min(rank, 1)
		case e == "*":
			rank = min(rank, 2)
		}
	}
	return rank, rank < 3
}

// exportsOverlap reports whether two resources' exportTo lists (with their
// namespaces) share a namespace they apply in.
func exportsOverlap(a []string, aNS string, b []string, bNS string) bool {
	all := func(x []string) bool { return len(x) == 0 || slices.Contains(x, "*") }
	if all(a) || all(b) {
		return !slices.Contains(a, "~") && !slices.Contains(b, "~")
	}
	for _, e := range a {
		ns := e
		if e == "." {
			ns = aNS
		}
		if ns != "~" && ExportedTo(b, bNS, ns) {
			return true
		}
	}
	return false
}

// ResolveHost turns a host as written in a resource into the name Istio
// resolves it to: a short name without dots ("reviews") is a service in the
// resource's namespace, reviews.NAMESPACE.svc.cluster.local; any name with a
// dot ("reviews.prod.svc.cluster.local", "httpbin.org"), an IP address and
// the wildcards are taken as written.
func ResolveHost(host, namespace string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") || strings.Contains(host, ":") {
		return host
	}
	return host + "." + namespace + ".svc.cluster.local"
}

// shortNames are kubectl's short names for the kinds.
var shortNames = map[Kind]string{
	KindVirtualService: "vs", KindDestinationRule: "dr", KindGateway: "gw",
	KindServiceEntry: "se", KindWorkloadEntry: "we",
}

// ParseKind resolves a kind the way kubectl does: by its name in any case,
// its plural (virtualservices) or its short name (vs).
func ParseKind(s string) (Kind, error) {
	l := strings.ToLower(s)
	for _, k := range Kinds {
		name := strings.ToLower(string(k))
		if l == name || l == name+"s" || l == shortNames[k] {
			return k, nil
		}
	}
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = fmt.Sprintf("%s (%s)", k, shortNames[k])
	}
	return "", fmt.Errorf("unknown kind %q: use one of %s", s, strings.Join(names, ", "))
}

// OfKind returns the resources of kind k, in order.
func OfKind(all []*Resource, k Kind) []*Resource {
	var out []*Resource
	for _, r := range all {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}
