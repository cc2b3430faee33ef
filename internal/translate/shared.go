package translate

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/internal/snapshot"
)

// Shared holds what the proxies of one snapshot have in common, computed
// once: the indexes of the config, the outbound clusters and their load
// assignments (the same for every proxy), and the outbound route
// configurations, which depend on the proxy's namespace (and on its labels
// when a VirtualService matches on sourceLabels). Without it a
// mesh of P proxies and S services would build P×S clusters; with it, S.
//
// The resources it hands out are shared between proxies and must not be
// modified. A Shared is safe for concurrent use.
type Shared struct {
	snap *snapshot.Snapshot
	vss  []virtualService
	drs  map[string]destinationRule
	keys map[clusterKey]bool // the clusters below
	// bySourceLabels is set when a VirtualService's HTTP route matches on
	// sourceLabels: route configurations then differ by proxy labels.
	bySourceLabels bool
	clusters       []*clusterv3.Cluster
	endpoints      []*endpointv3.ClusterLoadAssignment

	mu     sync.Mutex
	routes map[routesKey]*sharedRoutes
}

// routesKey names an outbound route configuration for a namespace.
type routesKey struct {
	name      string // http_proxy, or the port in transparent mode
	namespace string
	labels    string // the proxy's labels, when Shared.bySourceLabels
}

// sharedRoutes is a route configuration and the clusters its routes use
// that no service backs (the others are in Shared.keys already).
type sharedRoutes struct {
	rc    *routev3.RouteConfiguration
	extra []clusterKey
}

// NewShared indexes s and builds its outbound clusters.
func NewShared(s *snapshot.Snapshot) *Shared {
	sh := &Shared{
		snap:   s,
		vss:    virtualServices(s),
		drs:    destinationRules(s),
		keys:   map[clusterKey]bool{},
		routes: map[routesKey]*sharedRoutes{},
	}
	for _, vs := range sh.vss {
		for _, hr := range vs.spec.GetHttp() {
			for _, m := range hr.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					sh.bySourceLabels = true
				}
			}
		}
	}
	t := &translator{shared: sh, snap: s, vss: sh.vss, drs: sh.drs}
	for _, svc := range s.Services {
		dr, hasDR := sh.drs[svc.Hostname]
		for _, port := range svc.Ports {
			sh.keys[clusterKey{host: svc.Hostname, port: port.Number}] = true
			if !hasDR {
				continue
			}
			for _, sub := range dr.spec.GetSubsets() {
				if sub.GetName() != "" {
					sh.keys[clusterKey{host: svc.Hostname, port: port.Number, subset: sub.GetName()}] = true
				}
			}
		}
	}
	sh.clusters, sh.endpoints = t.buildClusters(sh.keys)
	return sh
}

// routeConfig returns the outbound route configuration name (restricted
// to port only, when set) for t's proxy's namespace, building it for the
// first proxy of the namespace, and records in t.refs the clusters it uses
// that no service backs. Recording every cluster would cost each proxy a
// map insert per route, for clusters outbound() would find shared anyway.
func (sh *Shared) routeConfig(t *translator, name string, only uint32) *routev3.RouteConfiguration {
	k := routesKey{name: name, namespace: t.proxy.Namespace}
	if sh.bySourceLabels {
		k.labels = labelKey(t.proxy.Labels)
	}
	sh.mu.Lock()
	r := sh.routes[k]
	sh.mu.Unlock()
	if r == nil {
		// Build with a translator of its own, to learn which clusters
		// these routes use.
		rt := &translator{shared: sh, snap: t.snap, proxy: t.proxy, vss: t.vss, drs: t.drs, refs: map[clusterKey]bool{}}
		r = &sharedRoutes{rc: rt.outboundRoutes(name, only)}
		for k := range rt.refs {
			if !sh.keys[k] {
				r.extra = append(r.extra, k)
			}
		}
		sh.mu.Lock()
		if prev := sh.routes[k]; prev != nil {
			r = prev // another proxy of the namespace was first
		} else {
			sh.routes[k] = r
		}
		sh.mu.Unlock()
	}
	for _, k := range r.extra {
		t.refs[k] = true
	}
	return r.rc
}

// labelKey is a canonical form of a label set.
func labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}

// buildClusters makes an EDS cluster and its load assignment for each key,
// sorted by name.
func (t *translator) buildClusters(keys map[clusterKey]bool) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	sorted := make([]clusterKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b clusterKey) int { return cmp.Compare(a.name(), b.name()) })
	clusters := make([]*clusterv3.Cluster, 0, len(sorted))
	endpoints := make([]*endpointv3.ClusterLoadAssignment, 0, len(sorted))
	for _, k := range sorted {
		clusters = append(clusters, t.outboundCluster(k))
		endpoints = append(endpoints, t.loadAssignment(k))
	}
	return clusters, endpoints
}
