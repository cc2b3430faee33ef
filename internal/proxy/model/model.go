// Package model compiles accepted xDS resources into weft-proxy's immutable
// runtime model: listeners with their route tables and handler chains, and
// clusters with their endpoints and load balancers.
//
// The Compiler is the xdsclient.Handler. Each discovery response is compiled
// resource by resource; one bad resource rejects the whole response (the
// error names the resource and field, and becomes the NACK message) and
// leaves the accepted state as it was. After an accepted response, when every
// referenced route configuration and every EDS cluster's endpoints are
// present, a new Model is built and published; until then the previous Model
// keeps serving. Nothing past this package reads protobufs.
//
// Concurrency: Apply and Names are called by the xDS client's goroutine only.
// mu guards the accepted state so that Resources and Pending can be read
// from other goroutines (the admin server). Current is lock-free.
package model

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/cors"
	"github.com/weftmesh/weft/internal/proxy/fault"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/grpcweb"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	endpointv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/endpoint/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// Model is one immutable configuration version.
type Model struct {
	// Listeners, sorted by name.
	Listeners []*Listener
	// Clusters by name.
	Clusters map[string]*upstream.Cluster
	// Versions holds the accepted version_info per type URL.
	Versions map[string]string
}

// Listener is one listener of a Model.
type Listener struct {
	Name string
	// Address is the host:port to bind (or, when Bind is false, the
	// original destination it takes connections for).
	Address string
	// NoBind is set for bind_to_port: false listeners, which only receive
	// connections handed off by a UseOriginalDst listener.
	NoBind bool
	// UseOriginalDst hands each accepted connection to the listener whose
	// address matches the connection's original destination (exact IP:PORT,
	// then 0.0.0.0:PORT); with none, this listener's own chains serve it.
	UseOriginalDst bool
	// HTTPInspector sniffs the first bytes of each connection for HTTP/1.x
	// or the h2c preface, for at most InspectTimeout (0: no limit). On
	// timeout the connection goes on with no protocol detected when
	// ContinueOnTimeout is set, and is closed otherwise (Envoy's
	// continue_on_listener_filters_timeout).
	HTTPInspector     bool
	InspectTimeout    time.Duration
	ContinueOnTimeout bool
	// FilterChains in configuration order, and the default chain (nil when
	// not configured).
	FilterChains []*FilterChain
	DefaultChain *FilterChain
	// DNS is set for a UDP listener with the DNS filter; such a listener has
	// no filter chains.
	DNS *DNSConfig
}

// FilterChain is a listener's filter chain: either an HTTP connection
// manager (Routes set) or a tcp_proxy (TCPCluster set).
type FilterChain struct {
	Name string
	// DestinationPort matches the connection's destination port; 0 matches any.
	DestinationPort uint32
	// ApplicationProtocols matches the protocol the inspector detected
	// ("http/1.0", "http/1.1", "h2c"); empty matches any.
	ApplicationProtocols []string

	// RouteConfig names the route configuration (RDS or inline).
	RouteConfig string
	Routes      *router.Table
	// Chain handles every HTTP request the chain accepts: the connection
	// manager's HTTP filters (fault injection, CORS) in their order, then
	// the forwarder.
	Chain chain.Handler

	// TCPCluster is the tcp_proxy cluster, and TCPMaxAge how long a
	// connection through it may last (max_downstream_connection_duration;
	// 0: no limit).
	TCPCluster string
	TCPMaxAge  time.Duration
	// TCPWeighted, when set instead of TCPCluster, are the clusters a
	// connection goes to, one picked by weight per connection.
	TCPWeighted []WeightedCluster

	// TLS, when set, terminates TLS on the chain's connections.
	TLS *ServerTLS
}

// WeightedCluster is one cluster of a tcp_proxy's weighted_clusters.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// PickTCPCluster returns the cluster a new connection goes to; r is a
// random number in [0, 1).
func (fc *FilterChain) PickTCPCluster(r float64) string {
	if len(fc.TCPWeighted) == 0 {
		return fc.TCPCluster
	}
	var total uint64
	for _, c := range fc.TCPWeighted {
		total += uint64(c.Weight)
	}
	n := uint64(r * float64(total))
	for _, c := range fc.TCPWeighted {
		if n < uint64(c.Weight) {
			return c.Name
		}
		n -= uint64(c.Weight)
	}
	return fc.TCPWeighted[len(fc.TCPWeighted)-1].Name
}

// HTTP reports whether the chain is an HTTP connection manager.
func (fc *FilterChain) HTTP() bool { return fc.Routes != nil }

// SelectChain picks the filter chain for a connection to destPort with the
// detected application protocol (empty when none), as Envoy does: the
// chains matching the destination port exactly, or else those with no
// destination port; among them one listing the protocol, or else one with no
// protocols; else the default chain. It returns nil when nothing matches
// (Envoy closes the connection).
func (l *Listener) SelectChain(destPort uint32, protocol string) *FilterChain {
	port := uint32(0)
	for _, fc := range l.FilterChains {
		if destPort != 0 && fc.DestinationPort == destPort {
			port = destPort
			break
		}
	}
	var wildcard *FilterChain
	for _, fc := range l.FilterChains {
		if fc.DestinationPort != port {
			continue
		}
		if len(fc.ApplicationProtocols) == 0 {
			if wildcard == nil {
				wildcard = fc
			}
			continue
		}
		if protocol != "" && slices.Contains(fc.ApplicationProtocols, protocol) {
			return fc
		}
	}
	if wildcard != nil {
		return wildcard
	}
	return l.DefaultChain
}

// DNSConfig is a DNS filter's configuration.
type DNSConfig struct {
	// Domains maps a lower-case fully qualified name (no trailing dot) to
	// its addresses.
	Domains map[string][]netip.Addr
	// Upstreams are the client_config.upstream_resolvers (host:port); empty
	// means the system's resolvers.
	Upstreams []string
}

// Options configures a Compiler.
type Options struct {
	Logger *slog.Logger
	// Pools keeps connection pools across versions. Required.
	Pools *upstream.Pools
	// PortMap rebinds wildcard listeners on port FROM to 127.0.0.1:TO.
	PortMap map[uint32]uint32
	// Publish is called, on the xDS goroutine, with every new Model.
	Publish func(*Model)
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
}

// Resource is one accepted resource as received, for config dumps.
type Resource struct {
	Name    string
	Version string
	Updated time.Time
	Any     *anypb.Any
}

// Resources is the accepted state, for config dumps.
type Resources struct {
	// Versions holds the last accepted version_info per type URL.
	Versions map[string]string
	// Listeners, Clusters, Routes, Endpoints are sorted by name; Routes and
	// Endpoints hold only the currently subscribed names.
	Listeners, Clusters, Routes, Endpoints []Resource
}

type entry[T any] struct {
	res  Resource
	comp T
	hash uint64 // of res.Any's encoding (anyHash)
}

// Compiler turns xDS responses into Models.
type Compiler struct {
	opts    Options
	log     *slog.Logger
	current atomic.Pointer[Model]

	mu        sync.Mutex
	versions  map[string]string
	listeners map[string]entry[*compiledListener]
	clusters  map[string]entry[*compiledCluster]
	// routes and endpoints keep what was received of the names the
	// listeners and clusters refer to (rdsNames, edsNames): a response of
	// these types need not carry every resource, and one no longer
	// referred to is dropped, as Envoy drops it when it unsubscribes. A
	// control plane sends it again when it is subscribed to again.
	routes    map[string]entry[*router.Table]
	endpoints map[string]entry[[]upstream.EndpointSpec]
	// byHash indexes each type's accepted resources by the hash of their
	// encoding (see reuse).
	byHash   map[string]map[uint64]string
	gotLDS   bool
	gotCDS   bool
	edsNames []string
	rdsNames []string
	pending  string

	// mirrors, faults and cors are the counters of every version's
	// forwarder and HTTP filters (by connection manager stat prefix), so
	// that they count on across versions. faults and cors are guarded by
	// statsMu.
	mirrors *forward.MirrorCounters
	statsMu sync.Mutex
	faults  map[string]*fault.Counters
	cors    map[string]*cors.Counters
}

var _ xdsclient.Handler = (*Compiler)(nil)

// MirrorStats returns the counts of shadow requests (request mirroring).
func (c *Compiler) MirrorStats() forward.MirrorStats { return c.mirrors.Stats() }

// FaultStats returns the fault filter counts by connection manager stat
// prefix.
func (c *Compiler) FaultStats() map[string]fault.Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	out := make(map[string]fault.Stats, len(c.faults))
	for prefix, fc := range c.faults {
		out[prefix] = fc.Stats()
	}
	return out
}

// httpChain builds a filter chain's HTTP handlers in http_filters order,
// the first filter outermost, ending in the forwarder. A filter that has
// nothing to do with this version's routes (no route injects a fault or has
// a CORS policy) is left out: it would only cost every request a call.
func (c *Compiler) httpChain(cc *compiledChain, routes *router.Table, fwd chain.Handler) chain.Handler {
	h := fwd
	for i := len(cc.filters) - 1; i >= 0; i-- {
		switch f := cc.filters[i]; f.kind {
		case filterFault:
			if f.faultDefault != nil || (routes != nil && routes.HasFaults()) {
				h = fault.New(fault.Options{Next: h, Default: f.faultDefault, Logger: c.log, Counters: c.faultCounters(cc.statPrefix)})
			}
		case filterCors:
			if routes != nil && routes.HasCors() {
				h = cors.New(cors.Options{Next: h, Logger: c.log, Counters: c.corsCounters(cc.statPrefix)})
			}
		case filterGrpcWeb:
			h = grpcweb.New(h)
		}
	}
	return h
}

// corsCounters returns the CORS counters of a connection manager.
func (c *Compiler) corsCounters(statPrefix string) *cors.Counters {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	cc := c.cors[statPrefix]
	if cc == nil {
		cc = new(cors.Counters)
		c.cors[statPrefix] = cc
	}
	return cc
}

// CorsStats returns the CORS filter counts by connection manager stat
// prefix.
func (c *Compiler) CorsStats() map[string]cors.Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	out := make(map[string]cors.Stats, len(c.cors))
	for prefix, cc := range c.cors {
		out[prefix] = cc.Stats()
	}
	return out
}

// faultCounters returns the fault counters of a connection manager.
func (c *Compiler) faultCounters(statPrefix string) *fault.Counters {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	fc := c.faults[statPrefix]
	if fc == nil {
		fc = new(fault.Counters)
		c.faults[statPrefix] = fc
	}
	return fc
}

// New returns a Compiler with nothing accepted yet.
func New(o Options) *Compiler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Pools == nil {
		o.Pools = upstream.NewPools(upstream.PoolsOptions{Logger: o.Logger})
	}
	if o.Publish == nil {
		o.Publish = func(*Model) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Compiler{
		opts: o, log: o.Logger,
		versions:  map[string]string{},
		listeners: map[string]entry[*compiledListener]{},
		clusters:  map[string]entry[*compiledCluster]{},
		routes:    map[string]entry[*router.Table]{},
		endpoints: map[string]entry[[]upstream.EndpointSpec]{},
		byHash:    map[string]map[uint64]string{},
		pending:   "waiting for clusters and listeners",
		mirrors:   new(forward.MirrorCounters),
		faults:    map[string]*fault.Counters{},
		cors:      map[string]*cors.Counters{},
	}
}

// Current returns the latest published Model, or nil before the first.
func (c *Compiler) Current() *Model { return c.current.Load() }

// Pending says what the next Model is waiting for; empty when the latest
// accepted state is published.
func (c *Compiler) Pending() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// Names implements xdsclient.Handler.
func (c *Compiler) Names(typeURL string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch typeURL {
	case xdsclient.TypeEndpoint:
		return c.edsNames
	case xdsclient.TypeRoute:
		return c.rdsNames
	}
	return nil
}

// decode unpacks every resource of a response, checking type and name
// uniqueness.
// decodeOne decodes res[i], a, into m, checking its type.
func decodeOne(kind, typeURL string, i int, a *anypb.Any, m proto.Message) error {
	if err := checkType(kind, typeURL, i, a); err != nil {
		return err
	}
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("%s response: resources[%d]: %w", kind, i, err)
	}
	return nil
}

// checkType checks that res[i], a, is of the response's type.
func checkType(kind, typeURL string, i int, a *anypb.Any) error {
	if a.GetTypeUrl() != typeURL {
		return fmt.Errorf("%s response: resources[%d] has type %s", kind, i, a.GetTypeUrl())
	}
	return nil
}

// anyHash hashes a resource's encoding, to find it among the accepted.
func anyHash(a *anypb.Any) uint64 {
	return maphash.Bytes(anySeed, a.GetValue())
}

var anySeed = maphash.MakeSeed()

// reuse returns the accepted entry whose resource is a, byte for byte
// (found by h, the hash of a's encoding, in byHash), if there is one: an
// unchanged resource is neither decoded nor compiled again. A response of
// a type carries all of its resources, so without this a change to one
// service of a thousand would decode and compile the other 999 too.
func reuse[T any](accepted map[string]entry[T], byHash map[uint64]string, a *anypb.Any, h uint64) (entry[T], bool) {
	name, ok := byHash[h]
	if !ok {
		return entry[T]{}, false
	}
	e, ok := accepted[name]
	if !ok || e.res.Any != a && (e.res.Any.GetTypeUrl() != a.GetTypeUrl() || !bytes.Equal(e.res.Any.GetValue(), a.GetValue())) {
		return entry[T]{}, false
	}
	return e, true
}

// index maps the hash of each accepted resource's encoding to its name.
func index[T any](accepted map[string]entry[T]) map[uint64]string {
	out := make(map[uint64]string, len(accepted))
	for name, e := range accepted {
		out[e.hash] = name
	}
	return out
}

// sortedSet sorts names and drops repeats (many clusters may share an EDS
// service name, many listeners a route configuration).
func sortedSet(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

// prune drops the accepted resources of the names in was (sorted) that
// are not in names (sorted), and reports whether it dropped any.
func prune[T any](accepted map[string]entry[T], was, names []string) bool {
	dropped := false
	i := 0
	for _, name := range was {
		for i < len(names) && names[i] < name {
			i++
		}
		if i == len(names) || names[i] != name {
			if _, ok := accepted[name]; ok {
				delete(accepted, name)
				dropped = true
			}
		}
	}
	return dropped
}

// referred reports whether name is among names (sorted), the route
// configurations the listeners use or the EDS services the clusters do.
// A resource of another name is a state-of-the-world answer to a
// subscription the proxy has just dropped: it is neither checked nor kept,
// as Envoy ignores what it does not watch (over delta, the client leaves
// such resources out).
func referred(names []string, name string) bool {
	_, ok := slices.BinarySearch(names, name)
	return ok
}

// Apply implements xdsclient.Handler: it compiles a response and, if every
// resource in it compiles, accepts it and publishes a new Model when the
// accepted state is complete. Resources unchanged since they were accepted
// keep their compiled form (and the version they were accepted at).
func (c *Compiler) Apply(typeURL, version string, res []*anypb.Any) error {
	now := c.opts.Now()
	mk := func(name string, a *anypb.Any) Resource {
		return Resource{Name: name, Version: version, Updated: now, Any: a}
	}
	twice := func(kind, name string) error { return fmt.Errorf("%s %q: sent twice in one response", kind, name) }
	c.mu.Lock()
	defer c.mu.Unlock()
	byHash := c.byHash[typeURL]
	switch typeURL {
	case xdsclient.TypeListener:
		next := make(map[string]entry[*compiledListener], len(res))
		byAddr := map[string]string{}
		for i, a := range res {
			h := anyHash(a)
			e, ok := reuse(c.listeners, byHash, a, h)
			if !ok {
				l := &listenerv3.Listener{}
				if err := decodeOne("Listener", typeURL, i, a, l); err != nil {
					return err
				}
				if _, dup := next[l.GetName()]; dup {
					return twice("Listener", l.GetName())
				}
				cl, err := compileListener(l, c.opts.PortMap)
				if err != nil {
					return fmt.Errorf("Listener %q: %w", l.GetName(), err)
				}
				e = entry[*compiledListener]{mk(cl.name, a), cl, h}
			} else if _, dup := next[e.comp.name]; dup {
				return twice("Listener", e.comp.name)
			}
			if other, ok := byAddr[e.comp.address]; ok {
				return fmt.Errorf("Listener %q: address %s is also used by listener %q", e.comp.name, e.comp.address, other)
			}
			byAddr[e.comp.address] = e.comp.name
			next[e.comp.name] = e
		}
		c.listeners, c.gotLDS = next, true
		c.byHash[typeURL] = index(next)
		was := c.rdsNames
		c.rdsNames = nil
		for _, e := range next {
			for _, ch := range e.comp.allChains() {
				if ch.rds != "" {
					c.rdsNames = append(c.rdsNames, ch.rds)
				}
			}
		}
		c.rdsNames = sortedSet(c.rdsNames)
		if prune(c.routes, was, c.rdsNames) {
			c.byHash[xdsclient.TypeRoute] = index(c.routes)
		}
	case xdsclient.TypeCluster:
		next := make(map[string]entry[*compiledCluster], len(res))
		for i, a := range res {
			h := anyHash(a)
			e, ok := reuse(c.clusters, byHash, a, h)
			if !ok {
				cl := &clusterv3.Cluster{}
				if err := decodeOne("Cluster", typeURL, i, a, cl); err != nil {
					return err
				}
				if _, dup := next[cl.GetName()]; dup {
					return twice("Cluster", cl.GetName())
				}
				cc, err := compileCluster(cl)
				if err != nil {
					return fmt.Errorf("Cluster %q: %w", cl.GetName(), err)
				}
				if cc.lbWarning != "" {
					c.log.Warn("cluster uses an unsupported load balancer", "cluster", cl.GetName(), "detail", cc.lbWarning)
				}
				e = entry[*compiledCluster]{mk(cl.GetName(), a), cc, h}
			} else if _, dup := next[e.res.Name]; dup {
				return twice("Cluster", e.res.Name)
			}
			next[e.res.Name] = e
		}
		c.clusters, c.gotCDS = next, true
		c.byHash[typeURL] = index(next)
		was := c.edsNames
		c.edsNames = nil
		for _, e := range next {
			if e.comp.eds != "" {
				c.edsNames = append(c.edsNames, e.comp.eds)
			}
		}
		c.edsNames = sortedSet(c.edsNames)
		if prune(c.endpoints, was, c.edsNames) {
			c.byHash[xdsclient.TypeEndpoint] = index(c.endpoints)
		}
	case xdsclient.TypeRoute:
		next := maps.Clone(c.routes)
		seen := make(map[string]bool, len(res))
		for i, a := range res {
			h := anyHash(a)
			if e, ok := reuse(c.routes, byHash, a, h); ok {
				if seen[e.res.Name] {
					return twice("RouteConfiguration", e.res.Name)
				}
				seen[e.res.Name] = true
				continue
			}
			// Only the virtual hosts that changed since the accepted
			// version are decoded and compiled.
			if err := checkType("RouteConfiguration", typeURL, i, a); err != nil {
				return err
			}
			enc, err := router.Split(a.GetValue())
			if err != nil {
				return fmt.Errorf("RouteConfiguration response: resources[%d]: %w", i, err)
			}
			name := enc.Config.GetName()
			if !referred(c.rdsNames, name) {
				continue // see referred
			}
			if seen[name] {
				return twice("RouteConfiguration", name)
			}
			seen[name] = true
			t, err := compileRoute(enc, c.routes[name].comp)
			if err != nil {
				if strings.HasPrefix(err.Error(), "route config "+name+":") {
					return err // the router already names it
				}
				return fmt.Errorf("RouteConfiguration %q: %w", name, err)
			}
			next[name] = entry[*router.Table]{mk(name, a), t, h}
		}
		c.routes = next
		c.byHash[typeURL] = index(next)
	case xdsclient.TypeEndpoint:
		next := maps.Clone(c.endpoints)
		seen := make(map[string]bool, len(res))
		for i, a := range res {
			h := anyHash(a)
			if e, ok := reuse(c.endpoints, byHash, a, h); ok {
				if seen[e.res.Name] {
					return twice("ClusterLoadAssignment", e.res.Name)
				}
				seen[e.res.Name] = true
				continue
			}
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := decodeOne("ClusterLoadAssignment", typeURL, i, a, cla); err != nil {
				return err
			}
			if !referred(c.edsNames, cla.GetClusterName()) {
				continue // see referred
			}
			if seen[cla.GetClusterName()] {
				return twice("ClusterLoadAssignment", cla.GetClusterName())
			}
			seen[cla.GetClusterName()] = true
			eps, err := compileCLA(cla)
			if err != nil {
				return fmt.Errorf("ClusterLoadAssignment %q: %w", cla.GetClusterName(), err)
			}
			next[cla.GetClusterName()] = entry[[]upstream.EndpointSpec]{mk(cla.GetClusterName(), a), eps, h}
		}
		c.endpoints = next
		c.byHash[typeURL] = index(next)
	default:
		return fmt.Errorf("weft-proxy does not handle resources of type %s", typeURL)
	}
	c.versions[typeURL] = version
	c.build()
	return nil
}

// build publishes a new Model if the accepted state is complete; c.mu is held.
func (c *Compiler) build() {
	var missing []string
	if !c.gotCDS {
		missing = append(missing, "clusters (CDS)")
	}
	if !c.gotLDS {
		missing = append(missing, "listeners (LDS)")
	}
	for _, n := range c.rdsNames {
		if _, ok := c.routes[n]; !ok {
			missing = append(missing, fmt.Sprintf("route configuration %q", n))
		}
	}
	for _, n := range c.edsNames {
		if _, ok := c.endpoints[n]; !ok {
			missing = append(missing, fmt.Sprintf("endpoints of cluster %q", n))
		}
	}
	if len(missing) > 0 {
		c.pending = "waiting for " + strings.Join(missing, ", ")
		c.log.Debug("configuration incomplete", "pending", c.pending)
		return
	}
	c.pending = ""

	specs := make([]upstream.ClusterSpec, 0, len(c.clusters))
	for _, e := range c.clusters {
		s := e.comp.spec
		if e.comp.eds != "" {
			s.Endpoints = c.endpoints[e.comp.eds].comp
		}
		specs = append(specs, s)
	}
	m := &Model{Clusters: c.opts.Pools.Build(specs), Versions: maps.Clone(c.versions)}
	fwd := forward.New(forward.Options{Clusters: m.Clusters, Logger: c.log, Mirrors: c.mirrors})
	for _, e := range c.listeners {
		cl := e.comp
		l := &Listener{Name: cl.name, Address: cl.address, NoBind: !cl.bind, UseOriginalDst: cl.origDst,
			HTTPInspector: cl.inspect, InspectTimeout: cl.timeout, ContinueOnTimeout: cl.cont, DNS: cl.dns}
		mk := func(cc *compiledChain) *FilterChain {
			fc := &FilterChain{Name: cc.name, DestinationPort: cc.destPort, ApplicationProtocols: cc.protocols, TCPCluster: cc.tcpCluster, TCPMaxAge: cc.tcpMaxAge, TCPWeighted: cc.tcpWeighted,
				TLS: cc.tls}
			if cc.http {
				fc.RouteConfig, fc.Routes, fc.Chain = cc.routeConfigName(), cc.inline, fwd
				if fc.Routes == nil {
					fc.Routes = c.routes[cc.rds].comp
				}
				fc.Chain = c.httpChain(cc, fc.Routes, fwd)
			}
			return fc
		}
		for _, cc := range cl.chains {
			l.FilterChains = append(l.FilterChains, mk(cc))
		}
		if cl.dflt != nil {
			l.DefaultChain = mk(cl.dflt)
		}
		m.Listeners = append(m.Listeners, l)
	}
	sort.Slice(m.Listeners, func(i, j int) bool { return m.Listeners[i].Name < m.Listeners[j].Name })
	level := slog.LevelDebug
	if c.current.Swap(m) == nil {
		level = slog.LevelInfo
	}
	c.log.Log(context.Background(), level, "configuration updated", "listeners", len(m.Listeners), "clusters", len(m.Clusters),
		"cds", m.Versions[xdsclient.TypeCluster], "lds", m.Versions[xdsclient.TypeListener],
		"rds", m.Versions[xdsclient.TypeRoute], "eds", m.Versions[xdsclient.TypeEndpoint])
	c.opts.Publish(m)
}

// Resources returns the accepted resources.
func (c *Compiler) Resources() Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Resources{Versions: maps.Clone(c.versions)}
	for _, e := range c.listeners {
		out.Listeners = append(out.Listeners, e.res)
	}
	for _, e := range c.clusters {
		out.Clusters = append(out.Clusters, e.res)
	}
	for _, n := range c.rdsNames {
		if e, ok := c.routes[n]; ok {
			out.Routes = append(out.Routes, e.res)
		}
	}
	for _, n := range c.edsNames {
		if e, ok := c.endpoints[n]; ok {
			out.Endpoints = append(out.Endpoints, e.res)
		}
	}
	byName := func(a, b Resource) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(out.Listeners, byName)
	slices.SortFunc(out.Clusters, byName)
	return out
}
