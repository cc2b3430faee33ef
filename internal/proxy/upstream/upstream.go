// Package upstream holds weft-proxy's clusters: their endpoints, load
// balancers, HTTP/1.1 keep-alive connection pools, circuit breakers and
// outlier detection, with Envoy's semantics.
//
// A Cluster is immutable once built; a configuration change builds new
// Clusters through Pools.Build, which hands the new cluster the same
// *Endpoint (and so the same connection pool, in-flight counter and outlier
// detection state) for every endpoint address the cluster still has with
// the same connection settings. As in Envoy, each cluster has endpoints
// (and connection pools) of its own. A cluster's Stats, circuit breaker
// counters and outlier detector likewise live as long as its name.
// Picking an endpoint takes no lock: round robin is an atomic counter,
// least request reads atomic in-flight counts, ring hash and Maglev
// (PickHash, hash.go) look the request's hash up in a table built per
// endpoint set, and skipping ejected endpoints reads atomic flags.
//
// Circuit breakers (CircuitBreakers) are counted per cluster with atomics:
// Endpoint.BeginRequest (max_requests), the lean pool's connection
// reservation and pending queue (max_connections, max_pending_requests) and
// Cluster.BeginRetry (max_retries). Requests with large or streamed bodies,
// which take net/http's Transport, honour max_requests but are not counted
// against max_connections.
//
// Outlier detection (OutlierDetection) has one detector per cluster with
// one timer that returns ejected endpoints; see detector.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
)

// LBPolicy is a cluster's load balancing policy.
type LBPolicy int

// Load balancing policies, with Envoy's meanings.
const (
	RoundRobin LBPolicy = iota
	LeastRequest
	Random
	// RingHash and Maglev are consistent hash balancers: a request's hash
	// (Cluster.PickHash) picks the endpoint; see hash.go.
	RingHash
	Maglev
)

func (p LBPolicy) String() string {
	switch p {
	case RoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case Random:
		return "RANDOM"
	case RingHash:
		return "RING_HASH"
	case Maglev:
		return "MAGLEV"
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
	// Sidecar marks an endpoint a mesh proxy serves (EDS metadata
	// envoy.transport_socket_match tlsMode: istio), which takes HTTP/2
	// with prior knowledge on its HTTP ports as well as HTTP/1.1 (see
	// PoolsOptions.H2WhenBusy).
	Sidecar bool
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
	// CircuitBreakers are the cluster's thresholds; nil means Envoy's
	// defaults (DefaultCircuitBreakers).
	CircuitBreakers *CircuitBreakers
	// MaxRequestsPerConnection closes an upstream connection after that
	// many requests; 0 means no limit.
	MaxRequestsPerConnection uint32
	// IdleTimeout closes pooled connections idle that long; 0 means the
	// Pools' IdleConnTimeout, negative means never.
	IdleTimeout time.Duration
	// Outlier enables outlier detection; nil disables it.
	Outlier *OutlierDetection
	// HealthyPanicThreshold is the percentage of healthy (not ejected)
	// endpoints under which the load balancer picks among all of them;
	// nil means DefaultPanicThreshold, 0 disables panic mode.
	HealthyPanicThreshold *float64
	// Hash holds the ring or table settings of a RingHash or Maglev
	// cluster (see CheckHashConfig).
	Hash HashConfig
	// Protocol is the HTTP version spoken to the endpoints.
	Protocol Protocol
	// TCPKeepalive, when set, has the endpoints' connections send TCP
	// keepalive probes with its settings (upstream_connection_options);
	// nil leaves weft-proxy's default: probes after 30 s idle, then every
	// 15 s, 9 probes.
	TCPKeepalive *TCPKeepalive
	// MaxConnectionDuration closes an HTTP connection to an endpoint that
	// long after it was opened: at once if it carries no request, else
	// once its requests have ended (max_connection_duration); 0 means no
	// limit.
	MaxConnectionDuration time.Duration
	// HTTP2 holds the settings of HTTP/2 connections to the endpoints.
	HTTP2 HTTP2Options
	// SlowStart, for a RoundRobin or LeastRequest cluster, ramps up the
	// traffic of an endpoint that joined the cluster recently; nil: none.
	SlowStart *SlowStart
	// TLS, when set, makes every connection to the endpoints TLS
	// (transport_socket envoy.transport_sockets.tls); nil: plain TCP.
	TLS *TLS
}

// SlowStart is a cluster's slow_start_config. An endpoint younger than
// Window (counted from when it joined the cluster after the cluster's
// first build) weighs its weight times max(MinWeightPercent/100,
// (age/Window)^(1/Aggression)), age in whole seconds and at least one, as
// Envoy weighs it; while any endpoint is that young, the cluster picks by
// those weights (see Cluster.pickWarming).
type SlowStart struct {
	Window time.Duration
	// Aggression 1 ramps linearly; above 1, faster at first.
	Aggression float64
	// MinWeightPercent is the least share of its weight a new endpoint
	// gets.
	MinWeightPercent float64
}

// Envoy's slow start defaults.
const (
	DefaultSlowStartAggression = 1.0
	DefaultSlowStartMinPercent = 10.0
)

// factor is the share of its weight an endpoint of the given age gets.
func (s *SlowStart) factor(age time.Duration) float64 {
	if age >= s.Window {
		return 1
	}
	secs := max(math.Floor(age.Seconds()), 1)
	f := math.Pow(secs/s.Window.Seconds(), 1/s.Aggression)
	return min(max(f, s.MinWeightPercent/100), 1)
}

// TCPKeepalive are the TCP keepalive settings of a connection (Envoy's
// tcp_keepalive). A zero field leaves the system's setting (on Linux,
// net.ipv4.tcp_keepalive_time, _intvl and _probes).
type TCPKeepalive struct {
	// Probes unanswered before the connection is dropped.
	Probes uint32
	// Idle is how long the connection is idle before the first probe,
	// Interval the time between probes.
	Idle, Interval time.Duration
}

// dialer returns a dialer that applies k (nil: Go's default keepalive).
func (k *TCPKeepalive) dialer(connectTimeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	if k == nil {
		return d
	}
	orSystem := func(v time.Duration) time.Duration {
		if v == 0 {
			return -1 // left as the system has it
		}
		return v
	}
	d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: orSystem(k.Idle), Interval: orSystem(k.Interval), Count: -1}
	if k.Probes > 0 {
		d.KeepAliveConfig.Count = int(k.Probes)
	}
	return d
}

// HTTP2Options are the settings of a cluster's HTTP/2 connections (from
// its http2_protocol_options).
type HTTP2Options struct {
	// MaxConcurrentStreams caps the requests one connection carries at
	// once, below the server's own limit; 0 leaves the server's.
	MaxConcurrentStreams uint32
	// PingInterval and PingTimeout, when both are set, have each
	// connection send a PING every PingInterval and close when no answer
	// (nor any other frame) came within PingTimeout (connection_keepalive).
	PingInterval, PingTimeout time.Duration
}

// Endpoint is one upstream address with its connection pool. Endpoints are
// shared by every cluster (and every configuration version) that has the
// same address and connection settings.
type Endpoint struct {
	addr string
	// ip is addr when it is an IP address and port (else invalid).
	ip netip.AddrPort
	// transport carries the requests the lean pool does not take; it is
	// made on first use (see httpTransport).
	transport atomic.Pointer[http.Transport]
	maxIdle   int
	// retired is set once no configuration uses the endpoint.
	retired  atomic.Bool
	h1       *h1Pool
	h2       *h2Pool // nil unless the cluster may speak HTTP/2
	inflight atomic.Int64
	// h2WhenBusy is PoolsOptions.H2WhenBusy.
	h2WhenBusy int64
	cb         *breaker
	// od is the endpoint's outlier detection state, nil when its cluster
	// has none.
	od  *hostState
	set endpointSettings
	// since is when the endpoint joined its cluster (slow start counts
	// its age from it).
	since time.Time
}

// endpointSettings are what an Endpoint is built with; a configuration
// that changes them gets a new Endpoint.
type endpointSettings struct {
	connectTimeout, idleTimeout time.Duration
	maxUses                     uint32
	outlier                     bool
	protocol                    Protocol
	// sidecar: a mesh proxy serves the endpoint (it takes HTTP/1.1 and
	// HTTP/2 alike), and H2WhenBusy chooses between them.
	sidecar bool
	// keepalive is the cluster's TCPKeepalive, when keepaliveSet.
	keepalive    TCPKeepalive
	keepaliveSet bool
	maxAge       time.Duration // MaxConnectionDuration
	http2        HTTP2Options
	// tls is the cluster's TLS origination, when tlsSet.
	tls    TLS
	tlsSet bool
}

// Dial opens a new connection to the endpoint (for tcp_proxy), bounded by
// the cluster's connect timeout: TCP, or TLS over it when the cluster
// originates TLS.
func (e *Endpoint) Dial(ctx context.Context) (net.Conn, error) {
	return e.h1.dial(ctx)
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

// BeginRequest is Begin for an HTTP request, subject to the cluster's
// max_requests circuit breaker: when max_requests are in flight it begins
// nothing and returns an *OverflowError. Call EndRequest when done.
func (e *Endpoint) BeginRequest() error {
	if err := e.cb.beginRequest(); err != nil {
		return err
	}
	e.inflight.Add(1)
	return nil
}

// EndRequest undoes BeginRequest.
func (e *Endpoint) EndRequest() {
	e.inflight.Add(-1)
	e.cb.endRequest()
}

// Report tells outlier detection the status of a response from the
// endpoint. Without outlier detection it does nothing.
func (e *Endpoint) Report(code int) {
	if h := e.od; h != nil {
		h.report(code)
	}
}

// ReportLocal tells outlier detection that a request to the endpoint got
// no response. Unless the cluster splits local origin failures out
// (OutlierDetection.SplitLocalOrigin), it counts as Envoy maps it: a 503
// for a connect failure or reset, a 504 for a timeout. Split out, only
// connect failures add up: a reset or timeout comes after a connection was
// made, which Envoy counts as a success first. (A request that timed out
// while it still waited for a connection, ErrPending, is not reported.)
func (e *Endpoint) ReportLocal(f LocalFailure) {
	if h := e.od; h != nil {
		h.reportLocal(f)
	}
}

// Ejected reports whether outlier detection has ejected the endpoint.
func (e *Endpoint) Ejected() bool { return e.od != nil && e.od.ejected.Load() }

// RoundTrip sends one request over the endpoint's connection pool. The
// request's URL must already point at the endpoint. Requests without a body
// or with a small one of known length take the lean HTTP/1.1 pool, which
// runs on the caller's goroutine; others go through net/http's Transport.
// The response body must be read to EOF or closed, and the Response (its
// Header above all) is not to be used once its body is closed: the lean
// HTTP/1.1 and HTTP/2 paths reuse them for later requests.
func (e *Endpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	if e.h2 != nil && e.useH2(req) {
		return e.h2.roundTrip(req)
	}
	if leanOK(req) {
		return e.h1.roundTrip(req, false)
	}
	return e.viaTransport(e.httpTransport(), req)
}

// RoundTripLazy is RoundTrip for a caller that passes the response's
// header fields on as they are: the lean HTTP/1.1 client leaves them out of
// the response's Header when it can (see h1.ResponseReader.Lazy). The
// caller reads them with ResponseFields, or calls LoadHeader before it
// reads the Header, and does either before it reads the body.
func (e *Endpoint) RoundTripLazy(req *http.Request) (*http.Response, error) {
	if e.h2 != nil && e.useH2(req) {
		return e.h2.roundTrip(req)
	}
	if leanOK(req) {
		return e.h1.roundTrip(req, true)
	}
	return e.viaTransport(e.httpTransport(), req)
}

// ErrAttemptTimeout ends an exchange whose own timeout (a route's per-try
// timeout) passed, on an event loop's client.
var ErrAttemptTimeout = errors.New("per-try timeout")

// ResponseFields returns the header fields of resp, a response of
// RoundTripLazy, in the order they arrived, when they are not in its
// Header; ok is false when the Header holds them. The slice is valid until
// the body is read or closed, and must not be modified.
func ResponseFields(resp *http.Response) (fields []h1.Field, ok bool) {
	if rr := responseReader(resp); rr != nil {
		return rr.Fields()
	}
	return nil, false
}

// responseReader returns the reader that read resp, a response of the lean
// pool or of a LoopClient, while its exchange lasts; nil otherwise.
func responseReader(resp *http.Response) *h1.ResponseReader {
	switch b := resp.Body.(type) {
	case *h1Body:
		if b.pc != nil {
			return &b.pc.rr
		}
	case lazyBody:
		return b.reader()
	}
	return nil
}

// lazyBody is the body of a LoopClient's response.
type lazyBody interface{ reader() *h1.ResponseReader }

// LoadHeader puts the header fields of resp, a response of RoundTripLazy,
// into its Header, if they are not there yet.
func LoadHeader(resp *http.Response) {
	if rr := responseReader(resp); rr != nil {
		rr.LoadHeader()
	}
}

// closeIdle closes the endpoint's idle connections; final also stops it
// keeping connections (the endpoint is no longer used).
func (e *Endpoint) closeIdle(final bool) {
	if final {
		e.retired.Store(true)
	}
	e.closeTransportIdle()
	e.h1.closeIdle(final)
	if e.h2 != nil {
		e.h2.closeIdle(final)
	}
	if final {
		closeLoopIdle(e)
	}
}

// viaTransport sends req through one of the endpoint's Transports. Once
// the endpoint is no longer used, a connection a response leaves idle is
// closed when its body is: a Transport would otherwise keep it until its
// idle timeout.
func (e *Endpoint) viaTransport(t *http.Transport, req *http.Request) (*http.Response, error) {
	var tc *transportConn
	if e.set.maxAge > 0 {
		// Which connection carries the request, to close it after the
		// response if it has reached its age meanwhile.
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { tc, _ = i.Conn.(*transportConn) },
		}))
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		if e.retired.Load() {
			e.closeTransportIdle() // what the failed request left idle
		}
		return nil, err
	}
	resp.Body = &transportBody{ReadCloser: resp.Body, e: e, tc: tc}
	return resp, nil
}

type transportBody struct {
	io.ReadCloser
	e  *Endpoint
	tc *transportConn // with a maximum age: the request's connection
}

func (b *transportBody) Close() error {
	err := b.ReadCloser.Close()
	if b.e.retired.Load() || b.tc != nil && b.tc.expired() {
		b.e.closeTransportIdle()
	}
	return err
}

// closeTransportIdle closes the idle connections of the endpoint's
// Transports, if it has any.
func (e *Endpoint) closeTransportIdle() {
	if t := e.transport.Load(); t != nil {
		t.CloseIdleConnections()
	}
}

// httpTransport returns the endpoint's net/http Transport, making it on
// first use. Most endpoints never need one (the lean pool carries every
// request without a body or with a small one of known length), and in a
// mesh of a thousand services with ten endpoints each, a Transport per
// endpoint was a quarter of a sidecar's heap.
func (e *Endpoint) httpTransport() *http.Transport {
	if t := e.transport.Load(); t != nil {
		return t
	}
	set, h1 := e.set, e.h1
	idle := set.idleTimeout
	if idle == math.MaxInt64 {
		idle = 0 // the Transport's "no limit"
	}
	t := &http.Transport{
		// Never use HTTP_PROXY from the environment: it usually points at
		// this proxy.
		Proxy: nil,
		// The Transport's connections count against the cluster's
		// max_connections as the lean pool's do.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h1.dialForTransport(ctx, set.connectTimeout, set.maxAge)
		},
		MaxIdleConnsPerHost: e.maxIdle,
		IdleConnTimeout:     idle,
		DisableKeepAlives:   set.maxUses == 1,
		// Pass Content-Encoding through untouched.
		DisableCompression: true,
		// HTTP/1.1 only for now; an empty map disables HTTP/2 upgrade.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if !e.transport.CompareAndSwap(nil, t) {
		return e.transport.Load() // another request made it first
	}
	return t
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
	cb   *breaker
	// od is the outlier detector (nil without outlier detection) and
	// panic the healthy panic threshold in percent.
	od    *detector
	panic float64
	// hash is the ring or Maglev table of a RingHash or Maglev cluster.
	hash *hashTable
	// slow is the slow start of a RoundRobin or LeastRequest cluster, with
	// weights its endpoints' configured weights and warmUntil when its
	// youngest endpoint stops warming up (nil, zero: no slow start).
	slow      *SlowStart
	weights   []uint32
	warmUntil time.Time
	// warming is set while warmUntil may be ahead: once a pick finds it
	// passed, picks stop reading the clock.
	warming atomic.Bool
	// loopOK caches whether every endpoint is one a LoopClient reaches:
	// 0 not known yet, 1 yes, 2 no.
	loopOK atomic.Int32
}

// BeginRetry claims one of the cluster's max_retries for a request about
// to retry; it returns false, counting a retry overflow, when max_retries
// requests are retrying already. Call EndRetry once the request is done.
func (c *Cluster) BeginRetry() bool { return c.cb.beginRetry() }

// EndRetry undoes a successful BeginRetry.
func (c *Cluster) EndRetry() { c.cb.endRetry() }

// BeginConnection claims one of the cluster's max_connections for a
// connection a TCP proxy is about to open, as Envoy's tcp_proxy asks the
// cluster's resource manager: when max_connections are open already (the
// HTTP pools' included), it counts an upstream_cx_overflow and returns an
// *OverflowError, and the connection must not be made. Call
// EndConnection once the claimed connection has closed.
func (c *Cluster) BeginConnection() error { return c.cb.beginConnection() }

// EndConnection undoes a successful BeginConnection, and wakes the HTTP
// requests of the cluster's endpoints (an ORIGINAL_DST cluster's
// destinations included) that wait for a connection (on a port served
// both ways, the freed one may be theirs), in the cluster's newest
// configuration.
func (c *Cluster) EndConnection() {
	c.cb.conns.Add(-1)
	if c.cb.pending.Load() == 0 {
		// Nobody waits for a connection. One that starts waiting now
		// tries after it registers, and finds the slot free.
		return
	}
	// The connection may have begun under an older configuration of the
	// cluster: wake the endpoints of the newest.
	latest := c.cb.latest.Load()
	if latest == nil {
		latest = c
	}
	for _, e := range latest.endpoints {
		e.h1.wake()
	}
	if latest.orig != nil {
		latest.orig.wake()
	}
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

// wake wakes the requests waiting for a connection to any of the
// destinations.
func (o *origDst) wake() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.eps {
		e.h1.wake()
	}
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
//
// With outlier detection, ejected endpoints are skipped unless fewer than
// the healthy panic threshold of the endpoints are healthy (panic mode:
// pick among all of them, as Envoy does); with panic mode disabled and
// every endpoint ejected, Pick returns nil.
func (c *Cluster) Pick(avoid *Endpoint) *Endpoint {
	if c.od != nil && c.od.active.Load() > 0 {
		if e, ok := c.pickHealthy(avoid); ok {
			return e
		}
	}
	return c.pickAny(avoid)
}

// pickHealthy picks among endpoints that are not ejected. ok is false in
// panic mode, when the caller picks among all.
func (c *Cluster) pickHealthy(avoid *Endpoint) (e *Endpoint, ok bool) {
	n := len(c.endpoints)
	healthy := 0
	for _, x := range c.endpoints {
		if !x.Ejected() {
			healthy++
		}
	}
	if healthy == n {
		return nil, false
	}
	if float64(healthy)*100 < c.panic*float64(n) {
		c.stats.lbHealthyPanic.Add(1)
		return nil, false
	}
	if healthy == 0 {
		return nil, true
	}
	// The load balancer's own choice, while it lands on a healthy
	// endpoint; then the first healthy one from a random start.
	for range 2 * n {
		if x := c.pick(); !x.Ejected() && (x != avoid || healthy == 1) {
			return x, true
		}
	}
	start := rand.IntN(n)
	for i := range n {
		if x := c.endpoints[(start+i)%n]; !x.Ejected() && (x != avoid || healthy == 1) {
			return x, true
		}
	}
	return nil, true
}

func (c *Cluster) pickAny(avoid *Endpoint) *Endpoint {
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
	if c.warming.Load() {
		if now := time.Now(); now.Before(c.warmUntil) {
			return c.pickWarming(now)
		}
		c.warming.Store(false)
	}
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
	case RingHash, Maglev:
		return c.pickHashRandom()
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

// pickWarming picks by weights scaled down for the endpoints still in
// slow start (see SlowStart): at random by those weights, or, for
// LeastRequest, the better of two random endpoints by scaled weight over
// requests in flight.
func (c *Cluster) pickWarming(now time.Time) *Endpoint {
	weight := func(i int) float64 { return float64(c.weights[i]) * c.slow.factor(now.Sub(c.endpoints[i].since)) }
	if c.policy == LeastRequest {
		n := uint64(len(c.endpoints))
		i := rand.Uint64N(n)
		j := rand.Uint64N(n - 1)
		if j >= i {
			j++
		}
		score := func(k uint64) float64 { return weight(int(k)) / float64(c.endpoints[k].inflight.Load()+1) }
		if score(j) > score(i) {
			return c.endpoints[j]
		}
		return c.endpoints[i]
	}
	var total float64
	for i := range c.endpoints {
		total += weight(i)
	}
	x := rand.Float64() * total
	for i := range c.endpoints {
		w := weight(i)
		if x < w {
			return c.endpoints[i]
		}
		x -= w
	}
	return c.endpoints[len(c.endpoints)-1]
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
	// IdleConnTimeout closes keep-alive connections idle this long; 0 means
	// DefaultIdleTimeout.
	IdleConnTimeout time.Duration
	// H2WhenBusy, when above 0, chooses the HTTP version of a request to
	// an endpoint a mesh proxy serves (EndpointSpec.Sidecar) by how many
	// are in flight to it: at most that many, HTTP/1.1; more, HTTP/2, over
	// one multiplexed connection (which pays when many requests share it
	// and costs when one is alone), whether the cluster speaks HTTP/1.1 or
	// HTTP/2. Other endpoints speak their cluster's protocol. 0, the
	// default, leaves every endpoint to its cluster's protocol.
	H2WhenBusy int64
}

type poolKey struct {
	cluster, addr string
}

// Pools owns every endpoint's connection pool across configuration versions.
// Build is called by one goroutine at a time (the compile step); clusters it
// returns are used concurrently without touching Pools.
type Pools struct {
	opts      PoolsOptions
	mu        sync.Mutex
	eps       map[poolKey]*Endpoint
	stats     map[string]*Stats // by cluster name
	orig      map[string]*origDst
	breakers  map[string]*breaker
	detectors map[string]*detector
	// hashes are the RingHash and Maglev clusters' tables, kept while a
	// cluster's endpoint set and settings do not change.
	hashes map[string]*hashTable
	// built is what the last Build made, by cluster name.
	built map[string]*builtCluster
}

// DefaultIdleTimeout is how long a pooled upstream connection may sit idle
// when the cluster sets no idle_timeout: Envoy's default, and the one
// Istio documents for a DestinationRule's connectionPool idleTimeout. A
// server that closes an idle connection sooner costs nothing more than a
// redial: a request that finds its reused connection closed before any byte
// came back is sent again on a new one.
const DefaultIdleTimeout = time.Hour

// NewPools returns an empty set of pools.
func NewPools(o PoolsOptions) *Pools {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxIdleConnsPerEndpoint == 0 {
		o.MaxIdleConnsPerEndpoint = 256
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = DefaultIdleTimeout
	}
	return &Pools{opts: o, eps: map[poolKey]*Endpoint{}, stats: map[string]*Stats{}, orig: map[string]*origDst{},
		breakers: map[string]*breaker{}, detectors: map[string]*detector{}, hashes: map[string]*hashTable{}}
}

// Build turns specs into clusters. A cluster whose spec is the one it was
// last built from is the same *Cluster again (its load balancer's state
// included); in the others, every address the cluster already had with the
// same settings keeps its endpoint (its open connections and outlier
// detection state). Endpoints no cluster uses any more have their idle
// connections closed; a request still in flight on one finishes normally.
// The work is in proportion to the clusters that changed: in a sidecar of
// a mesh of 1000 services, rebuilding every cluster on every change took
// two fifths of the CPU the change cost it.
func (p *Pools) Build(specs []ClusterSpec) map[string]*Cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := map[poolKey]bool{}
	out := make(map[string]*Cluster, len(specs))
	next := make(map[string]*builtCluster, len(specs))
	for _, s := range specs {
		if b := p.built[s.Name]; b != nil && sameSpec(&b.spec, &s) {
			out[s.Name] = b.c
			next[s.Name] = b
			continue
		}
		c, keys := p.build(s, used, p.built[s.Name] == nil)
		s.Endpoints = slices.Clone(s.Endpoints)
		out[s.Name] = c
		next[s.Name] = &builtCluster{spec: s, c: c, keys: keys}
	}
	for name, b := range p.built {
		if next[name] == b {
			continue // unchanged: its endpoints are all in use
		}
		// Rebuilt or gone: a key carries its cluster's name, so only the
		// new build of the same cluster can still use it.
		for _, k := range b.keys {
			if e := p.eps[k]; e != nil && !used[k] {
				e.closeIdle(true)
				delete(p.eps, k)
			}
		}
	}
	p.built = next
	for name := range p.stats {
		if out[name] == nil {
			delete(p.stats, name)
			delete(p.breakers, name)
		}
	}
	for name, t := range p.hashes {
		if c := out[name]; c == nil || c.hash != t {
			delete(p.hashes, name)
		}
	}
	for name, d := range p.detectors {
		if c := out[name]; c == nil || c.od != d {
			d.close()
			delete(p.detectors, name)
		}
	}
	for name, o := range p.orig {
		if c := out[name]; c == nil || c.orig != o {
			o.close()
			delete(p.orig, name)
		}
	}
	return out
}

// builtCluster is a cluster as Build last made it: its spec (with its own
// copy of the endpoints), the Cluster, and the keys of its endpoints.
type builtCluster struct {
	spec ClusterSpec
	c    *Cluster
	keys []poolKey
}

// sameSpec reports whether a and b build the same cluster.
func sameSpec(a, b *ClusterSpec) bool {
	return a.Name == b.Name && a.LB == b.LB && a.ConnectTimeout == b.ConnectTimeout &&
		a.OriginalDst == b.OriginalDst && a.MaxRequestsPerConnection == b.MaxRequestsPerConnection &&
		a.IdleTimeout == b.IdleTimeout && a.Hash == b.Hash && a.Protocol == b.Protocol &&
		a.MaxConnectionDuration == b.MaxConnectionDuration && a.HTTP2 == b.HTTP2 && samePtr(a.TCPKeepalive, b.TCPKeepalive) &&
		samePtr(a.SlowStart, b.SlowStart) && samePtr(a.TLS, b.TLS) &&
		samePtr(a.CircuitBreakers, b.CircuitBreakers) && samePtr(a.Outlier, b.Outlier) &&
		samePtr(a.HealthyPanicThreshold, b.HealthyPanicThreshold) &&
		slices.Equal(a.Endpoints, b.Endpoints)
}

// samePtr reports whether a and b are both nil or point to equal values.
func samePtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// build makes the cluster of s, marking the keys of the endpoints it uses
// in used, and returns them.
// first says the cluster is new: its endpoints are there from its start,
// and not in slow start (as in Envoy, where only hosts added to a load
// balancer after its creation are).
func (p *Pools) build(s ClusterSpec, used map[poolKey]bool, first bool) (*Cluster, []poolKey) {
	set := endpointSettings{connectTimeout: s.ConnectTimeout, idleTimeout: s.IdleTimeout, maxUses: s.MaxRequestsPerConnection, outlier: s.Outlier != nil, protocol: s.Protocol,
		maxAge: s.MaxConnectionDuration, http2: s.HTTP2}
	if s.TCPKeepalive != nil {
		set.keepalive, set.keepaliveSet = *s.TCPKeepalive, true
	}
	if s.TLS != nil {
		set.tls, set.tlsSet = *s.TLS, true
	}
	if set.connectTimeout <= 0 {
		set.connectTimeout = DefaultConnectTimeout
	}
	switch {
	case set.idleTimeout == 0:
		set.idleTimeout = p.opts.IdleConnTimeout
	case set.idleTimeout < 0:
		set.idleTimeout = math.MaxInt64
	}
	st := p.stats[s.Name]
	if st == nil {
		st = &Stats{}
		p.stats[s.Name] = st
	}
	cb := p.breakers[s.Name]
	if cb == nil {
		cb = &breaker{name: s.Name, stats: st}
		p.breakers[s.Name] = cb
	}
	if s.CircuitBreakers != nil {
		cb.set(*s.CircuitBreakers)
	} else {
		cb.set(DefaultCircuitBreakers())
	}
	c := &Cluster{name: s.Name, policy: s.LB, endpoints: make([]*Endpoint, 0, len(s.Endpoints)), stats: st, cb: cb, panic: DefaultPanicThreshold}
	if s.HealthyPanicThreshold != nil {
		c.panic = *s.HealthyPanicThreshold
	}
	var d *detector
	if s.Outlier != nil && !s.OriginalDst {
		d = p.detectors[s.Name]
		if d == nil {
			d = &detector{stats: st}
			p.detectors[s.Name] = d
		}
		c.od = d
	}
	if s.OriginalDst {
		o := p.orig[s.Name]
		if o == nil {
			oset := set
			oset.outlier = false
			o = &origDst{eps: map[string]*Endpoint{}, new: func(addr string) *Endpoint {
				return p.newEndpoint(addr, oset, cb)
			}}
			p.orig[s.Name] = o
		}
		c.orig = o
	}
	weights := make([]uint32, 0, len(s.Endpoints))
	keys := make([]poolKey, 0, len(s.Endpoints))
	var addrs []string
	var hosts []*hostState
	for _, es := range s.Endpoints {
		k := poolKey{cluster: s.Name, addr: es.Address}
		e := p.eps[k]
		if e != nil && used[k] {
			// The same address twice in one cluster: one endpoint.
		} else if eset := set.forEndpoint(es, p.opts.H2WhenBusy); e == nil || e.set != eset {
			old := e
			e = p.newEndpoint(es.Address, eset, cb)
			switch {
			case old != nil:
				e.since = old.since // the same endpoint, with new settings
			case first:
				e.since = time.Time{}
			}
			if d != nil {
				if old != nil && old.od != nil && old.od.d == d {
					e.od = old.od // keep its ejection state
				} else {
					e.od = &hostState{d: d}
				}
			}
			if old != nil {
				old.closeIdle(true)
			}
			p.eps[k] = e
		}
		if !used[k] {
			keys = append(keys, k)
			if d != nil {
				hosts = append(hosts, e.od)
			}
		}
		used[k] = true
		c.endpoints = append(c.endpoints, e)
		weights = append(weights, max(es.Weight, 1))
		addrs = append(addrs, es.Address)
	}
	if d != nil {
		d.update(*s.Outlier, hosts)
	}
	if ss := s.SlowStart; ss != nil && (s.LB == RoundRobin || s.LB == LeastRequest) && !s.OriginalDst && len(c.endpoints) > 1 {
		c.slow, c.weights = ss, weights
		for _, e := range c.endpoints {
			if u := e.since.Add(ss.Window); u.After(c.warmUntil) {
				c.warmUntil = u
			}
		}
		c.warming.Store(time.Now().Before(c.warmUntil))
	}
	if (s.LB == RingHash || s.LB == Maglev) && !s.OriginalDst {
		t := p.hashes[s.Name]
		if t == nil || !t.same(s.LB, s.Hash, addrs, weights) {
			t = newHashTable(s.LB, s.Hash, addrs, weights)
			p.hashes[s.Name] = t
		}
		c.hash = t
	} else {
		c.buildWeights(weights)
	}
	cb.latest.Store(c)
	return c, keys
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

func (p *Pools) newEndpoint(addr string, set endpointSettings, cb *breaker) *Endpoint {
	var ka *TCPKeepalive
	if set.keepaliveSet {
		ka = &set.keepalive
	}
	d := ka.dialer(set.connectTimeout)
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	if set.tlsSet {
		dial = tlsDial(dial, set.tls, addr, set.connectTimeout)
	}
	h1 := &h1Pool{
		dial:        dial,
		maxIdle:     p.opts.MaxIdleConnsPerEndpoint,
		idleTimeout: set.idleTimeout,
		maxUses:     set.maxUses,
		maxAge:      set.maxAge,
		cb:          cb,
	}
	ip, _ := netip.ParseAddrPort(addr)
	e := &Endpoint{addr: addr, ip: netip.AddrPortFrom(ip.Addr().Unmap(), ip.Port()), maxIdle: p.opts.MaxIdleConnsPerEndpoint, h1: h1, cb: cb, set: set, h2WhenBusy: p.opts.H2WhenBusy,
		since: time.Now()}
	h1.closeTransportIdle = e.closeTransportIdle
	if set.protocol != HTTP1 || set.sidecar {
		e.h2 = &h2Pool{e: e}
	}
	return e
}

// forEndpoint is the cluster's settings for one of its endpoints.
func (set endpointSettings) forEndpoint(es EndpointSpec, h2WhenBusy int64) endpointSettings {
	set.sidecar = es.Sidecar && h2WhenBusy > 0
	return set
}
