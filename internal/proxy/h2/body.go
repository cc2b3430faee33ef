package h2

import (
	"io"
	"sync"
)

// pipe carries a stream's DATA from the read loop to the body's reader.
type pipe struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	bufp *[]byte // what buf came from (pipeBufs), to give back
	r    int     // read offset in buf
	done bool    // END_STREAM arrived
	err  error
	// closed is set when the reader is gone: later data is dropped (its
	// window given back at once).
	closed bool
	// onEOF, if set, runs once as the reader reaches the end of the
	// stream (to put trailers in place before io.EOF is seen).
	onEOF func()
}

func (p *pipe) init() { p.cond.L = &p.mu }

// pipeBufs hold pipe buffers (*[]byte of pipeBufSize capacity, empty):
// a pipe takes one at its first data and gives it back once its reader
// has read to the end or closed it, so a stream's body costs no
// allocation unless it outgrows one.
var pipeBufs = sync.Pool{New: func() any { b := make([]byte, 0, pipeBufSize); return &b }}

const (
	pipeBufSize = 4 << 10
	// maxPooledPipeBuf is the largest buffer a pipe gives back.
	maxPooledPipeBuf = 64 << 10
)

// releaseLocked gives the buffer back to the pool once nothing in it is
// left to read. Call it with mu held.
func (p *pipe) releaseLocked() {
	if p.bufp == nil || p.r < len(p.buf) {
		return
	}
	if cap(p.buf) <= maxPooledPipeBuf {
		*p.bufp = p.buf[:0] // (grown, maybe)
		pipeBufs.Put(p.bufp)
	}
	p.buf, p.bufp, p.r = nil, nil, 0
}

// write adds data; it reports false when the reader is gone.
func (p *pipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.bufp == nil {
		p.bufp = pipeBufs.Get().(*[]byte)
		p.buf = (*p.bufp)[:0]
	}
	if p.r > 0 && (p.r == len(p.buf) || len(p.buf)+len(b) > cap(p.buf)) {
		// Drop what the reader has taken before growing the buffer.
		p.buf, p.r = p.buf[:copy(p.buf, p.buf[p.r:])], 0
	}
	p.buf = append(p.buf, b...)
	p.cond.Signal()
	return true
}

// end marks the end of the data: err nil for END_STREAM.
func (p *pipe) end(err error) {
	p.mu.Lock()
	if err == nil {
		p.done = true
	} else if p.err == nil && !p.done {
		p.err = err
	}
	p.cond.Signal()
	p.mu.Unlock()
}

// read reads what has arrived, waiting for something if nothing has.
func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.r == len(p.buf) && !p.done && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	if p.r < len(p.buf) {
		n := copy(b, p.buf[p.r:])
		p.r += n
		return n, nil
	}
	p.releaseLocked()
	if p.err != nil {
		return 0, p.err
	}
	if p.closed {
		return 0, errBodyClosed
	}
	if f := p.onEOF; f != nil {
		p.onEOF = nil
		f()
	}
	return 0, io.EOF
}

// close gives up the rest: it returns how many bytes were left unread
// (whose window the caller gives back) and whether the stream had ended.
func (p *pipe) close() (unread int, ended bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	unread = len(p.buf) - p.r
	p.r = len(p.buf)
	p.releaseLocked()
	p.closed = true
	p.cond.Broadcast()
	return unread, p.done || p.err != nil
}

var errBodyClosed = &bodyClosedError{}

type bodyClosedError struct{}

func (*bodyClosedError) Error() string { return "http2: read on closed body" }
