package h2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// ErrNotProcessed wraps the error of a request the server did not process
// (it refused the stream, or its GOAWAY left the stream out): it is safe
// to send again on another connection.
var ErrNotProcessed = errors.New("http2: request not processed by the server")

// ClientConn is one HTTP/2 connection to a server, carrying many requests
// at once. Take a stream with Reserve, then RoundTrip.
type ClientConn struct {
	conn

	mu         sync.Mutex
	streams    map[uint32]*clientStream
	nextID     uint32
	maxStreams uint32 // the server's SETTINGS_MAX_CONCURRENT_STREAMS, at most streamCap
	// streamCap, when not 0, is this side's own limit on concurrent
	// streams (see SetMaxConcurrentStreams). serverLimit is set once the
	// server has announced a limit of its own, firstSettings once its first
	// SETTINGS has been applied.
	streamCap     uint32
	serverLimit   bool
	firstSettings bool
	reserved      int
	goAway        bool  // no new streams: GOAWAY came, or the connection ended
	err           error // why the connection ended
	done          chan struct{}
	settled       chan struct{} // closed at the server's first SETTINGS, or the end
	seenFirst     bool          // the read loop's: settled is closed

	// free holds streams to reuse; retired those both sides are done
	// with, which the read loop moves to free when it holds no stream
	// (see release).
	free, retired []*clientStream
	// retiring: close the connection once its last stream ends.
	retiring bool
	// maxUses, when not 0, is how many streams the connection opens
	// before it retires (see SetMaxUses).
	maxUses uint32
	// idleTimeout, when not 0, retires the connection once it has carried
	// no stream that long (see SetIdleTimeout); idle runs it.
	idleTimeout time.Duration
	idle        *time.Timer
	// ping is the keepalive's state (see SetKeepalive), nil without one.
	ping atomic.Pointer[keepalive]
	// endErr, when set, is why this side ended the connection; the
	// requests in flight fail with it.
	endErr error

	// wake holds the streams whose response head arrived in the frames
	// the read loop has not finished handling; they are woken together
	// when it goes back to the socket, so that a response whose body
	// came in the same read wakes its caller once, complete.
	wake []*clientStream
}

// NewClientConn starts HTTP/2 on nc: it sends the preface and its
// settings, and reads the server's frames on a goroutine of its own until
// the connection ends.
func NewClientConn(nc net.Conn) *ClientConn {
	cc := &ClientConn{streams: map[uint32]*clientStream{}, nextID: 1, maxStreams: 100, done: make(chan struct{}), settled: make(chan struct{})}
	cc.init(nc)
	cc.beforeRead = cc.quiesce
	cc.wmu.Lock()
	cc.pending = append(cc.pending, Preface...)
	cc.pending = cc.appendOurSettings(cc.pending, settingEnablePush, 0)
	cc.flushLocked()
	cc.wmu.Unlock()
	go cc.readLoop()
	return cc
}

// Reserve takes a stream for one RoundTrip; false when the connection
// cannot open another (the server's limit is reached, or it is going
// away). A reservation RoundTrip will not use goes back with Unreserve.
func (cc *ClientConn) Reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.goAway || uint32(len(cc.streams)+cc.reserved) >= cc.maxStreams ||
		cc.nextID+2*uint32(cc.reserved) >= 1<<31-1 ||
		cc.maxUses > 0 && cc.nextID/2+uint32(cc.reserved) >= cc.maxUses {
		return false
	}
	cc.reserved++
	if cc.idle != nil && len(cc.streams) == 0 && cc.reserved == 1 {
		cc.idle.Stop()
	}
	return true
}

// Unreserve gives back a reservation.
func (cc *ClientConn) Unreserve() {
	cc.mu.Lock()
	cc.reserved--
	cc.closeIfDoneLocked()
	cc.mu.Unlock()
}

// Active is the number of streams open or reserved.
func (cc *ClientConn) Active() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.streams) + cc.reserved
}

// Usable reports whether the connection may still open streams.
func (cc *ClientConn) Usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return !cc.goAway
}

// Settled is closed once the server's first SETTINGS has been applied
// (its limit on concurrent streams among them), or the connection has
// ended. Reservations made before then count against a default of 100
// streams, which the server may refuse.
func (cc *ClientConn) Settled() <-chan struct{} { return cc.settled }

// SetMaxUses has the connection carry at most n requests (0: no limit):
// the nth retires it, and it closes once that request ends (as Envoy's
// max_requests_per_connection). Call it before the first Reserve.
func (cc *ClientConn) SetMaxUses(n uint32) {
	cc.mu.Lock()
	cc.maxUses = n
	cc.mu.Unlock()
}

// Retire stops the connection taking streams and closes it once the
// streams in flight have ended (at once if there are none).
func (cc *ClientConn) Retire() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.goAway, cc.retiring = true, true
	cc.closeIfDoneLocked()
}

func (cc *ClientConn) closeIfDoneLocked() {
	if len(cc.streams) > 0 || cc.reserved > 0 {
		return
	}
	switch {
	case cc.retiring:
		cc.nc.Close()
	case cc.idleTimeout > 0:
		// Idle from now: retire unless a stream comes first.
		if cc.idle == nil {
			cc.idle = time.AfterFunc(cc.idleTimeout, cc.idleExpired)
		} else {
			cc.idle.Reset(cc.idleTimeout)
		}
	}
}

// SetIdleTimeout has the connection close once it has carried no stream
// for d (0: never), as a pool's idle timeout does for HTTP/1.1
// connections. Call it before the first Reserve.
func (cc *ClientConn) SetIdleTimeout(d time.Duration) {
	cc.mu.Lock()
	cc.idleTimeout = d
	cc.mu.Unlock()
}

// SetMaxConcurrentStreams caps the streams the connection carries at once
// at n, below the server's own limit when that is higher (as Envoy's
// max_concurrent_streams of a cluster's HTTP/2 options); 0 leaves the
// server's. Call it before the first Reserve.
func (cc *ClientConn) SetMaxConcurrentStreams(n uint32) {
	cc.mu.Lock()
	cc.streamCap = n
	if n > 0 && (cc.maxStreams > n || cc.firstSettings && !cc.serverLimit) {
		cc.maxStreams = n
	}
	cc.mu.Unlock()
}

// keepalive sends a PING every interval and ends the connection when the
// answer has not come within timeout and no other frame has either (a
// connection busy with a large response may answer late, as in Envoy).
type keepalive struct {
	interval, timeout time.Duration
	timer             *time.Timer
	// frames counts the frames the read loop has read; waiting is set
	// while a PING is unanswered, with sent the value of frames then and
	// data its payload.
	frames  atomic.Uint64
	mu      sync.Mutex
	waiting bool
	sent    uint64
	data    uint64
	stopped bool // the connection has ended
}

// SetKeepalive has the connection send a PING every interval and end,
// failing its requests, when neither the answer nor any other frame has
// come timeout after one (Envoy's connection_keepalive). It is a way to
// find a peer that is gone without a word (a host that crashed, a
// connection a middlebox dropped) before a request waits on it. Call it
// once, before the first Reserve.
func (cc *ClientConn) SetKeepalive(interval, timeout time.Duration) {
	if interval <= 0 || timeout <= 0 {
		return
	}
	k := &keepalive{interval: interval, timeout: timeout}
	// The timer is set before its first tick (which waits for mu) and
	// before the read loop can see k.
	k.mu.Lock()
	k.timer = time.AfterFunc(interval, func() { cc.keepaliveTick(k) })
	k.mu.Unlock()
	cc.ping.Store(k)
}

// keepaliveTick runs on the keepalive's timer: it sends a PING, or ends
// the connection when the last one went unanswered.
func (cc *ClientConn) keepaliveTick(k *keepalive) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	if k.waiting {
		if k.frames.Load() == k.sent {
			cc.end(fmt.Errorf("http2: no answer to a keepalive PING within %v", k.timeout))
			return
		}
		// Frames came, just not the answer yet: the connection lives.
		k.sent = k.frames.Load()
		k.timer.Reset(k.timeout)
		return
	}
	k.data++
	k.waiting, k.sent = true, k.frames.Load()
	data := k.data
	cc.send(func(b []byte) []byte {
		return binary.BigEndian.AppendUint64(appendFrameHeader(b, 8, framePing, 0, 0), data)
	})
	k.timer.Reset(k.timeout)
}

// onPingAck takes the answer to a PING (a valid PING frame with ACK set).
func (cc *ClientConn) onPingAck(p []byte) {
	k := cc.ping.Load()
	if k == nil {
		return
	}
	k.mu.Lock()
	if k.waiting && binary.BigEndian.Uint64(p) == k.data {
		k.waiting = false
		k.timer.Reset(k.interval)
	}
	k.mu.Unlock()
}

// end closes the connection from this side; the requests in flight fail
// with err.
func (cc *ClientConn) end(err error) {
	cc.mu.Lock()
	if cc.endErr == nil {
		cc.endErr = err
	}
	cc.mu.Unlock()
	cc.nc.Close()
}

func (cc *ClientConn) idleExpired() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.streams) == 0 && cc.reserved == 0 && !cc.retiring {
		cc.goAway, cc.retiring = true, true
		cc.closeIfDoneLocked()
	}
}

// Done is closed when the connection has ended.
func (cc *ClientConn) Done() <-chan struct{} { return cc.done }

// Close ends the connection; requests in flight fail.
func (cc *ClientConn) Close() error { return cc.nc.Close() }

type clientStream struct {
	cc    *ClientConn
	id    uint32
	req   *http.Request
	ready chan struct{} // one value: resp or err is set
	resp  *http.Response
	err   error
	body  pipe

	sw   sendWindowFor // kept with wmu held
	recv recvCredit
	// The read loop's.
	gotHead    bool
	ended      bool  // END_STREAM received
	declared   int64 // the response's Content-Length, -1 if none (or not for this body)
	received   int64 // DATA bytes of the response's body so far
	noContent  bool  // the response has no content (HEAD, 204, 304)
	readySent  bool  // guarded by cc.mu
	stopCtx    func() bool
	watchedBy  interrupter // the request's context, watching the stream
	trailer    http.Header
	sentEnd    bool // END_STREAM sent (guarded by cc.mu)
	forgotten  bool // removed from cc.streams (guarded by cc.mu)
	bodyClosed bool

	// A stream serves one request after another (see release): hdr is
	// its responses' header map.
	hdr http.Header
	// refs counts the connection and the caller while they hold the
	// stream; noReuse is set when something else may still reach it (a
	// context's callback, the goroutine sending the body). Both are
	// guarded by cc.mu.
	refs    int8
	noReuse bool
	// use is the stream's use (which response it serves) in its high 32
	// bits and the calls in progress on that response's body in its low
	// 32 (see clientBody.enter). It is a word of its own, kept from one
	// use to the next, which a body kept past its use reads (never the
	// stream's other fields, which the next use resets).
	use *atomic.Uint64
}

// newStreamLocked returns a stream for req, reused when one is free. Call
// it with mu held.
func (cc *ClientConn) newStreamLocked(req *http.Request, hasBody bool) *clientStream {
	var cs *clientStream
	for n := len(cc.free); n > 0 && cs == nil; n = len(cc.free) {
		cs = cc.free[n-1]
		cc.free = cc.free[:n-1]
		// The next use, unless a call on a body of the last one is
		// still in progress (a Read that Close woke, say): then it is
		// left to the collector.
		u := cs.use.Load()
		if uint32(u) != 0 || !cs.use.CompareAndSwap(u, (u>>32+1)<<32) {
			cs = nil
			continue
		}
		*cs = clientStream{ready: cs.ready, hdr: cs.hdr, use: cs.use}
	}
	if cs == nil {
		cs = &clientStream{ready: make(chan struct{}, 1), use: new(atomic.Uint64)}
	}
	cs.cc, cs.req, cs.refs, cs.noReuse = cc, req, 2, hasBody
	cs.body.init()
	cs.recv.init()
	return cs
}

// release drops a holder's claim on the stream (mu held): the
// connection's when it forgets the stream, the caller's when it closes the
// response's body or gets an error. Once both are done, and nothing else
// may reach the stream, it is retired; the read loop frees it for reuse
// when it next goes to the socket, holding no stream then (it looks
// streams up and works on them outside mu).
func (cc *ClientConn) releaseLocked(cs *clientStream) {
	cs.refs--
	if cs.refs == 0 && !cs.noReuse {
		cc.retired = append(cc.retired, cs)
	}
}

// quiesce runs as the read loop goes back to the socket: it wakes the
// callers whose responses arrived and frees the retired streams.
func (cc *ClientConn) quiesce() {
	cc.wakeAll()
	cc.mu.Lock()
	cc.free, cc.retired = freeRetired(cc.free, cc.retired)
	cc.mu.Unlock()
}

// RoundTrip sends req on a stream taken with Reserve and returns the
// response once its head has arrived. The response's body must be read to
// EOF or closed; once it is closed, the Response's Header belongs to the
// connection again, which uses the map for a later response (the body
// then fails to Read, and closing it again does nothing). A request the
// server did not process fails with an error wrapping ErrNotProcessed.
func (cc *ClientConn) RoundTrip(req *http.Request) (*http.Response, error) {
	// As net/http has it, a Content-Length of 0 with a Body means one of
	// unknown length.
	hasBody := req.Body != nil && req.Body != http.NoBody
	var arr [16]hpack.HeaderField
	fields, err := requestFields(arr[:0], req)
	if err != nil {
		cc.Unreserve()
		closeBody(req)
		return nil, err
	}

	cc.wmu.Lock()
	cc.mu.Lock()
	cc.reserved--
	if cc.goAway || cc.werr != nil {
		err := cc.err
		cc.closeIfDoneLocked()
		cc.mu.Unlock()
		cc.wmu.Unlock()
		closeBody(req)
		return nil, fmt.Errorf("%w: the connection is closing (%v)", ErrNotProcessed, err)
	}
	cs := cc.newStreamLocked(req, hasBody)
	cs.id = cc.nextID
	cc.nextID += 2
	if cc.maxUses > 0 && cc.nextID/2 >= cc.maxUses {
		cc.goAway, cc.retiring = true, true // the last it carries
	}
	cc.streams[cs.id] = cs
	cs.sentEnd = !hasBody
	cc.mu.Unlock()
	cs.sw.n = cc.peerInitialWindow
	cc.appendHeaders(cs.id, fields, !hasBody)
	cc.flushSoonLocked()
	cc.wmu.Unlock()

	// The request's context ends the stream whenever it ends: while the
	// head is awaited, the body sent, or the response's body read.
	if ctx := req.Context(); ctx != context.Background() && ctx != context.TODO() {
		cs.watchContext(ctx)
	}
	// The body goes out while the response is awaited and read, as a
	// full-duplex stream (gRPC's, say) needs.
	if hasBody {
		go cs.writeBody(req)
	}
	<-cs.ready
	if err := cs.err; err != nil {
		cc.mu.Lock()
		cc.releaseLocked(cs)
		cc.mu.Unlock()
		return nil, err
	}
	return cs.resp, nil
}

// interrupter is a context that calls Interrupt on what it watches when it
// ends, without allocating (as upstream.Interrupter, which the lean
// HTTP/1.1 server's connection contexts and this package's stream
// contexts implement).
type interrupter interface {
	Watch(x interface{ Interrupt() }) bool
	Unwatch(x interface{ Interrupt() }) bool
}

// watchContext has the stream end when ctx does.
func (cs *clientStream) watchContext(ctx context.Context) {
	cc := cs.cc
	if ir, ok := ctx.(interrupter); ok && ir.Watch(cs) {
		cc.mu.Lock()
		if cs.forgotten {
			if !ir.Unwatch(cs) {
				cs.noReuse = true // Interrupt may be on its way
			}
		} else {
			cs.watchedBy = ir
		}
		cc.mu.Unlock()
		return
	}
	if ctx.Done() == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { cs.abort(ErrCodeCancel, ctx.Err()) })
	cc.mu.Lock()
	if cs.forgotten {
		if !stop() {
			cs.noReuse = true // the function may be running
		}
	} else {
		cs.stopCtx = stop
	}
	cc.mu.Unlock()
}

// Interrupt ends the stream: its request's context has ended.
func (cs *clientStream) Interrupt() {
	err := cs.req.Context().Err()
	if err == nil {
		err = context.Canceled
	}
	cs.abort(ErrCodeCancel, err)
}

// stopSending stops the request's body and forgets the stream.
func (cs *clientStream) stopSending() {
	cc := cs.cc
	cc.mu.Lock()
	cc.forgetLocked(cs)
	cc.mu.Unlock()
	cc.wmu.Lock()
	cs.sw.reset = true
	cc.flowCond.Broadcast()
	cc.wmu.Unlock()
}

// writeBody sends the request's body; a failure to read or send it ends
// the stream with the error.
func (cs *clientStream) writeBody(req *http.Request) {
	err := cs.sendBody(req)
	if err != nil && !errors.Is(err, errStreamGone) {
		cs.abort(ErrCodeCancel, err)
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// bodyBufs hold a frame's worth of body: *[]byte of that length.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, defaultMaxFrameSize); return &b }}

// sendBody sends the request's body as DATA frames, and its trailers.
func (cs *clientStream) sendBody(req *http.Request) error {
	cc := cs.cc
	defer req.Body.Close()
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, rerr := req.Body.Read(buf)
		sent += int64(n)
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("http2: reading the request body: %w", rerr)
		}
		eof := rerr == io.EOF
		if req.ContentLength > 0 && (sent > req.ContentLength || eof && sent < req.ContentLength) {
			return fmt.Errorf("http2: request body of %d bytes, but its Content-Length is %d", sent, req.ContentLength)
		}
		var tr []hpack.HeaderField
		if eof {
			tr = trailerFields(req.Trailer)
		}
		cc.wmu.Lock()
		var err error
		if n > 0 || eof && tr == nil {
			// (A body that ends on a read that brought nothing ends
			// with an empty DATA frame carrying END_STREAM.)
			err = cc.appendData(cs.id, &cs.sw, buf[:n], eof && tr == nil)
		}
		if err == nil && tr != nil {
			cc.appendHeaders(cs.id, tr, true)
		}
		cc.flushLocked()
		cc.wmu.Unlock()
		if err != nil {
			return err
		}
		if eof {
			cc.mu.Lock()
			cs.sentEnd = true
			if cs.ended {
				cc.forgetLocked(cs)
			}
			cc.mu.Unlock()
			return nil
		}
	}
}

// reset ends the stream from this side with RST_STREAM.
func (cs *clientStream) reset(code ErrCode) { cs.abort(code, nil) }

// fail ends the stream with err, without RST_STREAM (the server ended it,
// or the connection did): RoundTrip returns err if the head has not
// arrived, the body's reader sees it otherwise.
func (cs *clientStream) fail(err error) { cs.abort(noReset, err) }

// noReset, as abort's code, sends no RST_STREAM.
const noReset ErrCode = 1<<32 - 1

// abort ends the stream: it sends RST_STREAM with code (unless the stream
// is already gone, or code is noReset), stops the body being sent, and
// hands err (a StreamError with code when nil) to RoundTrip if the head
// has not arrived, to the body's reader otherwise.
func (cs *clientStream) abort(code ErrCode, err error) {
	cc := cs.cc
	if err == nil {
		err = StreamError{StreamID: cs.id, Code: code}
	}
	cc.mu.Lock()
	gone := cs.forgotten
	cc.forgetLocked(cs)
	signal := !cs.readySent
	if signal {
		cs.readySent = true
		cs.err = err
	}
	cc.mu.Unlock()
	if !gone && code != noReset {
		cc.send(func(b []byte) []byte { return appendRSTStream(b, cs.id, code) })
	}
	cc.wmu.Lock()
	cs.sw.reset = true
	cc.flowCond.Broadcast()
	cc.wmu.Unlock()
	cs.body.end(err)
	if signal {
		cs.ready <- struct{}{}
	}
}

// forgetLocked removes the stream from the connection. Call it with mu
// held.
func (cc *ClientConn) forgetLocked(cs *clientStream) {
	if !cs.forgotten {
		cs.forgotten = true
		if cs.stopCtx != nil && !cs.stopCtx() {
			cs.noReuse = true // the function may be running
		}
		if cs.watchedBy != nil && !cs.watchedBy.Unwatch(cs) {
			cs.noReuse = true // Interrupt may be on its way
		}
		delete(cc.streams, cs.id)
		cc.releaseLocked(cs)
		cc.closeIfDoneLocked()
	}
}

// clientBody is a response's body: one per response, naming the use of
// the stream it belongs to, so that a body kept past Close (read or
// closed again) fails or does nothing instead of reaching a later request
// the stream serves.
type clientBody struct {
	cs  *clientStream
	use *atomic.Uint64 // cs.use, read only through this
	gen uint32
}

// enter admits a call on the body while the stream still serves its
// response; the stream is not reused until the call exits.
func (b *clientBody) enter() bool {
	for {
		u := b.use.Load()
		if uint32(u>>32) != b.gen {
			return false
		}
		if b.use.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

func (b *clientBody) exit() { b.use.Add(^uint64(0)) }

func (b *clientBody) Read(p []byte) (int, error) {
	if !b.enter() {
		return 0, errBodyClosed
	}
	defer b.exit()
	cs := b.cs
	n, err := cs.body.read(p)
	cs.cc.giveBack(cs.id, &cs.recv, n)
	return n, err
}

func (b *clientBody) Close() error {
	if !b.enter() {
		return nil
	}
	defer b.exit()
	cs, cc := b.cs, b.cs.cc
	cc.mu.Lock()
	closed := cs.bodyClosed
	cs.bodyClosed = true
	cc.mu.Unlock()
	if closed {
		return nil
	}
	unread, ended := cs.body.close()
	cc.giveBack(cs.id, nil, unread)
	if !ended {
		cs.reset(ErrCodeCancel)
	}
	cc.mu.Lock()
	cc.releaseLocked(cs)
	cc.mu.Unlock()
	return nil
}

// readLoop handles the server's frames until the connection ends, then
// fails what is in flight.
func (cc *ClientConn) readLoop() {
	err := cc.serve()
	cc.mu.Lock()
	if cc.endErr != nil {
		err = cc.endErr
	}
	cc.mu.Unlock()
	if k := cc.ping.Load(); k != nil {
		k.mu.Lock()
		k.stopped = true
		k.timer.Stop()
		k.mu.Unlock()
	}
	var ce connError
	if errors.As(err, &ce) {
		cc.sendNow(func(b []byte) []byte { return appendGoAway(b, 0, ce.code, ce.msg) })
	}
	cc.nc.Close()
	cc.wmu.Lock()
	cc.failLocked(fmt.Errorf("http2: connection ended: %w", err))
	cc.wmu.Unlock()
	cc.mu.Lock()
	cc.goAway = true
	if cc.err == nil {
		cc.err = err
	}
	if cc.idle != nil {
		cc.idle.Stop()
	}
	streams := make([]*clientStream, 0, len(cc.streams))
	for _, cs := range cc.streams {
		streams = append(streams, cs)
	}
	cc.mu.Unlock()
	cc.wakeAll()
	for _, cs := range streams {
		cs.fail(fmt.Errorf("http2: connection ended: %w", err))
	}
	if !cc.seenFirst {
		close(cc.settled)
	}
	close(cc.done)
}

func (cc *ClientConn) wakeAll() {
	for _, cs := range cc.wake {
		cc.mu.Lock()
		signal := !cs.readySent
		cs.readySent = true
		cc.mu.Unlock()
		if signal {
			cs.ready <- struct{}{}
		}
	}
	clear(cc.wake)
	cc.wake = cc.wake[:0]
}

func (cc *ClientConn) stream(id uint32) *clientStream {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.streams[id]
}

// unknownStream checks a frame for a stream the client does not hold: one
// it never opened is a protocol error, one it has finished with is
// ignored.
func (cc *ClientConn) unknownStream(h frameHeader) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if h.streamID%2 == 0 || h.streamID >= cc.nextID {
		return protocolError("frame of type %d on stream %d, which the client never opened", h.typ, h.streamID)
	}
	return nil
}

func (cc *ClientConn) serve() error {
	for {
		h, p, err := cc.readFrame()
		if err != nil {
			return err
		}
		if k := cc.ping.Load(); k != nil {
			k.frames.Add(1)
		}
		if cc.continuing() && h.typ != frameContinuation {
			return protocolError("frame of type %d in the middle of a header block", h.typ)
		}
		if err := cc.failed(); err != nil {
			return err
		}
		switch h.typ {
		case frameHeaders, frameContinuation:
			if err := cc.onHeaderFrame(h, p, cc.onHeaders); err != nil {
				return err
			}
		case frameData:
			if err := cc.onData(h, p); err != nil {
				return err
			}
		case frameRSTStream:
			if len(p) != 4 {
				return connError{code: ErrCodeFrameSize, msg: "RST_STREAM of the wrong size"}
			}
			if h.streamID == 0 {
				return protocolError("RST_STREAM on stream 0")
			}
			cs := cc.stream(h.streamID)
			if cs == nil {
				if err := cc.unknownStream(h); err != nil {
					return err
				}
				continue
			}
			code := ErrCode(binary.BigEndian.Uint32(p))
			if code == ErrCodeNo && cs.ended {
				// A complete response before the whole request: the
				// server asks for the rest of the body no more (RFC
				// 9113, section 8.1). The response stands.
				cs.stopSending()
				continue
			}
			var serr error = StreamError{StreamID: h.streamID, Code: code, Remote: true}
			if code == ErrCodeRefusedStream {
				serr = fmt.Errorf("%w: %w", ErrNotProcessed, serr)
			}
			cs.fail(serr)
		case frameGoAway:
			if len(p) < 8 || h.streamID != 0 {
				return protocolError("malformed GOAWAY")
			}
			cc.onGoAway(binary.BigEndian.Uint32(p)&(1<<31-1), ErrCode(binary.BigEndian.Uint32(p[4:])), string(p[8:]))
		case framePushPromise:
			return protocolError("PUSH_PROMISE, though the client's SETTINGS_ENABLE_PUSH is 0")
		case frameWindowUpdate:
			if h.streamID == 0 {
				if err := cc.onCommon(h, p, cc.applySetting, cc.initialWindow); err != nil {
					return err
				}
				continue
			}
			incr, err := windowIncrement(h, p)
			cs := cc.stream(h.streamID)
			if cs == nil {
				if err := cc.unknownStream(h); err != nil {
					return err
				}
				continue
			}
			var se StreamError
			if errors.As(err, &se) {
				cs.reset(se.Code)
				continue
			} else if err != nil {
				return err
			}
			cc.wmu.Lock()
			cs.sw.n += int64(incr)
			over := cs.sw.n > maxWindow
			cc.flowCond.Broadcast()
			cc.wmu.Unlock()
			if over {
				cs.reset(ErrCodeFlowControl)
			}
		case frameSettings, framePing:
			if err := cc.onCommon(h, p, cc.applySetting, cc.initialWindow); err != nil {
				return err
			}
			if h.typ == framePing && h.flags&flagAck != 0 {
				cc.onPingAck(p)
			}
			if h.typ == frameSettings && h.flags&flagAck == 0 && !cc.seenFirst {
				cc.seenFirst = true
				cc.mu.Lock()
				cc.firstSettings = true
				if !cc.serverLimit && cc.streamCap > 0 {
					// No limit from the server: ours is the only one
					// (without one, the default of 100 stays).
					cc.maxStreams = cc.streamCap
				}
				cc.mu.Unlock()
				close(cc.settled)
			}
		}
	}
}

// applySetting takes the server's settings this side acts on (with wmu
// held).
func (cc *ClientConn) applySetting(id uint16, v uint32) {
	if id == settingMaxConcurrentStreams {
		cc.mu.Lock()
		cc.maxStreams, cc.serverLimit = v, true
		if cc.streamCap > 0 && v > cc.streamCap {
			cc.maxStreams = cc.streamCap
		}
		cc.mu.Unlock()
	}
}

// initialWindow moves every open stream's send window by delta (with wmu
// held).
func (cc *ClientConn) initialWindow(delta int64) {
	cc.mu.Lock()
	for _, cs := range cc.streams {
		cs.sw.n += delta
	}
	cc.mu.Unlock()
}

func (cc *ClientConn) onGoAway(last uint32, code ErrCode, debug string) {
	cc.mu.Lock()
	cc.goAway = true
	if code != ErrCodeNo && cc.err == nil {
		cc.err = fmt.Errorf("http2: the server sent GOAWAY: %s %q", code, debug)
	}
	var refused []*clientStream
	for id, cs := range cc.streams {
		if id > last {
			refused = append(refused, cs)
		}
	}
	cc.mu.Unlock()
	for _, cs := range refused {
		cs.fail(fmt.Errorf("%w: the server's GOAWAY ended at stream %d", ErrNotProcessed, last))
	}
}

func (cc *ClientConn) onData(h frameHeader, p []byte) error {
	data, pad, err := cc.takeData(h, p)
	if err != nil {
		return err
	}
	cs := cc.stream(h.streamID)
	if cs == nil || !cs.gotHead {
		cc.giveBack(h.streamID, nil, len(p))
		if cs == nil {
			return cc.unknownStream(h)
		}
		cs.reset(ErrCodeProtocol) // DATA before the response head
		return nil
	}
	if !cs.recv.take(len(p)) {
		cc.giveBack(h.streamID, nil, len(p))
		cs.reset(ErrCodeFlowControl)
		return nil
	}
	cc.giveBack(h.streamID, &cs.recv, pad)
	if len(data) > 0 && cs.noContent {
		cc.giveBack(h.streamID, nil, len(data)) // dropped: the connection's window back
		cs.abort(ErrCodeProtocol, fmt.Errorf("http2: DATA in a response that has no content (%s, %d)", cs.req.Method, cs.resp.StatusCode))
		return nil
	}
	if cs.received += int64(len(data)); cs.declared >= 0 && cs.received > cs.declared {
		cc.giveBack(h.streamID, nil, len(data))
		cs.abort(ErrCodeProtocol, fmt.Errorf("http2: response body longer than its Content-Length (%d)", cs.declared))
		return nil
	}
	if len(data) > 0 && !cs.body.write(data) {
		cc.giveBack(h.streamID, nil, len(data)) // nobody reads it
	}
	if h.flags&flagEndStream != 0 {
		cs.endStream()
	}
	return nil
}

// endStream records the server's END_STREAM.
func (cs *clientStream) endStream() {
	if cs.declared >= 0 && cs.received != cs.declared {
		cs.abort(ErrCodeProtocol, fmt.Errorf("http2: response body of %d bytes, but its Content-Length is %d", cs.received, cs.declared))
		return
	}
	cs.cc.streamEnded(&cs.recv)
	cs.cc.mu.Lock()
	cs.ended = true
	if cs.sentEnd {
		cs.cc.forgetLocked(cs) // before the reader can see the end
	}
	cs.cc.mu.Unlock()
	cs.body.end(nil)
}

func (cc *ClientConn) onHeaders(h frameHeader) error {
	cs := cc.stream(h.streamID)
	if cs == nil {
		return cc.unknownStream(h)
	}
	endStream := h.flags&flagEndStream != 0
	if cc.tooLarge() {
		cs.abort(ErrCodeCancel, fmt.Errorf("http2: response head larger than %d bytes", maxHeaderList))
		return nil
	}
	if cs.gotHead {
		// Trailers.
		if !endStream {
			cs.reset(ErrCodeProtocol)
			return nil
		}
		tr := make(http.Header, len(cc.fields))
		for _, f := range cc.fields {
			if f.IsPseudo() || !validFieldName(f.Name) {
				cs.reset(ErrCodeProtocol)
				return nil
			}
			k := http.CanonicalHeaderKey(f.Name)
			tr[k] = append(tr[k], f.Value)
		}
		resp := cs.resp
		cs.body.mu.Lock()
		cs.body.onEOF = func() { resp.Trailer = tr }
		cs.body.mu.Unlock()
		cs.endStream()
		return nil
	}
	resp, err := cs.response(cc.fields)
	if err != nil {
		cs.abort(ErrCodeProtocol, err)
		return nil
	}
	if resp == nil {
		// An informational (1xx) head: the final one follows.
		if endStream {
			cs.reset(ErrCodeProtocol)
		}
		return nil
	}
	cs.gotHead = true
	cs.resp = resp
	cs.declared = resp.ContentLength
	if cs.req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		// A response without content (RFC 9110, 6.4.1): its
		// Content-Length describes none here, and DATA is malformed.
		cs.declared, cs.noContent = -1, true
	}
	// Always a body of the stream's, also for a response without one:
	// closing it is how the caller lets go of the stream.
	resp.Body = &clientBody{cs: cs, use: cs.use, gen: uint32(cs.use.Load() >> 32)}
	if endStream {
		if resp.ContentLength < 0 {
			resp.ContentLength = 0
		}
		cs.endStream()
	}
	cc.wake = append(cc.wake, cs)
	return nil
}

// response builds the response from a head's fields; nil for a 1xx head.
func (cs *clientStream) response(fields []hpack.HeaderField) (*http.Response, error) {
	code := -1
	regular := 0
	for _, f := range fields {
		if !f.IsPseudo() {
			regular++
			continue
		}
		if regular > 0 || f.Name != ":status" || code != -1 {
			return nil, fmt.Errorf("http2: malformed response head: pseudo-header %q", f.Name)
		}
		c, err := strconv.Atoi(f.Value)
		if err != nil || len(f.Value) != 3 || c < 100 {
			return nil, fmt.Errorf("http2: malformed response status %q", f.Value)
		}
		code = c
	}
	if code == -1 {
		return nil, errors.New("http2: response head without :status")
	}
	if code < 200 {
		return nil, nil
	}
	// The header map serves the stream's requests in turn (emptied); the
	// values are new each time, as the caller may keep them.
	h := cs.hdr
	if h == nil {
		h = make(http.Header, regular)
		cs.hdr = h
	} else {
		clear(h)
	}
	if err := fillHeader(h, make([]string, 0, regular), fields); err != nil {
		return nil, err
	}
	resp := &http.Response{
		Status: statusLine(code), StatusCode: code,
		Proto: "HTTP/2.0", ProtoMajor: 2, Request: cs.req, ContentLength: -1,
		Header: h,
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	return resp, nil
}

// header builds the Header of a head's regular fields (n of them), with
// one backing array for the values.
func header(fields []hpack.HeaderField, n int) (http.Header, error) {
	h := make(http.Header, n)
	return h, fillHeader(h, make([]string, 0, n), fields)
}

// fillHeader puts a head's regular fields into h (empty), the values of
// single-valued fields taken from vals' backing array.
func fillHeader(h http.Header, vals []string, fields []hpack.HeaderField) error {
	for _, f := range fields {
		if f.IsPseudo() {
			continue
		}
		if !validFieldName(f.Name) || connectionSpecific(f.Name) {
			return fmt.Errorf("http2: malformed header field %q", f.Name)
		}
		if !httpguts.ValidHeaderFieldValue(f.Value) {
			return fmt.Errorf("http2: invalid value of header field %q", f.Name)
		}
		k := canonicalKey(f.Name)
		if prev, ok := h[k]; ok {
			h[k] = append(prev, f.Value)
			continue
		}
		vals = append(vals, f.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return nil
}

// requestFields returns the fields of req's head, appended to dst.
func requestFields(dst []hpack.HeaderField, req *http.Request) ([]hpack.HeaderField, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	if req.URL == nil {
		return nil, errors.New("http2: request without a URL")
	}
	path := req.URL.RequestURI()
	if method == http.MethodOptions && path == "" {
		path = "*"
	}
	scheme := req.URL.Scheme
	if scheme == "" {
		scheme = "http"
	}
	dst = append(dst,
		hpack.HeaderField{Name: ":method", Value: method},
		hpack.HeaderField{Name: ":scheme", Value: scheme},
		hpack.HeaderField{Name: ":authority", Value: host},
		hpack.HeaderField{Name: ":path", Value: path})
	for k, vs := range req.Header {
		name := lowerKey(k)
		if connectionSpecific(name) || name == "host" || name == "content-length" {
			continue
		}
		if name == "te" {
			for _, v := range vs {
				if strings.EqualFold(v, "trailers") {
					dst = append(dst, hpack.HeaderField{Name: "te", Value: "trailers"})
				}
			}
			continue
		}
		if !validFieldName(name) {
			return nil, fmt.Errorf("http2: invalid header field name %q", k)
		}
		for _, v := range vs {
			dst = append(dst, hpack.HeaderField{Name: name, Value: v, Sensitive: volatile(name)})
		}
	}
	if req.ContentLength > 0 {
		dst = append(dst, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return dst, nil
}

// trailerFields are the fields of a message's trailers, nil when it has
// none.
func trailerFields(tr http.Header) []hpack.HeaderField {
	var out []hpack.HeaderField
	for k, vs := range tr {
		name := lowerKey(k)
		if connectionSpecific(name) || !validFieldName(name) {
			continue
		}
		for _, v := range vs {
			out = append(out, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return out
}

// statusLine is a response's Status as net/http writes it ("200 OK").
func statusLine(code int) string {
	switch code {
	case 200:
		return "200 OK"
	case 204:
		return "204 No Content"
	case 304:
		return "304 Not Modified"
	case 404:
		return "404 Not Found"
	case 500:
		return "500 Internal Server Error"
	case 503:
		return "503 Service Unavailable"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
