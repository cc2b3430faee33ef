package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"sync"
)

// bodyMode is how a body's end is found.
type bodyMode uint8

const (
	bodyFixed   bodyMode = iota // Content-Length bytes
	bodyChunked                 // chunked transfer coding, then trailers
	bodyToEOF                   // until the connection closes (responses)
)

// body is a message body read from the connection's bufio.Reader, with
// the semantics of net/http's body type for what ReadRequest and
// ReadResponse return: reads after Close fail, a short Content-Length body
// is io.ErrUnexpectedEOF, the last bytes of a Content-Length body come with
// io.EOF, a chunked body's trailers are read at its end into the message's
// Trailer, and Close reads what is left unless the connection is closing
// anyway. A body is reset for each message of its connection.
type body struct {
	mu      sync.Mutex // as in net/http: Close may race with a reader
	br      *bufio.Reader
	mode    bodyMode
	n       int64 // bytes left of a fixed body
	chunks  chunkedReader
	closing bool // the connection closes after this message
	// trailer is where trailers go; nil once read (or for non-chunked
	// bodies).
	trailer *http.Header
	sawEOF  bool
	closed  bool
}

var _ io.ReadCloser = (*body)(nil)

// errTrailerEOF is net/http's error for a truncated trailer section.
var errTrailerEOF = errors.New("http: unexpected EOF reading trailer")

func (b *body) reset(br *bufio.Reader, mode bodyMode, n int64, closing bool, trailer *http.Header) {
	b.br, b.mode, b.n, b.closing = br, mode, n, closing
	b.trailer = nil
	if mode == bodyChunked {
		b.chunks.reset(br)
		b.trailer = trailer
	}
	b.sawEOF, b.closed = false, false
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (n int, err error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	switch b.mode {
	case bodyFixed:
		if b.n <= 0 {
			n, err = 0, io.EOF
			break
		}
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err = b.br.Read(p)
		b.n -= int64(n)
	case bodyChunked:
		n, err = b.chunks.Read(p)
	default:
		n, err = b.br.Read(p)
	}
	if err == io.EOF {
		b.sawEOF = true
		if b.trailer != nil {
			if e := b.readTrailer(); e != nil {
				// Neither this body nor the connection may be read further.
				err = e
				b.sawEOF = false
				b.closed = true
			}
			b.trailer = nil
		} else if b.mode == bodyFixed && b.n > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil && n > 0 && b.mode == bodyFixed && b.n == 0 {
		err = io.EOF
		b.sawEOF = true
	}
	return n, err
}

// readTrailer reads the trailer section after the last chunk.
func (b *body) readTrailer() error {
	buf, err := b.br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		b.br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	// The trailer must end within the buffer: no unbounded trailer.
	if !seeUpcomingDoubleCRLF(b.br) {
		return errors.New("http: suspiciously long trailer after chunked body")
	}
	hdr, err := textproto.NewReader(b.br).ReadMIMEHeader()
	if err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	if *b.trailer == nil {
		*b.trailer = http.Header(hdr)
	} else {
		maps.Copy(*b.trailer, http.Header(hdr))
	}
	return nil
}

func seeUpcomingDoubleCRLF(r *bufio.Reader) bool {
	for peekSize := 4; ; peekSize++ {
		// Peek fails once the buffer is full.
		buf, err := r.Peek(peekSize)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// Close ends the body: it reads the rest (so that the connection can carry
// the next message) unless it was read to the end or the connection is
// closing anyway.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	switch {
	case b.sawEOF:
	case b.trailer == nil && b.closing:
	default:
		_, err = io.Copy(io.Discard, lockedBody{b})
	}
	b.closed = true
	return err
}

// discard reads and discards up to max bytes of what is left of the body
// and reports whether it ended there, so that the connection can read the
// next message. Unlike Read, it works on a body that was closed after it
// was read to its end.
func (b *body) discard(max int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sawEOF {
		return true
	}
	if b.closed {
		return false
	}
	n, err := io.CopyN(io.Discard, lockedBody{b}, max+1)
	return n <= max && err == io.EOF
}

// lockedBody reads a body whose mutex is held.
type lockedBody struct{ b *body }

func (l lockedBody) Read(p []byte) (int, error) {
	if l.b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return l.b.readLocked(p)
}

// maxChunkLineLength bounds a chunk-size line, as net/http does.
const maxChunkLineLength = 4096

var errChunkLineTooLong = errors.New("header line too long")

// chunkedReader decodes the chunked transfer coding with the rules of
// net/http's internal chunked reader: CRLF-terminated size lines (no bare
// LF, no stray CR), extensions ignored, at most 16 hex digits, a CRLF after
// each chunk, and a bound on non-data overhead. It stops at the last chunk
// (io.EOF), before the trailer section.
type chunkedReader struct {
	r        *bufio.Reader
	n        uint64 // unread bytes of the chunk
	err      error
	buf      [2]byte
	checkEnd bool  // the CRLF after the chunk data is next
	excess   int64 // overhead beyond what the data justifies
}

func (cr *chunkedReader) reset(r *bufio.Reader) {
	*cr = chunkedReader{r: r}
}

func (cr *chunkedReader) beginChunk() {
	var line []byte
	line, cr.err = readChunkLine(cr.r)
	if cr.err != nil {
		return
	}
	cr.excess += int64(len(line)) + 2
	line = trimRight(line)
	line, _, _ = bytes.Cut(line, []byte{';'})
	cr.n, cr.err = parseHexUint(line)
	if cr.err != nil {
		return
	}
	// Allow 16 bytes of overhead per chunk plus twice the chunk's data.
	cr.excess -= 16 + 2*int64(cr.n)
	cr.excess = max(cr.excess, 0)
	if cr.excess > 16<<10 {
		cr.err = errors.New("chunked encoding contains too much non-data")
	}
	if cr.n == 0 {
		cr.err = io.EOF
	}
}

func (cr *chunkedReader) chunkHeaderAvailable() bool {
	n := cr.r.Buffered()
	if n > 0 {
		peek, _ := cr.r.Peek(n)
		return bytes.IndexByte(peek, '\n') >= 0
	}
	return false
}

func (cr *chunkedReader) Read(b []byte) (n int, err error) {
	for cr.err == nil {
		if cr.checkEnd {
			if n > 0 && cr.r.Buffered() < 2 {
				// Return the data rather than block for the CRLF.
				break
			}
			if _, cr.err = io.ReadFull(cr.r, cr.buf[:]); cr.err == nil {
				if cr.buf != [2]byte{'\r', '\n'} {
					cr.err = errors.New("malformed chunked encoding")
					break
				}
			} else {
				if cr.err == io.EOF {
					cr.err = io.ErrUnexpectedEOF
				}
				break
			}
			cr.checkEnd = false
		}
		if cr.n == 0 {
			if n > 0 && !cr.chunkHeaderAvailable() {
				// Return the data rather than block for the next size line.
				break
			}
			cr.beginChunk()
			continue
		}
		if len(b) == 0 {
			break
		}
		rbuf := b
		if uint64(len(rbuf)) > cr.n {
			rbuf = rbuf[:cr.n]
		}
		var n0 int
		n0, cr.err = cr.r.Read(rbuf)
		n += n0
		b = b[n0:]
		cr.n -= uint64(n0)
		if cr.n == 0 && cr.err == nil {
			cr.checkEnd = true
		} else if cr.err == io.EOF {
			cr.err = io.ErrUnexpectedEOF
		}
	}
	return n, cr.err
}

// readChunkLine reads a chunk-size line, which must end in CRLF.
func readChunkLine(b *bufio.Reader) ([]byte, error) {
	p, err := b.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		} else if err == bufio.ErrBufferFull {
			err = errChunkLineTooLong
		}
		return nil, err
	}
	if i := bytes.IndexByte(p, '\r'); i == -1 {
		return nil, errors.New("chunked line ends with bare LF")
	} else if i != len(p)-2 {
		return nil, errors.New("invalid CR in chunked line")
	}
	p = p[:len(p)-2]
	if len(p) >= maxChunkLineLength {
		return nil, errChunkLineTooLong
	}
	return p, nil
}

func parseHexUint(v []byte) (n uint64, err error) {
	if len(v) == 0 {
		return 0, errors.New("empty hex number for chunk length")
	}
	for i, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, errors.New("invalid byte in chunk length")
		}
		if i == 16 {
			return 0, errors.New("http chunk length too large")
		}
		n = n<<4 | uint64(b)
	}
	return n, nil
}
