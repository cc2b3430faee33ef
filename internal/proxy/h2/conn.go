package h2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2/hpack"
)

// Windows this package offers its peer: per stream, and for the whole
// connection. They bound what a peer may send before the receiver has
// read it, so they bound the memory a connection may hold.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
	// maxHeaderList bounds a decoded header block (names, values and 32
	// bytes per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts).
	maxHeaderList = 1 << 20
)

// conn is what the client and the server share: the connection's writer,
// which batches the frames of every stream, its flow control towards the
// peer, and the frame reader of its read loop.
type conn struct {
	nc net.Conn

	// wmu guards everything up to the read side. Frames are appended to
	// pending, in the order they must go out; the goroutine that finds
	// no flush in progress writes pending out, again and again until it
	// finds it empty, while others append behind it.
	wmu      sync.Mutex
	flowCond sync.Cond // on wmu: a send window grew, or the connection failed
	pending  []byte
	spare    []byte
	flushing bool
	// yielding is set while flushSoonLocked lets others add to pending.
	yielding bool
	// flushQueued is set while a goroutine of flushAsyncLocked waits to
	// write; control counts the bytes of control frames in pending.
	flushQueued bool
	control     int
	werr        error // the connection failed: nothing more is written
	enc         *hpack.Encoder
	encBuf      bytes.Buffer
	// sendWindow is what the peer lets us send on the connection, and
	// peerInitialWindow what each new stream starts with.
	sendWindow        int64
	peerInitialWindow int64
	peerMaxFrame      int
	// consumed is what the readers of bodies have read since the last
	// connection WINDOW_UPDATE was sent.
	consumed int
	// recvWin is what the peer may still send on the connection: the
	// read loop takes from it, giveBack adds to it.
	recvWin atomic.Int64

	// The read side belongs to the read loop.
	rbuf      []byte
	rstart    int
	rend      int
	dec       *hpack.Decoder
	fields    []hpack.HeaderField
	listSize  uint32
	block     []byte // a header block continued by CONTINUATION frames
	blockHead frameHeader
	// beforeRead, if set, runs when the read loop has handled every
	// whole frame it read and is about to read more.
	beforeRead func()
}

func (c *conn) init(nc net.Conn) {
	c.nc = nc
	c.flowCond.L = &c.wmu
	c.pending = make([]byte, 0, 16<<10)
	c.enc = hpack.NewEncoder(&c.encBuf)
	c.sendWindow = defaultWindow
	c.peerInitialWindow = defaultWindow
	c.peerMaxFrame = defaultMaxFrameSize
	c.rbuf = make([]byte, 64<<10)
	c.recvWin.Store(defaultWindow)
	c.dec = hpack.NewDecoder(4096, c.emit)
	c.dec.SetMaxStringLength(maxHeaderList)
}

// ourSettings are the settings both ends of this package announce, with
// the connection window raised from its default.
func (c *conn) appendOurSettings(b []byte, kv ...uint32) []byte {
	kv = append(kv, settingInitialWindowSize, streamWindow, settingMaxHeaderListSize, maxHeaderList)
	b = appendSettings(b, kv...)
	b = appendWindowUpdate(b, 0, connWindow-defaultWindow)
	c.recvWin.Store(connWindow)
	return b
}

// flushLocked writes out what is pending unless another goroutine is
// already doing so (it will write this too). Call it with wmu held; it
// releases wmu while it writes.
func (c *conn) flushLocked() {
	if c.flushing {
		return
	}
	c.flushing = true
	for len(c.pending) > 0 && c.werr == nil {
		buf := c.pending
		c.pending = c.spare[:0]
		c.control = 0
		c.wmu.Unlock()
		_, err := c.nc.Write(buf)
		c.wmu.Lock()
		c.spare = buf[:0]
		if err != nil {
			c.failLocked(fmt.Errorf("http2: write: %w", err))
		}
	}
	if c.werr != nil {
		c.pending = c.pending[:0]
	}
	c.flushing = false
	c.flowCond.Broadcast() // for whoever waits for the writes to end
}

// flushSoonLocked is flushLocked after letting the goroutines that are
// ready to run go first: those that add frames meanwhile (other streams'
// requests or responses, woken by the same poll) leave them to this
// flush, so that many streams go out in one write. With nothing else
// ready to run, the yield returns at once and the write is not delayed.
// Call it with wmu held; it releases wmu while it yields and writes.
func (c *conn) flushSoonLocked() {
	if c.flushing {
		return
	}
	c.flushing, c.yielding = true, true
	c.wmu.Unlock()
	runtime.Gosched()
	c.wmu.Lock()
	c.flushing, c.yielding = false, false
	c.flowCond.Broadcast() // sendNow waits for the yield only, not the write
	c.flushLocked()
}

// maxFreeStreams bounds the streams a connection keeps for reuse.
const maxFreeStreams = 128

// freeRetired moves retired streams to the free list (up to
// maxFreeStreams; the rest go to the collector) and returns both lists.
// The read loop calls it, with the lock that guards retired held.
func freeRetired[S any](free, retired []S) ([]S, []S) {
	if len(retired) == 0 {
		return free, retired
	}
	free = append(free, retired[:min(len(retired), max(0, maxFreeStreams-len(free)))]...)
	clear(retired)
	return free, retired[:0]
}

// failLocked records the connection's failure: writers stop, and anyone
// waiting for a send window wakes to see it.
func (c *conn) failLocked(err error) {
	if c.werr == nil {
		c.werr = err
	}
	c.flowCond.Broadcast()
}

// maxQueued bounds the control frames (SETTINGS and PING ACKs,
// RST_STREAM, WINDOW_UPDATE) that may wait to be written while the peer
// does not read: past it the connection fails (a flood of PINGs, or of
// frames that each call for an RST_STREAM, would otherwise grow them
// without end). DATA is bounded by the peer's flow-control windows.
const maxQueued = 1 << 20

// send appends control frames built by build and has them written by a
// goroutine of their own: the read loop, which sends most of them, must
// never block on a write (the peer may be blocked writing to it).
func (c *conn) send(build func(b []byte) []byte) {
	c.wmu.Lock()
	if c.werr == nil {
		n := len(c.pending)
		c.pending = build(c.pending)
		c.control += len(c.pending) - n
		c.flushAsyncLocked()
	}
	c.wmu.Unlock()
}

// sendNow is send writing at once, on this goroutine: for a GOAWAY before
// the connection closes.
func (c *conn) sendNow(build func(b []byte) []byte) {
	c.wmu.Lock()
	if c.werr == nil {
		c.pending = build(c.pending)
		// A writer that yields (flushSoonLocked) holds the flush for a
		// moment: wait for it, so that the frame has gone out (or is
		// being written) when this returns. (A write in progress is not
		// waited for: it may block on a peer that does not read.)
		for c.yielding && c.werr == nil {
			c.flowCond.Wait()
		}
		c.flushLocked()
	}
	c.wmu.Unlock()
}

// flushAsyncLocked has a goroutine write out what is pending, unless a
// write is already under way (it takes these frames too). Call it with
// wmu held.
func (c *conn) flushAsyncLocked() {
	if c.control > maxQueued {
		c.failLocked(connError{code: ErrCodeEnhanceYourCalm, msg: "the peer does not read what it asks for"})
		return
	}
	if c.flushing || c.flushQueued {
		return
	}
	c.flushQueued = true
	go func() {
		c.wmu.Lock()
		c.flushQueued = false
		c.flushLocked()
		c.wmu.Unlock()
	}()
}

// failed returns the connection's write failure, if any: the read loop
// ends on it.
func (c *conn) failed() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.werr
}

// appendHeaders appends the header block of fields as a HEADERS frame and
// CONTINUATION frames as needed. Call it with wmu held: the encoder's
// table must see blocks in the order they are sent.
func (c *conn) appendHeaders(stream uint32, fields []hpack.HeaderField, endStream bool) {
	c.encBuf.Reset()
	for _, f := range fields {
		c.enc.WriteField(f)
	}
	block := c.encBuf.Bytes()
	typ := uint8(frameHeaders)
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), c.peerMaxFrame)
		var flags uint8
		if first && endStream {
			flags |= flagEndStream
		}
		if n == len(block) {
			flags |= flagEndHeaders
		}
		c.pending = appendFrameHeader(c.pending, n, typ, flags, stream)
		c.pending = append(c.pending, block[:n]...)
		block = block[n:]
		typ = frameContinuation
	}
}

// sendWindowFor is a stream's send window, kept with wmu held.
type sendWindowFor struct {
	n     int64
	reset bool // the stream is gone: stop sending
}

// appendData appends p as DATA frames on stream as far as the windows let
// it, waiting (with wmu released) for WINDOW_UPDATEs when they are spent.
// Call it with wmu held. It returns the connection's failure, or
// errStreamGone when the stream was reset while it waited.
func (c *conn) appendData(stream uint32, w *sendWindowFor, p []byte, endStream bool) error {
	for {
		if c.werr != nil {
			return c.werr
		}
		if w.reset {
			return errStreamGone
		}
		// A window can be negative: the peer may lower its initial
		// window below what a stream has already sent (RFC 9113,
		// section 6.9.2).
		n := int(max(0, min(int64(len(p)), c.sendWindow, w.n, int64(c.peerMaxFrame))))
		if n == 0 && len(p) > 0 {
			// Out of window: let what is pending go, then wait.
			c.flushLocked()
			if c.werr == nil && !w.reset && (c.sendWindow <= 0 || w.n <= 0) {
				c.flowCond.Wait()
			}
			continue
		}
		var flags uint8
		if endStream && n == len(p) {
			flags = flagEndStream
		}
		c.pending = appendFrameHeader(c.pending, n, frameData, flags, stream)
		c.pending = append(c.pending, p[:n]...)
		c.sendWindow -= int64(n)
		w.n -= int64(n)
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

var errStreamGone = errors.New("http2: stream reset")

// recvCredit is a stream's receive window: what the peer may still send
// on it (the read loop takes from it, giveBack adds to it), and what its
// body's reader has consumed since the last WINDOW_UPDATE (kept with wmu
// held).
type recvCredit struct {
	win      atomic.Int64
	consumed int
	// ended is set (with wmu held) once the peer has ended the stream:
	// no more of its window is needed.
	ended bool
}

func (r *recvCredit) init() { r.win.Store(streamWindow) }

// take accounts for n bytes of DATA the peer sent on the stream; false
// when they are more than its window allowed.
func (r *recvCredit) take(n int) bool { return r.win.Add(-int64(n)) >= 0 }

// giveBack returns window for n bytes of DATA that were consumed, or that
// nobody will read (padding, data for a stream gone): a WINDOW_UPDATE goes
// out once a quarter of a window has been consumed. sc is the stream's
// credit, nil when only the connection counts them.
func (c *conn) giveBack(stream uint32, sc *recvCredit, n int) {
	if n <= 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return
	}
	c.consumed += n
	flush := false
	if c.consumed >= connWindow/4 {
		c.recvWin.Add(int64(c.consumed))
		c.pending = appendWindowUpdate(c.pending, 0, uint32(c.consumed))
		c.consumed = 0
		flush = true
	}
	if sc != nil && !sc.ended {
		if sc.consumed += n; sc.consumed >= streamWindow/4 {
			sc.win.Add(int64(sc.consumed))
			c.pending = appendWindowUpdate(c.pending, stream, uint32(sc.consumed))
			sc.consumed = 0
			flush = true
		}
	}
	if flush {
		c.flushAsyncLocked()
	}
}

// streamEnded records (for giveBack) that the peer ended the stream.
func (c *conn) streamEnded(sc *recvCredit) {
	c.wmu.Lock()
	sc.ended = true
	c.wmu.Unlock()
}

// readFrame returns the next frame. The payload is valid until the next
// call.
func (c *conn) readFrame() (frameHeader, []byte, error) {
	for {
		if avail := c.rend - c.rstart; avail >= frameHeaderLen {
			h := parseFrameHeader(c.rbuf[c.rstart:])
			if h.length > defaultMaxFrameSize {
				return h, nil, connError{code: ErrCodeFrameSize, msg: fmt.Sprintf("frame of %d bytes, larger than the %d allowed", h.length, defaultMaxFrameSize)}
			}
			if end := c.rstart + frameHeaderLen + int(h.length); end <= c.rend {
				p := c.rbuf[c.rstart+frameHeaderLen : end]
				c.rstart = end
				return h, p, nil
			}
		}
		if c.rstart == c.rend {
			c.rstart, c.rend = 0, 0
		} else if c.rstart > 0 && len(c.rbuf)-c.rstart < frameHeaderLen+defaultMaxFrameSize {
			c.rend = copy(c.rbuf, c.rbuf[c.rstart:c.rend])
			c.rstart = 0
		}
		if c.beforeRead != nil {
			c.beforeRead()
		}
		n, err := c.nc.Read(c.rbuf[c.rend:])
		c.rend += n
		if n == 0 && err != nil {
			if err == io.EOF && c.rend != c.rstart {
				err = io.ErrUnexpectedEOF
			}
			return frameHeader{}, nil, err
		}
	}
}

// readPreface consumes the client preface.
func (c *conn) readPreface() error {
	for c.rend < len(Preface) {
		n, err := c.nc.Read(c.rbuf[c.rend:])
		c.rend += n
		if n == 0 && err != nil {
			return fmt.Errorf("http2: reading the client preface: %w", err)
		}
	}
	if string(c.rbuf[:len(Preface)]) != Preface {
		return protocolError("the connection does not start with the HTTP/2 client preface")
	}
	c.rstart = len(Preface)
	return nil
}

// onCommon handles the frames of stream 0 both ends treat alike:
// SETTINGS, PING and a connection WINDOW_UPDATE. applySetting sees each
// setting the peer sends (after the checks RFC 9113 requires) and
// initialWindow a change of the streams' initial send window, both with
// wmu held.
func (c *conn) onCommon(h frameHeader, p []byte, applySetting func(id uint16, v uint32), initialWindow func(delta int64)) error {
	switch h.typ {
	case frameSettings:
		if h.streamID != 0 {
			return protocolError("SETTINGS on stream %d", h.streamID)
		}
		if h.flags&flagAck != 0 {
			if len(p) != 0 {
				return connError{code: ErrCodeFrameSize, msg: "SETTINGS ACK with a payload"}
			}
			return nil
		}
		if len(p)%6 != 0 {
			return connError{code: ErrCodeFrameSize, msg: fmt.Sprintf("SETTINGS of %d bytes", len(p))}
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		for ; len(p) > 0; p = p[6:] {
			id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
			switch id {
			case settingHeaderTableSize:
				c.enc.SetMaxDynamicTableSizeLimit(v)
			case settingEnablePush:
				if v > 1 {
					return protocolError("SETTINGS_ENABLE_PUSH %d", v)
				}
			case settingInitialWindowSize:
				if v > maxWindow {
					return connError{code: ErrCodeFlowControl, msg: fmt.Sprintf("SETTINGS_INITIAL_WINDOW_SIZE %d", v)}
				}
				if delta := int64(v) - c.peerInitialWindow; delta != 0 {
					c.peerInitialWindow = int64(v)
					initialWindow(delta)
					c.flowCond.Broadcast()
				}
			case settingMaxFrameSize:
				if v < defaultMaxFrameSize || v > 1<<24-1 {
					return protocolError("SETTINGS_MAX_FRAME_SIZE %d", v)
				}
				c.peerMaxFrame = int(v)
			}
			applySetting(id, v)
		}
		if c.werr == nil {
			c.pending = appendFrameHeader(c.pending, 0, frameSettings, flagAck, 0)
			c.flushAsyncLocked()
		}
	case framePing:
		if h.streamID != 0 {
			return protocolError("PING on stream %d", h.streamID)
		}
		if len(p) != 8 {
			return connError{code: ErrCodeFrameSize, msg: fmt.Sprintf("PING of %d bytes", len(p))}
		}
		if h.flags&flagAck == 0 {
			c.send(func(b []byte) []byte {
				return append(appendFrameHeader(b, 8, framePing, flagAck, 0), p...)
			})
		}
	case frameWindowUpdate:
		incr, err := windowIncrement(h, p)
		if err != nil {
			return err
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.sendWindow += int64(incr); c.sendWindow > maxWindow {
			return connError{code: ErrCodeFlowControl, msg: "the connection's send window passed 2^31-1"}
		}
		c.flowCond.Broadcast()
	}
	return nil
}

// windowIncrement checks a WINDOW_UPDATE and returns its increment.
func windowIncrement(h frameHeader, p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, connError{code: ErrCodeFrameSize, msg: fmt.Sprintf("WINDOW_UPDATE of %d bytes", len(p))}
	}
	incr := binary.BigEndian.Uint32(p) & (1<<31 - 1)
	if incr == 0 {
		if h.streamID == 0 {
			return 0, protocolError("WINDOW_UPDATE of 0 on the connection")
		}
		return 0, StreamError{StreamID: h.streamID, Code: ErrCodeProtocol}
	}
	return incr, nil
}

// takeData accounts for a DATA frame against the connection's receive
// window and returns its data without padding, and the padding's length.
func (c *conn) takeData(h frameHeader, p []byte) (data []byte, pad int, err error) {
	if h.streamID == 0 {
		return nil, 0, protocolError("DATA on stream 0")
	}
	if c.recvWin.Add(-int64(len(p))) < 0 {
		return nil, 0, connError{code: ErrCodeFlowControl, msg: "the peer sent more DATA than the connection window allows"}
	}
	data, err = unpad(h, p)
	return data, len(p) - len(data), err
}

// unpad strips a PADDED frame's padding.
func unpad(h frameHeader, p []byte) ([]byte, error) {
	if h.flags&flagPadded == 0 {
		return p, nil
	}
	if len(p) == 0 || int(p[0]) >= len(p) {
		return nil, protocolError("padding longer than the frame on stream %d", h.streamID)
	}
	return p[1 : len(p)-int(p[0])], nil
}

// headerBlock assembles a HEADERS frame and its CONTINUATION frames and
// decodes the block into c.fields. done is false while CONTINUATION
// frames are still to come. (The decoder's table must see every block, so
// a block is decoded even when its stream is going to be refused.)
func (c *conn) headerBlock(h frameHeader, p []byte) (head frameHeader, done bool, err error) {
	if h.typ == frameHeaders {
		if p, err = unpad(h, p); err != nil {
			return h, false, err
		}
		if h.flags&flagPriority != 0 {
			if len(p) < 5 {
				return h, false, connError{code: ErrCodeFrameSize, msg: "HEADERS too short for its priority"}
			}
			p = p[5:]
		}
		if h.flags&flagEndHeaders == 0 {
			c.block = append(c.block[:0], p...)
			c.blockHead = h
			return h, false, nil
		}
		return h, true, c.decode(p)
	}
	// CONTINUATION
	if c.blockHead.streamID == 0 || h.streamID != c.blockHead.streamID {
		return h, false, protocolError("CONTINUATION on stream %d without a HEADERS frame before it", h.streamID)
	}
	if c.block = append(c.block, p...); len(c.block) > maxHeaderList {
		return h, false, connError{code: ErrCodeEnhanceYourCalm, msg: "header block larger than the header list allowed"}
	}
	if h.flags&flagEndHeaders == 0 {
		return h, false, nil
	}
	head = c.blockHead
	c.blockHead = frameHeader{}
	return head, true, c.decode(c.block)
}

// onHeaderFrame adds a HEADERS or CONTINUATION frame to the header block
// being read, and hands a complete block (its fields in c.fields) to
// handle with its HEADERS frame's header.
func (c *conn) onHeaderFrame(h frameHeader, p []byte, handle func(frameHeader) error) error {
	head, done, err := c.headerBlock(h, p)
	if err != nil || !done {
		return err
	}
	return handle(head)
}

// continuing reports whether a header block waits for CONTINUATION: no
// other frame may come in between.
func (c *conn) continuing() bool { return c.blockHead.streamID != 0 }

func (c *conn) decode(block []byte) error {
	c.fields = c.fields[:0]
	c.listSize = 0
	if _, err := c.dec.Write(block); err != nil {
		return connError{code: ErrCodeCompression, msg: err.Error()}
	}
	if err := c.dec.Close(); err != nil {
		return connError{code: ErrCodeCompression, msg: err.Error()}
	}
	return nil
}

func (c *conn) emit(f hpack.HeaderField) {
	if c.listSize += f.Size(); c.listSize > maxHeaderList {
		return // the block's fields are dropped; the caller sees tooLarge
	}
	c.fields = append(c.fields, f)
}

// tooLarge reports whether the last block decoded passed maxHeaderList.
func (c *conn) tooLarge() bool { return c.listSize > maxHeaderList }

// connectionSpecific are the header fields HTTP/2 forbids (RFC 9113,
// section 8.2.2), lower case.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// validFieldName reports whether name is a lower-case token, as HTTP/2
// requires of field names.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' || !tokenChar(c) {
			return false
		}
	}
	return true
}

func tokenChar(c byte) bool {
	return c < 0x80 && c > 0x20 && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}
