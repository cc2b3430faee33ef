package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/evloop"
	"github.com/weftmesh/weft/internal/proxy/h1"
)

// LoopClient is an HTTP/1.1 client that runs on an event loop
// (package evloop): a request is written, and its response read, by the
// loop as its sockets become ready, and handed to a LoopWaiter whole (or,
// for a body that is a stream, with the connection: LoopWaiter.Stream). It
// keeps its own idle connections per endpoint, counted against the
// cluster's max_connections as the lean pool's are.
//
// What it carries (LoopOK): plain HTTP/1.1 over TCP to IP addresses;
// requests without a body.
// A request that finds the cluster's max_connections open fails at once
// (overflow) rather than waiting as a pending request, so clusters with a
// max_connections or max_pending_requests below Envoy's defaults are not
// for it.
//
// Everything runs on the loop's goroutine.
type LoopClient struct {
	loop *evloop.Loop
	idle map[*Endpoint][]*loopConn
	br   *bufio.Reader // parses one complete response at a time
	src  bytes.Reader
	bw   *bufio.Writer // writes one request at a time (into its conn's out)
}

// MaxLoopResponse bounds what a LoopClient reads of a response before it
// knows the response's framing (a head is at most 64 KB, and a body longer
// than MaxLoopBody streams); past it the exchange fails.
const MaxLoopResponse = 4 << 20

// LoopWaiter takes the outcome of a LoopClient exchange: the response,
// whose body is in memory and which is valid only during the call, or the
// error that ended the exchange. A response whose body is a stream (chunked
// or delimited by the end of the connection, and not all there yet, or
// longer than MaxLoopBody) goes to Stream instead: its head, valid during
// the call, and conn, the connection taken off the loop, from which the
// whole response is to be read again, head first. The waiter closes conn,
// which frees the connection's max_connections slot.
type LoopWaiter interface {
	Response(resp *http.Response, err error)
	Stream(head *http.Response, conn net.Conn)
}

// MaxLoopBody is the longest Content-Length body a LoopClient holds in
// memory; a longer one is streamed (LoopWaiter.Stream).
const MaxLoopBody = 256 << 10

// NewLoopClient returns a client for l. CloseIdle, when the loop stops,
// lets go of it.
func NewLoopClient(l *evloop.Loop) *LoopClient {
	c := &LoopClient{loop: l, idle: map[*Endpoint][]*loopConn{}, br: bufio.NewReaderSize(nil, 16<<10), bw: bufio.NewWriterSize(nil, 4<<10)}
	loopClients.Lock()
	loopClients.all[c] = struct{}{}
	loopClients.Unlock()
	return c
}

// loopClients are the LoopClients of the process, which an endpoint that
// leaves the configuration tells to close their idle connections to it.
var loopClients = struct {
	sync.Mutex
	all map[*LoopClient]struct{}
}{all: map[*LoopClient]struct{}{}}

// closeLoopIdle has every LoopClient close its idle connections to e,
// which no configuration uses any more.
func closeLoopIdle(e *Endpoint) {
	loopClients.Lock()
	defer loopClients.Unlock()
	for c := range loopClients.all {
		c.loop.Post(func() { c.closeIdleTo(e) })
	}
}

// closeIdleTo closes the idle connections to ep.
func (c *LoopClient) closeIdleTo(ep *Endpoint) {
	conns := c.idle[ep]
	delete(c.idle, ep)
	for _, lc := range conns {
		lc.close()
	}
}

// LoopOK reports whether a LoopClient can carry requests to cl: plain
// HTTP/1.1 to IP addresses, connection circuit breakers no tighter than
// Envoy's defaults.
func LoopOK(cl *Cluster) bool {
	if cl.orig != nil || cl.cb.maxConns.Load() < DefaultMaxConnections || cl.cb.maxPending.Load() < DefaultMaxPendingRequests {
		return false
	}
	switch cl.loopOK.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ok := true
	for _, ep := range cl.endpoints {
		if !ep.ip.IsValid() || ep.h2 != nil || ep.set.tlsSet {
			ok = false
			break
		}
	}
	if ok {
		cl.loopOK.Store(1)
	} else {
		cl.loopOK.Store(2)
	}
	return ok
}

// The states of a loopConn.
const (
	lcConnecting = iota
	lcSending
	lcWaiting
	lcIdle
	lcClosed
)

// loopConn is one connection of a LoopClient.
type loopConn struct {
	c     *LoopClient
	ep    *Endpoint
	fd    int
	state int
	// out is the request being sent, from sent on; in is what arrived of
	// the response.
	out  []byte
	sent int
	in   []byte
	// waiter, req and timeout are the exchange's; deadline fires at its
	// timeout, the connect timeout or, while idle, the idle timeout.
	x               *LoopExchange
	waiter          LoopWaiter
	req             *http.Request
	began           time.Time // when the exchange was sent (its timeout counts from it)
	timeout         time.Duration
	deadline        evloop.Timer
	connectDeadline bool // deadline is the connect timeout's
	hup             bool // the peer closed (or the socket failed)
	reused          bool // has carried an exchange before
	uses            uint32
	expires         time.Time // max_connection_duration; zero: none
	rw              h1.RequestWriter
	rr              h1.ResponseReader
	body            loopBody
}

// Send sends req to ep and calls w with the outcome, later, on the loop
// (never from inside Send). timeout, when positive, bounds the exchange
// (ErrAttemptTimeout). x is the exchange's handle, for Cancel.
func (c *LoopClient) Send(ep *Endpoint, req *http.Request, timeout time.Duration, w LoopWaiter, x *LoopExchange) {
	lc := c.take(ep)
	if lc == nil {
		var err error
		if lc, err = c.dial(ep); err != nil {
			c.failLater(x, w, err)
			return
		}
	}
	x.lc = lc
	lc.x, lc.waiter, lc.req, lc.timeout = x, w, req, timeout
	lc.began = c.loop.Now()
	lc.in = lc.in[:0]
	lc.out, lc.sent = lc.out[:0], 0
	c.bw.Reset(lc)
	err := lc.rw.Write(c.bw, req)
	if err == nil {
		err = c.bw.Flush()
	}
	c.bw.Reset(nil)
	if err != nil {
		lc.waiter, lc.req, x.lc = nil, nil, nil
		if lc.state == lcIdle {
			lc.idleAgain()
		} else {
			lc.close()
		}
		c.failLater(x, w, err)
		return
	}
	if lc.state == lcIdle {
		lc.state = lcSending
		lc.arm()
		lc.send(false)
	} else {
		lc.arm() // connecting: the connect timeout, or the exchange's if sooner
	}
}

// failLater hands err to w from the loop, not from inside Send.
func (c *LoopClient) failLater(x *LoopExchange, w LoopWaiter, err error) {
	x.lc, x.waiter, x.err = nil, w, err
	if x.fail.F == nil {
		x.fail.F = x.deliverFailure
	}
	c.loop.Schedule(&x.fail, 0)
}

// LoopExchange is the handle of a LoopClient exchange, which its waiter
// keeps (for Cancel) and reuses for its next one.
type LoopExchange struct {
	lc *loopConn // the connection carrying it, nil when none
	// fail delivers a failure Send found.
	fail   evloop.Timer
	waiter LoopWaiter
	err    error
}

func (x *LoopExchange) deliverFailure() {
	w, err := x.waiter, x.err
	x.waiter, x.err = nil, nil
	if w != nil {
		w.Response(nil, err)
	}
}

// Cancel abandons x: its waiter is not called, and its connection closes.
func (c *LoopClient) Cancel(x *LoopExchange) {
	c.loop.Stop(&x.fail)
	x.waiter, x.err = nil, nil
	if lc := x.lc; lc != nil {
		x.lc = nil
		lc.waiter, lc.x = nil, nil
		lc.close()
	}
}

// Write appends to the request being sent (the bufio.Writer's target).
func (lc *loopConn) Write(p []byte) (int, error) {
	lc.out = append(lc.out, p...)
	return len(p), nil
}

// take returns an idle connection to ep that is still usable, or nil.
func (c *LoopClient) take(ep *Endpoint) *loopConn {
	if ep.retired.Load() {
		c.closeIdleTo(ep)
		return nil
	}
	conns := c.idle[ep]
	for len(conns) > 0 {
		lc := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		c.idle[ep] = conns
		if !lc.expires.IsZero() && !c.loop.Now().Before(lc.expires) {
			lc.close()
			continue
		}
		c.loop.Stop(&lc.deadline)
		return lc
	}
	return nil
}

// dial opens a connection to ep, counted against its cluster's
// max_connections.
func (c *LoopClient) dial(ep *Endpoint) (*loopConn, error) {
	if !ep.h1.reserve() {
		ep.cb.stats.cxOverflow.Add(1)
		return nil, ep.cb.overflow(LimitMaxConnections, &ep.cb.maxConns)
	}
	fd, err := connect(ep)
	if err != nil {
		ep.h1.gone()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ep.ip), Err: err}
	}
	lc := &loopConn{c: c, ep: ep, fd: fd, state: lcConnecting}
	lc.deadline.F = lc.expired
	if ep.set.maxAge > 0 {
		lc.expires = c.loop.Now().Add(ep.set.maxAge)
	}
	if err := c.loop.Add(fd, lc); err != nil {
		syscall.Close(fd)
		ep.h1.gone()
		return nil, err
	}
	return lc, nil
}

// connect starts a non-blocking connect to ep, with the keepalive settings
// of its cluster and Nagle off.
func connect(ep *Endpoint) (int, error) {
	family := syscall.AF_INET
	if ep.ip.Addr().Is6() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	idle, interval, probes := keepalive(ep)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	if idle > 0 {
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(idle/time.Second))
	}
	if interval > 0 {
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(interval/time.Second))
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, probes)
	var sa syscall.Sockaddr
	if a := ep.ip.Addr(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ep.ip.Port()), Addr: a.As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ep.ip.Port()), Addr: a.As16()}
	}
	if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// keepalive returns the TCP keepalive settings of ep's connections: its
// cluster's, else weft-proxy's default (probes after 30 s idle, then every
// 15 s, 9 of them). A zero idle or interval leaves the system's.
func keepalive(ep *Endpoint) (idle, interval time.Duration, probes int) {
	idle, interval, probes = 30*time.Second, 15*time.Second, 9
	if ep.set.keepaliveSet {
		k := ep.set.keepalive
		idle, interval = k.Idle, k.Interval
		if k.Probes > 0 {
			probes = int(k.Probes)
		}
	}
	return idle, interval, probes
}

// arm sets the deadline of the exchange: the connect timeout while
// connecting, or what is left of the exchange's timeout (counted from
// Send) when that is sooner.
func (lc *loopConn) arm() {
	has := lc.timeout > 0
	var d time.Duration
	if has {
		d = max(lc.timeout-lc.c.loop.Now().Sub(lc.began), 0)
	}
	connecting := false
	if lc.state == lcConnecting {
		ct := lc.ep.set.connectTimeout
		if ct <= 0 {
			ct = DefaultConnectTimeout
		}
		if !has || ct < d {
			d, has, connecting = ct, true, true
		}
	}
	lc.connectDeadline = connecting
	if has {
		lc.c.loop.Schedule(&lc.deadline, d)
	} else {
		lc.c.loop.Stop(&lc.deadline)
	}
}

// Ready handles the socket's readiness.
func (lc *loopConn) Ready(ev uint32) {
	defer lc.recover()
	if ev&(evloop.RDHup|evloop.Hup|evloop.Err) != 0 {
		lc.hup = true
	}
	switch lc.state {
	case lcConnecting:
		if ev&(evloop.Out|evloop.Err|evloop.Hup) == 0 {
			return
		}
		if errno, err := syscall.GetsockoptInt(lc.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || errno != 0 {
			if err == nil {
				err = syscall.Errno(errno)
			}
			lc.fail(&net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(lc.ep.ip), Err: err})
			return
		}
		lc.state = lcSending
		// The connect timeout no longer applies; the exchange's does.
		if lc.connectDeadline {
			lc.arm()
		}
		lc.send(true)
	case lcSending:
		// (A response that comes before the request is all sent is read
		// once it is.)
		lc.send(true)
	case lcWaiting:
		lc.receive()
	case lcIdle:
		// Data or an end of stream on an idle connection: the server
		// closed it (or broke the protocol); it cannot be reused. (The
		// socket becoming writable again, as the peer acknowledges what
		// was sent, says nothing.)
		if ev&(evloop.In|evloop.RDHup|evloop.Hup|evloop.Err) != 0 {
			lc.dropIdle()
		}
	}
}

// send writes what is left of the request, then waits for the response.
// Called from Ready, it also reads what may have arrived (a readiness the
// loop already told); from Send it leaves that to the next readiness, so
// that the waiter is never called from inside Send.
func (lc *loopConn) send(fromReady bool) {
	for lc.sent < len(lc.out) {
		n, errno := evloop.Write(lc.fd, lc.out[lc.sent:])
		if errno == syscall.EAGAIN {
			return // told when there is room
		}
		if errno != 0 {
			lc.fail(lc.staleOr(errno))
			return
		}
		lc.sent += n
	}
	lc.state = lcWaiting
	if fromReady {
		lc.receive()
	}
}

// staleOr marks err, which ended an exchange before any byte of its
// response, as a stale connection's when the connection had been idle
// in the pool (the server most likely closed it meanwhile).
func (lc *loopConn) staleOr(err error) error {
	if lc.reused && len(lc.in) == 0 {
		return staleErr{err}
	}
	return err
}

// receive reads what arrived and delivers the response once it is whole.
// A short read means the socket is empty, unless the peer has closed
// (hup): its end of stream came with a readiness already told.
func (lc *loopConn) receive() {
	eof, full := false, false
	for {
		if len(lc.in) == cap(lc.in) {
			if len(lc.in) >= MaxLoopResponse {
				full = true // see what it is before reading on
				break
			}
			lc.in = append(lc.in, make([]byte, max(4<<10, len(lc.in)))...)[:len(lc.in)]
		}
		n, errno := evloop.Read(lc.fd, lc.in[len(lc.in):cap(lc.in)])
		if errno == syscall.EAGAIN {
			break
		}
		if errno != 0 {
			lc.fail(lc.staleOr(errno))
			return
		}
		if n == 0 {
			eof = true
			break
		}
		lc.in = lc.in[:len(lc.in)+n]
		if len(lc.in) < cap(lc.in) && !lc.hup {
			break // a short read: the socket is empty (edge-triggered: more data is told)
		}
	}
	end, keep, stream, err := responseEnd(lc.in, lc.req, eof)
	switch {
	case err != nil:
		lc.fail(err)
		return
	case stream:
		lc.stream()
		return
	case end < 0 && full:
		lc.fail(fmt.Errorf("response larger than %d bytes", MaxLoopResponse))
		return
	case end < 0 && eof:
		err := error(io.ErrUnexpectedEOF)
		if len(lc.in) == 0 {
			err = lc.staleOr(io.EOF)
		}
		lc.fail(err)
		return
	case end < 0:
		return // more to come
	}
	lc.deliver(end, keep && !eof && end == len(lc.in))
}

// deliver parses the whole response in in[:end], skipping interim ones, and
// hands it to the waiter; the connection then goes back to the idle ones,
// when keep, or closes.
func (lc *loopConn) deliver(end int, keep bool) {
	c := lc.c
	c.src.Reset(lc.in[:end])
	c.br.Reset(&c.src)
	var resp *http.Response
	for {
		var err error
		lc.rr.Lazy = true
		resp, err = lc.rr.ReadResponse(c.br, lc.req)
		if err != nil {
			lc.fail(err)
			return
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				lc.fail(errors.New("101 Switching Protocols to a request that asked for no upgrade"))
				return
			}
			continue
		}
		break
	}
	c.loop.Stop(&lc.deadline)
	lc.uses++
	lc.reused = true
	keep = keep && !resp.Close && !lc.req.Close && (lc.ep.set.maxUses == 0 || lc.uses < lc.ep.set.maxUses) &&
		(lc.expires.IsZero() || c.loop.Now().Before(lc.expires))
	w := lc.waiter
	lc.waiter, lc.req = nil, nil
	if lc.x != nil {
		lc.x.lc, lc.x = nil, nil
	}
	lc.body = loopBody{rc: resp.Body, lc: lc}
	resp.Body = &lc.body
	w.Response(resp, nil)
	resp.Body.Close()
	lc.body = loopBody{}
	c.br.Reset(nil)
	if keep {
		lc.idleAgain()
		return
	}
	lc.close()
}

// stream hands a response whose body is a stream to the waiter, with the
// connection taken off the loop.
func (lc *loopConn) stream() {
	c := lc.c
	c.src.Reset(lc.in)
	c.br.Reset(&c.src)
	var head *http.Response
	for {
		var err error
		lc.rr.Lazy = false
		if head, err = lc.rr.ReadResponse(c.br, lc.req); err != nil {
			c.br.Reset(nil)
			lc.fail(err)
			return
		}
		if head.StatusCode >= 200 {
			break
		}
	}
	c.br.Reset(nil)
	c.loop.Stop(&lc.deadline)
	w := lc.waiter
	lc.waiter, lc.req = nil, nil
	if lc.x != nil {
		lc.x.lc, lc.x = nil, nil
	}
	conn, err := lc.detach()
	if err != nil {
		w.Response(nil, err)
		return
	}
	w.Stream(head, conn)
	lc.rr.Detach() // the head may have been kept
}

// detach takes the connection off the loop as a net.Conn of Go's poller
// that replays what was read, and frees its max_connections slot when
// closed.
func (lc *loopConn) detach() (net.Conn, error) {
	pending := lc.in
	lc.in = nil
	lc.state = lcClosed
	lc.c.loop.Remove(lc.fd)
	f := os.NewFile(uintptr(lc.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	lc.fd = -1
	if err != nil {
		lc.ep.h1.gone()
		return nil, fmt.Errorf("taking a streamed response off the event loop: %w", err)
	}
	// Go's poller, taking the socket, gives it its default keepalive: the
	// cluster's (or the loop's default, see connect) again.
	if tc, ok := nc.(*net.TCPConn); ok {
		idle, interval, probes := keepalive(lc.ep)
		orSystem := func(d time.Duration) time.Duration {
			if d == 0 {
				return -1 // (zero is Go's 15 s)
			}
			return d
		}
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: orSystem(idle), Interval: orSystem(interval), Count: probes})
	}
	return &streamConn{Conn: nc, pending: pending, gone: lc.ep.h1.gone}, nil
}

// streamConn is a connection a LoopClient handed over with the bytes it
// had read.
type streamConn struct {
	net.Conn
	pending []byte
	gone    func()
	once    sync.Once
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.gone)
	return err
}

// idleAgain puts lc among the idle connections of its endpoint, unless
// the endpoint left the configuration or has its fill of them
// (PoolsOptions.MaxIdleConnsPerEndpoint).
func (lc *loopConn) idleAgain() {
	c := lc.c
	if lc.ep.retired.Load() || lc.ep.maxIdle > 0 && len(c.idle[lc.ep]) >= lc.ep.maxIdle {
		lc.close()
		return
	}
	lc.state = lcIdle
	lc.in = lc.in[:0]
	if cap(lc.in) > 4<<10 {
		lc.in = nil // a large answer's buffer is not kept while idle
	}
	if cap(lc.out) > 4<<10 {
		lc.out = nil
	}
	idle := lc.ep.set.idleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	if !lc.expires.IsZero() {
		// max_connection_duration closes an idle connection at its age.
		if left := lc.expires.Sub(c.loop.Now()); idle < 0 || left < idle {
			idle = max(left, 0)
		}
	}
	if idle >= 0 {
		c.loop.Schedule(&lc.deadline, idle)
	}
	c.idle[lc.ep] = append(c.idle[lc.ep], lc)
}

// dropIdle closes an idle connection and takes it out of the idle ones.
func (lc *loopConn) dropIdle() {
	conns := lc.c.idle[lc.ep]
	for i, x := range conns {
		if x == lc {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(lc.c.idle, lc.ep)
	} else {
		lc.c.idle[lc.ep] = conns
	}
	lc.close()
}

// expired handles the deadline: the idle timeout of an idle connection,
// else the connect timeout or the exchange's.
func (lc *loopConn) expired() {
	defer lc.recover()
	switch {
	case lc.state == lcIdle:
		lc.dropIdle()
	case lc.connectDeadline:
		lc.fail(&net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(lc.ep.ip), Err: errors.New("connect timeout")})
	default:
		lc.fail(ErrAttemptTimeout)
	}
}

// recover turns a panic on the loop (a bug) into the exchange's failure,
// as the goroutine server turns one into its connection's end, instead of
// the proxy's.
func (lc *loopConn) recover() {
	if p := recover(); p != nil {
		defer func() { recover() }() // a second panic: leave it
		lc.fail(fmt.Errorf("weft-proxy's upstream client failed: %v", p))
	}
}

// fail ends the exchange with err, closing the connection. A stale
// connection's failure is retried once on a new connection, as the lean
// pool does: the request has no body, so it can be sent again.
func (lc *loopConn) fail(err error) {
	w, req, timeout, x := lc.waiter, lc.req, lc.timeout, lc.x
	lc.waiter, lc.req, lc.x = nil, nil, nil
	lc.close()
	if w == nil {
		return
	}
	x.lc = nil
	if errors.Is(err, errStaleConn) {
		lc.c.Send(lc.ep, req, timeout, w, x)
		return
	}
	w.Response(nil, err)
}

// close closes the connection and releases its max_connections slot.
func (lc *loopConn) close() {
	if lc.state == lcClosed {
		return
	}
	lc.state = lcClosed
	lc.c.loop.Stop(&lc.deadline)
	lc.c.loop.Remove(lc.fd)
	syscall.Close(lc.fd)
	lc.fd = -1
	lc.ep.h1.gone()
}

// CloseIdle closes every idle connection, when the loop stops.
func (c *LoopClient) CloseIdle() {
	loopClients.Lock()
	delete(loopClients.all, c)
	loopClients.Unlock()
	for ep := range c.idle {
		c.closeIdleTo(ep)
	}
}

// loopBody is a delivered response's body, which lets ResponseFields,
// LoadHeader and the header hand-over reach the connection's reader.
type loopBody struct {
	rc io.ReadCloser
	lc *loopConn
}

func (b *loopBody) Read(p []byte) (int, error) {
	if b.rc == nil {
		return 0, io.EOF
	}
	return b.rc.Read(p)
}

func (b *loopBody) Close() error {
	b.rc = nil
	return nil
}

func (b *loopBody) reader() *h1.ResponseReader {
	if b.rc == nil || b.lc == nil {
		return nil
	}
	return &b.lc.rr
}

// TakeHeader is h1Body's (see there).
func (b *loopBody) TakeHeader(h http.Header) (http.Header, bool) {
	if b.rc == nil || b.lc == nil {
		return nil, false
	}
	return b.lc.rr.TakeHeader(h), true
}

// responseEnd finds the end of the response (after any interim ones) that
// b begins with: the length of the whole message, or -1 while it is not
// all there. keep says whether its framing lets the connection carry
// another. A response delimited by the end of the stream ends at eof.
// stream says the response's head is there and its body is a stream (see
// LoopWaiter) rather than something to wait for.
func responseEnd(b []byte, req *http.Request, eof bool) (end int, keep, stream bool, err error) {
	off := 0
	for {
		head := h1.HeadEnd(b[off:])
		if head < 0 {
			if len(b)-off > 64<<10 {
				return -1, false, false, errors.New("response head larger than 64 KB")
			}
			return -1, false, false, nil
		}
		h := b[off : off+head]
		status := statusCode(h)
		if status < 0 {
			return -1, false, false, fmt.Errorf("malformed HTTP response %q", firstLine(h))
		}
		if status >= 100 && status < 200 && status != 101 {
			off += head
			continue
		}
		body := off + head
		if req.Method == http.MethodHead || status == 204 || status == 304 || status == 101 {
			return body, true, false, nil
		}
		if chunked(h) {
			n, err := chunkedEnd(b[body:])
			if err != nil {
				return -1, false, false, err
			}
			if n < 0 {
				return -1, false, true, nil
			}
			return body + n, true, false, nil
		}
		if n, ok := contentLength(h); ok {
			if n > MaxLoopBody {
				return -1, false, true, nil
			}
			if len(b)-body < n {
				return -1, false, false, nil
			}
			return body + n, true, false, nil
		}
		// Delimited by the end of the stream.
		if eof {
			return len(b), false, false, nil
		}
		return -1, false, true, nil
	}
}

// statusCode reads the status code of a head's status line, or -1.
func statusCode(h []byte) int {
	if !bytes.HasPrefix(h, []byte("HTTP/1.")) || len(h) < 12 || h[8] != ' ' {
		return -1
	}
	c := 0
	for _, d := range h[9:12] {
		if d < '0' || d > '9' {
			return -1
		}
		c = c*10 + int(d-'0')
	}
	return c
}

func firstLine(h []byte) []byte {
	if i := bytes.IndexByte(h, '\n'); i >= 0 {
		h = h[:i]
	}
	return bytes.TrimRight(h, "\r")
}

// field returns the value of the first header field name (lower case) in
// head h, and whether there is one.
func field(h []byte, name string) ([]byte, bool) {
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		if i < 0 {
			return nil, false
		}
		line := h[:i]
		h = h[i+1:]
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && len(k) == len(name) && bytes.EqualFold(k, []byte(name)) {
			return bytes.TrimSpace(v), true
		}
	}
	return nil, false
}

// chunked reports whether head h frames its body with chunked coding.
func chunked(h []byte) bool {
	v, ok := field(h, "transfer-encoding")
	return ok && len(v) > 0
}

// contentLength reads head h's Content-Length.
func contentLength(h []byte) (int, bool) {
	v, ok := field(h, "content-length")
	if !ok {
		return 0, false
	}
	n := 0
	for _, d := range v {
		if d < '0' || d > '9' || n > MaxLoopResponse {
			return MaxLoopResponse + 1, true // refused by the parser, or too large
		}
		n = n*10 + int(d-'0')
	}
	return n, true
}

// chunkedEnd returns the length of the chunked body b begins with, its
// trailer section included, or -1 while it is not all there.
func chunkedEnd(b []byte) (int, error) {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return -1, nil
		}
		line := bytes.TrimRight(b[off:off+i], "\r")
		if semi := bytes.IndexByte(line, ';'); semi >= 0 {
			line = line[:semi]
		}
		line = bytes.TrimSpace(line)
		size := 0
		if len(line) == 0 {
			return -1, errors.New("malformed chunked encoding: empty chunk size")
		}
		for _, d := range line {
			var v int
			switch {
			case '0' <= d && d <= '9':
				v = int(d - '0')
			case 'a' <= d && d <= 'f':
				v = int(d-'a') + 10
			case 'A' <= d && d <= 'F':
				v = int(d-'A') + 10
			default:
				return -1, fmt.Errorf("malformed chunked encoding: chunk size %q", line)
			}
			size = size*16 + v
			if size > MaxLoopResponse {
				return -1, nil // not to be held: streamed
			}
		}
		off += i + 1
		if size == 0 {
			// The trailer section ends with an empty line.
			for {
				j := bytes.IndexByte(b[off:], '\n')
				if j < 0 {
					return -1, nil
				}
				line := b[off : off+j]
				off += j + 1
				if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
					return off, nil
				}
			}
		}
		if len(b)-off < size+1 {
			return -1, nil
		}
		off += size
		// The chunk's CRLF (or LF).
		if b[off] == '\r' {
			if len(b)-off < 2 {
				return -1, nil
			}
			off++
		}
		if b[off] != '\n' {
			return -1, errors.New("malformed chunked encoding: no line end after a chunk")
		}
		off++
	}
}
