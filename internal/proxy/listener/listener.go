// Package listener serves weft-proxy's listeners. The Manager binds a socket
// for every listener address in the current model (except bind_to_port:
// false ones), keeps a socket (and its open connections) across
// configuration versions while its address stays, closes sockets whose
// listener disappeared after draining them, and retries binds that fail.
//
// Each accepted connection goes through Envoy's steps: a use_original_dst
// listener reads the connection's original destination and hands the
// connection to the listener whose address matches it (exact IP:PORT, then
// 0.0.0.0:PORT); the target's listener filters run (the HTTP inspector
// sniffs the first bytes); a filter chain is selected by destination port
// and detected protocol; and the chain serves the connection, either as
// HTTP (HTTP/1.x on the connection's goroutine by the lean server in h1.go,
// h2c by package h2) or as tcp_proxy. Both HTTP servers read and write
// the socket with raw system calls (package sockio).
//
// Concurrency: Apply is called by the compile step (one goroutine at a
// time) and by the bind retry timer; mu serialises them and guards the socket
// table. Each socket has an accept goroutine, one goroutine per connection
// (classifying it, then serving it as HTTP/1.x or HTTP/2 or proxying it as
// TCP), and, per HTTP/2 connection, worker goroutines that run its
// streams (reused from stream to stream). h1Conns.mu guards the set of
// HTTP/1.x connections and their idle flags, for shutdown. Connections
// read the current model through an atomic pointer, so a new version
// never waits for traffic and traffic never takes the Manager's lock.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/model"
)

// Options configures a Manager.
type Options struct {
	Logger *slog.Logger
	// DrainTimeout bounds how long a removed listener's in-flight requests
	// and TCP connections may take. Default 5s.
	DrainTimeout time.Duration
	// RetryInterval is how often failed binds are retried. Default 1s.
	RetryInterval time.Duration
	// IdleTimeout closes idle downstream keep-alive connections. Default 1h
	// (Envoy's default).
	IdleTimeout time.Duration
	// OriginalDst returns the original destination of a connection accepted
	// by a use_original_dst listener (SO_ORIGINAL_DST on Linux). When nil,
	// or when it fails, the connection's local address is used, which is the
	// original destination of a connection that was not redirected.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// Namespace is the workload's namespace: the DNS listener resolves
	// short service names in it. Default "default".
	Namespace string
	// EventLoops, when positive, serves plain HTTP/1.x connections on
	// that many event loops instead of a goroutine each (Linux only; see
	// loop_linux.go). The process needs a P per loop and one more.
	EventLoops int
}

// testEventLoops is the EventLoops of Managers whose Options leave it
// unset; the package's tests set it to run themselves on event loops too.
var testEventLoops int

// Manager owns the listening sockets.
type Manager struct {
	opts  Options
	log   *slog.Logger
	cur   atomic.Pointer[index]
	stats statsTable

	mu      sync.Mutex
	sockets map[string]*socket // by address
	want    *model.Model
	failed  map[string]string // listener name → bind error
	retry   *time.Timer
	dns     *dnsSocket
	closed  bool
	drains  sync.WaitGroup
	// loops are the event loops, nil without Options.EventLoops.
	loops *loops
}

// index is the current model with its listeners looked up by name and by
// address (for original destination hand-off).
type index struct {
	model  *model.Model
	byName map[string]*model.Listener
	byAddr map[netip.AddrPort]*model.Listener
}

func newIndex(m *model.Model) *index {
	ix := &index{model: m, byName: map[string]*model.Listener{}, byAddr: map[netip.AddrPort]*model.Listener{}}
	for _, l := range m.Listeners {
		ix.byName[l.Name] = l
		if l.DNS != nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(l.Address); err == nil {
			ix.byAddr[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = l
		}
	}
	return ix
}

// handoff returns the listener a connection with original destination dst
// belongs to, other than from; nil when none.
func (ix *index) handoff(from *model.Listener, dst netip.AddrPort) *model.Listener {
	if l := ix.byAddr[dst]; l != nil && l != from {
		return l
	}
	wild := netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		wild = netip.IPv6Unspecified()
	}
	if l := ix.byAddr[netip.AddrPortFrom(wild, dst.Port())]; l != nil && l != from {
		return l
	}
	return nil
}

type socket struct {
	m    *Manager
	addr string
	ln   net.Listener
	cur  atomic.Pointer[model.Listener]
	tcp  connSet
	// h1 holds the connections served by the lean HTTP/1.x server, h2
	// those served by package h2 (h2c with prior knowledge), whose
	// requests' contexts derive from h2ctx.
	h1     h1Conns
	h2     connSet
	h2ctx  context.Context
	h2stop context.CancelFunc
	done   chan struct{} // closed when the accept loop returns
}

// New returns a Manager with no sockets.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Hour
	}
	if o.EventLoops == 0 {
		o.EventLoops = testEventLoops
	}
	m := &Manager{opts: o, log: o.Logger, sockets: map[string]*socket{}, failed: map[string]string{}}
	if o.EventLoops > 0 {
		if err := m.startLoops(o.EventLoops); err != nil {
			m.log.Warn("cannot start event loops; serving every connection on goroutines", "err", err)
		}
	}
	return m
}

// Apply makes the sockets match m's listeners.
func (m *Manager) Apply(md *model.Model) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.want = md
	m.cur.Store(newIndex(md))
	m.sync()
}

// Current returns the model last applied, or nil.
func (m *Manager) Current() *model.Model {
	if ix := m.cur.Load(); ix != nil {
		return ix.model
	}
	return nil
}

// sync binds, updates and closes sockets; m.mu is held.
func (m *Manager) sync() {
	if m.retry != nil {
		m.retry.Stop()
		m.retry = nil
	}
	clear(m.failed)
	keep := map[string]bool{}
	var dnsL *model.Listener
	for _, l := range m.want.Listeners {
		if l.DNS != nil && dnsL == nil {
			dnsL = l
		}
		if l.NoBind || l.DNS != nil {
			continue
		}
		s := m.sockets[l.Address]
		if s == nil {
			var err error
			s, err = m.bind(l.Address)
			if err != nil {
				m.failed[l.Name] = fmt.Sprintf("listener %s on %s: %v", l.Name, l.Address, err)
				continue
			}
			m.sockets[l.Address] = s
			m.log.Info("listening", "listener", l.Name, "address", s.ln.Addr().String())
		}
		s.cur.Store(l)
		keep[l.Address] = true
	}
	m.syncDNS(dnsL)
	for addr, s := range m.sockets {
		if !keep[addr] {
			delete(m.sockets, addr)
			m.log.Info("closing listener", "listener", s.cur.Load().Name, "address", addr)
			m.drain(s)
		}
	}
	if len(m.failed) > 0 {
		for _, f := range m.failed {
			m.log.Warn("cannot bind, retrying", "err", f)
		}
		m.retry = time.AfterFunc(m.opts.RetryInterval, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if !m.closed && m.want != nil {
				m.sync()
			}
		})
	}
}

func (m *Manager) bind(addr string) (*socket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, err
	}
	s := &socket{m: m, addr: addr, ln: ln, done: make(chan struct{})}
	s.h2ctx, s.h2stop = context.WithCancel(context.Background())
	go s.acceptLoop()
	return s, nil
}

func (s *socket) acceptLoop() {
	defer close(s.done)
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.m.log.Warn("accept failed, retrying", "address", s.addr, "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.tcp.add(c)
		go s.handle(c)
	}
}

// stop closes the socket and waits for its connections: HTTP ones drain
// until ctx ends, TCP ones are closed when ctx ends.
func (s *socket) stop(ctx context.Context) error {
	s.ln.Close()
	<-s.done
	var errs []error
	s.h2stop() // each HTTP/2 connection sends GOAWAY and ends after its streams
	if err := s.h2.wait(ctx); err != nil {
		errs = append(errs, err)
	}
	h1err := make(chan error, 1)
	go func() { h1err <- s.h1.shutdown(ctx) }()
	if err := s.tcp.wait(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-h1err; err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// drain shuts s down in the background, bounded by the drain timeout.
func (m *Manager) drain(s *socket) {
	m.drains.Add(1)
	go func() {
		defer m.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainTimeout)
		defer cancel()
		s.stop(ctx)
	}()
}

// Pending lists the listeners that are not bound, with the reason; empty
// when every listener of the current model is bound.
func (m *Manager) Pending() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.failed))
	for _, f := range m.failed {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Addr returns the bound address of the named listener (useful when the
// configured port is 0), or "" when it is not bound.
func (m *Manager) Addr(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sockets {
		if l := s.cur.Load(); l != nil && l.Name == name {
			return s.ln.Addr().String()
		}
	}
	return ""
}

// Shutdown stops accepting on every socket and waits for in-flight requests
// and TCP connections until ctx ends, then closes the remaining connections.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	if m.retry != nil {
		m.retry.Stop()
	}
	sockets := m.sockets
	m.sockets = map[string]*socket{}
	if m.dns != nil {
		d := m.dns
		m.dns = nil
		m.drains.Add(1)
		go func() {
			defer m.drains.Done()
			d.cancel()
			<-d.done
		}()
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	var errs []error
	var emu sync.Mutex
	for _, s := range sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("draining %s: %w", s.addr, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.drains.Wait()
	m.stopLoops()
	return errors.Join(errs...)
}

// contextBackground is the context upstream dials use: a connection's
// lifetime is bounded by the connect timeout and the drain, not a context.
var contextBackground = context.Background()

// connSet tracks a set of a socket's connections: those being inspected or
// proxied as TCP, or those served as HTTP/2.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (cs *connSet) add(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.conns == nil {
		cs.conns = map[net.Conn]struct{}{}
	}
	cs.conns[c] = struct{}{}
	cs.wg.Add(1)
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.conns[c]; ok {
		delete(cs.conns, c)
		cs.wg.Done()
	}
}

// wait waits for every connection to finish, closing them all when ctx ends.
func (cs *connSet) wait(ctx context.Context) error {
	n, err := drainOrClose(ctx, &cs.wg, func() int {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		for c := range cs.conns {
			c.Close()
		}
		return len(cs.conns)
	})
	if err != nil {
		return fmt.Errorf("closed %d TCP connections still open: %w", n, err)
	}
	return nil
}

// drainOrClose waits for wg. If ctx ends first, it calls closeAll, which
// closes what is left and says how many, waits for wg again, and returns
// that count with ctx's error.
func drainOrClose(ctx context.Context, wg *sync.WaitGroup, closeAll func() int) (int, error) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return 0, nil
	case <-ctx.Done():
	}
	n := closeAll()
	<-done
	return n, ctx.Err()
}
