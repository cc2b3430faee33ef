package h2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// ServerOptions configure ServeConn.
type ServerOptions struct {
	// Context is the parent of every request's context; when it ends the
	// server sends GOAWAY and closes the connection once the streams in
	// flight are done. Nil means context.Background().
	Context context.Context
	// MaxConcurrentStreams is announced to the client; 0 means 1000.
	MaxConcurrentStreams uint32
	// IdleTimeout, if positive, ends the connection (with GOAWAY) once
	// it has carried no stream for that long.
	IdleTimeout time.Duration
	// Logger reports handler panics; nil discards.
	Logger *slog.Logger
}

// ServeConn serves the HTTP/2 connection nc (its client preface not yet
// read) with h, one goroutine per stream, until the connection ends. The
// handler's requests are HTTP/2.0 requests as net/http's server makes
// them; its ResponseWriter also implements http.Flusher.
func ServeConn(nc net.Conn, h http.Handler, o ServerOptions) error {
	if o.Context == nil {
		o.Context = context.Background()
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	sc := &serverConn{h: h, opts: o, streams: map[uint32]*serverStream{}, remote: nc.RemoteAddr().String()}
	sc.init(nc)
	sc.beforeRead = sc.quiesce
	stop := context.AfterFunc(o.Context, sc.shutdown)
	defer stop()
	if o.IdleTimeout > 0 {
		sc.idle = time.AfterFunc(o.IdleTimeout, sc.idleShutdown)
		defer sc.idle.Stop()
	}
	err := sc.serve()
	var ce connError
	if errors.As(err, &ce) {
		sc.sendNow(func(b []byte) []byte { return appendGoAway(b, sc.lastIDNow(), ce.code, ce.msg) })
		lingerClose(nc)
	} else {
		nc.Close()
	}
	sc.wmu.Lock()
	sc.failLocked(fmt.Errorf("http2: connection ended: %w", err))
	sc.wmu.Unlock()
	sc.mu.Lock()
	sc.closed = true
	for _, w := range sc.workers {
		close(w.next)
	}
	sc.workers = nil
	streams := make([]*serverStream, 0, len(sc.streams))
	for _, st := range sc.streams {
		streams = append(streams, st)
	}
	sc.mu.Unlock()
	for _, st := range streams {
		st.abort(fmt.Errorf("http2: connection ended: %w", err))
	}
	sc.handlers.Wait()
	if ce, ok := err.(connError); ok || errors.Is(err, errShutdown) {
		if ok {
			return ce
		}
		return nil
	}
	return err
}

var errShutdown = errors.New("http2: server shut down")

type serverConn struct {
	conn
	h        http.Handler
	opts     ServerOptions
	remote   string
	handlers sync.WaitGroup

	mu        sync.Mutex
	streams   map[uint32]*serverStream
	lastID    uint32
	goingAway bool // GOAWAY sent: no new streams
	opening   bool // onHeaders is opening a stream (see shutdown)
	closed    bool
	idle      *time.Timer // runs idleShutdown; stopped while streams are open
	// workers are goroutines that served a stream and wait for another:
	// a stream runs on one of them if one is free, so that its stack,
	// grown to what the handler needs, serves many streams.
	workers []*worker
	// running counts the handlers at work, those of streams already
	// reset included: it, not the open streams, is held to
	// MaxConcurrentStreams, so resetting streams as fast as they are
	// opened does not run handlers without bound.
	running int
	// resetIDs are streams this side reset: frames the client sent
	// before it saw the RST_STREAM are ignored (RFC 9113, section 5.1).
	resetIDs map[uint32]struct{}
	// retired are streams that both the connection and their handler are
	// done with; free those the read loop may reuse (see releaseLocked).
	retired []*serverStream
	free    []*serverStream // the read loop's
}

// newStream returns a stream for a request, reused when one is free. The
// read loop calls it.
func (sc *serverConn) newStream(id uint32) *serverStream {
	var st *serverStream
	if n := len(sc.free); n > 0 {
		st = sc.free[n-1]
		sc.free = sc.free[:n-1]
		*st = serverStream{}
	} else {
		st = new(serverStream)
	}
	st.sc, st.id, st.declared, st.refs = sc, id, -1, 2
	st.body.init()
	st.recv.init()
	// A context of its own for every request: whoever kept one must see
	// it ended, whatever the stream serves next.
	st.ctx = &streamContext{parent: sc.opts.Context}
	return st
}

// releaseLocked drops a holder's claim on the stream (mu held): the
// connection's when it forgets the stream, the handler's once it has
// returned. A stream both are done with is retired, and the read loop
// frees it for reuse when it next goes to the socket, holding no stream
// then. A stream whose request had a body is not reused: something the
// handler started may still read it.
func (sc *serverConn) releaseLocked(st *serverStream) {
	st.refs--
	if st.refs == 0 && !st.noReuse {
		sc.retired = append(sc.retired, st)
	}
}

// quiesce runs as the read loop goes back to the socket: it frees the
// retired streams.
func (sc *serverConn) quiesce() {
	sc.mu.Lock()
	sc.free, sc.retired = freeRetired(sc.free, sc.retired)
	sc.mu.Unlock()
}

// noteReset records that this side reset stream id. Call it with mu
// held.
func (sc *serverConn) noteResetLocked(id uint32) {
	if sc.resetIDs == nil || len(sc.resetIDs) >= 1024 {
		sc.resetIDs = make(map[uint32]struct{}) // forget the oldest all at once
	}
	sc.resetIDs[id] = struct{}{}
}

// wasReset reports whether this side reset stream id lately.
func (sc *serverConn) wasReset(id uint32) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	_, ok := sc.resetIDs[id]
	return ok
}

// sendReset sends RST_STREAM for a stream that has no state here (or no
// longer has).
func (sc *serverConn) sendReset(id uint32, code ErrCode) {
	sc.mu.Lock()
	sc.noteResetLocked(id)
	sc.mu.Unlock()
	sc.send(func(b []byte) []byte { return appendRSTStream(b, id, code) })
}

// job is a stream for a worker: its request, or the status to answer it
// with when its head was refused.
type job struct {
	st     *serverStream
	req    *http.Request
	status int
}

// maxIdleWorkers bounds the goroutines a connection keeps waiting for
// streams.
const maxIdleWorkers = 64

// worker is a goroutine that runs streams' handlers one after another,
// with maps it reuses from one stream to the next: a handler may use
// neither its request's Header nor its ResponseWriter's after it returns
// (the forwarder's mirror copies the header it keeps).
type worker struct {
	next    chan job
	started bool
	reqH    http.Header
	vals    []string // the request header's values
	respH   http.Header
}

// takeWorker returns an idle worker, or a new one (started by start).
func (sc *serverConn) takeWorker() *worker {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if n := len(sc.workers); n > 0 {
		w := sc.workers[n-1]
		sc.workers = sc.workers[:n-1]
		return w
	}
	return &worker{next: make(chan job, 1)}
}

// idleLocked puts a worker back among the idle ones; false when the
// connection has enough of them, or has ended (the worker then stops).
// Call it with mu held.
func (sc *serverConn) idleLocked(w *worker) bool {
	if sc.closed || len(sc.workers) >= maxIdleWorkers {
		return false
	}
	sc.workers = append(sc.workers, w)
	return true
}

// start runs the handler for a stream on worker w.
func (sc *serverConn) start(w *worker, j job) {
	sc.handlers.Add(1)
	sc.mu.Lock()
	sc.running++
	sc.mu.Unlock()
	if !w.started {
		w.started = true
		go sc.work(w, j)
		return
	}
	w.next <- j
}

// work runs w's jobs until the connection ends.
func (sc *serverConn) work(w *worker, j job) {
	for {
		if w.respH == nil {
			w.respH = make(http.Header, 8)
		} else {
			clear(w.respH)
		}
		j.st.rw.h = w.respH
		sc.run(j.st, j.req, j.status)
		if len(w.respH) > 32 || len(w.reqH) > 32 {
			w.respH, w.reqH, w.vals = nil, nil, nil // unusually large ones are not kept
		}
		sc.mu.Lock()
		sc.releaseLocked(j.st)
		sc.running--
		idle := sc.idleLocked(w)
		sc.mu.Unlock()
		if !idle {
			return
		}
		var ok bool
		if j, ok = <-w.next; !ok {
			return
		}
	}
}

// requestHeader returns w's request header map and values, emptied, for
// the next stream's request.
func (w *worker) requestHeader(n int) (http.Header, []string) {
	if w.reqH == nil {
		w.reqH = make(http.Header, max(n, 8))
	} else {
		clear(w.reqH)
	}
	if cap(w.vals) < n {
		w.vals = make([]string, 0, max(n, 8))
	}
	return w.reqH, w.vals[:0]
}

// idleShutdown shuts the connection down if it still carries no stream.
func (sc *serverConn) idleShutdown() {
	sc.mu.Lock()
	busy := len(sc.streams) > 0
	sc.mu.Unlock()
	if !busy {
		sc.shutdown()
	}
}

type serverStream struct {
	sc   *serverConn
	id   uint32
	req  *http.Request
	url  url.URL        // the request's, when its path needs no unescaping
	ctx  *streamContext // the request's
	rw   responseWriter
	body pipe
	recv recvCredit
	sw   sendWindowFor // kept with wmu held

	// The read loop's.
	gotEnd   bool  // the client's END_STREAM arrived
	declared int64 // the request's Content-Length, -1 if none
	received int64

	sentEnd   bool // guarded by sc.mu
	forgotten bool // guarded by sc.mu

	// A stream serves one request after another (see releaseLocked).
	refs    int8 // guarded by sc.mu
	noReuse bool // guarded by sc.mu
}

func (sc *serverConn) lastIDNow() uint32 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.lastID
}

// shutdown sends GOAWAY and closes the connection once no stream is left.
func (sc *serverConn) shutdown() {
	sc.mu.Lock()
	if sc.goingAway {
		sc.mu.Unlock()
		return
	}
	sc.goingAway = true
	last, idle := sc.lastID, len(sc.streams) == 0 && !sc.opening
	sc.mu.Unlock()
	sc.sendNow(func(b []byte) []byte { return appendGoAway(b, last, ErrCodeNo, "") })
	if idle {
		sc.closeAfterFlush()
	}
}

// opened ends onHeaders' opening of a stream: after a GOAWAY, a
// connection left without streams closes.
func (sc *serverConn) opened() {
	sc.mu.Lock()
	sc.opening = false
	idle := sc.goingAway && len(sc.streams) == 0
	sc.mu.Unlock()
	if idle {
		go sc.closeAfterFlush()
	}
}

func (sc *serverConn) serve() error {
	if err := sc.readPreface(); err != nil {
		return err
	}
	sc.wmu.Lock()
	sc.pending = sc.appendOurSettings(sc.pending, settingMaxConcurrentStreams, sc.opts.MaxConcurrentStreams)
	sc.flushLocked()
	sc.wmu.Unlock()
	first := true
	for {
		h, p, err := sc.readFrame()
		if err != nil {
			sc.mu.Lock()
			away := sc.goingAway
			sc.mu.Unlock()
			if away {
				return errShutdown
			}
			return err
		}
		if first && h.typ != frameSettings {
			return protocolError("the client's first frame is of type %d, not SETTINGS", h.typ)
		}
		first = false
		if sc.continuing() && h.typ != frameContinuation {
			return protocolError("frame of type %d in the middle of a header block", h.typ)
		}
		if err := sc.failed(); err != nil {
			return err
		}
		switch h.typ {
		case frameHeaders, frameContinuation:
			if err := sc.onHeaderFrame(h, p, sc.onHeaders); err != nil {
				return err
			}
		case frameData:
			if err := sc.onData(h, p); err != nil {
				return err
			}
		case frameRSTStream:
			if len(p) != 4 {
				return connError{code: ErrCodeFrameSize, msg: "RST_STREAM of the wrong size"}
			}
			if err := sc.checkStream(h); err != nil {
				return err
			}
			if st := sc.stream(h.streamID); st != nil {
				st.abort(StreamError{StreamID: h.streamID, Code: ErrCode(binary.BigEndian.Uint32(p)), Remote: true})
			}
		case frameWindowUpdate:
			if h.streamID == 0 {
				if err := sc.onCommon(h, p, sc.applySetting, sc.initialWindow); err != nil {
					return err
				}
				continue
			}
			if err := sc.checkStream(h); err != nil {
				return err
			}
			incr, err := windowIncrement(h, p)
			st := sc.stream(h.streamID)
			if st == nil {
				continue
			}
			if err != nil {
				st.reset(ErrCodeProtocol)
				continue
			}
			sc.wmu.Lock()
			st.sw.n += int64(incr)
			over := st.sw.n > maxWindow
			sc.flowCond.Broadcast()
			sc.wmu.Unlock()
			if over {
				st.reset(ErrCodeFlowControl)
			}
		case frameSettings, framePing:
			if err := sc.onCommon(h, p, sc.applySetting, sc.initialWindow); err != nil {
				return err
			}
		case framePushPromise:
			return protocolError("PUSH_PROMISE from a client")
		case framePriority:
			if len(p) != 5 {
				return connError{code: ErrCodeFrameSize, msg: "PRIORITY of the wrong size"}
			}
		case frameGoAway:
			// The client opens no more streams; those in flight finish.
		}
	}
}

func (sc *serverConn) applySetting(uint16, uint32) {}

func (sc *serverConn) initialWindow(delta int64) {
	sc.mu.Lock()
	for _, st := range sc.streams {
		st.sw.n += delta
	}
	sc.mu.Unlock()
}

func (sc *serverConn) stream(id uint32) *serverStream {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.streams[id]
}

// checkStream rejects a frame for a stream the client has not opened.
func (sc *serverConn) checkStream(h frameHeader) error {
	if h.streamID == 0 {
		return protocolError("frame of type %d on stream 0", h.typ)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if h.streamID > sc.lastID {
		return protocolError("frame of type %d on stream %d, which is idle", h.typ, h.streamID)
	}
	return nil
}

func (sc *serverConn) onHeaders(h frameHeader) error {
	endStream := h.flags&flagEndStream != 0
	if h.streamID%2 == 0 {
		return protocolError("HEADERS on stream %d, an even number", h.streamID)
	}
	sc.mu.Lock()
	st := sc.streams[h.streamID]
	last, away := sc.lastID, sc.goingAway
	if st == nil && h.streamID > last {
		sc.lastID = h.streamID
		if !away {
			// Until the stream is registered (or refused), a shutdown
			// must not take the connection for idle: its GOAWAY counts
			// this stream in.
			sc.opening = true
			defer sc.opened()
		}
	}
	active := sc.running
	sc.mu.Unlock()
	if st != nil {
		return sc.onTrailers(st, endStream)
	}
	if h.streamID <= last {
		if sc.wasReset(h.streamID) {
			return nil // sent before the client saw our RST_STREAM
		}
		return connError{code: ErrCodeStreamClosed, msg: fmt.Sprintf("HEADERS on stream %d, which is closed", h.streamID)}
	}
	if away {
		return nil // above the GOAWAY's last stream: ignored
	}
	if uint32(active) >= sc.opts.MaxConcurrentStreams {
		sc.sendReset(h.streamID, ErrCodeRefusedStream)
		return nil
	}
	st = sc.newStream(h.streamID)
	st.noReuse = !endStream
	w := sc.takeWorker()
	if sc.tooLarge() {
		sc.register(st, endStream)
		sc.start(w, job{st: st, status: http.StatusRequestHeaderFieldsTooLarge})
		return nil
	}
	req, err := st.request(sc.fields, endStream, w)
	if err != nil {
		if w.started {
			sc.mu.Lock()
			idle := sc.idleLocked(w)
			sc.mu.Unlock()
			if !idle {
				close(w.next)
			}
		}
		sc.sendReset(h.streamID, ErrCodeProtocol)
		return nil
	}
	st.req = req
	sc.register(st, endStream)
	sc.start(w, job{st: st, req: req})
	return nil
}

func (sc *serverConn) register(st *serverStream, endStream bool) {
	sc.wmu.Lock()
	st.sw.n = sc.peerInitialWindow
	sc.wmu.Unlock()
	sc.mu.Lock()
	sc.streams[st.id] = st
	if sc.idle != nil && len(sc.streams) == 1 {
		sc.idle.Stop()
	}
	sc.mu.Unlock()
	if endStream {
		st.endStream()
	}
}

// onTrailers takes the request's trailers.
func (sc *serverConn) onTrailers(st *serverStream, endStream bool) error {
	if !endStream || st.gotEnd {
		st.reset(ErrCodeProtocol)
		return nil
	}
	tr := make(http.Header, len(sc.fields))
	for _, f := range sc.fields {
		if f.IsPseudo() || !validFieldName(f.Name) {
			st.reset(ErrCodeProtocol)
			return nil
		}
		k := canonicalKey(f.Name)
		tr[k] = append(tr[k], f.Value)
	}
	req := st.req
	st.body.mu.Lock()
	st.body.onEOF = func() {
		for k := range req.Trailer {
			req.Trailer[k] = tr[k]
		}
	}
	st.body.mu.Unlock()
	st.endStream()
	return nil
}

// endStream records the client's END_STREAM.
func (st *serverStream) endStream() {
	st.sc.streamEnded(&st.recv)
	st.sc.mu.Lock()
	st.gotEnd = true // (read by finish with mu held)
	if st.sentEnd {
		st.sc.forgetLocked(st)
	}
	st.sc.mu.Unlock()
	st.body.end(nil)
}

func (sc *serverConn) onData(h frameHeader, p []byte) error {
	data, pad, err := sc.takeData(h, p)
	if err != nil {
		return err
	}
	if err := sc.checkStream(h); err != nil {
		return err
	}
	st := sc.stream(h.streamID)
	if st == nil || st.gotEnd {
		sc.giveBack(h.streamID, nil, len(p))
		if st == nil && sc.wasReset(h.streamID) {
			return nil // sent before the client saw our RST_STREAM
		}
		sc.sendReset(h.streamID, ErrCodeStreamClosed)
		return nil
	}
	if !st.recv.take(len(p)) {
		sc.giveBack(h.streamID, nil, len(p))
		st.reset(ErrCodeFlowControl)
		return nil
	}
	sc.giveBack(h.streamID, &st.recv, pad)
	st.received += int64(len(data))
	end := h.flags&flagEndStream != 0
	if st.declared >= 0 && (st.received > st.declared || end && st.received != st.declared) {
		sc.giveBack(h.streamID, nil, len(data))
		st.reset(ErrCodeProtocol)
		return nil
	}
	if len(data) > 0 && !st.body.write(data) {
		sc.giveBack(h.streamID, nil, len(data)) // the handler no longer reads
	}
	if end {
		st.endStream()
	}
	return nil
}

// request builds the request of a stream's head.
func (st *serverStream) request(fields []hpack.HeaderField, endStream bool, w *worker) (*http.Request, error) {
	var method, scheme, authority, path string
	regular := 0
	for _, f := range fields {
		if !f.IsPseudo() {
			regular++
			continue
		}
		if regular > 0 {
			return nil, fmt.Errorf("pseudo-header %q after a regular field", f.Name)
		}
		var dst *string
		switch f.Name {
		case ":method":
			dst = &method
		case ":scheme":
			dst = &scheme
		case ":authority":
			dst = &authority
		case ":path":
			dst = &path
		default:
			return nil, fmt.Errorf("unknown pseudo-header %q", f.Name)
		}
		if *dst != "" {
			return nil, fmt.Errorf("pseudo-header %q twice", f.Name)
		}
		*dst = f.Value
	}
	if method == "" || method != http.MethodConnect && (scheme == "" || path == "") {
		return nil, errors.New("request head without :method, :scheme or :path")
	}
	// What an HTTP/1.1 upstream would read as more than these fields
	// (CR, LF, spaces in a method) must not get that far.
	switch {
	case !httpguts.ValidHeaderFieldName(method):
		return nil, fmt.Errorf(":method %q is not a token", method)
	case authority != "" && !httpguts.ValidHostHeader(authority):
		return nil, fmt.Errorf(":authority %q is not a valid host", authority)
	case path != "" && !validPath(path):
		return nil, fmt.Errorf(":path %q", path)
	case !httpguts.ValidHeaderFieldValue(scheme):
		return nil, fmt.Errorf(":scheme %q", scheme)
	}
	h, vals := w.requestHeader(regular)
	if err := fillHeader(h, vals, fields); err != nil {
		return nil, err
	}
	if te := h["Te"]; len(te) > 0 && (len(te) > 1 || te[0] != "trailers") {
		return nil, fmt.Errorf("te: %q", te)
	}
	if c := h["Cookie"]; len(c) > 1 {
		h["Cookie"] = []string{strings.Join(c, "; ")}
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	var u *url.URL
	switch {
	case method == http.MethodConnect:
		u = &url.URL{Host: authority}
	case path == "*" && method == http.MethodOptions:
		u = &url.URL{Path: "*"}
	default:
		var err error
		if u, err = requestURL(&st.url, path); err != nil {
			return nil, fmt.Errorf(":path %q: %w", path, err)
		}
	}
	req := &http.Request{
		Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Host: authority,
		RequestURI: path, RemoteAddr: st.sc.remote, ContentLength: -1, Body: http.NoBody,
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("content-length %q", cl[0])
		}
		req.ContentLength, st.declared = n, n
	} else if len(cl) > 1 {
		return nil, fmt.Errorf("content-length given %d times", len(cl))
	}
	if endStream {
		if st.declared > 0 {
			return nil, fmt.Errorf("content-length %d on a request without a body", st.declared)
		}
		req.ContentLength = 0
	} else {
		req.Body = serverBody{st}
		if tr := h["Trailer"]; len(tr) > 0 {
			req.Trailer = http.Header{}
			for _, v := range tr {
				for _, k := range strings.Split(v, ",") {
					if k = strings.TrimSpace(k); k != "" {
						req.Trailer[http.CanonicalHeaderKey(k)] = nil
					}
				}
			}
		}
	}
	return req.WithContext(st.ctx), nil
}

// streamContext is a request's context: it ends when the client resets
// the stream, the connection ends, or the handler returns, and takes
// values and deadline from the connection's context. It does not end with
// the connection's context: that starts a graceful shutdown (GOAWAY), in
// which the streams in flight finish. Done's channel is made only for a
// caller that asks for it.
type streamContext struct {
	parent context.Context
	mu     sync.Mutex
	done   chan struct{}
	err    error
	after  []func() // see AfterFunc
	// watched is interrupted when the context ends (see Watch).
	watched interface{ Interrupt() }
}

func (c *streamContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *streamContext) Value(key any) any           { return c.parent.Value(key) }

func (c *streamContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *streamContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *streamContext) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	for _, f := range c.after {
		if f != nil {
			go f()
		}
	}
	c.after = nil
	x := c.watched
	c.watched = nil
	c.mu.Unlock()
	if x != nil {
		x.Interrupt()
	}
}

// Watch arranges for x.Interrupt to be called when the context ends; false
// when it has ended or already watches something. With Unwatch, it lets
// the upstream side watch one exchange at a time for the request without
// what context.AfterFunc allocates (upstream.Interrupter).
func (c *streamContext) Watch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.watched != nil {
		return false
	}
	c.watched = x
	return true
}

// Unwatch stops watching x; false when the context ended while it was
// watched (x.Interrupt was, or is being, called).
func (c *streamContext) Unwatch(x interface{ Interrupt() }) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched == x {
		c.watched = nil
	}
	return c.err == nil
}

// AfterFunc is what context.AfterFunc calls for a context that has it:
// f runs, on a goroutine of its own, when the context ends. Without it,
// context.AfterFunc (which the upstream side uses on every request, and
// context.WithCancel too) would start a goroutine per call to watch Done.
func (c *streamContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	i := len(c.after)
	c.after = append(c.after, f)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil || c.after[i] == nil {
			return false
		}
		c.after[i] = nil
		return true
	}
}

func (c *streamContext) String() string { return "h2.streamContext" }

// requestURL is url.ParseRequestURI(path) for a path validPath accepts,
// made in dst when the path needs no unescaping (most do).
func requestURL(dst *url.URL, path string) (*url.URL, error) {
	if strings.ContainsAny(path, "%#") {
		return url.ParseRequestURI(path)
	}
	*dst = url.URL{Path: path}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		dst.Path, dst.RawQuery, dst.ForceQuery = path[:i], path[i+1:], i == len(path)-1
	}
	return dst, nil
}

// validPath reports whether a :path can go on an HTTP/1.1 request line:
// it starts with "/" (or is "*") and holds no control character or space.
func validPath(p string) bool {
	if p != "*" && p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// serverBody is a request's body.
type serverBody struct{ st *serverStream }

func (b serverBody) Read(p []byte) (int, error) {
	n, err := b.st.body.read(p)
	b.st.sc.giveBack(b.st.id, &b.st.recv, n)
	return n, err
}

func (b serverBody) Close() error {
	unread, _ := b.st.body.close()
	b.st.sc.giveBack(b.st.id, nil, unread)
	return nil
}

// abort ends the stream without a response: the client reset it, or the
// connection ended.
func (st *serverStream) abort(err error) {
	st.ctx.cancel()
	st.body.end(err)
	sc := st.sc
	sc.wmu.Lock()
	st.sw.reset = true
	sc.flowCond.Broadcast()
	sc.wmu.Unlock()
	sc.mu.Lock()
	sc.forgetLocked(st)
	sc.mu.Unlock()
}

// reset ends the stream from this side with RST_STREAM.
func (st *serverStream) reset(code ErrCode) {
	st.sc.mu.Lock()
	gone := st.forgotten
	st.sc.mu.Unlock()
	if !gone {
		st.sc.sendReset(st.id, code)
	}
	st.abort(StreamError{StreamID: st.id, Code: code})
}

// forgetLocked removes a stream; after GOAWAY, the last one closes the
// connection. Call it with mu held.
func (sc *serverConn) forgetLocked(st *serverStream) {
	if st.forgotten {
		return
	}
	st.forgotten = true
	delete(sc.streams, st.id)
	sc.releaseLocked(st)
	if len(sc.streams) > 0 {
		return
	}
	if sc.goingAway {
		go sc.closeAfterFlush() // (wmu comes before mu)
	} else if sc.idle != nil {
		sc.idle.Reset(sc.opts.IdleTimeout)
	}
}

// closeAfterFlush writes out what is pending, then closes the connection.
func (sc *serverConn) closeAfterFlush() {
	sc.wmu.Lock()
	for sc.flushing || len(sc.pending) > 0 && sc.werr == nil {
		if !sc.flushing {
			sc.flushLocked()
			continue
		}
		sc.flowCond.Wait() // another goroutine is writing: flushLocked signals its end
	}
	sc.wmu.Unlock()
	// Closing with the client's bytes unread would send a TCP reset,
	// which may reach the client before the GOAWAY does: close the
	// sending side, and the rest once the client closes (the read loop
	// sees it) or a second has passed.
	if cw, ok := sc.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		time.AfterFunc(time.Second, func() { sc.nc.Close() })
		return
	}
	sc.nc.Close()
}

// lingerClose closes nc after a GOAWAY: closing it with the client's
// bytes unread would send a TCP reset, which may reach the client before
// the GOAWAY does and take it away. So it closes the sending side, drops
// what the client still sends, and closes the rest at the client's end of
// the stream or after a second. Writes fail from here on.
func lingerClose(nc net.Conn) {
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		nc.Close()
		return
	}
	go func() {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
		nc.Close()
	}()
}

// run serves one stream with the handler (or answers it with status, when
// its head was refused).
func (sc *serverConn) run(st *serverStream, req *http.Request, status int) {
	defer sc.handlers.Done()
	rw := &st.rw
	rw.st = st
	defer st.ctx.cancel()
	if req == nil {
		rw.WriteHeader(status)
		rw.finish()
		return
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				sc.opts.Logger.Error("http2: handler panicked", "stream", st.id, "panic", fmt.Sprint(p))
			}
			st.reset(ErrCodeInternal)
		}
	}()
	// What the handler left of the body is dropped, and its window given
	// back, or the connection's window would shrink with every such
	// request.
	defer req.Body.Close()
	sc.h.ServeHTTP(rw, req)
	// The request's context ends as the handler returns (as net/http's),
	// before the response's end goes out: a client that has the whole
	// response, and sends its next request, finds this one ended.
	st.ctx.cancel()
	rw.finish()
}

// responseWriter is a stream's http.ResponseWriter. The head goes out
// with the first body bytes flushed (or at the end); the body is
// buffered up to a frame's worth, so that a small response leaves as one
// HEADERS and one DATA frame, with its Content-Length.
type responseWriter struct {
	st          *serverStream
	h           http.Header
	code        int
	wroteHeader bool
	sentHeader  bool
	headEnded   bool // the head carried END_STREAM
	done        bool
	buf         []byte
	bufp        *[]byte // what buf came from, for bodyBufs.Put
	err         error
	// headBody counts what the handler wrote in answer to HEAD, which is
	// not sent (RFC 9110, 9.3.2) but gives the Content-Length.
	headBody int
}

func (rw *responseWriter) Header() http.Header {
	if rw.h == nil {
		rw.h = make(http.Header, 8)
	}
	return rw.h
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader || rw.done {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			rw.sendHead(code, false, false) // informational: 100, 103
		}
		return
	}
	rw.code, rw.wroteHeader = code, true
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.done {
		return 0, http.ErrHandlerTimeout
	}
	if rw.st.req != nil && rw.st.req.Method == http.MethodHead {
		rw.headBody += len(p)
		return len(p), nil
	}
	if rw.buf == nil {
		rw.bufp = bodyBufs.Get().(*[]byte)
		rw.buf = (*rw.bufp)[:0:defaultMaxFrameSize]
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(rw.buf[len(rw.buf):cap(rw.buf)], p)
		rw.buf = rw.buf[:len(rw.buf)+k]
		p = p[k:]
		if len(rw.buf) == cap(rw.buf) {
			if err := rw.sendData(false); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// Flush sends the head and the body written so far.
func (rw *responseWriter) Flush() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err == nil && !rw.done {
		rw.sendData(false)
	}
}

// sendData sends the head if it has not gone yet, then what is buffered;
// end ends the stream with it.
func (rw *responseWriter) sendData(end bool) error {
	st, sc := rw.st, rw.st.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if !rw.sentHeader {
		rw.appendHead(rw.code, end && len(rw.buf) == 0, end)
	}
	if rw.sentHeader && (len(rw.buf) > 0 || end && !rw.headEnded) {
		if err := sc.appendData(st.id, &st.sw, rw.buf, end); err != nil {
			rw.err = err
		}
	}
	rw.buf = rw.buf[:0]
	sc.flushSoonLocked()
	return rw.err
}

// sendHead sends an informational head, or the final head (without a
// body, ending the stream) when there is nothing else to send.
func (rw *responseWriter) sendHead(code int, endStream, knownLength bool) {
	sc := rw.st.sc
	sc.wmu.Lock()
	rw.appendHead(code, endStream, knownLength)
	sc.flushLocked()
	sc.wmu.Unlock()
}

// appendHead appends a HEADERS frame for status code with the header (a
// final head adds a Content-Length when the whole body is known). Call it
// with wmu held.
func (rw *responseWriter) appendHead(code int, endStream, wholeBody bool) {
	sc, st := rw.st.sc, rw.st
	if sc.werr != nil || st.sw.reset {
		rw.err = errStreamGone
		return
	}
	var arr [16]hpack.HeaderField
	fields := append(arr[:0], hpack.HeaderField{Name: ":status", Value: statusText(code)})
	hasLength := false
	for k, vs := range rw.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := lowerKey(k)
		if connectionSpecific(name) || !validFieldName(name) {
			continue
		}
		hasLength = hasLength || name == "content-length"
		for _, v := range vs {
			fields = append(fields, hpack.HeaderField{Name: name, Value: v, Sensitive: volatile(name)})
		}
	}
	final := code >= 200
	if final && wholeBody && !hasLength && code != http.StatusNoContent && code != http.StatusNotModified && !rw.hasTrailers() {
		if n := len(rw.buf) + rw.headBody; n > 0 || rw.st.req == nil || rw.st.req.Method != http.MethodHead {
			fields = append(fields, hpack.HeaderField{Name: "content-length", Value: lengths.get(n)})
		}
	}
	sc.appendHeaders(st.id, fields, endStream)
	if final {
		rw.sentHeader = true
		rw.headEnded = endStream
	}
}

// hasTrailers reports whether the handler set trailers.
func (rw *responseWriter) hasTrailers() bool {
	for k := range rw.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return len(rw.h["Trailer"]) > 0
}

// trailers are the fields of the trailers the handler set: keys declared
// in Trailer, and keys with http.TrailerPrefix.
func (rw *responseWriter) trailers() []hpack.HeaderField {
	tr := http.Header{}
	for _, v := range rw.h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vs, ok := rw.h[k]; ok {
				tr[k] = vs
			}
		}
	}
	for k, vs := range rw.h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			tr[http.CanonicalHeaderKey(name)] = vs
		}
	}
	return trailerFields(tr)
}

// finish ends the response when the handler returns.
func (rw *responseWriter) finish() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	st, sc := rw.st, rw.st.sc
	if rw.err == nil {
		if tr := rw.trailers(); len(tr) > 0 {
			if rw.sendData(false) == nil {
				sc.wmu.Lock()
				if sc.werr == nil && !st.sw.reset {
					sc.appendHeaders(st.id, tr, true)
					sc.flushLocked()
				}
				sc.wmu.Unlock()
			}
		} else {
			rw.sendData(true)
		}
	}
	rw.done = true
	if rw.bufp != nil {
		bodyBufs.Put(rw.bufp) // the pointer it came in: no allocation
		rw.buf, rw.bufp = nil, nil
	}
	sc.mu.Lock()
	st.sentEnd = true
	ended := st.gotEnd
	if ended || rw.err != nil {
		sc.forgetLocked(st)
	}
	sc.mu.Unlock()
	if !ended && rw.err == nil {
		// The response is complete before the request: ask the client
		// to stop sending it (RFC 9113, section 8.1).
		st.reset(ErrCodeNo)
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// lengths caches the text of recent Content-Length values: a service's
// responses tend to repeat a few sizes. Lock-free: a miss replaces its
// slot's entry.
var lengths lengthCache

type lengthCache [64]atomic.Pointer[lengthEntry]

type lengthEntry struct {
	n int
	s string
}

func (c *lengthCache) get(n int) string {
	if n < 100 {
		return strconv.Itoa(n) // small numbers never allocate
	}
	slot := &c[n%len(c)]
	if e := slot.Load(); e != nil && e.n == n {
		return e.s
	}
	e := &lengthEntry{n: n, s: strconv.Itoa(n)}
	slot.Store(e)
	return e.s
}
