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
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
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

// Listener is one HTTP listener of a Model.
type Listener struct {
	Name string
	// Address is the host:port to bind.
	Address string
	// RouteConfig names the route configuration (RDS or inline).
	RouteConfig string
	Routes      *router.Table
	// Chain handles every request the listener accepts.
	Chain chain.Handler
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
	// routes and endpoints keep every name ever received: a control plane
	// need not resend an unchanged resource when it is subscribed again.
	routes    map[string]entry[*router.Table]
	endpoints map[string]entry[[]upstream.EndpointSpec]
	gotLDS    bool
	gotCDS    bool
	edsNames  []string
	rdsNames  []string
	pending   string
}

var _ xdsclient.Handler = (*Compiler)(nil)

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
		pending:   "waiting for clusters and listeners",
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
func decode[M proto.Message](kind string, typeURL string, res []*anypb.Any, newM func() M, name func(M) string) ([]M, error) {
	out := make([]M, 0, len(res))
	seen := make(map[string]bool, len(res))
	for i, a := range res {
		if a.GetTypeUrl() != typeURL {
			return nil, fmt.Errorf("%s response: resources[%d] has type %s", kind, i, a.GetTypeUrl())
		}
		m := newM()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("%s response: resources[%d]: %w", kind, i, err)
		}
		n := name(m)
		if seen[n] {
			return nil, fmt.Errorf("%s %q: sent twice in one response", kind, n)
		}
		seen[n] = true
		out = append(out, m)
	}
	return out, nil
}

// Apply implements xdsclient.Handler: it compiles a response and, if every
// resource in it compiles, accepts it and publishes a new Model when the
// accepted state is complete.
func (c *Compiler) Apply(typeURL, version string, res []*anypb.Any) error {
	now := c.opts.Now()
	mk := func(name string, a *anypb.Any) Resource {
		return Resource{Name: name, Version: version, Updated: now, Any: a}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch typeURL {
	case xdsclient.TypeListener:
		ls, err := decode("Listener", typeURL, res, func() *listenerv3.Listener { return &listenerv3.Listener{} }, (*listenerv3.Listener).GetName)
		if err != nil {
			return err
		}
		next := make(map[string]entry[*compiledListener], len(ls))
		byAddr := map[string]string{}
		for i, l := range ls {
			cl, err := compileListener(l, c.opts.PortMap)
			if err != nil {
				return fmt.Errorf("Listener %q: %w", l.GetName(), err)
			}
			if other, ok := byAddr[cl.address]; ok {
				return fmt.Errorf("Listener %q: address %s is also used by listener %q", l.GetName(), cl.address, other)
			}
			byAddr[cl.address] = cl.name
			next[cl.name] = entry[*compiledListener]{mk(cl.name, res[i]), cl}
		}
		c.listeners, c.gotLDS = next, true
		c.rdsNames = c.rdsNames[:0:0]
		for _, e := range next {
			if e.comp.rds != "" && !slices.Contains(c.rdsNames, e.comp.rds) {
				c.rdsNames = append(c.rdsNames, e.comp.rds)
			}
		}
		sort.Strings(c.rdsNames)
	case xdsclient.TypeCluster:
		cs, err := decode("Cluster", typeURL, res, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, (*clusterv3.Cluster).GetName)
		if err != nil {
			return err
		}
		next := make(map[string]entry[*compiledCluster], len(cs))
		for i, cl := range cs {
			cc, err := compileCluster(cl)
			if err != nil {
				return fmt.Errorf("Cluster %q: %w", cl.GetName(), err)
			}
			if cc.lbWarning != "" {
				c.log.Warn("cluster uses an unsupported load balancer", "cluster", cl.GetName(), "detail", cc.lbWarning)
			}
			next[cl.GetName()] = entry[*compiledCluster]{mk(cl.GetName(), res[i]), cc}
		}
		c.clusters, c.gotCDS = next, true
		c.edsNames = c.edsNames[:0:0]
		for _, e := range next {
			if e.comp.eds != "" && !slices.Contains(c.edsNames, e.comp.eds) {
				c.edsNames = append(c.edsNames, e.comp.eds)
			}
		}
		sort.Strings(c.edsNames)
	case xdsclient.TypeRoute:
		rcs, err := decode("RouteConfiguration", typeURL, res, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, (*routev3.RouteConfiguration).GetName)
		if err != nil {
			return err
		}
		next := maps.Clone(c.routes)
		for i, rc := range rcs {
			t, err := compileRoute(rc)
			if err != nil {
				if strings.HasPrefix(err.Error(), "route config "+rc.GetName()+":") {
					return err // the router already names it
				}
				return fmt.Errorf("RouteConfiguration %q: %w", rc.GetName(), err)
			}
			next[rc.GetName()] = entry[*router.Table]{mk(rc.GetName(), res[i]), t}
		}
		c.routes = next
	case xdsclient.TypeEndpoint:
		clas, err := decode("ClusterLoadAssignment", typeURL, res, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, (*endpointv3.ClusterLoadAssignment).GetClusterName)
		if err != nil {
			return err
		}
		next := maps.Clone(c.endpoints)
		for i, cla := range clas {
			eps, err := compileCLA(cla)
			if err != nil {
				return fmt.Errorf("ClusterLoadAssignment %q: %w", cla.GetClusterName(), err)
			}
			next[cla.GetClusterName()] = entry[[]upstream.EndpointSpec]{mk(cla.GetClusterName(), res[i]), eps}
		}
		c.endpoints = next
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
	fwd := forward.New(forward.Options{Clusters: m.Clusters, Logger: c.log})
	for _, e := range c.listeners {
		l := &Listener{Name: e.comp.name, Address: e.comp.address, RouteConfig: e.comp.routeConfigName(), Routes: e.comp.inline, Chain: fwd}
		if l.Routes == nil {
			l.Routes = c.routes[e.comp.rds].comp
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
