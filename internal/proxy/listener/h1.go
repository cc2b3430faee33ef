package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// The lean HTTP/1.x server. net/http's Server costs, per request, a
// background read goroutine (started after the request is read, stopped
// before the response is finished) and the wake-ups that go with it; on a
// sidecar handling small requests those dominate the CPU it uses beyond the
// system calls themselves. serveH1 serves a connection on one goroutine
// instead: read a request, run the chain, write the response with one
// write, repeat. Connections that start with the HTTP/2 preface (h2c with
// prior knowledge) go to the socket's http.Server. Requests are parsed by
// package h1, with net/http's rules, into a Request, Header, URL and body
// reader that the connection reuses for its next request (see reuseOK), and
// responses are written without allocating.
//
// Differences from net/http a user could notice: a client that goes away
// while its request is upstream is noticed when the response is written
// (or at the route timeout), not at once; Content-Type is never sniffed (a
// proxy passes the upstream's headers through as they are).

// maxHeaderBytes bounds a request's head, as http.DefaultMaxHeaderBytes
// does for net/http.
const maxHeaderBytes = http.DefaultMaxHeaderBytes

// maxDrain is how much of a request body the handler did not read is
// discarded so that the connection can be kept alive.
const maxDrain = 256 << 10

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	// pendPool holds the buffers a response's body is held back in.
	pendPool = sync.Pool{New: func() any { return new([pendMax]byte) }}
)

// limitedConn reads from a connection, failing with errHeadTooLarge once
// more than remain bytes were read while reading a request head.
type limitedConn struct {
	net.Conn
	remain int64 // < 0: unlimited
}

var errHeadTooLarge = errors.New("request head too large")

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.remain < 0 {
		return c.Conn.Read(p)
	}
	if c.remain == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.Conn.Read(p)
	c.remain -= int64(n)
	return n, err
}

// h1Conns tracks the lean server's connections of a socket so that stop can
// close the idle ones at once and wait for the busy ones.
type h1Conns struct {
	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	closing bool
	// stopping mirrors closing for the request path, which reads it without
	// the lock.
	stopping atomic.Bool
	// killed is set once the shutdown's deadline closed every connection
	// left (see replace).
	killed bool
	wg     sync.WaitGroup
}

type h1Conn struct {
	c      net.Conn
	idle   atomic.Bool // waiting for a request
	cancel context.CancelFunc
	// rr reads the connection's requests. It lives here, on the heap with
	// the connection, not in serveH1's frame, where its 2.5 KB sat under
	// every call a request makes and brought the goroutine's stack nearer
	// to doubling (8 to 16 KB).
	rr h1.RequestReader
}

func (cs *h1Conns) add(hc *h1Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closing {
		return false
	}
	if cs.conns == nil {
		cs.conns = map[*h1Conn]struct{}{}
	}
	cs.conns[hc] = struct{}{}
	cs.wg.Add(1)
	return true
}

// replace puts hc in place of old, a connection still counted, whatever
// the state of the shutdown; if the shutdown has already closed what was
// left, hc is closed at once too.
func (cs *h1Conns) replace(old, hc *h1Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.conns, old)
	cs.conns[hc] = struct{}{}
	if cs.killed {
		hc.cancel()
		hc.c.Close()
	}
}

// repoint makes hc's entry close c and call cancel from now on (an event
// loop's connection that changed hands); as replace, at once if the
// shutdown has closed what was left.
func (cs *h1Conns) repoint(hc *h1Conn, c net.Conn, cancel func()) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	hc.c, hc.cancel = c, cancel
	if cs.killed {
		cancel()
		c.Close()
	}
}

func (cs *h1Conns) remove(hc *h1Conn) {
	cs.mu.Lock()
	delete(cs.conns, hc)
	cs.mu.Unlock()
	cs.wg.Done()
}

// setIdle records whether hc waits for a request; it returns false when the
// server is closing, in which case the connection must end. It takes no
// lock: it runs twice per request. Against shutdown, which sets stopping
// before it looks at idle, the store-then-load order means that either the
// connection sees stopping or shutdown sees the connection idle (and
// closes it), never neither.
func (cs *h1Conns) setIdle(hc *h1Conn, idle bool) bool {
	hc.idle.Store(idle)
	return !cs.stopping.Load()
}

// shutdown closes idle connections, lets busy ones finish their request,
// and closes whatever is left when ctx ends.
func (cs *h1Conns) shutdown(ctx context.Context) error {
	cs.mu.Lock()
	cs.closing = true
	cs.stopping.Store(true)
	for hc := range cs.conns {
		if hc.idle.Load() {
			hc.c.Close()
		}
	}
	cs.mu.Unlock()
	n, err := drainOrClose(ctx, &cs.wg, func() int {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		cs.killed = true
		for hc := range cs.conns {
			hc.cancel()
			hc.c.Close()
		}
		return len(cs.conns)
	})
	if err != nil {
		return fmt.Errorf("closed %d HTTP/1.1 connections with requests in flight: %w", n, err)
	}
	return nil
}

// connContext is a lean connection's context, the context of each of its
// requests. It ends with the connection (or at shutdown), and then
// interrupts the upstream exchange in flight (upstream.Interrupter), which
// context.AfterFunc would do at the cost of two allocations and its
// parent's lock per request.
type connContext struct {
	context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	ended   bool
	watched interface{ Interrupt() }
}

var _ upstream.Interrupter = (*connContext)(nil)

func newConnContext(parent context.Context) *connContext {
	c := &connContext{}
	c.Context, c.cancel = context.WithCancel(parent)
	return c
}

// Watch implements upstream.Interrupter.
func (c *connContext) Watch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.watched != nil {
		return false
	}
	c.watched = x
	return true
}

// Unwatch implements upstream.Interrupter.
func (c *connContext) Unwatch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched == x {
		c.watched = nil
	}
	return !c.ended
}

// end cancels the context and interrupts what it watches.
func (c *connContext) end() {
	c.cancel()
	c.mu.Lock()
	c.ended = true
	x := c.watched
	c.watched = nil
	c.mu.Unlock()
	if x != nil {
		x.Interrupt()
	}
}

// serveH1 serves HTTP/1.x requests on c until the client closes it, a
// response cannot be kept alive, the idle timeout passes or the socket
// stops.
func (s *socket) serveH1(c net.Conn, info *connInfo) { s.serveH1From(c, info, nil) }

// handover is a connection's entry among the socket's connections, which an
// event loop hands over with the connection; busy says the connection
// comes with a request the loop accepted.
type handover struct {
	prev *h1Conn
	busy bool
}

// serveH1From is serveH1 for a connection an event loop hands over (ho not
// nil), often with a request it has read: the connection takes over ho's
// entry in the socket's connections, so that a shutdown begun meanwhile
// lets that request finish, as any busy connection's. (ho is cleared once
// taken: the goroutine's start holds it for as long as the connection
// lasts.)
func (s *socket) serveH1From(c net.Conn, info *connInfo, ho *handover) {
	ctx := newConnContext(context.WithValue(context.Background(), connInfoKey{}, info))
	cancel := ctx.end
	hc := &h1Conn{c: c, cancel: cancel}
	handed := ho != nil && ho.busy
	hc.idle.Store(!handed)
	if ho != nil {
		s.h1.replace(ho.prev, hc)
		ho.prev = nil
	} else if !s.h1.add(hc) {
		cancel()
		c.Close()
		return
	}
	lc := &limitedConn{Conn: c, remain: -1}
	br := h1ReaderPool.Get().(*bufio.Reader)
	br.Reset(lc)
	// The response writer takes its buffers from pools while it writes a
	// response and gives them back after: a connection that waits for its
	// next request, or for the upstream's answer, holds only br.
	w := &h1Writer{conn: c, header: make(http.Header, 8)}
	handedOff := false
	defer func() {
		cancel()
		if !handedOff {
			c.Close()
		}
		br.Reset(nil)
		h1ReaderPool.Put(br)
		w.release()
		s.h1.remove(hc)
	}()
	remote := c.RemoteAddr().String()
	// The request (its Header, URL and Body) is read into the same objects
	// for every request of the connection; see reuseOK.
	rr := &hc.rr
	rr.SetContext(ctx)
	idle := s.m.opts.IdleTimeout
	// The idle timeout is re-armed only once it has run down by a 64th of
	// its length, not for every request of a busy connection (each re-arm
	// moves a runtime timer): a connection may be closed that much before
	// it has been idle for the whole timeout.
	var deadline time.Time
	for first := true; ; first = false {
		if now := time.Now(); deadline.Sub(now) < idle-idle/64 {
			deadline = now.Add(idle)
			c.SetReadDeadline(deadline)
		}
		if _, err := br.Peek(1); err != nil {
			return
		}
		if first && startsH2(br) {
			// h2c with prior knowledge: package h2 serves it, with
			// deadlines of its own (not the idle one set above).
			c.SetReadDeadline(time.Time{})
			buf, _ := br.Peek(br.Buffered())
			handedOff = true
			go s.serveH2(&replayConn{Conn: c, pending: append([]byte(nil), buf...)}, c, *info)
			return
		}
		if !s.h1.setIdle(hc, false) && !(first && handed) {
			// (A request a loop handed over was accepted before the
			// shutdown: it is served, and the connection closes after.)
			return
		}
		lc.remain = maxHeaderBytes + int64(br.Buffered())
		req, err := rr.ReadRequest(br)
		lc.remain = -1
		if err == nil && req.ProtoMajor != 1 {
			err = fmt.Errorf("unsupported protocol %s", req.Proto)
		}
		if err == nil && req.ProtoMinor >= 1 && req.Host == "" && req.Header["Host"] == nil {
			err = errors.New("missing required Host header")
		}
		if err != nil {
			badRequest(c, w.buf(), err)
			return
		}
		req.RemoteAddr = remote
		if req.Body != http.NoBody && len(req.Header["Expect"]) > 0 && strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			bw := w.buf()
			bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			err := bw.Flush()
			w.release()
			if err != nil {
				return
			}
		}
		w.reset(req)
		w.closeConn = s.h1.stopping.Load() // tell the client not to reuse it
		if !s.serveOne(w, req, info) {
			return // the handler aborted the response
		}
		keep := w.finish()
		err = w.bw.Flush()
		w.release()
		if err != nil || !keep {
			return
		}
		// Discard what the handler left of the request body (a body that
		// was read to its end and closed, as the upstream client does with
		// a body it sent, counts as ended).
		if !rr.DiscardBody(maxDrain) {
			return
		}
		if !reuseOK(req) {
			rr.Detach()
		}
		if !s.h1.setIdle(hc, true) {
			return
		}
	}
}

// reuseOK reports whether nothing can use req after it was served, so
// that the next request of the connection may be read into the same
// objects. The chain keeps no reference to a request past Serve, and the
// lean upstream pool sends a request (and its body) before it returns;
// but a request whose body is too large or of unknown length for the lean
// pool goes through net/http's Transport, which may still read the body
// (and the header) on its own goroutine after the response arrived.
func reuseOK(req *http.Request) bool {
	return req.ContentLength >= 0 && req.ContentLength <= upstream.MaxLeanBody
}

// serveOne runs the chain for one request; it returns false when the
// handler aborted the response (panic(http.ErrAbortHandler)) and the
// connection must be closed.
func (s *socket) serveOne(w *h1Writer, req *http.Request, info *connInfo) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			if p != http.ErrAbortHandler {
				s.m.log.Error("panic serving a request", "listener", info.listener, "panic", p)
			}
		}
	}()
	s.serve(w, req, info)
	return true
}

// startsH2 reports whether the connection starts with the HTTP/2
// prior-knowledge preface, reading more only while the bytes so far are a
// prefix of it.
func startsH2(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	if n := min(len(b), len(h2Preface)); string(b[:n]) != h2Preface[:n] {
		return false
	}
	b, _ = br.Peek(len(h2Preface))
	return string(b) == h2Preface
}

// badRequest answers a request that cannot be parsed and closes the
// connection gracefully: half-close, then discard what the client still
// sends for a moment, so that it reads the answer instead of a reset.
func badRequest(c net.Conn, bw *bufio.Writer, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	code := http.StatusBadRequest
	if errors.Is(err, errHeadTooLarge) {
		code = http.StatusRequestHeaderFieldsTooLarge
	}
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%d %s: %v\n", code, http.StatusText(code), code, http.StatusText(code), err)
	if bw.Flush() != nil {
		return
	}
	closeWrite(c)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c, 1<<20)
}

// h1Writer is the lean server's http.ResponseWriter. The body is held back
// (up to pendMax bytes) until the handler returns, flushes or writes more,
// so that a response without a Content-Length gets one and goes out in a
// single write; past that the body is sent chunked (HTTP/1.1) or until the
// connection closes (HTTP/1.0).
type h1Writer struct {
	conn io.Writer
	// bw is taken from h1WriterPool when the response starts (see buf),
	// and pendBuf from pendPool when a body is held back; release gives
	// both back.
	bw      *bufio.Writer
	pendBuf *[pendMax]byte
	header  http.Header
	// fields are header fields written after header's (see AdoptFields).
	fields []h1.Field
	req    *http.Request

	status    int  // 0 until WriteHeader
	committed bool // the head is in bw
	chunked   bool
	closeConn bool
	bodyless  bool   // HEAD, 1xx, 204, 304
	pend      []byte // over pendBuf
	err       error
	num       [20]byte // formats numbers (a local array would escape through bw.Write)
}

const pendMax = 2 << 10

var _ http.ResponseWriter = (*h1Writer)(nil)
var _ http.Flusher = (*h1Writer)(nil)

func (w *h1Writer) reset(req *http.Request) {
	clear(w.header)
	clear(w.fields) // let go of the strings
	w.fields = w.fields[:0]
	w.req = req
	w.status = 0
	w.committed, w.chunked, w.closeConn, w.bodyless = false, false, false, false
	w.pend = w.pend[:0]
	w.err = nil
}

func (w *h1Writer) Header() http.Header { return w.header }

// buf returns the buffer the response is written to, taking one from the
// pool for the response's first byte.
func (w *h1Writer) buf() *bufio.Writer {
	if w.bw == nil {
		w.bw = h1WriterPool.Get().(*bufio.Writer)
		w.bw.Reset(w.conn)
	}
	return w.bw
}

// release gives the writer's buffers back once the response was flushed
// (or the connection is done).
func (w *h1Writer) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		h1WriterPool.Put(w.bw)
		w.bw = nil
	}
	if w.pendBuf != nil {
		pendPool.Put(w.pendBuf)
		w.pendBuf, w.pend = nil, nil
	}
}

// hasLength reports whether the handler set a Content-Length, in the
// Header map or among adopted fields.
func (w *h1Writer) hasLength() bool {
	if len(w.header["Content-Length"]) > 0 {
		return true
	}
	for i := range w.fields {
		if w.fields[i].Name == "Content-Length" {
			return true
		}
	}
	return false
}

// AdoptHeader makes h the response's header, in place of the map Header
// returned, which the caller takes: the Forwarder hands over an upstream
// response's map this way instead of copying its fields into the writer's.
func (w *h1Writer) AdoptHeader(h http.Header) { w.header = h }

// AdoptFields adds fields to the response's header, as they are, after
// those of the Header map: the Forwarder passes on an upstream response's
// fields this way when nothing changes them, instead of building a map.
// The writer keeps a copy.
func (w *h1Writer) AdoptFields(fields []h1.Field) {
	w.fields = append(w.fields[:0], fields...)
}

func (w *h1Writer) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return // interim responses are not passed on
	}
	w.status = code
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.committed {
		if len(p) == 0 {
			return 0, nil
		}
		// The body is held back only to learn its length: with a
		// Content-Length set, the head can go into the buffer now.
		if len(w.pend)+len(p) <= pendMax && !w.hasLength() {
			if w.pendBuf == nil {
				w.pendBuf = pendPool.Get().(*[pendMax]byte)
				w.pend = w.pendBuf[:0]
			}
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.commit(-1)
	}
	return w.writeBody(p)
}

func (w *h1Writer) writeBody(p []byte) (int, error) {
	if w.bodyless || len(p) == 0 {
		return len(p), nil
	}
	if w.chunked {
		w.bw.Write(strconv.AppendInt(w.num[:0], int64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	n, err := w.bw.Write(p)
	if w.chunked && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what was written so far (a streamed response).
func (w *h1Writer) Flush() { w.FlushError() }

// FlushError is Flush that reports the write error.
func (w *h1Writer) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(-1)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.buf().Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// commit writes the head; length is the body length when known (the
// handler returned), -1 otherwise. Held-back body bytes follow. The
// headers the server decides (Content-Length, Transfer-Encoding,
// Connection, Date) are written directly rather than set in the handler's
// Header map first, so that a response allocates nothing.
func (w *h1Writer) commit(length int) {
	w.committed = true
	code := w.status
	req := w.req
	w.bodyless = req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	bw := w.buf()
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.num[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	// One pass over the handler's headers writes those the server passes
	// on as they are and sets aside those it may replace.
	var conn, cl, te []string
	hasCL, hasTE, hasDate := false, false, false
	for k, vs := range w.header {
		switch k {
		case "Connection":
			conn = vs
			continue
		case "Content-Length":
			cl, hasCL = vs, len(vs) > 0 // a key without a value sets no length
			continue
		case "Transfer-Encoding":
			te, hasTE = vs, true
			continue
		case "Date":
			hasDate = true
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			// Trailers set as net/http's handlers set them (the
			// Forwarder's, from an upstream's): no header field; a
			// chunked body ends with them (writeTrailers).
			continue
		}
		h1.WriteField(bw, k, vs)
	}
	if len(w.fields) > 0 {
		// The same for adopted fields, setting aside values in slices
		// over arrays of one while one value is all there is.
		var connA, clA, teA [1]string
		fconn, fcl, fte := connA[:0], clA[:0], teA[:0]
		for i := range w.fields {
			f := &w.fields[i]
			switch f.Name {
			case "Connection":
				fconn = append(fconn, f.Value)
				continue
			case "Content-Length":
				fcl = append(fcl, f.Value)
				continue
			case "Transfer-Encoding":
				fte = append(fte, f.Value)
				continue
			case "Date":
				hasDate = true
			}
			h1.WriteLine(bw, f.Name, f.Value)
		}
		conn = merge(conn, fconn)
		cl, hasCL = merge(cl, fcl), hasCL || len(fcl) > 0
		te, hasTE = merge(te, fte), hasTE || len(fte) > 0
	}
	if hasToken(conn, "close") || req.Close {
		w.closeConn = true
	}
	// What replaces the handler's values of these headers, if anything.
	setLength := -1
	switch {
	case code < 200 || code == http.StatusNoContent || code == http.StatusNotModified:
		hasTE = false
		if code != http.StatusNotModified {
			hasCL = false
		}
	case hasCL:
		hasTE = false
	case length >= 0 && !(req.Method == http.MethodHead && length == 0):
		setLength = length
	case req.Method == http.MethodHead:
	case req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeConn = true // HTTP/1.0 without a length: the close ends the body
	}
	setConn := ""
	if !req.ProtoAtLeast(1, 1) && !w.closeConn {
		// An HTTP/1.0 client keeps the connection only when it asked to,
		// which req.Close records: the handler may have removed the
		// Connection header (a proxy drops hop-by-hop headers).
		if !req.Close {
			setConn = "keep-alive"
		} else {
			w.closeConn = true
		}
	}
	if w.closeConn && !hasToken(conn, "close") {
		setConn = "close"
	}
	switch {
	case setLength >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.num[:0], int64(setLength), 10))
		bw.WriteString("\r\n")
	case hasCL:
		h1.WriteField(bw, "Content-Length", cl)
	}
	switch {
	case w.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case hasTE:
		h1.WriteField(bw, "Transfer-Encoding", te)
	}
	if setConn != "" {
		bw.WriteString("Connection: ")
		bw.WriteString(setConn)
		bw.WriteString("\r\n")
	} else {
		h1.WriteField(bw, "Connection", conn)
	}
	if !hasDate {
		bw.WriteString("Date: ")
		bw.Write(httpDate(time.Now()))
		bw.WriteString("\r\n")
	}
	_, err := bw.WriteString("\r\n")
	if err != nil {
		w.err = err
	}
	if w.pendBuf != nil {
		w.writeBody(w.pend)
		pendPool.Put(w.pendBuf)
		w.pendBuf, w.pend = nil, nil
	}
}

// merge returns the values of a followed by those of b, without writing
// into either's array.
func merge(a, b []string) []string {
	switch {
	case len(b) == 0:
		return a
	case len(a) == 0:
		return b
	}
	return append(slices.Clip(a), b...)
}

// dateCache holds the Date header value of the current second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec int64
	b   []byte
}

// httpDate returns now in the Date header's format (RFC 9110 section
// 5.6.7), formatted once per second. The result must not be modified.
func httpDate(now time.Time) []byte {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &cachedDate{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, len(http.TimeFormat)), http.TimeFormat)}
	dateCache.Store(d)
	return d.b
}

// finish completes the response after the handler returned; it reports
// whether the connection can serve another request.
func (w *h1Writer) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(len(w.pend))
	}
	if w.chunked && w.err == nil {
		w.bw.WriteString("0\r\n")
		w.writeTrailers()
		_, w.err = w.bw.WriteString("\r\n")
	}
	return w.err == nil && !w.closeConn
}

// writeTrailers writes the trailers the handler set as net/http's handlers
// do, with keys prefixed by http.TrailerPrefix (the Forwarder's, from an
// upstream's trailers): a chunked body can end with them. A response with
// a Content-Length has nowhere to put them; they are dropped.
func (w *h1Writer) writeTrailers() {
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && name != "" {
			h1.WriteField(w.bw, name, vs)
		}
	}
}

// hasToken reports whether a comma-separated header value list contains
// token (case-insensitive).
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
