// Package rawhttp is test support for weft-proxy's benchmarks: an HTTP/1.1
// backend that answers every request with fixed bytes and allocates nothing
// per request, so that a benchmark's allocations are the proxy's; a relay
// that is the floor any proxy of weft-proxy's shape can reach; and the
// byte-level helpers they and raw clients share.
package rawhttp

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// Backend listens on a loopback port and answers every request on a
// kept-alive connection with resp. It understands just enough HTTP for
// what a proxy sends: a head, then a body of Content-Length bytes. It
// returns the address; the listener closes when the test ends.
func Backend(tb testing.TB, resp string) string {
	tb.Helper()
	out := []byte(resp)
	return listen(tb, func(c net.Conn) { serve(c, out) })
}

// listen serves every connection to a loopback port with conn, on a
// goroutine of its own, until the test ends; it returns the address.
func listen(tb testing.TB, conn func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go accept(ln, conn)
	return ln.Addr().String()
}

// accept serves every connection ln accepts with conn, on a goroutine of
// its own, until ln is closed.
func accept(ln net.Listener, conn func(net.Conn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go conn(c)
	}
}

// Relay listens on a loopback port and relays every request of a kept-alive
// connection to upstream over a connection of its own, and the response
// back, with nothing but framing: it finds the end of each head and reads
// Content-Length bodies, and changes no byte. It has weft-proxy's shape (a
// goroutine per connection, Go's netpoller, one write per head) without
// any of its work, so a benchmark through it measures the floor for that
// shape on the machine. It returns the address; the listener closes when
// the test ends.
func Relay(tb testing.TB, upstream string) string {
	tb.Helper()
	return listen(tb, func(c net.Conn) { relay(c, upstream) })
}

// ServeRelay is Relay on ln, until ln is closed; weftbench's go-relay row
// runs it as a process of its own.
func ServeRelay(ln net.Listener, upstream string) error {
	return accept(ln, func(c net.Conn) { relay(c, upstream) })
}

func relay(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	in, out := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := readMessage(c, in)
		if err != nil {
			return
		}
		if _, err := u.Write(in[:n]); err != nil {
			return
		}
		if n, err = readMessage(u, out); err != nil {
			return
		}
		if _, err := c.Write(out[:n]); err != nil {
			return
		}
	}
}

// readMessage reads one message (a head and its Content-Length body) of a
// peer that sends one at a time into buf, and returns its length.
func readMessage(c net.Conn, buf []byte) (int, error) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return 0, err
		}
		n += m
		if end := bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 {
			if total := end + 4 + max(ContentLength(buf[:end]), 0); n >= total {
				return total, nil
			}
		}
		if n == len(buf) {
			return 0, errTooLarge
		}
	}
}

var errTooLarge = errors.New("rawhttp: message larger than the buffer")

func serve(c net.Conn, resp []byte) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			reqLen := end + 4 + max(ContentLength(buf[:end]), 0)
			if reqLen > n {
				break
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
			n = copy(buf, buf[reqLen:n])
		}
		if n == len(buf) {
			return // a request larger than the buffer: not for this backend
		}
	}
}

// ContentLength returns the Content-Length of a message head (the name in
// any case), 0 when there is none and -1 when its value is not a number.
func ContentLength(head []byte) int {
	const name = "content-length:"
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return 0
		}
		head = head[i+1:]
		if len(head) > len(name) && bytes.EqualFold(head[:len(name)], []byte(name)) {
			v := head[len(name):]
			if j := bytes.IndexByte(v, '\r'); j >= 0 {
				v = v[:j]
			}
			return Atoi(bytes.TrimSpace(v))
		}
	}
	return 0
}

// Atoi parses the decimal digits of b without allocating; -1 if there are
// none, or other bytes.
func Atoi(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
