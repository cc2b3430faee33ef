package listener

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// Protocols the HTTP inspector reports, with Envoy's names.
const (
	ProtoHTTP10 = "http/1.0"
	ProtoHTTP11 = "http/1.1"
	ProtoH2C    = "h2c"
)

// maxSniff bounds how many bytes the inspector reads looking for the end of
// an HTTP/1.x request line (Envoy's http_inspector reads at most 8 KiB too).
const maxSniff = 8 << 10

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Inspect reads the first bytes of c until it can tell whether they start
// an HTTP/1.x request line or the HTTP/2 prior-knowledge preface, as Envoy's
// http_inspector does. It returns the protocol detected ("" when the bytes
// are not HTTP, the peer closed, or the timeout passed), the bytes read
// (which must be replayed to whoever serves the connection) and whether the
// timeout passed before a decision. A timeout of 0 waits forever.
func Inspect(c net.Conn, timeout time.Duration) (protocol string, read []byte, timedOut bool) {
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
		defer c.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if p, done := classify(buf); done {
			return p, buf, false
		}
		if err != nil {
			return "", buf, errors.Is(err, os.ErrDeadlineExceeded)
		}
		if len(buf) >= maxSniff {
			return "", buf, false
		}
	}
}

// classify decides from the bytes so far; done is false when more bytes are
// needed.
func classify(b []byte) (protocol string, done bool) {
	if len(b) == 0 {
		return "", false
	}
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return ProtoH2C, true
		}
		return "", false
	}
	line, _, complete := bytes.Cut(b, []byte("\n"))
	// The method: one or more token characters, then a space.
	i := 0
	for i < len(line) && isTokenChar(line[i]) {
		i++
	}
	if i == len(line) {
		return "", complete || len(line) >= maxSniff
	}
	if i == 0 || line[i] != ' ' {
		return "", true
	}
	for _, ch := range line[i:] {
		if ch < 0x20 && ch != '\r' || ch == 0x7f {
			return "", true
		}
	}
	if !complete {
		return "", false
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	rest := line[i+1:]
	sp := bytes.LastIndexByte(rest, ' ')
	if sp <= 0 || bytes.IndexByte(rest[:sp], ' ') >= 0 {
		return "", true
	}
	switch string(rest[sp+1:]) {
	case "HTTP/1.1":
		return ProtoHTTP11, true
	case "HTTP/1.0":
		return ProtoHTTP10, true
	}
	return "", true
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// replayConn is a connection whose first bytes were already read (by the
// inspector): Read returns them first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the underlying TCP connection.
func (c *replayConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
