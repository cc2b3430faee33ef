package listener

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/evloop"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// The event-loop HTTP/1.1 server (Options.EventLoops). A plain HTTP/1.x
// connection is owned by one of the Manager's loops instead of a
// goroutine: the loop reads its requests as they arrive, and forwards each
// with forward.ServeAsync over the loop's upstream.LoopClient, so that no
// goroutine parks or wakes for a request (docs/performance-log.md, round
// 18). It serves the common request: no body, no upgrade, a chain without
// filters, a cluster the LoopClient can reach. The first request of a
// connection that is not one of those hands the connection, bytes read so
// far included, to the goroutine server (serveH1) for good.
//
// One difference from the goroutine server a client can see: a client that
// ends its side of the connection while its request is upstream is taken
// to be gone, as Envoy takes it (the exchange upstream ends, nothing is
// answered); the goroutine server notices only when it writes the answer.
// A request that arrives together with the end of its client's side is
// still served.

// loops are a Manager's event loops.
type loops struct {
	ls   []*evLoop
	next atomic.Uint32
}

// evLoop is one loop with its upstream client and request parser.
type evLoop struct {
	loop   *evloop.Loop
	client *upstream.LoopClient
	br     *bufio.Reader
	src    bytes.Reader
	// served and handedOff count the requests the loop served and the
	// connections it gave the goroutine server (Manager.Stats).
	served, handedOff atomic.Uint64
	// rbuf is where a connection with nothing pending reads into: a
	// request that arrives whole is served from it, and only what is left
	// over is copied to the connection's own buffer, so that an idle
	// connection holds no buffer.
	rbuf []byte
}

// rbufSize is the size of a loop's shared read buffer.
const rbufSize = 64 << 10

// startLoops starts n loops, and makes sure the process has a P for each
// and one more (see package evloop).
func (m *Manager) startLoops(n int) error {
	if err := LoopsSupported(); err != nil {
		return err
	}
	// Set explicitly even when it is high enough: that also stops the
	// runtime from lowering it later (to a changed CPU affinity or cgroup
	// limit), which would leave the rest of the proxy no P.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), n+1))
	ls := &loops{}
	for range n {
		l, err := evloop.New()
		if err != nil {
			for _, el := range ls.ls {
				el.loop.Close()
			}
			return err
		}
		el := &evLoop{loop: l, client: upstream.NewLoopClient(l), br: bufio.NewReaderSize(nil, maxHeaderBytes+4<<10), rbuf: make([]byte, rbufSize)}
		ls.ls = append(ls.ls, el)
		go func() {
			if err := l.Run(); err != nil {
				// Its connections would hang, and the shutdown that
				// waits for them: let the supervisor start anew.
				m.log.Error("event loop stopped", "err", err)
				panic(fmt.Sprintf("event loop stopped: %v", err))
			}
		}()
	}
	m.loops = ls
	return nil
}

// LoopsSupported says why this process cannot run event loops, or nil.
func LoopsSupported() error {
	if strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		// A stop-the-world reaches a waiting loop only through the
		// preemption signal; without it the process could stall until
		// the loop's next event.
		return errors.New("event loops need the runtime's asynchronous preemption, which GODEBUG=asyncpreemptoff=1 turns off")
	}
	return nil
}

// loopStats adds the loops' counters to st.
func (m *Manager) loopStats(st *Stats) {
	if m.loops == nil {
		return
	}
	st.EventLoops = len(m.loops.ls)
	for _, el := range m.loops.ls {
		st.EventLoopRequests += el.served.Load()
		st.EventLoopHandoffs += el.handedOff.Load()
	}
}

// stopLoops closes the loops once the sockets have stopped.
func (m *Manager) stopLoops() {
	if m.loops == nil {
		return
	}
	for _, el := range m.loops.ls {
		el.loop.Post(el.client.CloseIdle)
		el.loop.Close()
		<-el.loop.Done()
	}
}

// adopt gives c, a plain connection of an HTTP/1.x filter chain (pending:
// bytes a listener filter read from it), to a loop. It returns false, and
// c is the caller's still, when the Manager runs no loops or c cannot be
// taken from Go's poller.
func (s *socket) adopt(c net.Conn, pending []byte, info *connInfo) bool {
	ls := s.m.loops
	if ls == nil {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	rc.Control(func(f uintptr) {
		nfd, err := dupCloexec(int(f))
		if err == nil {
			fd = nfd
		}
	})
	if fd < 0 {
		return false
	}
	remote := c.RemoteAddr().String()
	tc.Close() // the duplicate keeps the socket; Go's poller forgets it
	el := ls.ls[int(ls.next.Add(1))%len(ls.ls)]
	ec := &evConn{s: s, el: el, fd: fd, info: *info, remote: remote, in: pending}
	ec.ctx = context.WithValue(context.Background(), connInfoKey{}, &ec.info)
	ec.hc = &h1Conn{c: evCloser{ec}, cancel: ec.abortFromOutside}
	ec.hc.idle.Store(true)
	ec.w.conn = ec
	ec.w.header = make(http.Header, 8)
	for i := range ec.timers {
		k := i
		ec.timers[i].F = func() { ec.timer(k) }
	}
	ec.idleT.F = ec.idleExpired
	ec.moreT.F = ec.more
	if !s.h1.add(ec.hc) {
		syscall.Close(fd)
		return true
	}
	if !el.loop.Post(ec.start) {
		syscall.Close(fd)
		s.h1.remove(ec.hc)
	}
	return true
}

func dupCloexec(fd int) (int, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

// evConn is a downstream HTTP/1.x connection served by a loop. Everything
// but adopt's set-up runs on the loop's goroutine.
type evConn struct {
	s      *socket
	el     *evLoop
	fd     int
	info   connInfo
	remote string
	ctx    context.Context
	hc     *h1Conn // in s.h1, for shutdown
	// in holds what arrived and is not yet served: in the loop's rbuf
	// while a readiness is handled (shared), else in a buffer of the
	// connection's own, or nil. out holds what could not be sent yet.
	in     []byte
	shared bool
	out    []byte
	sent   int
	// served counts the requests served, eof says the client half-closed,
	// closeAfter that the connection ends once out is sent.
	served     int
	scanned    int  // how far in a scan for the end of a head got (h1.HeadEndFrom)
	arriving   bool // a request's head is arriving: the connection is busy
	paused     bool // read stopped with in full (see read)
	eof        bool
	closeAfter bool
	closed     bool

	w      h1Writer
	x      chain.Exchange
	as     *forward.Async // the request in flight, nil when none
	xch    upstream.LoopExchange
	timers [2]evloop.Timer
	idleT  evloop.Timer
	moreT  evloop.Timer // serves on after a turn's maxPerTurn requests
	// idleAt is when the connection last became idle.
	idleAt time.Time
	// deadlineAt is when the route's timeout of the request in flight
	// passes (zero: none).
	deadlineAt time.Time
	// streaming is set once a streamed response took the connection off
	// the loop (see Stream); serveStream's goroutine owns it then, and
	// streamKeep says whether it may serve another request.
	streaming  bool
	streamKeep bool
	// cancelled is set by the shutdown's cancel, from another goroutine.
	cancelled atomic.Bool
}

var _ forward.AsyncIO = (*evConn)(nil)

// start registers the connection with the loop.
func (c *evConn) start() {
	if c.closed {
		return // a shutdown closed it before it started
	}
	defer c.recover()
	defer c.unshare()
	if err := c.el.loop.Add(c.fd, c); err != nil {
		c.s.m.log.Debug("event loop refused a connection", "err", err)
		syscall.Close(c.fd)
		c.closed = true
		c.s.h1.remove(c.hc)
		return
	}
	c.hc.rr.SetContext(c.ctx)
	c.armIdle()
	c.serveNext()
}

// Ready handles the socket's readiness.
func (c *evConn) Ready(ev uint32) {
	defer c.recover()
	defer c.unshare()
	if ev&(evloop.In|evloop.RDHup|evloop.Hup|evloop.Err) != 0 && !c.eof {
		if len(c.in) == 0 {
			c.in, c.shared = c.el.rbuf[:0], true
		}
		if !c.read(ev&(evloop.RDHup|evloop.Hup|evloop.Err) != 0) {
			return
		}
	}
	if c.sent < len(c.out) {
		if !c.flush() {
			return
		}
	}
	if c.as != nil {
		if c.eof && !c.closeAfter {
			// The client went away while its request was upstream.
			c.as.Abort()
			c.close()
		}
		return
	}
	c.serveNext()
}

// unshare leaves the loop's read buffer: what is left of in moves to a
// buffer of the connection's own.
func (c *evConn) unshare() {
	if !c.shared {
		return
	}
	c.shared = false
	if len(c.in) == 0 || c.closed {
		c.in = nil
		return
	}
	c.in = append(make([]byte, 0, max(len(c.in), 1<<10)), c.in...)
}

// read takes what arrived; false when the connection failed and closed.
// A short read means the socket is empty (a readiness will tell of more),
// unless the peer has closed (hup): its end of stream came with the same
// readiness, and is read now or never. (hup also makes read go on to
// EAGAIN after a pause.)
func (c *evConn) read(hup bool) bool {
	for {
		if len(c.in) == cap(c.in) {
			if len(c.in) >= maxHeaderBytes+64<<10 {
				// A client that sends far ahead of the answers: stop
				// reading until the requests buffered are served, and
				// then read on (no readiness will tell: it was told).
				c.paused = true
				return true
			}
			if c.shared {
				c.unshare()
			}
			c.in = append(c.in, make([]byte, max(4<<10, len(c.in)))...)[:len(c.in)]
		}
		n, errno := evloop.Read(c.fd, c.in[len(c.in):cap(c.in)])
		switch {
		case errno == syscall.EAGAIN:
			return true
		case errno != 0:
			c.abort()
			return false
		case n == 0:
			c.eof = true
			return true
		}
		c.in = c.in[:len(c.in)+n]
		if len(c.in) < cap(c.in) && !hup {
			return true
		}
	}
}

// serveNext serves the requests that arrived whole, one at a time, while
// none is upstream and the answers so far are sent.
func (c *evConn) serveNext() {
	for served := 0; !c.closed && c.as == nil && c.sent == len(c.out); served++ {
		if c.closeAfter {
			c.close()
			return
		}
		if served == maxPerTurn && len(c.in) > 0 {
			// A client that sends many requests at once has its turn,
			// then the loop's other connections theirs.
			c.el.loop.Schedule(&c.moreT, 0)
			return
		}
		if c.paused && len(c.in) < maxHeaderBytes {
			c.paused = false
			if !c.read(true) {
				return
			}
		}
		if len(c.in) == 0 {
			if !c.shared {
				c.in = nil // an idle connection keeps no buffer
			}
			if c.eof {
				c.close()
				return
			}
			if !c.s.h1.setIdle(c.hc, true) {
				c.close()
				return
			}
			c.armIdle()
			return
		}
		// Busy from a request's first byte, as the goroutine server is: a
		// shutdown lets a request that is still arriving finish.
		if !c.arriving {
			if !c.s.h1.setIdle(c.hc, false) {
				c.close()
				return
			}
			c.arriving = true
		}
		if c.served == 0 && bytes.HasPrefix([]byte(h2Preface), c.in[:min(len(c.in), len(h2Preface))]) {
			if len(c.in) < len(h2Preface) && !c.eof {
				return // maybe the HTTP/2 preface: wait for the rest
			}
			c.handoff()
			return
		}
		n, next := h1.HeadEndFrom(c.in, c.scanned)
		c.scanned = next
		if n < 0 {
			if len(c.in) > maxHeaderBytes {
				c.badRequest(errHeadTooLarge)
				return
			}
			if c.eof {
				c.close()
			}
			return
		}
		if !c.serveOne(n) {
			return
		}
	}
}

// maxPerTurn is how many requests a connection has served in one turn of
// the loop before the loop's other connections have theirs.
const maxPerTurn = 16

// more serves on after a turn (moreT).
func (c *evConn) more() {
	defer c.recover()
	c.serveNext()
}

// serveOne serves the request whose head is in[:n]: on the loop when it is
// one the loop serves, else by handing the connection off. It returns false
// when the connection was handed off or closed.
func (c *evConn) serveOne(n int) bool {
	el := c.el
	el.src.Reset(c.in[:n])
	el.br.Reset(&el.src)
	rr := &c.hc.rr
	req, err := rr.ReadRequest(el.br)
	el.br.Reset(nil)
	if err == nil && req.ProtoMajor != 1 {
		err = fmt.Errorf("unsupported protocol %s", req.Proto)
	}
	if err == nil && req.ProtoMinor >= 1 && req.Host == "" && req.Header["Host"] == nil {
		err = errors.New("missing required Host header")
	}
	if err != nil {
		c.badRequest(err)
		return false
	}
	fwd, fc, ok := c.loopServes(req)
	if !ok {
		c.handoff()
		return false
	}
	req.RemoteAddr = c.remote
	c.w.reset(req)
	c.w.closeConn = c.s.h1.stopping.Load()
	c.x = chain.Exchange{W: &c.w, R: req, Listener: c.info.listener, RouteConfig: fc.RouteConfig, OriginalDst: c.info.origDst}
	c.x.Route, c.x.RouteErr = fc.Routes.Select(req)
	as, ok := fwd.ServeAsync(&c.x, c, upstream.LoopOK)
	if !ok {
		c.x = chain.Exchange{}
		c.handoff()
		return false
	}
	c.in = c.in[n:] // what came after the head: the next requests
	c.scanned, c.arriving = 0, false
	c.served++
	el.served.Add(1)
	if as == nil {
		c.Finish(true)
		return !c.closed
	}
	c.as = as
	return true
}

// loopServes reports whether req is one the loop serves, with the chain's
// forwarder and the filter chain.
func (c *evConn) loopServes(req *http.Request) (*forward.Forwarder, *model.FilterChain, bool) {
	if req.Body != http.NoBody || req.ContentLength != 0 || len(req.TransferEncoding) > 0 ||
		len(req.Header["Upgrade"]) > 0 || len(req.Header["Expect"]) > 0 {
		return nil, nil, false
	}
	_, fc := c.s.selectChain(&c.info)
	if fc == nil || !fc.HTTP() || fc.TLS != nil {
		return nil, nil, false
	}
	fwd, ok := fc.Chain.(*forward.Forwarder)
	if !ok {
		return nil, nil, false
	}
	return fwd, fc, true
}

// Send is forward.AsyncIO's: the loop's client sends it.
func (c *evConn) Send(ep *upstream.Endpoint, req *http.Request, timeout time.Duration) {
	c.el.client.Send(ep, req, timeout, c, &c.xch)
}

// Response is upstream.LoopWaiter's: the attempt's outcome.
func (c *evConn) Response(resp *http.Response, err error) {
	defer c.recover()
	if c.as != nil {
		c.as.Done(resp, err)
	}
}

// Stream is upstream.LoopWaiter's: a response whose body is a stream. Its
// head decides on the loop whether it is retried; if not, the exchange
// goes on a goroutine, which reads the body as it comes and sends it, and
// then serves the connection as the goroutine server (the loop lets go of
// it).
func (c *evConn) Stream(head *http.Response, up net.Conn) {
	defer c.recover()
	as := c.as
	if as == nil {
		up.Close()
		return
	}
	if as.Head(head) {
		up.Close() // retried: the back-off is armed
		return
	}
	deadline := c.deadlineAt
	c.StopTimer(forward.TimerDeadline)
	c.StopTimer(forward.TimerBackoff)
	pending := c.in
	if c.shared {
		pending = append([]byte(nil), pending...)
		c.shared = false
	}
	c.in = nil
	req := c.w.req
	down := c.takeOff()
	if down == nil {
		c.s.h1.remove(c.hc)
		up.Close()
		as.Abort()
		return
	}
	c.streaming = true
	c.el.handedOff.Add(1)
	// Shutdown waits for the stream, and ends it when its time is up
	// (at once if that came while the connection was changing hands).
	cancel := func() { up.Close(); down.Close() }
	c.s.h1.repoint(c.hc, down, cancel)
	if c.cancelled.Load() {
		cancel()
	}
	go c.serveStream(as, req, up, down, pending, deadline)
}

// serveStream sends a streamed response (see Stream), then serves the rest
// of the connection on the goroutine server.
func (c *evConn) serveStream(as *forward.Async, req *http.Request, up, down net.Conn, pending []byte, deadline time.Time) {
	defer up.Close()
	if !deadline.IsZero() {
		up.SetReadDeadline(deadline) // the route's timeout covers the body
	}
	c.w.conn = down
	ok := func() (ok bool) {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					c.s.m.log.Error("panic serving a request", "listener", c.info.listener, "panic", p)
				}
			}
		}()
		br := bufio.NewReader(up)
		var rr h1.ResponseReader
		for {
			resp, err := rr.ReadResponse(br, req)
			if err != nil {
				// It parsed on the loop: the connection failed.
				as.Abort()
				return false
			}
			if resp.StatusCode >= 200 {
				as.Body(resp)
				return c.streamKeep
			}
		}
	}()
	if !ok {
		c.s.h1.remove(c.hc)
		c.w.release()
		down.Close()
		return
	}
	// The connection carries on with the goroutine server, on a goroutine
	// of its own: this one's start holds c, which is no longer needed.
	info := c.info
	go c.s.serveH1From(rawIO(&replayConn{Conn: down, pending: pending}), &info, &handover{prev: c.hc, busy: len(pending) > 0})
}

func (c *evConn) Cancel() {
	if !c.streaming {
		c.el.client.Cancel(&c.xch)
	}
}

func (c *evConn) SetTimer(k int, d time.Duration) {
	if c.streaming {
		return
	}
	if k == forward.TimerDeadline {
		c.deadlineAt = c.el.loop.Now().Add(d)
	}
	c.el.loop.Schedule(&c.timers[k], d)
}

func (c *evConn) StopTimer(k int) {
	if c.streaming {
		return
	}
	if k == forward.TimerDeadline {
		c.deadlineAt = time.Time{}
	}
	c.el.loop.Stop(&c.timers[k])
}

func (c *evConn) timer(k int) {
	defer c.recover()
	if c.as != nil {
		c.as.Timer(k)
	}
}

// Finish ends the request in flight: when answered, it completes the
// response in w and sends it (and serves what came next); when abandoned,
// the connection closes with nothing more written.
func (c *evConn) Finish(answered bool) {
	if c.streaming {
		// On serveStream's goroutine: the response goes out on its own
		// connection, and serveStream carries on.
		if !answered {
			c.streamKeep = false
			return
		}
		keep := c.w.finish()
		err := c.w.buf().Flush()
		c.w.release()
		c.streamKeep = keep && err == nil && !c.closeAfter
		return
	}
	c.as = nil
	c.x = chain.Exchange{}
	if !answered {
		c.w.release()
		c.w.req = nil
		c.close()
		return
	}
	keep := c.w.finish()
	err := c.w.buf().Flush()
	c.w.release()
	if err != nil || !keep {
		c.closeAfter = true
	}
	if !reuseOK(c.w.req) {
		c.hc.rr.Detach()
	}
	c.w.req = nil
	if c.flush() {
		c.serveNext()
	}
}

// Write is where w's buffer goes: to the socket, and what it does not
// take to out, sent by flush when the socket has room.
func (c *evConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed // (the descriptor may be another's by now)
	}
	total := len(p)
	if c.sent == len(c.out) {
		for len(p) > 0 {
			n, errno := evloop.Write(c.fd, p)
			if errno != 0 {
				if errno != syscall.EAGAIN {
					return 0, errno
				}
				break
			}
			p = p[n:]
		}
	}
	c.out = append(c.out, p...)
	return total, nil
}

// flush sends what is left of out; false when the connection failed.
func (c *evConn) flush() bool {
	if c.closed {
		return false
	}
	for c.sent < len(c.out) {
		n, errno := evloop.Write(c.fd, c.out[c.sent:])
		if errno == syscall.EAGAIN {
			return true // told when there is room
		}
		if errno != 0 {
			c.abort()
			return false
		}
		c.sent += n
	}
	c.out, c.sent = nil, 0 // an idle connection keeps no buffer
	return true
}

// handoff gives the connection, with what was read and not served, to the
// goroutine server.
func (c *evConn) handoff() {
	pending := c.in
	if c.shared {
		pending = append([]byte(nil), pending...)
		c.shared = false
	}
	c.in = nil
	nc := c.takeOff()
	if nc == nil {
		c.s.h1.remove(c.hc)
		return
	}
	c.el.handedOff.Add(1)
	info := c.info
	go c.s.serveH1From(rawIO(&replayConn{Conn: nc, pending: pending}), &info, &handover{prev: c.hc, busy: true})
}

// takeOff takes the connection from the loop and returns it as a net.Conn
// of Go's poller (nil when that fails: it is closed then). Its entry stays
// among the socket's connections: the caller re-points it at the
// connection returned (h1Conns.repoint, replace) or removes it.
func (c *evConn) takeOff() net.Conn {
	el := c.el
	el.loop.Remove(c.fd)
	el.loop.Stop(&c.idleT)
	el.loop.Stop(&c.moreT)
	c.closed = true
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		c.s.m.log.Debug("cannot hand a connection to the goroutine server", "err", err)
		return nil
	}
	return nc
}

// badRequest answers a request that cannot be parsed, and closes the
// connection as the goroutine server does (badRequest there), on a
// goroutine: it lingers for the client to read the answer.
func (c *evConn) badRequest(err error) {
	nc := c.takeOff()
	hc := c.hc
	if nc == nil {
		c.s.h1.remove(hc)
		return
	}
	// It stays among the socket's connections while it lingers.
	c.s.h1.repoint(hc, nc, func() { nc.Close() })
	go func() {
		defer c.s.h1.remove(hc)
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second)) // a client that does not read
		bw := h1WriterPool.Get().(*bufio.Writer)
		bw.Reset(nc)
		badRequest(nc, bw, err)
		bw.Reset(nil)
		h1WriterPool.Put(bw)
		nc.Close()
	}()
}

// armIdle arms the idle timeout, unless it is armed: it counts from idleAt,
// which each request moves (see idleExpired).
func (c *evConn) armIdle() {
	c.idleAt = c.el.loop.Now()
	if !c.idleT.Scheduled() {
		c.el.loop.Schedule(&c.idleT, c.s.m.opts.IdleTimeout)
	}
}

// idleExpired closes the connection when it has been idle for the idle
// timeout; else it re-arms the timer for the rest of it.
func (c *evConn) idleExpired() {
	idle := c.s.m.opts.IdleTimeout
	since := c.el.loop.Now().Sub(c.idleAt)
	switch {
	case c.as != nil || c.sent < len(c.out):
		c.el.loop.Schedule(&c.idleT, idle)
	case since < idle:
		c.el.loop.Schedule(&c.idleT, idle-since)
	default:
		c.close()
	}
}

// abort ends the connection at once, with any request in flight.
func (c *evConn) abort() {
	if c.closed {
		return // (handed off: no longer the loop's)
	}
	if as := c.as; as != nil {
		as.Abort() // Finish(false) closes the connection
	}
	c.close()
}

// close closes the connection.
func (c *evConn) close() {
	if c.closed {
		return
	}
	c.closed = true
	el := c.el
	el.loop.Stop(&c.idleT)
	el.loop.Stop(&c.moreT)
	el.loop.Remove(c.fd)
	syscall.Close(c.fd)
	c.s.h1.remove(c.hc)
}

// recover closes the connection when serving it panicked (a bug, or a
// handler's abort), as serveOne does for the goroutine server.
//
// A request in flight that the panic left is abandoned (Abort); one that
// ended in the panic (Async.Body releases itself) has cleared c.as through
// Finish.
func (c *evConn) recover() {
	if p := recover(); p != nil {
		if p != http.ErrAbortHandler {
			c.s.m.log.Error("panic serving a request", "listener", c.info.listener, "panic", p)
		}
		if as := c.as; as != nil && !c.streaming {
			func() {
				defer func() { recover() }() // a second panic: leave it
				as.Abort()
			}()
		}
		c.as = nil
		if !c.streaming {
			c.close()
		}
	}
}

// abortFromOutside is the shutdown's cancel: it ends the connection, from
// the loop.
func (c *evConn) abortFromOutside() {
	c.cancelled.Store(true)
	c.el.loop.Post(func() {
		defer c.recover()
		c.abort()
	})
}

// evCloser lets shutdown close a loop's connection (from another
// goroutine) through h1Conns.
type evCloser struct{ c *evConn }

func (e evCloser) Close() error {
	e.c.el.loop.Post(func() {
		if e.c.as == nil {
			e.c.close()
		}
	})
	return nil
}

func (evCloser) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (evCloser) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (evCloser) LocalAddr() net.Addr              { return nil }
func (evCloser) RemoteAddr() net.Addr             { return nil }
func (evCloser) SetDeadline(time.Time) error      { return nil }
func (evCloser) SetReadDeadline(time.Time) error  { return nil }
func (evCloser) SetWriteDeadline(time.Time) error { return nil }
