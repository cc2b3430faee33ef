package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/sockio"
)

// h1Pool is a lean HTTP/1.1 client connection pool for one endpoint. A
// round trip runs entirely on the caller's goroutine: take an idle
// connection (or dial one), write the request, read the response head; the
// connection goes back to the pool when the caller has read the body to
// EOF. net/http's Transport, by contrast, hands every request to a write
// goroutine and every response from a read goroutine, which costs several
// goroutine wake-ups per request. Requests with bodies that are large or of
// unknown length still go through the Transport (see Endpoint.RoundTrip),
// which can send the body and read the response concurrently.
//
// mu guards idle and the reaper timer; a connection in use belongs to the
// request using it.
//
// Circuit breaking: cb counts the cluster's open connections (reserved
// before a dial, released when a connection closes); a request that finds
// no idle connection and cannot open one (max_connections) waits as a
// pending request, unless max_pending_requests already wait. Waiters
// register (nwait, notify under wmu) before they re-check, and put and
// close wake them after they change the state, so no wake-up is lost.
// Without waiters, waking costs one atomic load.
type h1Pool struct {
	dial        func(ctx context.Context) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration
	// maxUses closes a connection after that many requests; 0: no limit
	// (max_requests_per_connection).
	maxUses uint32
	// maxAge closes a connection that long after it was opened, once it
	// is idle; 0: no limit (max_connection_duration).
	maxAge time.Duration
	cb     *breaker
	open   atomic.Int64 // this endpoint's open connections, the Transport's included
	// transportOpen counts the open connections of the endpoint's
	// net/http Transport, and closeTransportIdle closes its idle ones.
	transportOpen      atomic.Int64
	closeTransportIdle func()

	mu   sync.Mutex
	idle []*h1Conn // most recently used last
	// reaper closes idle connections as their deadline passes (see
	// deadline); reapAt is when it fires.
	reaper *time.Timer
	reapAt time.Time
	closed bool

	nwait  atomic.Int64
	wmu    sync.Mutex
	notify chan struct{}
}

type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// expires is when the connection reaches the pool's maxAge (zero
	// without one).
	expires time.Time
	reused  bool
	// holdOK says the next request may leave from the read that waits
	// for its response: the connection is new, or was idle less than
	// holdWithin (see there).
	holdOK bool
	pool   *h1Pool
	uses   uint32
	// rw writes requests and rr reads responses, keeping their buffers,
	// caches and the Response from one exchange to the next.
	rw h1.RequestWriter
	rr h1.ResponseReader
	// last is the response body of the last exchange. The connection is
	// released when that body is read to its end, but the Response (and
	// last itself) are reused only once the reader has also closed it.
	last *h1Body
	// interrupt is Interrupt, bound once for context.AfterFunc.
	interrupt func()
}

// Interrupt makes blocked reads and writes on the connection return.
func (pc *h1Conn) Interrupt() { pc.c.SetDeadline(aLongTimeAgo) }

// Interrupter is a context that can interrupt an exchange when it ends
// without what context.AfterFunc costs per request (two allocations, and a
// lock and a map insert and delete in the parent context). The lean
// HTTP/1.1 server's per-connection context is one: a connection serves one
// request at a time, so it needs to watch one exchange at a time.
type Interrupter interface {
	context.Context
	// Watch arranges for x.Interrupt to be called when the context ends.
	// It returns false, and does nothing, when the context has ended or
	// already watches something.
	Watch(x interface{ Interrupt() }) bool
	// Unwatch stops watching x. It returns false when the context ended
	// while watching x: x.Interrupt was, or is being, called.
	Unwatch(x interface{ Interrupt() }) bool
}

// watch interrupts an exchange's blocked reads and writes when the
// request's context ends: through the context when it is an Interrupter
// free to take the exchange, through context.AfterFunc otherwise.
type watch struct {
	ir   Interrupter
	pc   *h1Conn
	stop func() bool
}

func watchExchange(ctx context.Context, pc *h1Conn) watch {
	// An Interrupter first: asking it for Done may make it a channel.
	ir, ok := ctx.(Interrupter)
	if ok && ir.Watch(pc) {
		return watch{ir: ir, pc: pc}
	}
	if ctx.Done() == nil {
		return watch{}
	}
	return watch{stop: context.AfterFunc(ctx, pc.interrupt)}
}

// end stops watching. It returns false when the context ended and
// interrupted the exchange (or is interrupting it).
func (w watch) end() bool {
	switch {
	case w.ir != nil:
		return w.ir.Unwatch(w.pc)
	case w.stop != nil:
		return w.stop()
	}
	return true
}

// MaxLeanBody is the largest request body the lean path sends; larger ones
// and bodies of unknown length go through net/http's Transport (which may
// still read the body after RoundTrip returned).
const MaxLeanBody = 64 << 10

// leanOK reports whether req can take the lean path.
func leanOK(req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	return req.ContentLength > 0 && req.ContentLength <= MaxLeanBody
}

var (
	brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// get returns an idle connection or dials one. With probe, an idle
// connection is checked with a non-blocking peek before it is used (for
// requests that could not be retried on a fresh connection).
func (p *h1Pool) get(ctx context.Context, probe bool) (*h1Conn, error) {
	if pc := p.takeIdle(probe); pc != nil {
		return pc, nil
	}
	if !p.reserve() {
		pc, err := p.wait(ctx, probe)
		if pc != nil || err != nil {
			return pc, err
		}
	}
	c, err := p.dial(ctx)
	if err != nil {
		p.gone()
		return nil, pendingIfEnded(ctx, err)
	}
	c = sockio.New(c)
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	bw := bwPool.Get().(*bufio.Writer)
	bw.Reset(c)
	pc := &h1Conn{c: c, br: br, bw: bw, pool: p, holdOK: true}
	pc.interrupt = pc.Interrupt
	if p.maxAge > 0 {
		pc.expires = time.Now().Add(p.maxAge)
	}
	return pc, nil
}

// reserve counts a connection about to be dialled against the cluster's
// max_connections. As in Envoy, an endpoint without any connection may
// always open one, so that its waiting requests make progress.
func (p *h1Pool) reserve() bool {
	cb := p.cb
	for {
		n := cb.conns.Load()
		if n >= cb.maxConns.Load() && p.open.Load() > 0 {
			return false
		}
		if cb.conns.CompareAndSwap(n, n+1) {
			p.open.Add(1)
			return true
		}
	}
}

// gone releases what reserve counted, when a connection closes (or its
// dial failed), and wakes waiting requests.
func (p *h1Pool) gone() {
	p.open.Add(-1)
	p.cb.conns.Add(-1)
	p.wake()
}

// wake wakes the requests waiting for a connection, if any.
func (p *h1Pool) wake() {
	if p.nwait.Load() == 0 {
		return
	}
	p.wmu.Lock()
	if p.notify != nil {
		close(p.notify)
		p.notify = nil
	}
	p.wmu.Unlock()
}

// wait queues the request as pending until an idle connection comes back
// (returned) or one may be opened (nil, nil). It fails at once when
// max_pending_requests are already waiting. Idle connections of the
// Transport hold slots this pool cannot use; they are closed to free them.
func (p *h1Pool) wait(ctx context.Context, probe bool) (*h1Conn, error) {
	return p.waitFor(ctx, func() (*h1Conn, bool) {
		if pc := p.takeIdle(probe); pc != nil {
			return pc, true
		}
		if p.reserve() {
			return nil, true
		}
		if p.transportOpen.Load() > 0 && p.closeTransportIdle != nil {
			p.closeTransportIdle() // a closed one wakes this wait
		}
		return nil, false
	})
}

// waitFor waits as a pending request until try succeeds; try runs once
// before each wait, after the waiter is registered, so a wake-up between
// the two is not lost.
func (p *h1Pool) waitFor(ctx context.Context, try func() (*h1Conn, bool)) (*h1Conn, error) {
	cb := p.cb
	if cb.pending.Add(1) > cb.maxPending.Load() {
		cb.pending.Add(-1)
		cb.stats.pendingOverflow.Add(1)
		return nil, cb.overflow(LimitMaxPendingRequests, &cb.maxPending)
	}
	defer cb.pending.Add(-1)
	cb.stats.cxOverflow.Add(1)
	for {
		p.wmu.Lock()
		p.nwait.Add(1)
		if p.notify == nil {
			p.notify = make(chan struct{})
		}
		ch := p.notify
		p.wmu.Unlock()
		if pc, ok := try(); ok {
			p.nwait.Add(-1)
			return pc, nil
		}
		select {
		case <-ch:
			p.nwait.Add(-1)
		case <-ctx.Done():
			p.nwait.Add(-1)
			return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
		}
	}
}

// ErrPending marks the error of a request that ended (its context did)
// while it waited for a connection to the endpoint, or while one was being
// made for it: the endpoint never saw it, so outlier detection does not
// hold it against the endpoint (as Envoy does not).
var ErrPending = errors.New("still waiting for a connection to the endpoint")

// pendingIfEnded marks err, a dial's, with ErrPending when the request's
// context has ended (the dial was cut short by it).
func pendingIfEnded(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrPending, err)
	}
	return err
}

// dialForTransport opens a connection for the endpoint's net/http
// Transport, which carries the requests the lean pool does not take (bodies
// large or of unknown length). It counts against the cluster's
// max_connections like the pool's own connections: at the limit it waits
// as a pending request, closing one of the pool's idle connections if there
// is one (the Transport cannot use them). The Transport dials apart from
// the request's cancellation, so the wait is bounded by the connect
// timeout; past it the request fails as a max_connections overflow.
func (p *h1Pool) dialForTransport(ctx context.Context, connectTimeout, maxAge time.Duration) (net.Conn, error) {
	if !p.reserve() {
		wctx, cancel := context.WithTimeout(ctx, connectTimeout)
		_, err := p.waitFor(wctx, func() (*h1Conn, bool) {
			if pc := p.takeIdle(false); pc != nil {
				pc.close()
			}
			return nil, p.reserve()
		})
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no connection free within the connect timeout (%v): %w", connectTimeout, p.cb.overflow(LimitMaxConnections, &p.cb.maxConns))
			}
			return nil, err
		}
	}
	c, err := p.dial(ctx)
	if err != nil {
		p.gone()
		return nil, pendingIfEnded(ctx, err)
	}
	p.transportOpen.Add(1)
	tc := &transportConn{Conn: c, pool: p}
	if maxAge > 0 {
		tc.age = time.AfterFunc(maxAge, tc.expire)
	}
	return tc, nil
}

// transportConn is a connection of the Transport: closing it releases its
// max_connections slot.
type transportConn struct {
	net.Conn
	pool *h1Pool
	once sync.Once
	// age fires at the pool's maxAge; state goes from open to expired
	// then, and to closed at Close.
	age   *time.Timer
	state atomic.Int32
}

// The states of a transportConn.
const (
	tcOpen int32 = iota
	tcExpired
	tcClosed
)

// expire runs at the connection's maximum age. The Transport cannot be
// told to drop one connection, so its idle ones are closed: this one now
// if it is idle, else once the response it carries has been read (see
// transportBody). An idle connection younger than its age goes too, which
// costs a dial: the Transport carries only requests with large or
// streamed bodies.
func (c *transportConn) expire() {
	if c.state.CompareAndSwap(tcOpen, tcExpired) {
		c.pool.closeTransportIdle()
	}
}

// expired reports whether the connection has reached its maximum age.
func (c *transportConn) expired() bool { return c.state.Load() == tcExpired }

// SyscallConn is the dialed connection's, so that package sockio can do
// its reads and writes.
func (c *transportConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("no file descriptor")
}

// CloseWrite half-closes the dialed connection, when it can.
func (c *transportConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *transportConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.age != nil {
			c.age.Stop()
		}
		c.state.Store(tcClosed)
		c.pool.transportOpen.Add(-1)
		c.pool.gone()
	})
	return err
}

// takeIdle returns an idle connection, or nil.
func (p *h1Pool) takeIdle(probe bool) *h1Conn {
	p.mu.Lock()
	now := time.Now()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(pc.idleAt) < p.idleTimeout && (p.maxAge == 0 || now.Before(pc.expires)) &&
			pc.br.Buffered() == 0 && !(probe && peerClosed(pc.c)) {
			p.mu.Unlock()
			pc.reused = true
			pc.holdOK = now.Sub(pc.idleAt) < holdWithin
			return pc
		}
		pc.close()
	}
	p.mu.Unlock()
	return nil
}

// put returns pc to the pool, or closes it when the pool is full or
// closed, or the connection has reached its maximum age.
func (p *h1Pool) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	d := p.deadline(pc)
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle || !pc.idleAt.Before(d) {
		p.mu.Unlock()
		pc.close()
		return
	}
	p.idle = append(p.idle, pc)
	p.armReaperLocked(d, pc.idleAt)
	p.mu.Unlock()
	p.wake()
}

// deadline is when pc, idle, is to be closed: once idle for the idle
// timeout, or at its maximum age if that comes first.
func (p *h1Pool) deadline(pc *h1Conn) time.Time {
	d := pc.idleAt.Add(p.idleTimeout)
	if p.maxAge > 0 && pc.expires.Before(d) {
		d = pc.expires
	}
	return d
}

// armReaperLocked has the reaper run at at, unless it runs sooner. Call
// it with mu held.
func (p *h1Pool) armReaperLocked(at, now time.Time) {
	if p.reaper != nil {
		if !at.Before(p.reapAt) || !p.reaper.Stop() {
			// It runs soon enough; or it has fired, and its run, waiting
			// for mu, arms the next.
			return
		}
	}
	p.reaper = time.AfterFunc(at.Sub(now), p.reap)
	p.reapAt = at
}

// reap closes the idle connections whose deadline has passed, and re-arms
// itself while connections remain idle.
func (p *h1Pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reaper = nil
	now := time.Now()
	keep := p.idle[:0]
	var next time.Time
	for _, pc := range p.idle {
		d := p.deadline(pc)
		if !now.Before(d) {
			pc.close()
			continue
		}
		if next.IsZero() || d.Before(next) {
			next = d
		}
		keep = append(keep, pc)
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(p.idle) > 0 && !p.closed {
		p.armReaperLocked(next, now)
	}
}

// closeIdle closes every idle connection. When final, the pool also stops
// keeping connections: those in use are closed when their request ends.
func (p *h1Pool) closeIdle(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.idle {
		pc.close()
	}
	clear(p.idle)
	p.idle = p.idle[:0]
	if final {
		p.closed = true
	}
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
}

func (pc *h1Conn) close() {
	pc.c.Close()
	pc.br.Reset(nil)
	brPool.Put(pc.br)
	pc.bw.Reset(nil)
	bwPool.Put(pc.bw)
	pc.br, pc.bw = nil, nil
	pc.pool.gone()
}

// aLongTimeAgo is a deadline in the past: it makes blocked reads and writes
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip sends req over a pooled connection. A reused connection that
// the server closed while it was idle (no byte of response) is replaced by a
// fresh one once, as net/http does. lazy leaves the response's header
// fields out of its Header when it can (see RoundTripLazy).
func (p *h1Pool) roundTrip(req *http.Request, lazy bool) (*http.Response, error) {
	for try := 0; ; try++ {
		pc, err := p.get(req.Context(), !rewindable(req))
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(pc, req, lazy)
		if err == nil {
			return resp, nil
		}
		if try == 0 && pc.reused && errors.Is(err, errStaleConn) && rewindable(req) {
			if req.GetBody != nil {
				if req.Body, err = req.GetBody(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return nil, err
	}
}

// holdWithin bounds how long a connection may have been idle for its
// request to be sent by the read that waits for the response
// (sockio.Conn.HoldNextWrite), which saves a system call per exchange.
// That read waits for the socket to become readable after the request
// leaves, so it would not see an end of stream that came before: a server
// that half-closed an idle connection and then read and dropped the
// request would leave it waiting. Servers close idle connections after
// seconds (nginx 75 s, Apache and Node 5 s); a connection reused sooner
// than this has not been closed for idleness. Closed outright, it answers
// the request with a reset, which the read sees.
const holdWithin = time.Second

// errStaleConn marks a failure on a reused connection before any byte of
// the response arrived: the server most likely closed it while it was idle.
var errStaleConn = errors.New("server closed the idle connection")

type staleErr struct{ err error }

func (e staleErr) Error() string        { return e.err.Error() }
func (e staleErr) Unwrap() []error      { return []error{e.err, errStaleConn} }
func (e staleErr) Is(target error) bool { return target == errStaleConn }

func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (p *h1Pool) exchange(pc *h1Conn, req *http.Request, lazy bool) (*http.Response, error) {
	ctx := req.Context()
	w := watchExchange(ctx, pc)
	if pc.last != nil && !pc.last.closed.Load() {
		// The last response may still be in use: leave it to its reader.
		pc.rr.Detach()
		pc.last = nil
	}
	fail := func(err error) (*http.Response, error) {
		if !w.end() {
			// The context ended and interrupted the exchange: say so, as
			// net/http's Transport does.
			err = ctx.Err()
		}
		pc.close()
		return nil, err
	}
	if err := pc.rw.Write(pc.bw, req); err != nil {
		return fail(err)
	}
	if sc, ok := pc.c.(*sockio.Conn); ok && pc.holdOK {
		sc.HoldNextWrite()
	}
	if err := pc.bw.Flush(); err != nil {
		if pc.reused {
			err = staleErr{err}
		}
		return fail(err)
	}
	var resp *http.Response
	for {
		if pc.reused {
			if _, err := pc.br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
					err = staleErr{err}
				}
				return fail(err)
			}
		}
		var err error
		pc.rr.Lazy = lazy
		resp, err = pc.rr.ReadResponse(pc.br, req)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		// Skip interim responses (100 Continue, 103 Early Hints).
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	b := pc.last
	if b == nil {
		b = new(h1Body)
		pc.last = b
	}
	b.rc, b.pc, b.pool, b.watch, b.resp = resp.Body, pc, p, w, resp
	pc.uses++
	b.keep = !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols && (p.maxUses == 0 || pc.uses < p.maxUses)
	b.closed.Store(false)
	resp.Body = b
	return resp, nil
}

// h1Body returns its connection to the pool once read to EOF, and closes it
// when the body is closed before that. Once closed, neither it nor its
// Response may be used: the connection's next exchange reuses them.
type h1Body struct {
	rc    io.ReadCloser
	resp  *http.Response
	pc    *h1Conn
	pool  *h1Pool
	watch watch
	keep  bool
	// closed is set by Close, after which nothing reads the body or the
	// response any more.
	closed atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.pc == nil {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	}
	return n, err
}

// TakeHeader gives the caller the response's Header map for good and the
// connection h to read its next responses into (see
// h1.ResponseReader.TakeHeader). It reports false, and takes nothing, once
// the exchange has ended (the body was read to its end or closed), when
// the connection may already be serving another request.
func (b *h1Body) TakeHeader(h http.Header) (http.Header, bool) {
	if b.pc == nil || b.resp == nil {
		return nil, false
	}
	return b.pc.rr.TakeHeader(h), true
}

func (b *h1Body) Close() error {
	if b.pc != nil {
		b.release(false)
	}
	if b.resp != nil {
		// Do not keep the request (and a buffered body) alive while the
		// connection is idle.
		b.resp.Request = nil
		b.resp = nil
	}
	b.closed.Store(true)
	return nil
}

// release ends the exchange: the connection is reused only when the body
// was read to EOF, the response allows keep-alive and the request's
// context did not interrupt it.
func (b *h1Body) release(eof bool) {
	pc := b.pc
	b.pc = nil
	reuse := eof && b.keep
	if !b.watch.end() {
		reuse = false // the deadline was, or is being, set
	}
	if reuse {
		b.pool.put(pc)
		return
	}
	pc.close()
}
