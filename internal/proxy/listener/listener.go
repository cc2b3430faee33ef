// Package listener serves weft-proxy's HTTP listeners. The Manager binds a
// socket for every listener address in the current model, keeps a socket
// (and its open connections) across configuration versions while its
// address stays, closes sockets whose listener disappeared after draining
// them, and retries binds that fail.
//
// Concurrency: Apply is called by the compile step (one goroutine at a
// time) and by the bind retry timer; mu serialises them and guards the socket
// table. Each socket has its own http.Server goroutines; a request reads the
// socket's current listener through an atomic pointer, so a new version never
// waits for requests and requests never take a lock.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/model"
)

// Options configures a Manager.
type Options struct {
	Logger *slog.Logger
	// DrainTimeout bounds how long a removed listener's in-flight requests
	// may take. Default 5s.
	DrainTimeout time.Duration
	// RetryInterval is how often failed binds are retried. Default 1s.
	RetryInterval time.Duration
	// IdleTimeout closes idle downstream keep-alive connections. Default 1h
	// (Envoy's default).
	IdleTimeout time.Duration
}

// Manager owns the listening sockets.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	sockets map[string]*socket // by address
	want    *model.Model
	failed  map[string]string // listener name → bind error
	retry   *time.Timer
	closed  bool
	drains  sync.WaitGroup
}

type socket struct {
	addr string
	ln   net.Listener
	srv  *http.Server
	cur  atomic.Pointer[model.Listener]
	log  *slog.Logger
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
	return &Manager{opts: o, log: o.Logger, sockets: map[string]*socket{}, failed: map[string]string{}}
}

// Apply makes the sockets match m's listeners.
func (m *Manager) Apply(md *model.Model) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.want = md
	m.sync()
}

// sync binds, updates and closes sockets; m.mu is held.
func (m *Manager) sync() {
	if m.retry != nil {
		m.retry.Stop()
		m.retry = nil
	}
	clear(m.failed)
	keep := map[string]bool{}
	for _, l := range m.want.Listeners {
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
	s := &socket{addr: addr, ln: ln, log: m.log}
	s.srv = &http.Server{
		Handler:     s,
		IdleTimeout: m.opts.IdleTimeout,
		ErrorLog:    slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("listener stopped", "address", addr, "err", err)
		}
	}()
	return s, nil
}

// drain shuts s down in the background, bounded by the drain timeout.
func (m *Manager) drain(s *socket) {
	m.drains.Add(1)
	go func() {
		defer m.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainTimeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
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
// until ctx ends, then closes the remaining connections.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	if m.retry != nil {
		m.retry.Stop()
	}
	sockets := m.sockets
	m.sockets = map[string]*socket{}
	m.mu.Unlock()

	var wg sync.WaitGroup
	var errs []error
	var emu sync.Mutex
	for _, s := range sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(ctx); err != nil {
				s.srv.Close()
				emu.Lock()
				errs = append(errs, fmt.Errorf("draining %s: %w", s.addr, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.drains.Wait()
	return errors.Join(errs...)
}

var _ http.Handler = (*socket)(nil)

// ServeHTTP selects the route and runs the listener's chain.
func (s *socket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := s.cur.Load()
	x := &chain.Exchange{W: w, R: r, Listener: l.Name, RouteConfig: l.RouteConfig}
	x.Route, x.RouteErr = l.Routes.Select(r)
	l.Chain.Serve(x)
}
