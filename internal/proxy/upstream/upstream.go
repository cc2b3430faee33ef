// Package upstream holds weft-proxy's clusters: their endpoints, load
// balancers and HTTP/1.1 keep-alive connection pools.
//
// A Cluster is immutable once built; a configuration change builds new
// Clusters through Pools.Build, which hands the new clusters the same
// *Endpoint (and so the same connection pool and in-flight counter) for every
// endpoint address that is still present. Picking an endpoint takes no lock:
// round robin is an atomic counter, least request reads atomic in-flight
// counts.
package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// LBPolicy is a cluster's load balancing policy.
type LBPolicy int

// Load balancing policies, with Envoy's meanings.
const (
	RoundRobin LBPolicy = iota
	LeastRequest
	Random
)

func (p LBPolicy) String() string {
	switch p {
	case RoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case Random:
		return "RANDOM"
	}
	return fmt.Sprintf("LBPolicy(%d)", int(p))
}

// DefaultConnectTimeout is Envoy's default cluster connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// EndpointSpec is one endpoint as configured.
type EndpointSpec struct {
	// Address is host:port; the host may be a DNS name, resolved at connect.
	Address string
	// Weight is the load balancing weight; 0 means 1.
	Weight uint32
}

// ClusterSpec is a cluster as configured, ready to be built.
type ClusterSpec struct {
	Name           string
	LB             LBPolicy
	ConnectTimeout time.Duration // 0 means DefaultConnectTimeout
	Endpoints      []EndpointSpec
	// OriginalDst marks an Envoy ORIGINAL_DST cluster (lb_policy
	// CLUSTER_PROVIDED): it has no configured endpoints and connects to
	// each connection's original destination (see Cluster.EndpointFor).
	OriginalDst bool
}

// Endpoint is one upstream address with its connection pool. Endpoints are
// shared by every cluster (and every configuration version) that has the
// same address and connection settings.
type Endpoint struct {
	addr      string
	transport *http.Transport
	h1        *h1Pool
	dialer    *net.Dialer
	inflight  atomic.Int64
}

// Dial opens a new TCP connection to the endpoint (for tcp_proxy), bounded
// by the cluster's connect timeout.
func (e *Endpoint) Dial(ctx context.Context) (net.Conn, error) {
	return e.dialer.DialContext(ctx, "tcp", e.addr)
}

// Address returns the endpoint's host:port.
func (e *Endpoint) Address() string { return e.addr }

// InFlight returns the number of requests currently using the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Begin marks a request as in flight on the endpoint; call End when its
// response has been fully read or abandoned.
func (e *Endpoint) Begin() { e.inflight.Add(1) }

// End undoes Begin.
func (e *Endpoint) End() { e.inflight.Add(-1) }

// RoundTrip sends one request over the endpoint's connection pool. The
// request's URL must already point at the endpoint. Requests without a body
// or with a small one of known length take the lean HTTP/1.1 pool, which
// runs on the caller's goroutine; others go through net/http's Transport.
// The response body must be read to EOF or closed.
func (e *Endpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	if leanOK(req) {
		return e.h1.roundTrip(req)
	}
	return e.transport.RoundTrip(req)
}

// closeIdle closes the endpoint's idle connections; final also stops it
// keeping connections (the endpoint is no longer used).
func (e *Endpoint) closeIdle(final bool) {
	e.transport.CloseIdleConnections()
	e.h1.closeIdle(final)
}

// Cluster is an immutable set of endpoints with a load balancer.
type Cluster struct {
	name      string
	policy    LBPolicy
	endpoints []*Endpoint
	// schedule is the weighted round robin order (indexes into endpoints);
	// nil when every weight is equal.
	schedule []uint32
	// cumulative weights for weighted random; nil when weights are equal.
	cumulative []uint64
	rr         atomic.Uint64
	stats      *Stats
	// orig is set for ORIGINAL_DST clusters.
	orig *origDst
}

// OriginalDst reports whether c is an ORIGINAL_DST cluster, whose endpoint
// is each connection's original destination (EndpointFor), not Pick.
func (c *Cluster) OriginalDst() bool { return c.orig != nil }

// EndpointFor returns the endpoint for addr (host:port) of an ORIGINAL_DST
// cluster, creating it (and its connection pool) on first use. It returns
// nil for other clusters.
func (c *Cluster) EndpointFor(addr string) *Endpoint {
	if c.orig == nil {
		return nil
	}
	return c.orig.get(addr)
}

// maxOrigDstEndpoints bounds the endpoints an ORIGINAL_DST cluster keeps;
// past it, idle ones are forgotten (their idle connections closed).
const maxOrigDstEndpoints = 1024

// origDst holds an ORIGINAL_DST cluster's endpoints, created on demand and
// kept across configuration versions while the cluster exists.
type origDst struct {
	mu  sync.Mutex
	eps map[string]*Endpoint
	new func(addr string) *Endpoint
}

func (o *origDst) get(addr string) *Endpoint {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e := o.eps[addr]; e != nil {
		return e
	}
	if len(o.eps) >= maxOrigDstEndpoints {
		for k, e := range o.eps {
			if e.InFlight() == 0 {
				e.closeIdle(true)
				delete(o.eps, k)
			}
		}
	}
	e := o.new(addr)
	o.eps[addr] = e
	return e
}

func (o *origDst) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.eps {
		e.closeIdle(true)
	}
}

// Stats returns the cluster's request counters.
func (c *Cluster) Stats() *Stats { return c.stats }

// Name returns the cluster name.
func (c *Cluster) Name() string { return c.name }

// Policy returns the load balancing policy.
func (c *Cluster) Policy() LBPolicy { return c.policy }

// Endpoints returns the cluster's endpoints; callers must not modify it.
func (c *Cluster) Endpoints() []*Endpoint { return c.endpoints }

// Pick chooses an endpoint with the cluster's load balancer, avoiding avoid
// (the endpoint a failed attempt used) when there is another one. It returns
// nil when the cluster has no endpoints.
func (c *Cluster) Pick(avoid *Endpoint) *Endpoint {
	n := len(c.endpoints)
	switch n {
	case 0:
		return nil
	case 1:
		return c.endpoints[0]
	}
	e := c.pick()
	for i := 0; e == avoid && i < 3; i++ {
		e = c.pick()
	}
	if e == avoid {
		// Deterministically move on to the next endpoint.
		for i, x := range c.endpoints {
			if x == avoid {
				return c.endpoints[(i+1)%n]
			}
		}
	}
	return e
}

func (c *Cluster) pick() *Endpoint {
	n := uint64(len(c.endpoints))
	switch c.policy {
	case LeastRequest:
		// Power of two choices: two distinct random endpoints, fewer in flight wins.
		i := rand.Uint64N(n)
		j := rand.Uint64N(n - 1)
		if j >= i {
			j++
		}
		a, b := c.endpoints[i], c.endpoints[j]
		if b.inflight.Load() < a.inflight.Load() {
			return b
		}
		return a
	case Random:
		if c.cumulative != nil {
			x := rand.Uint64N(c.cumulative[len(c.cumulative)-1])
			k := sort.Search(len(c.cumulative), func(k int) bool { return c.cumulative[k] > x })
			return c.endpoints[k]
		}
		return c.endpoints[rand.Uint64N(n)]
	default:
		k := c.rr.Add(1) - 1
		if c.schedule != nil {
			return c.endpoints[c.schedule[k%uint64(len(c.schedule))]]
		}
		return c.endpoints[k%n]
	}
}

// maxSchedule bounds the weighted round robin schedule length.
const maxSchedule = 4096

func (c *Cluster) buildWeights(weights []uint32) {
	equal := true
	for _, w := range weights {
		if w != weights[0] {
			equal = false
			break
		}
	}
	if equal || len(weights) < 2 {
		return
	}
	var total uint64
	c.cumulative = make([]uint64, len(weights))
	for i, w := range weights {
		total += uint64(w)
		c.cumulative[i] = total
	}
	// Scale weights down so the schedule stays bounded, keeping every
	// endpoint at least once.
	scaled := make([]uint64, len(weights))
	var sum uint64
	for i, w := range weights {
		s := uint64(w)
		if total > maxSchedule {
			s = max(1, uint64(w)*maxSchedule/total)
		}
		scaled[i] = s
		sum += s
	}
	// Smooth weighted round robin (as nginx does): spreads each endpoint's
	// turns evenly over the schedule instead of in bursts.
	cur := make([]int64, len(weights))
	c.schedule = make([]uint32, 0, sum)
	for range sum {
		best := 0
		for i := range cur {
			cur[i] += int64(scaled[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(sum)
		c.schedule = append(c.schedule, uint32(best))
	}
}

// PoolsOptions configures Pools.
type PoolsOptions struct {
	Logger *slog.Logger
	// MaxIdleConnsPerEndpoint bounds idle keep-alive connections kept per
	// endpoint; 0 means 256.
	MaxIdleConnsPerEndpoint int
	// IdleConnTimeout closes keep-alive connections idle this long; 0 means 90s.
	IdleConnTimeout time.Duration
}

type poolKey struct {
	addr           string
	connectTimeout time.Duration
}

// Pools owns every endpoint's connection pool across configuration versions.
// Build is called by one goroutine at a time (the compile step); clusters it
// returns are used concurrently without touching Pools.
type Pools struct {
	opts  PoolsOptions
	mu    sync.Mutex
	eps   map[poolKey]*Endpoint
	stats map[string]*Stats // by cluster name
	orig  map[string]*origDst
}

// NewPools returns an empty set of pools.
func NewPools(o PoolsOptions) *Pools {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxIdleConnsPerEndpoint == 0 {
		o.MaxIdleConnsPerEndpoint = 256
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	return &Pools{opts: o, eps: map[poolKey]*Endpoint{}, stats: map[string]*Stats{}, orig: map[string]*origDst{}}
}

// Build turns specs into clusters, reusing the endpoint (and its open
// connections) of every address already known with the same settings.
// Endpoints no cluster uses any more have their idle connections closed; a
// request still in flight on one finishes normally.
func (p *Pools) Build(specs []ClusterSpec) map[string]*Cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := make(map[poolKey]bool, len(p.eps))
	out := make(map[string]*Cluster, len(specs))
	for _, s := range specs {
		ct := s.ConnectTimeout
		if ct <= 0 {
			ct = DefaultConnectTimeout
		}
		st := p.stats[s.Name]
		if st == nil {
			st = &Stats{}
			p.stats[s.Name] = st
		}
		c := &Cluster{name: s.Name, policy: s.LB, endpoints: make([]*Endpoint, 0, len(s.Endpoints)), stats: st}
		if s.OriginalDst {
			o := p.orig[s.Name]
			if o == nil {
				o = &origDst{eps: map[string]*Endpoint{}, new: func(addr string) *Endpoint {
					return p.newEndpoint(poolKey{addr: addr, connectTimeout: ct})
				}}
				p.orig[s.Name] = o
			}
			c.orig = o
		}
		weights := make([]uint32, 0, len(s.Endpoints))
		for _, es := range s.Endpoints {
			k := poolKey{addr: es.Address, connectTimeout: ct}
			e := p.eps[k]
			if e == nil {
				e = p.newEndpoint(k)
				p.eps[k] = e
			}
			used[k] = true
			c.endpoints = append(c.endpoints, e)
			weights = append(weights, max(es.Weight, 1))
		}
		c.buildWeights(weights)
		out[s.Name] = c
	}
	for name := range p.stats {
		if out[name] == nil {
			delete(p.stats, name)
		}
	}
	for name, o := range p.orig {
		if c := out[name]; c == nil || c.orig != o {
			o.close()
			delete(p.orig, name)
		}
	}
	for k, e := range p.eps {
		if !used[k] {
			e.closeIdle(true)
			delete(p.eps, k)
		}
	}
	return out
}

// Stats returns the counters of every current cluster, by name.
func (p *Pools) Stats() map[string]StatsSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]StatsSnapshot, len(p.stats))
	for n, s := range p.stats {
		out[n] = s.Snapshot()
	}
	return out
}

// Close closes every idle pooled connection.
func (p *Pools) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.eps {
		e.closeIdle(false)
	}
	for _, o := range p.orig {
		o.close()
	}
}

func (p *Pools) newEndpoint(k poolKey) *Endpoint {
	d := &net.Dialer{Timeout: k.connectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Never use HTTP_PROXY from the environment: it usually points at
		// this proxy.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, k.addr)
		},
		MaxIdleConnsPerHost: p.opts.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:     p.opts.IdleConnTimeout,
		// Pass Content-Encoding through untouched.
		DisableCompression: true,
		// HTTP/1.1 only for now; an empty map disables HTTP/2 upgrade.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	h1 := &h1Pool{
		dial:        func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", k.addr) },
		maxIdle:     p.opts.MaxIdleConnsPerEndpoint,
		idleTimeout: p.opts.IdleConnTimeout,
	}
	return &Endpoint{addr: k.addr, transport: t, h1: h1, dialer: d}
}
