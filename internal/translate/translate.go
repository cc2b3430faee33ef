// Package translate turns a snapshot of the mesh (Istio config plus the
// service registry) into the xDS resources of one proxy, following the
// contract in docs/xds.md.
//
// Translation is a pure function: no I/O, no globals, no clock. The output is
// sorted so that the same input always gives the same resources.
package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/snapshot"
)

// Resources is one proxy's complete xDS configuration. It is consistent:
// every EDS cluster has a ClusterLoadAssignment (possibly with no endpoints)
// and every route_config_name a listener references has a
// RouteConfiguration.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// defaultOutboundPort is where a sidecar's outbound listener binds when the
// proxy does not say.
const defaultOutboundPort = 15001

// meshGateway is the reserved gateway name for sidecars.
const meshGateway = "mesh"

// ForProxy computes every xDS resource of proxy p from snapshot s. To
// translate many proxies of one snapshot, use NewShared(s).ForProxy.
func ForProxy(s *snapshot.Snapshot, p nodemeta.Metadata) *Resources {
	return NewShared(s).ForProxy(p)
}

// ForProxy computes every xDS resource of proxy p. The result shares
// resources with other proxies' results; treat it as read-only.
func (sh *Shared) ForProxy(p nodemeta.Metadata) *Resources {
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	t := &translator{
		shared: sh,
		snap:   sh.snap,
		proxy:  p,
		vss:    sh.vss,
		drs:    sh.drs,
		refs:   map[clusterKey]bool{},
	}
	out := &Resources{}
	switch {
	case p.Type == nodemeta.TypeRouter:
		out.Listeners, out.Routes = t.gateway()
	case p.InterceptionMode == nodemeta.InterceptionRedirect:
		out.Listeners, out.Routes = t.transparentSidecar()
		out.Clusters = append(t.inboundClusters(), passthroughClusters()...)
	default:
		out.Listeners, out.Routes = t.sidecar()
		out.Clusters = t.inboundClusters()
	}
	clusters, endpoints := t.outbound()
	out.Clusters = append(out.Clusters, clusters...)
	out.Endpoints = endpoints

	slices.SortFunc(out.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	if !slices.IsSortedFunc(out.Endpoints, compareCLA) {
		out.Endpoints = slices.Clone(out.Endpoints) // never reorder the shared slice
		slices.SortFunc(out.Endpoints, compareCLA)
	}
	return out
}

func compareCLA(a, b *endpointv3.ClusterLoadAssignment) int {
	return cmp.Compare(a.ClusterName, b.ClusterName)
}

// translator carries the indexes of one ForProxy call.
type translator struct {
	shared *Shared
	snap   *snapshot.Snapshot
	proxy  nodemeta.Metadata
	vss    []virtualService           // oldest first
	drs    map[string]destinationRule // by resolved host; the oldest wins
	// refs collects the outbound clusters routes point at, so that each
	// gets a Cluster and a ClusterLoadAssignment even without a service.
	refs map[clusterKey]bool
}

// sidecar builds the listeners and route configurations of a sidecar.
func (t *translator) sidecar() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	port := t.proxy.OutboundPort
	if port == 0 {
		port = defaultOutboundPort
	}
	listeners := []*listenerv3.Listener{outboundListener(port)}
	for _, pp := range t.proxy.Ports {
		listeners = append(listeners, t.inboundListener(pp))
	}
	return listeners, []*routev3.RouteConfiguration{t.httpProxyRoutes()}
}

// gateway builds the listeners and route configurations of a gateway: per
// port of the HTTP servers of the Gateways that select it, a listener and a
// route configuration; per port of their TCP servers, a listener that
// proxies connections as a VirtualService's TCP route says. A port with
// servers of both kinds serves HTTP (config analysis reports the clash).
func (t *translator) gateway() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	byPort := map[uint32][]gatewayServer{}
	for _, srv := range t.gatewayServers() {
		byPort[srv.port] = append(byPort[srv.port], srv)
	}
	var listeners []*listenerv3.Listener
	var routes []*routev3.RouteConfiguration
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		servers := byPort[port]
		http := slices.DeleteFunc(slices.Clone(servers), func(s gatewayServer) bool { return s.tcp })
		if len(http) == 0 {
			if l := t.gatewayTCPListener(port, servers); l != nil {
				listeners = append(listeners, l)
			}
			continue
		}
		grpcWeb := slices.ContainsFunc(http, func(s gatewayServer) bool { return s.grpcWeb })
		l := t.gatewayListener(port, grpcWeb)
		// HTTPS servers: the port's connections are TLS, with the first
		// HTTPS server's certificate (one per port: no SNI selection).
		if i := slices.IndexFunc(http, func(s gatewayServer) bool { return s.tls != nil }); i >= 0 {
			l.FilterChains[0].TransportSocket = serverTLSSocket(http[i].tls)
		}
		listeners = append(listeners, l)
		routes = append(routes, t.gatewayRoutes(port, http))
	}
	return listeners, routes
}

// gatewayServer is one HTTP or TCP server of a Gateway that selects this
// proxy.
type gatewayServer struct {
	gateway   string // namespace/name
	namespace string // the Gateway's namespace
	port      uint32
	hosts     []string // as written: host, ns/host, */host, ./host
	grpcWeb   bool     // protocol GRPC-WEB
	tcp       bool     // protocol TCP
	// tls is an HTTPS server's TLS settings (SIMPLE, with the certificate
	// and key in files); nil for plain servers.
	tls *v1alpha3.ServerTLSSettings
}

// gatewayServers lists the HTTP, HTTPS and TCP servers of the Gateways
// whose selector labels are all present on the proxy, in any namespace.
// An HTTPS server counts only when it terminates TLS with a certificate
// and key from files (mode SIMPLE, serverCertificate and privateKey); TLS
// servers, and HTTPS servers with a credentialName or another mode, are not
// supported yet (config analysis warns), and get no listener rather than a
// plain one.
func (t *translator) gatewayServers() []gatewayServer {
	var out []gatewayServer
	for _, r := range t.snap.Of(config.KindGateway) {
		spec, ok := r.Spec.(*v1alpha3.Gateway)
		if !ok || spec == nil || !hasLabels(t.proxy.Labels, spec.GetSelector()) {
			continue
		}
		for _, srv := range spec.GetServers() {
			proto := strings.ToUpper(srv.GetPort().GetProtocol())
			var tls *v1alpha3.ServerTLSSettings
			switch proto {
			case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "TCP":
			case "HTTPS":
				if !servesTLSFromFiles(srv.GetTls()) {
					continue
				}
				tls = srv.GetTls()
			default:
				continue
			}
			if srv.GetPort().GetNumber() == 0 {
				continue
			}
			out = append(out, gatewayServer{
				gateway:   r.Namespace + "/" + r.Name,
				namespace: r.Namespace,
				port:      srv.GetPort().GetNumber(),
				hosts:     srv.GetHosts(),
				grpcWeb:   proto == "GRPC-WEB",
				tcp:       proto == "TCP",
				tls:       tls,
			})
		}
	}
	return out
}

// admits reports whether the server accepts VirtualService host vsHost from
// a VirtualService in namespace vsNamespace.
func (g gatewayServer) admits(vsNamespace, vsHost string) bool {
	for _, h := range g.hosts {
		ns, host := "*", h
		if i := strings.Index(h, "/"); i >= 0 {
			ns, host = h[:i], h[i+1:]
		}
		if ns == "." {
			ns = g.namespace
		}
		if (ns == "*" || ns == vsNamespace) && hostsOverlap(host, vsHost) {
			return true
		}
	}
	return false
}

// hostsOverlap reports whether two hosts, each exact, "*" or "*.suffix",
// can match a common name.
func hostsOverlap(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "*" || b == "*" {
		return true
	}
	aw, bw := strings.HasPrefix(a, "*."), strings.HasPrefix(b, "*.")
	switch {
	case aw && bw:
		return strings.HasSuffix(a[1:], b[1:]) || strings.HasSuffix(b[1:], a[1:])
	case aw:
		return strings.HasSuffix(b, a[1:])
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

// hasLabels reports whether have contains every label of want.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// clusterKey identifies an outbound cluster.
type clusterKey struct {
	host   string
	port   uint32
	subset string
}

// name is the cluster name: outbound|PORT|SUBSET|HOST.
func (k clusterKey) name() string {
	return fmt.Sprintf("outbound|%d|%s|%s", k.port, k.subset, k.host)
}

// virtualService is a VirtualService with its hosts resolved.
type virtualService struct {
	res   *config.Resource
	spec  *v1alpha3.VirtualService
	hosts []string // resolved, in spec order
	// gateways holds the VS's gateways resolved to namespace/name, plus
	// "mesh" when it applies to sidecars (also when gateways is empty).
	gateways map[string]bool
}

// virtualServices lists the snapshot's VirtualServices, oldest first (then
// by namespace/name), which is the order in which they claim hosts.
//
// A VirtualService without hosts is a delegate: it applies only through
// the root VirtualServices whose routes delegate to it, which get its
// routes merged in (see expandDelegates).
func virtualServices(s *snapshot.Snapshot) []virtualService {
	delegates := map[delegateKey]*config.Resource{}
	for _, r := range s.Of(config.KindVirtualService) {
		if spec, ok := r.Spec.(*v1alpha3.VirtualService); ok && spec != nil && len(spec.GetHosts()) == 0 {
			delegates[delegateKey{namespace: r.Namespace, name: r.Name}] = r
		}
	}
	var out []virtualService
	for _, r := range s.Of(config.KindVirtualService) {
		spec, ok := r.Spec.(*v1alpha3.VirtualService)
		if !ok || spec == nil || len(spec.GetHosts()) == 0 {
			continue
		}
		spec = expandDelegates(spec, r.Namespace, delegates)
		vs := virtualService{res: r, spec: spec, gateways: map[string]bool{}}
		for _, h := range spec.GetHosts() {
			vs.hosts = append(vs.hosts, resolveHost(s, h, r.Namespace))
		}
		if len(spec.GetGateways()) == 0 {
			vs.gateways[meshGateway] = true
		}
		for _, g := range spec.GetGateways() {
			vs.gateways[resolveGateway(g, r.Namespace)] = true
		}
		out = append(out, vs)
	}
	slices.SortStableFunc(out, func(a, b virtualService) int { return compareAge(a.res, b.res) })
	return out
}

// destinationRule is a DestinationRule with its host resolved.
type destinationRule struct {
	res  *config.Resource
	spec *v1alpha3.DestinationRule
}

// subset returns the named subset, or nil.
func (d destinationRule) subset(name string) *v1alpha3.Subset {
	for _, s := range d.spec.GetSubsets() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// destinationRules indexes DestinationRules by resolved host; when several
// claim a host the oldest wins.
func destinationRules(s *snapshot.Snapshot) map[string]destinationRule {
	var all []destinationRule
	for _, r := range s.Of(config.KindDestinationRule) {
		spec, ok := r.Spec.(*v1alpha3.DestinationRule)
		if !ok || spec == nil || spec.GetHost() == "" {
			continue
		}
		all = append(all, destinationRule{res: r, spec: spec})
	}
	slices.SortStableFunc(all, func(a, b destinationRule) int { return compareAge(a.res, b.res) })
	out := map[string]destinationRule{}
	for _, d := range all {
		h := resolveHost(s, d.spec.GetHost(), d.res.Namespace)
		if _, taken := out[h]; !taken {
			out[h] = d
		}
	}
	return out
}

// compareAge orders resources oldest first, then by namespace and name.
func compareAge(a, b *config.Resource) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// resolveHost resolves a host written in a resource of namespace ns.
func resolveHost(_ *snapshot.Snapshot, host, ns string) string {
	return config.ResolveHost(host, ns)
}

// resolveGateway turns a VirtualService's gateway reference into
// namespace/name; "mesh" stays as it is.
func resolveGateway(ref, ns string) string {
	if ref == meshGateway || strings.Contains(ref, "/") {
		return ref
	}
	return ns + "/" + ref
}

// isWildcard reports whether host is "*" or "*.suffix".
func isWildcard(host string) bool { return strings.HasPrefix(host, "*") }

// adsSource is the config source for resources delivered over ADS.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// configMetadata is the metadata Istio puts on what a DestinationRule or
// VirtualService shaped (a cluster, a route), and istioctl's proxy-config
// reads: filter_metadata.istio.config is the resource's path, in which
// kind is Istio's segment (destination-rule, virtual-service), and subset,
// when set, the cluster's DestinationRule subset.
func configMetadata(kind string, r *config.Resource, subset string) *corev3.Metadata {
	fields := map[string]*structpb.Value{
		"config": structpb.NewStringValue("/apis/networking.istio.io/v1/namespaces/" + r.Namespace + "/" + kind + "/" + r.Name),
	}
	if subset != "" {
		fields["subset"] = structpb.NewStringValue(subset)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: fields}}}
}

// mustAny packs m into an Any. Marshalling a well-formed generated message
// cannot fail, so a failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("translate: packing %T: %v", m, err))
	}
	return a
}
