package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Level is how serious a Warning is, as istioctl analyze grades its
// messages.
type Level string

// The levels, from most to least serious.
const (
	LevelError   Level = "Error"
	LevelWarning Level = "Warning"
	LevelInfo    Level = "Info"
)

// Warning is a problem that spans resources: each resource is valid on its
// own, but together they will not do what the user meant.
type Warning struct {
	// Level is Error, Warning or Info; empty means Warning.
	Level Level
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
	s := fmt.Sprintf("%s [%s] (%s %s/%s)", cmp.Or(w.Level, LevelWarning), w.Code, w.Kind, w.Namespace, w.Name)
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
// matches. It also warns about an HTTP route that delegates to a
// VirtualService that does not exist, has hosts (so is no delegate), or is
// not exported to the root's namespace: the route then has no effect.
// Warnings are sorted by resource, and by position within a resource.
func Analyze(all []*Resource) []Warning {
	return sortWarnings(append(undefinedSubsets(all), brokenDelegations(all)...))
}

// CodeDelegateRouteLeftOut is Weft's code for a delegate route that its
// root route's match leaves no room for (istioctl has none).
const CodeDelegateRouteLeftOut = "WEFT0003"

// matchesWithGateways returns ms with the gateways they name resolved in
// namespace ns (namespace/name), copying only what changes.
func matchesWithGateways(ms []*networking.HTTPMatchRequest, ns string) []*networking.HTTPMatchRequest {
	if !slices.ContainsFunc(ms, func(m *networking.HTTPMatchRequest) bool { return len(m.Gateways) > 0 }) {
		return ms
	}
	out := make([]*networking.HTTPMatchRequest, len(ms))
	for i, m := range ms {
		out[i] = m
		if len(m.Gateways) == 0 {
			continue
		}
		c := proto.CloneOf(m)
		for k, g := range c.Gateways {
			if g != "mesh" && !strings.Contains(g, "/") {
				c.Gateways[k] = ns + "/" + g
			}
		}
		out[i] = c
	}
	return out
}

// brokenDelegations is Analyze's check of delegate references, unsorted.
func brokenDelegations(all []*Resource) []Warning {
	vss := map[Key]*networking.VirtualService{}
	for _, r := range all {
		if vs, ok := r.Spec.(*networking.VirtualService); ok && r.Kind == KindVirtualService {
			vss[r.Key()] = vs
		}
	}
	var out []Warning
	for _, r := range all {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || r.Kind != KindVirtualService || len(vs.Hosts) == 0 {
			continue
		}
		for i, h := range vs.Http {
			d := h.Delegate
			if d == nil || d.Name == "" {
				continue
			}
			key := Key{Kind: KindVirtualService, Namespace: cmp.Or(d.Namespace, r.Namespace), Name: d.Name}
			target, found := vss[key]
			var why string
			switch {
			case !found:
				why = fmt.Sprintf("Referenced delegate VirtualService not found: %q", key.Namespace+"/"+key.Name)
			case len(target.Hosts) > 0:
				why = fmt.Sprintf("delegate VirtualService %s/%s has hosts, so it is no delegate: the route has no effect", key.Namespace, key.Name)
			case !ExportedTo(target.ExportTo, key.Namespace, r.Namespace):
				why = fmt.Sprintf("delegate VirtualService %s/%s is not exported to namespace %s: the route has no effect", key.Namespace, key.Name, r.Namespace)
			default:
				// Delegate routes whose match cannot lie within this
				// route's are left out.
				rootMatch := matchesWithGateways(h.Match, r.Namespace)
				for j, sub := range target.Http {
					if _, ok := MergeDelegateMatches(rootMatch, matchesWithGateways(sub.Match, key.Namespace)); !ok {
						out = append(out, Warning{
							Code: CodeDelegateRouteLeftOut, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
							Path:    index("spec.http", i) + ".delegate",
							Message: fmt.Sprintf("route %d of delegate VirtualService %s/%s matches outside this route's match: it is left out", j, key.Namespace, key.Name),
						})
					}
				}
				continue
			}
			out = append(out, Warning{
				Code: CodeReferencedResourceNotFound, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Path: index("spec.http", i) + ".delegate", Message: why,
			})
		}
	}
	return out
}

// undefinedSubsets is Analyze's check, unsorted.
func undefinedSubsets(all []*Resource) []Warning {
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
		for _, pd := range destinations(vs) {
			d := pd.dest
			if d.Subset == "" {
				continue
			}
			host := ResolveHost(d.Host, r.Namespace)
			if defined(host, d.Subset) {
				continue
			}
			out = append(out, Warning{
				Code: CodeReferencedResourceNotFound, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Path:    pd.path,
				Message: fmt.Sprintf("referenced subset %q of host %s is not defined by any DestinationRule", d.Subset, host),
			})
		}
	}
	return out
}

// sortWarnings sorts warnings by resource, keeping the order of the
// warnings about one resource.
func sortWarnings(out []Warning) []Warning {
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

// pathDest is a destination of a VirtualService and its field path.
type pathDest struct {
	path string
	dest *networking.Destination
}

// destinations lists every destination of vs, in the order written: HTTP
// routes and mirrors, then TCP and TLS routes.
func destinations(vs *networking.VirtualService) []pathDest {
	var out []pathDest
	add := func(path string, d *networking.Destination) {
		if d != nil {
			out = append(out, pathDest{path, d})
		}
	}
	for i, h := range vs.GetHttp() {
		p := index("spec.http", i)
		for j, rd := range h.GetRoute() {
			add(index(p+".route", j)+".destination", rd.GetDestination())
		}
		add(p+".mirror", h.GetMirror())
		for j, m := range h.GetMirrors() {
			add(index(p+".mirrors", j)+".destination", m.GetDestination())
		}
	}
	for i, t := range vs.GetTcp() {
		for j, rd := range t.GetRoute() {
			add(index(index("spec.tcp", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	for i, t := range vs.GetTls() {
		for j, rd := range t.GetRoute() {
			add(index(index("spec.tls", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	return out
}

// Message codes of the mesh-wide analyzers, istioctl's where it has one.
const (
	// CodeSubsetSelectsNothing is Weft's code for a DestinationRule subset
	// whose labels select no workload of its host.
	CodeSubsetSelectsNothing = "WEFT0002"
	// CodeConflictingMeshGatewayHosts is istioctl's
	// ConflictingMeshGatewayVirtualServiceHosts.
	CodeConflictingMeshGatewayHosts = "IST0109"
	// CodeVirtualServiceUnreachableRule is istioctl's
	// VirtualServiceUnreachableRule.
	CodeVirtualServiceUnreachableRule = "IST0130"
	// CodeVirtualServiceIneffectiveMatch is istioctl's
	// VirtualServiceIneffectiveMatch.
	CodeVirtualServiceIneffectiveMatch = "IST0131"
)

// Workload is a running instance as the analyzers see it.
type Workload struct {
	Namespace string
	Name      string
	Labels    map[string]string
}

// Service is a host the registry knows, with the workloads behind it.
type Service struct {
	Hostname  string // reviews.default.svc.cluster.local, or a ServiceEntry host
	Workloads []Workload
}

// MeshOptions is what AnalyzeMesh looks at.
type MeshOptions struct {
	// Resources is the whole configuration.
	Resources []*Resource
	// Services are the services in the live registry.
	Services []Service
	// Gateways are the running gateway workloads.
	Gateways []Workload
}

// AnalyzeMesh runs every analyzer over a configuration and the live
// registry, the way istioctl analyze does over a cluster: the checks of
// Analyze, destination hosts that lead nowhere, subsets and gateway
// selectors that select no workload, VirtualServices that fight over a host
// on the mesh gateway, HTTP routes that can never match, and the fields
// Weft does not support (Unsupported). Warnings are sorted by resource.
func AnalyzeMesh(opts MeshOptions) []Warning {
	out := undefinedSubsets(opts.Resources)
	out = append(out, unknownHosts(opts.Resources, opts.Services)...)
	out = append(out, emptySubsets(opts.Resources, opts.Services)...)
	out = append(out, unmatchedGatewaySelectors(opts.Resources, opts.Gateways)...)
	out = append(out, gatewayPortClashes(opts.Resources, opts.Gateways)...)
	out = append(out, brokenDelegations(opts.Resources)...)
	out = append(out, conflictingMeshHosts(opts.Resources)...)
	out = append(out, ineffectiveMatches(opts.Resources)...)
	for _, r := range opts.Resources {
		out = append(out, Unsupported(r)...)
	}
	return sortWarnings(out)
}

// unknownHosts warns about a VirtualService destination whose host is
// neither a service in the registry nor a host of a ServiceEntry.
func unknownHosts(all []*Resource, services []Service) []Warning {
	var known []string
	for _, s := range services {
		known = append(known, s.Hostname)
	}
	for _, r := range all {
		if se, ok := r.Spec.(*networking.ServiceEntry); ok && r.Kind == KindServiceEntry {
			for _, h := range se.GetHosts() {
				known = append(known, ResolveHost(h, r.Namespace))
			}
		}
	}
	exists := func(host string) bool {
		return slices.ContainsFunc(known, func(k string) bool { return hostCovers(k, host) })
	}
	var out []Warning
	for _, r := range all {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || r.Kind != KindVirtualService {
			continue
		}
		seen := map[string]bool{}
		for _, pd := range destinations(vs) {
			host := pd.dest.GetHost()
			if seen[host] || exists(ResolveHost(host, r.Namespace)) {
				continue
			}
			seen[host] = true
			out = append(out, Warning{
				Code: CodeReferencedResourceNotFound, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Message: fmt.Sprintf("Referenced host not found: %q", host),
			})
		}
	}
	return out
}

// emptySubsets warns about a DestinationRule subset whose labels select no
// workload of its host. Hosts the registry does not know, wildcard hosts
// and services without workloads (a DNS ServiceEntry) are left alone.
func emptySubsets(all []*Resource, services []Service) []Warning {
	byHost := map[string][]Workload{}
	for _, s := range services {
		byHost[s.Hostname] = append(byHost[s.Hostname], s.Workloads...)
	}
	var out []Warning
	for _, r := range all {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok || r.Kind != KindDestinationRule {
			continue
		}
		host := ResolveHost(dr.GetHost(), r.Namespace)
		workloads := byHost[host]
		if len(workloads) == 0 {
			continue
		}
		for i, s := range dr.GetSubsets() {
			if slices.ContainsFunc(workloads, func(w Workload) bool { return selects(s.GetLabels(), w.Labels) }) {
				continue
			}
			out = append(out, Warning{
				Level: LevelInfo, Code: CodeSubsetSelectsNothing, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Path: index("spec.subsets", i) + ".labels",
				Message: fmt.Sprintf("subset %q selects no workload of host %s: none of its %d workloads has the labels %s",
					s.GetName(), host, len(workloads), selectorString(s.GetLabels())),
			})
		}
	}
	return out
}

// unmatchedGatewaySelectors warns about a Gateway whose selector matches
// no running gateway workload, in any namespace, as Istio selects them.
func unmatchedGatewaySelectors(all []*Resource, gateways []Workload) []Warning {
	var out []Warning
	for _, r := range all {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok || r.Kind != KindGateway || len(gw.GetSelector()) == 0 {
			continue
		}
		if slices.ContainsFunc(gateways, func(w Workload) bool { return selects(gw.GetSelector(), w.Labels) }) {
			continue
		}
		out = append(out, Warning{
			Code: CodeReferencedResourceNotFound, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
			Message: fmt.Sprintf("Referenced selector not found: %q", selectorString(gw.GetSelector())),
		})
	}
	return out
}

// gatewayPortClashes warns about a TCP server of a Gateway on a port
// where another Gateway selecting the same gateway workload has an HTTP
// server: the gateway serves HTTP there. (Servers of one Gateway are
// checked by Unsupported.)
func gatewayPortClashes(all []*Resource, gateways []Workload) []Warning {
	var out []Warning
	seen := map[string]bool{}
	for _, w := range gateways {
		httpBy := map[uint32]*Resource{} // port → a Gateway with an HTTP server on it
		type tcpServer struct {
			r    *Resource
			i    int
			port uint32
		}
		var tcp []tcpServer
		for _, r := range all {
			gw, ok := r.Spec.(*networking.Gateway)
			if !ok || r.Kind != KindGateway || !selects(gw.GetSelector(), w.Labels) {
				continue
			}
			for i, srv := range gw.GetServers() {
				switch n := srv.GetPort().GetNumber(); strings.ToUpper(srv.GetPort().GetProtocol()) {
				case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS":
					if httpBy[n] == nil {
						httpBy[n] = r
					}
				case "TCP":
					tcp = append(tcp, tcpServer{r, i, n})
				}
			}
		}
		for _, s := range tcp {
			h := httpBy[s.port]
			if h == nil || h == s.r {
				continue
			}
			path := index("spec.servers", s.i) + ".port"
			if key := s.r.Key().String() + path; !seen[key] {
				seen[key] = true
				out = append(out, Warning{
					Code: CodeNotSupported, Kind: s.r.Kind, Namespace: s.r.Namespace, Name: s.r.Name, Path: path,
					Message: fmt.Sprintf("TCP server on port %d, where Gateway %s/%s has an HTTP server for the same gateway workload: the port serves HTTP, and this server has no effect", s.port, h.Namespace, h.Name),
				})
			}
		}
	}
	return out
}

// conflictingMeshHosts warns about every VirtualService bound to the mesh
// gateway (no gateways, or "mesh" among them) that shares a host with
// another such VirtualService that is exported to a namespace it is
// exported to: sidecars there use only one of them.
func conflictingMeshHosts(all []*Resource) []Warning {
	byHost := map[string][]*Resource{}
	var hosts []string
	for _, r := range all {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || r.Kind != KindVirtualService {
			continue
		}
		if gws := vs.GetGateways(); len(gws) > 0 && !slices.Contains(gws, "mesh") {
			continue
		}
		for _, h := range vs.GetHosts() {
			host := ResolveHost(h, r.Namespace)
			if len(byHost[host]) == 0 {
				hosts = append(hosts, host)
			}
			if !slices.Contains(byHost[host], r) {
				byHost[host] = append(byHost[host], r)
			}
		}
	}
	var out []Warning
	exportTo := func(r *Resource) []string { return r.Spec.(*networking.VirtualService).GetExportTo() }
	for _, host := range hosts {
		var rs []*Resource
		for _, r := range byHost[host] {
			if slices.ContainsFunc(byHost[host], func(o *Resource) bool {
				return o != r && exportsOverlap(exportTo(r), r.Namespace, exportTo(o), o.Namespace)
			}) {
				rs = append(rs, r)
			}
		}
		if len(rs) < 2 {
			continue
		}
		names := make([]string, len(rs))
		for i, r := range rs {
			names[i] = r.Namespace + "/" + r.Name
		}
		slices.Sort(names)
		for _, r := range rs {
			out = append(out, Warning{
				Code: CodeConflictingMeshGatewayHosts, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Message: fmt.Sprintf("The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. "+
					"This can be fixed by merging the conflicting VirtualServices into a single resource.", strings.Join(names, ","), host),
			})
		}
	}
	return out
}

// ineffectiveMatches warns about HTTP routes that can never be chosen
// because an earlier route of the same VirtualService takes every request
// they match (the first matching route wins). A route with no match takes
// everything, so every route after it is unreachable (IST0130); a match is
// ineffective (IST0131) when an earlier match is the same, or tests only
// the URI with a prefix that covers it ("/" covers every request).
func ineffectiveMatches(all []*Resource) []Warning {
	var out []Warning
	for _, r := range all {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || r.Kind != KindVirtualService {
			continue
		}
		warn := func(level Level, code, msg string) {
			out = append(out, Warning{Level: level, Code: code, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Message: msg})
		}
		catchAll := -1 // the first route without a match
		for i, h := range vs.GetHttp() {
			if catchAll >= 0 {
				warn(LevelWarning, CodeVirtualServiceUnreachableRule, fmt.Sprintf(
					"VirtualService rule #%d not used (rule #%d has no match and takes every request; only the last rule can have no matches).", i, catchAll))
				continue
			}
			if len(h.GetMatch()) == 0 {
				// Unreachable if an earlier match takes every request.
				if ri, mi, ok := earlierCover(vs.GetHttp()[:i], nil); ok {
					warn(LevelInfo, CodeVirtualServiceIneffectiveMatch, fmt.Sprintf(
						"VirtualService rule #%d is not used (rule #%d match #%d takes every request).", i, ri, mi))
				}
				catchAll = i
				continue
			}
			for j, m := range h.GetMatch() {
				ri, mi, ok := earlierCover(vs.GetHttp()[:i], m)
				if !ok {
					continue
				}
				why := "overlaps"
				if sameMatch(vs.GetHttp()[ri].GetMatch()[mi], m) {
					why = "duplicates"
				}
				warn(LevelInfo, CodeVirtualServiceIneffectiveMatch, fmt.Sprintf(
					"VirtualService rule #%d match #%d is not used (%s a match in rule #%d).", i, j, why, ri))
			}
		}
	}
	return out
}

// earlierCover finds the first match of routes that takes every request m
// matches; a nil m stands for a route without a match (every request).
func earlierCover(routes []*networking.HTTPRoute, m *networking.HTTPMatchRequest) (route, match int, ok bool) {
	for i, h := range routes {
		for j, e := range h.GetMatch() {
			if covers(e, m) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// covers reports whether every request that b matches also matches a. It
// is conservative: it knows identical matches, and matches that test only
// the URI, by prefix or exactly, with a prefix of b's URI.
func covers(a, b *networking.HTTPMatchRequest) bool {
	if b != nil && sameMatch(a, b) {
		return true
	}
	onlyURI := proto.Clone(a).(*networking.HTTPMatchRequest)
	onlyURI.Name, onlyURI.Uri, onlyURI.IgnoreUriCase = "", nil, false
	if !proto.Equal(onlyURI, &networking.HTTPMatchRequest{}) {
		return false
	}
	prefix := "/"
	switch u := a.GetUri().GetMatchType().(type) {
	case nil:
		return true
	case *networking.StringMatch_Prefix:
		prefix = u.Prefix
	default:
		return false
	}
	if prefix == "/" || prefix == "" {
		return true
	}
	if b == nil || (b.GetIgnoreUriCase() && !a.GetIgnoreUriCase()) {
		return false
	}
	var path string
	switch u := b.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		path = u.Prefix
	case *networking.StringMatch_Exact:
		path = u.Exact
	default:
		return false
	}
	if a.GetIgnoreUriCase() {
		return strings.HasPrefix(strings.ToLower(path), strings.ToLower(prefix))
	}
	return strings.HasPrefix(path, prefix)
}

// sameMatch reports whether two matches test the same things; their names
// do not count.
func sameMatch(a, b *networking.HTTPMatchRequest) bool {
	a = proto.Clone(a).(*networking.HTTPMatchRequest)
	b = proto.Clone(b).(*networking.HTTPMatchRequest)
	a.Name, b.Name = "", ""
	return proto.Equal(a, b)
}

// selects reports whether a label selector selects a workload's labels; an
// empty selector selects every workload.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// selectorString writes a selector as Kubernetes does: "app=a,version=v1",
// sorted by key.
func selectorString(sel map[string]string) string {
	keys := slices.Sorted(maps.Keys(sel))
	for i, k := range keys {
		keys[i] = k + "=" + sel[k]
	}
	return strings.Join(keys, ",")
}
