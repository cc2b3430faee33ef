package h1

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// ResponseReader reads the responses of one client connection with the
// rules of http.ReadResponse, into a Response it reuses. The zero value is
// ready to use.
//
// Header value slices are new for every response (one allocation for all
// of them), so that a caller may keep them, e.g. by copying them into
// another Header; the Response, its Header map and its Body are reused.
//
// With Lazy set, a response whose fields the framing rules leave as they
// are (no Transfer-Encoding, Connection, Trailer or Pragma, at most one
// Content-Length: what most responses are) comes with its Header empty:
// its fields are those Fields returns, in the order they arrived, until
// LoadHeader puts them into the Header. A proxy that passes the fields on
// as they are saves building the map, and the map's allocation.
type ResponseReader struct {
	Lazy bool

	head   headReader
	st     *responseState
	status string // the last status line, reused when repeated
	vals   slab
	// unloaded is set while the last response's fields are in head.fields
	// rather than its Header.
	unloaded bool
	cl       [1]string // the Content-Length of an unloaded response
}

type responseState struct {
	resp   http.Response
	header http.Header
	body   body
	te     [1]string
}

// Detach gives up the response last returned: the caller may keep it and
// its Header, and the next ReadResponse fills new ones.
func (r *ResponseReader) Detach() {
	r.LoadHeader()
	r.st = nil
}

// TakeHeader gives up the Header of the response last returned, which the
// caller may keep for good, and reads the next responses into h instead
// (which ReadResponse clears first). A proxy hands an upstream response's
// map to its downstream writer this way rather than copy every field.
func (r *ResponseReader) TakeHeader(h http.Header) http.Header {
	r.LoadHeader()
	old := r.st.header
	r.st.header = h
	return old
}

// Fields returns the header fields of the response last read, in the
// order they arrived, when Lazy left its Header empty; ok is false when
// the Header holds them. The slice belongs to r: it is valid until the next
// ReadResponse, and must not be modified.
func (r *ResponseReader) Fields() (fields []Field, ok bool) {
	if !r.unloaded {
		return nil, false
	}
	return r.head.fields, true
}

// LoadHeader puts the fields of the response last read into its Header,
// if Lazy left them out.
func (r *ResponseReader) LoadHeader() {
	if !r.unloaded {
		return
	}
	r.unloaded = false
	r.load(r.st.header)
}

// load adds the fields in head.fields to h.
func (r *ResponseReader) load(h http.Header) {
	for _, f := range r.head.fields {
		addValue(h, &r.vals, f.Name, f.Value)
	}
}

// ReadResponse reads the next response from br, for req (whose method
// decides whether the response has a body; nil means GET). The Response,
// its Header and Body belong to r and are overwritten by the next call,
// unless Detach is called first. Errors are those of http.ReadResponse.
func (r *ResponseReader) ReadResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	r.head.br = br
	st := r.st
	if st == nil {
		st = &responseState{header: make(http.Header, 16)}
		r.st = st
	} else {
		clear(st.header)
	}
	r.unloaded = false
	r.vals.fresh()
	resp, err := r.read(br, st, req)
	if err != nil {
		r.unloaded = false
		return nil, unexpectedEOF(err)
	}
	return resp, nil
}

// unloadedLength reports whether a head read into head.fields, with the
// fields seen, may stay out of the Header: the framing rules read nothing
// of it but one Content-Length, and rewrite nothing. It also returns that
// Content-Length, as the framing rules take it.
func (r *ResponseReader) unloadedLength(seen present) ([]string, bool) {
	if seen&^(hasHost|hasContentLength) != 0 {
		return nil, false
	}
	if seen&hasContentLength == 0 {
		return nil, true
	}
	n := 0
	for _, f := range r.head.fields {
		if f.Name == "Content-Length" {
			r.cl[0] = f.Value
			n++
		}
	}
	if n > 1 {
		return nil, false // folded into one, or refused, with the map's help
	}
	return r.cl[:], true
}

func (r *ResponseReader) read(br *bufio.Reader, st *responseState, req *http.Request) (*http.Response, error) {
	resp := &st.resp
	*resp = http.Response{Request: req}
	line, err := r.head.readLine()
	if err != nil {
		return nil, err
	}
	if string(line) != r.status {
		r.status = string(line)
	}
	proto, status, ok := strings.Cut(r.status, " ")
	if !ok {
		return nil, badStringError("malformed HTTP response", r.status)
	}
	resp.Proto = proto
	resp.Status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(resp.Status, " ")
	if len(code) != 3 {
		return nil, badStringError("malformed HTTP status code", code)
	}
	resp.StatusCode, err = strconv.Atoi(code)
	if err != nil || resp.StatusCode < 0 {
		return nil, badStringError("malformed HTTP status code", code)
	}
	if resp.ProtoMajor, resp.ProtoMinor, ok = http.ParseHTTPVersion(resp.Proto); !ok {
		return nil, badStringError("malformed HTTP version", resp.Proto)
	}

	h := st.header
	resp.Header = h
	var seen present
	var lens []string
	if r.Lazy {
		if seen, err = r.head.readHeader(nil, nil); err != nil {
			return nil, err
		}
		if lens, r.unloaded = r.unloadedLength(seen); !r.unloaded {
			// The framing rules read and may rewrite the fields.
			r.load(h)
			lens = contentLengths(h, seen)
		}
	} else {
		if seen, err = r.head.readHeader(h, &r.vals); err != nil {
			return nil, err
		}
		lens = contentLengths(h, seen)
	}
	fixPragmaCacheControl(h, seen, &r.vals)

	method := "GET"
	if req != nil {
		method = req.Method
	}
	closing := shouldClose(resp.ProtoMajor, resp.ProtoMinor, h, seen, true)
	f, err := readFraming(h, seen, lens, &r.vals, true, resp.StatusCode, method, resp.ProtoMajor, resp.ProtoMinor, closing)
	if err != nil {
		return nil, err
	}
	resp.ContentLength = f.contentLength
	resp.Close = f.close
	resp.Trailer = f.trailer
	switch {
	case f.chunked:
		if method == "HEAD" || !bodyAllowedForStatus(resp.StatusCode) {
			resp.Body = http.NoBody
		} else {
			st.body.reset(br, bodyChunked, 0, f.close, &resp.Trailer)
			resp.Body = &st.body
		}
		st.te[0] = "chunked"
		resp.TransferEncoding = st.te[:1:1]
	case f.length == 0:
		resp.Body = http.NoBody
	case f.length > 0:
		st.body.reset(br, bodyFixed, f.length, f.close, nil)
		resp.Body = &st.body
	case f.close:
		st.body.reset(br, bodyToEOF, 0, f.close, nil)
		resp.Body = &st.body
	default:
		resp.Body = http.NoBody
	}
	return resp, nil
}
