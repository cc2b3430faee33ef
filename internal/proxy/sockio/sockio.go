// Package sockio reads and writes a socket with raw, non-blocking system
// calls, for the proxy's per-request path.
//
// A net.Conn's Read and Write enter the system call through the runtime's
// syscall bookkeeping (entersyscall/exitsyscall). When a call is still in
// the kernel at sysmon's next tick, sysmon takes the P away and hands it to
// another thread; a loopback write, which runs the receiver's TCP stack
// before it returns, often is. Profiles of the sidecar showed sysmon
// polling every 20 µs and the hand-offs that followed costing about a sixth
// of its CPU. The sockets are non-blocking, so a read or write never waits
// in the kernel: sockio makes them without the bookkeeping, as an event
// loop would, and parks in the netpoller only on EAGAIN (through
// syscall.RawConn, which also honours deadlines). For a request and its
// answer, HoldNextWrite goes one step further: the request leaves from
// inside the read that waits for the answer, which then waits without
// first finding the socket empty.
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Conn reads and writes through raw system calls. Everything else (Close,
// deadlines, addresses) is the wrapped connection's. Like a net.Conn, it
// may be read and written from different goroutines at once.
type Conn struct {
	net.Conn
	rc syscall.RawConn
	r  call // the read in progress
	w  call // the write in progress
	// hold makes the next Write hold its bytes in held for the Read
	// after it (see HoldNextWrite). Only a connection that uses holds has
	// either set, so a Read and a Write from different goroutines touch
	// them only to load hold.
	hold atomic.Bool
	held []byte
}

// call is one direction's call in progress. fn (and, for reads, fnHeld)
// are bound once, so that a call does not allocate a closure; mu
// serializes callers, since the arguments live here rather than on the
// stack.
type call struct {
	mu    sync.Mutex
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
	// out is a held write that a read sends first (writeThenRead), and
	// outErr says errno is the write's.
	out    []byte
	outErr bool
	fnHeld func(fd uintptr) bool
}

// New returns a Conn for c, or c itself when it has no file descriptor
// (a pipe, a TLS connection) and nothing is to be gained.
func New(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{Conn: c, rc: rc}
	s.r.fn = s.r.read
	s.r.fnHeld = s.r.writeThenRead
	s.w.fn = s.w.write
	return s
}

// HoldNextWrite makes the next Write return at once, holding its bytes,
// and the Read after it send them first. It is for an exchange in which
// the peer sends nothing until it has the whole request, such as the
// client side of HTTP/1.1: call it before the request's last Write, and
// read the response.
//
// The gain is a system call per exchange. A Read after an ordinary Write
// first tries the socket, which the answer cannot have reached yet
// (EAGAIN), and only then waits in the netpoller. The held Read sends the
// request from inside the netpoller's read (after it has reset the
// socket's readiness, so the answer's arrival cannot be missed) and waits
// for the answer straight away, as an event loop would.
//
// The held bytes must not change until that Read returns (a
// bufio.Writer's buffer does not before its next Write), and the Write
// and the Read must come from one goroutine. An error sending them is the
// Read's, as a "write" error. The next Read ends the hold whether or not
// a Write came.
func (s *Conn) HoldNextWrite() { s.hold.Store(true) }

// CloseWrite half-closes the connection when the wrapped one can.
func (s *Conn) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.Conn.Close()
}

// SyscallConn returns the wrapped connection's raw connection.
func (s *Conn) SyscallConn() (syscall.RawConn, error) { return s.rc, nil }

// Unwrap returns the wrapped connection.
func (s *Conn) Unwrap() net.Conn { return s.Conn }

// Read reads up to len(p) bytes, waiting in the netpoller while none are
// available.
func (s *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r := &s.r
	r.mu.Lock()
	r.buf, r.n, r.errno = p, 0, 0
	fn := r.fn
	if s.hold.Load() {
		s.hold.Store(false)
	}
	if s.held != nil {
		r.out, r.outErr, s.held = s.held, false, nil
		fn = r.fnHeld
	}
	err := s.rc.Read(fn)
	if rest := r.out; rest != nil && err == nil && !r.outErr {
		// The socket's send buffer was full: send the rest the ordinary
		// way, then read.
		r.out = nil
		if _, err := s.Write(rest); err != nil {
			r.buf = nil
			r.mu.Unlock()
			return 0, err
		}
		err = s.rc.Read(r.fn)
	}
	n, errno, outErr := r.n, r.errno, r.outErr
	r.buf, r.out, r.outErr = nil, nil, false
	r.mu.Unlock()
	if err != nil {
		return n, s.opError("read", err)
	}
	if errno != 0 {
		if outErr {
			return 0, s.opError("write", os.NewSyscallError("write", errno))
		}
		return n, s.opError("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *call) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
		switch e {
		case 0:
			r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			r.errno = e
			return true
		}
	}
}

// writeThenRead is read for a Read with a held write: its first call
// sends r.out and waits (false) for the answer; the calls after it read.
// A full send buffer leaves the rest in r.out for Read to send.
func (r *call) writeThenRead(fd uintptr) bool {
	if r.out == nil {
		return r.read(fd)
	}
	for len(r.out) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.out[0])), uintptr(len(r.out)))
		switch e {
		case 0:
			r.out = r.out[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true
		default:
			r.errno, r.outErr = e, true
			return true
		}
	}
	r.out = nil
	return false // the peer has the request only now: wait for its answer
}

// Write writes all of p, waiting in the netpoller while the socket's send
// buffer is full. After HoldNextWrite, it holds p for the next Read.
func (s *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.hold.Load() {
		s.hold.Store(false)
		s.held = p
		return len(p), nil
	}
	w := &s.w
	w.mu.Lock()
	w.buf, w.n, w.errno = p, 0, 0
	err := s.rc.Write(w.fn)
	n, errno := w.n, w.errno
	w.buf = nil
	w.mu.Unlock()
	if err != nil {
		return n, s.opError("write", err)
	}
	if errno != 0 {
		return n, s.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (w *call) write(fd uintptr) bool {
	for w.n < len(w.buf) {
		rest := w.buf[w.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			w.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			w.errno = e
			return true
		}
	}
	return true
}

// opError shapes err as net.Conn's methods do, so that callers testing for
// net.ErrClosed, os.ErrDeadlineExceeded or a *net.OpError see what they
// would see without sockio.
func (s *Conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: op, Net: s.LocalAddr().Network(), Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}
