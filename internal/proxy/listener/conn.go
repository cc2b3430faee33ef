package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/sockio"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// BlackHoleCluster is Istio's name for the cluster that refuses outbound
// connections to destinations outside the mesh (REGISTRY_ONLY).
const BlackHoleCluster = "BlackHoleCluster"

// connInfo is what the accept step learnt about a connection, for the HTTP
// requests on it.
type connInfo struct {
	listener string
	destPort uint32
	protocol string
	origDst  netip.AddrPort
	// tls is the TLS state of a connection the listener terminated TLS
	// on (requests get it as their TLS); nil for plain connections.
	tls *tls.ConnectionState
}

type connInfoKey struct{}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// handle runs the accept steps for c: original destination hand-off,
// listener filters, filter chain selection, then serves it. c was added to
// s.tcp by the accept loop.
func (s *socket) handle(c net.Conn) {
	served := false
	defer func() {
		if !served {
			c.Close()
		}
		s.tcp.remove(c)
	}()
	m := s.m
	l := s.cur.Load()
	ix := m.cur.Load()
	if l == nil || ix == nil {
		return
	}
	local := addrPort(c.LocalAddr())
	dst, hasOD := local, false
	if l.UseOriginalDst && m.opts.OriginalDst != nil {
		od, err := m.opts.OriginalDst(c)
		switch {
		case err != nil:
			m.log.Debug("cannot read the original destination", "listener", l.Name, "remote", c.RemoteAddr().String(), "err", err)
		case od == local:
			// Not redirected: someone connected to the listener itself.
			// Passing it through would connect back here.
		default:
			dst, hasOD = netip.AddrPortFrom(od.Addr().Unmap(), od.Port()), true
		}
	}
	if l.UseOriginalDst && hasOD {
		if t := ix.handoff(l, dst); t != nil {
			l = t
		}
	}
	st := m.stats.listener(l.Name)
	st.cx.Add(1)

	var protocol string
	conn := c
	if l.HTTPInspector {
		p, read, timedOut := Inspect(c, l.InspectTimeout)
		if timedOut {
			st.preCxTimeout.Add(1)
			if !l.ContinueOnTimeout {
				m.log.Debug("listener filters timed out; closing (continue_on_listener_filters_timeout is false)", "listener", l.Name, "remote", c.RemoteAddr().String())
				return
			}
		}
		if p != "" {
			st.httpFound.Add(1)
		} else {
			st.httpNotFound.Add(1)
		}
		protocol = p
		if len(read) > 0 {
			conn = &replayConn{Conn: c, pending: read}
		}
	}
	fc := l.SelectChain(uint32(dst.Port()), protocol)
	if fc == nil {
		st.noChain.Add(1)
		m.log.Debug("no filter chain matches the connection", "listener", l.Name, "destination", dst.String(), "protocol", protocol)
		return
	}
	info := connInfo{listener: l.Name, destPort: uint32(dst.Port()), protocol: protocol}
	if hasOD {
		info.origDst = dst
	}
	if fc.HTTP() && fc.TLS != nil {
		// TLS termination (an HTTPS gateway server): the handshake, then
		// HTTP/2 or HTTP/1.1 as ALPN chose, over the TLS connection.
		tc := tls.Server(conn, fc.TLS.Config())
		tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			st.tlsFailed.Add(1)
			m.log.Debug("TLS handshake failed", "listener", l.Name, "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		served = true
		s.tcp.remove(c)
		cs := tc.ConnectionState()
		info.tls = &cs
		if cs.NegotiatedProtocol == "h2" {
			s.serveH2(tc, c, info)
			return
		}
		s.serveH1(tc, &info)
		return
	}
	if fc.HTTP() {
		served = true
		if protocol == ProtoH2C {
			s.tcp.remove(c)
			s.serveH2(rawIO(conn), c, info)
			return
		}
		// HTTP/1.x (or not sniffed): an event loop, when the Manager
		// runs them; else the lean server, on this goroutine, with raw
		// socket I/O.
		s.tcp.remove(c)
		var pending []byte
		if rc, ok := conn.(*replayConn); ok {
			pending = rc.pending
		}
		if s.adopt(c, pending, &info) {
			return
		}
		s.serveH1(rawIO(conn), &info)
		return
	}
	m.proxyTCP(conn, fc, l.Name, info.origDst)
}

// tlsHandshakeTimeout bounds a TLS handshake on a listener (Envoy's
// transport_socket_connect_timeout has no default; a client that never
// finishes must not hold a connection forever).
const tlsHandshakeTimeout = 10 * time.Second

// rawIO has conn read and write the socket with raw system calls (package
// sockio), keeping the bytes a sniffing replay holds in front.
func rawIO(conn net.Conn) net.Conn {
	if rc, ok := conn.(*replayConn); ok {
		rc.Conn = sockio.New(rc.Conn)
		return rc
	}
	return sockio.New(conn)
}

// maxConcurrentStreams is what an HTTP/2 connection to a listener may
// carry at once (as net/http's server; docs/resilience.md says so).
const maxConcurrentStreams = 250

// serveH2 serves an HTTP/2 connection (h2c with prior knowledge) whose
// bytes come through conn (c underneath, which a shutdown closes).
func (s *socket) serveH2(conn, c net.Conn, info connInfo) {
	s.h2.add(c)
	defer s.h2.remove(c)
	ctx := context.WithValue(s.h2ctx, connInfoKey{}, &info)
	err := h2.ServeConn(conn, s, h2.ServerOptions{Context: ctx, IdleTimeout: s.m.opts.IdleTimeout, Logger: s.m.log, MaxConcurrentStreams: maxConcurrentStreams})
	if err != nil {
		s.m.log.Debug("HTTP/2 connection ended", "listener", info.listener, "remote", c.RemoteAddr().String(), "err", err)
	}
}

// ServeHTTP serves the requests of HTTP/2 connections.
func (s *socket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	s.serve(w, r, info)
}

// serve selects the filter chain and route and runs the chain.
func (s *socket) serve(w http.ResponseWriter, r *http.Request, info *connInfo) {
	l, fc := s.selectChain(info)
	if fc == nil || !fc.HTTP() || (fc.TLS != nil) != (info.tls != nil) {
		// (A chain that now terminates TLS must not serve a connection
		// that came in plain, nor the other way round.)
		w.Header().Set("Connection", "close")
		http.Error(w, "the listener of this connection no longer serves HTTP for it", http.StatusServiceUnavailable)
		return
	}
	if info.tls != nil {
		r.TLS = info.tls
	}
	x := exchangePool.Get().(*chain.Exchange)
	*x = chain.Exchange{W: w, R: r, Listener: l.Name, RouteConfig: fc.RouteConfig, OriginalDst: info.origDst}
	x.Route, x.RouteErr = fc.Routes.Select(r)
	fc.Chain.Serve(x)
	*x = chain.Exchange{}
	exchangePool.Put(x)
}

// selectChain returns the listener and filter chain of the current model
// that a connection's requests go to (either nil when none).
func (s *socket) selectChain(info *connInfo) (*model.Listener, *model.FilterChain) {
	ix := s.m.cur.Load()
	if info == nil || ix == nil {
		return nil, nil
	}
	l := ix.byName[info.listener]
	if l == nil {
		return nil, nil
	}
	return l, l.SelectChain(info.destPort, info.protocol)
}

// exchangePool recycles Exchanges: the chain lets go of one when Serve
// returns (see package chain).
var exchangePool = sync.Pool{New: func() any { return new(chain.Exchange) }}

// proxyTCP is Envoy's tcp_proxy: it connects to an endpoint of the cluster
// (the original destination for an ORIGINAL_DST cluster) and copies bytes
// both ways, passing half-closes on, until both directions have ended. It
// closes down, at once when the cluster's max_connections are open.
func (m *Manager) proxyTCP(down net.Conn, fc *model.FilterChain, listener string, origDst netip.AddrPort) {
	defer down.Close()
	// The connection's age counts from here, as in Envoy; at it both
	// sides close (the upstream one once dialled).
	var upstreamConn atomic.Pointer[net.Conn]
	var aged atomic.Bool
	if fc.TCPMaxAge > 0 {
		age := time.AfterFunc(fc.TCPMaxAge, func() {
			aged.Store(true)
			m.log.Info("tcp_proxy: the connection reached its max_downstream_connection_duration; closing it",
				"listener", listener, "duration", fc.TCPMaxAge, "source", down.RemoteAddr().String())
			down.Close()
			if up := upstreamConn.Load(); up != nil {
				(*up).Close()
			}
		})
		defer age.Stop()
	}
	clusterName := fc.PickTCPCluster(rand.Float64())
	ix := m.cur.Load()
	cl := ix.model.Clusters[clusterName]
	if cl == nil {
		m.log.Warn("tcp_proxy: cluster not found; closing the connection", "listener", listener, "cluster", clusterName)
		return
	}
	if err := cl.BeginConnection(); err != nil {
		m.log.Info("tcp_proxy: circuit breaker open; closing the connection", "listener", listener, "cluster", clusterName, "err", err)
		return
	}
	defer cl.EndConnection()
	var ep *upstream.Endpoint
	if cl.OriginalDst() {
		if origDst.IsValid() {
			ep = cl.EndpointFor(origDst.String())
		}
	} else {
		ep = cl.Pick(nil)
	}
	if ep == nil {
		cl.Stats().NoneHealthy()
		dst := origDst.String()
		if !origDst.IsValid() {
			dst = down.LocalAddr().String()
		}
		if clusterName == BlackHoleCluster {
			m.stats.blocked.Add(1)
			m.log.Warn(fmt.Sprintf("blocked outbound connection to %s (REGISTRY_ONLY)", dst), "listener", listener, "source", down.RemoteAddr().String())
		} else {
			m.log.Info("tcp_proxy: no upstream for the connection; closing it", "listener", listener, "cluster", clusterName, "destination", dst)
		}
		return
	}
	up, err := ep.Dial(contextBackground)
	if err != nil {
		cl.Stats().ConnectFail()
		m.log.Info("tcp_proxy: upstream connect failed", "listener", listener, "cluster", clusterName, "endpoint", ep.Address(), "err", err)
		return
	}
	defer up.Close()
	if fc.TCPMaxAge > 0 {
		// Whichever of this and the timer comes second closes up.
		upstreamConn.Store(&up)
		if aged.Load() {
			up.Close()
		}
	}
	cl.Stats().Connection()
	ep.Begin()
	defer ep.End()
	tx, rx := pipe(down, up)
	cl.Stats().Bytes(uint64(tx), uint64(rx))
}

// pipe copies down→up and up→down. When one side finishes sending (EOF),
// the other side's write half is closed, so each peer sees the half-close;
// an error in either direction closes both connections. It returns when
// both directions have ended.
func pipe(down, up net.Conn) (tx, rx int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	one := func(dst, src net.Conn, n *int64) {
		var err error
		*n, err = io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			down.Close()
			up.Close()
			return
		}
		closeWrite(dst)
	}
	go func() {
		defer wg.Done()
		one(up, down, &tx)
	}()
	one(down, up, &rx)
	wg.Wait()
	return tx, rx
}

// statsTable holds the listener counters.
type statsTable struct {
	byName  sync.Map // string → *listenerCounters
	blocked atomic.Uint64
}

type listenerCounters struct {
	cx, preCxTimeout, noChain, httpFound, httpNotFound, tlsFailed atomic.Uint64
}

func (t *statsTable) listener(name string) *listenerCounters {
	if c, ok := t.byName.Load(name); ok {
		return c.(*listenerCounters)
	}
	c, _ := t.byName.LoadOrStore(name, &listenerCounters{})
	return c.(*listenerCounters)
}

// ListenerStats are one listener's counters.
type ListenerStats struct {
	// Connections counts connections the listener served (accepted, or
	// handed to it by a use_original_dst listener).
	Connections uint64
	// PreCxTimeouts counts connections whose listener filters (the HTTP
	// inspector) timed out.
	PreCxTimeouts uint64
	// NoFilterChain counts connections closed because no filter chain
	// matched.
	NoFilterChain uint64
	// HTTPFound and HTTPNotFound count the HTTP inspector's verdicts.
	HTTPFound, HTTPNotFound uint64
	// TLSHandshakeErrors counts connections whose TLS handshake failed.
	TLSHandshakeErrors uint64
}

// Stats are the Manager's counters.
type Stats struct {
	// Listeners by name.
	Listeners map[string]ListenerStats
	// Blocked counts connections refused by BlackHoleCluster (outbound
	// traffic policy REGISTRY_ONLY).
	Blocked uint64
	// EventLoopRequests counts the HTTP/1.1 requests the event loops
	// served (Options.EventLoops), and EventLoopHandoffs the connections
	// they handed to the goroutine server.
	EventLoopRequests, EventLoopHandoffs uint64
	// EventLoops is how many event loops serve connections (0: none).
	EventLoops int
}

// Stats returns a copy of the counters.
func (m *Manager) Stats() Stats {
	out := Stats{Listeners: map[string]ListenerStats{}, Blocked: m.stats.blocked.Load()}
	m.stats.byName.Range(func(k, v any) bool {
		c := v.(*listenerCounters)
		out.Listeners[k.(string)] = ListenerStats{
			Connections: c.cx.Load(), PreCxTimeouts: c.preCxTimeout.Load(), NoFilterChain: c.noChain.Load(),
			HTTPFound: c.httpFound.Load(), HTTPNotFound: c.httpNotFound.Load(), TLSHandshakeErrors: c.tlsFailed.Load(),
		}
		return true
	})
	m.loopStats(&out)
	return out
}
