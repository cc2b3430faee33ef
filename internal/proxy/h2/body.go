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
	r    int  // read offset in buf
	done bool // END_STREAM arrived
	err  error
	// closed is set when the reader is gone: later data is dropped (its
	// window given back at once).
	closed bool
	// onEOF, if set, runs once as the reader reaches the end of the
	// stream (to put trailers in place before io.EOF is seen).
	onEOF func()
}

func (p *pipe) init() { p.cond.L = &p.mu }

// write adds data; it reports false when the reader is gone.
func (p *pipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
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
	p.buf, p.r = p.buf[:0], 0
	p.closed = true
	p.cond.Broadcast()
	return unread, p.done || p.err != nil
}

var errBodyClosed = &bodyClosedError{}

type bodyClosedError struct{}

func (*bodyClosedError) Error() string { return "http2: read on closed body" }
