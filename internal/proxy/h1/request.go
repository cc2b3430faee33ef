package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// RequestReader reads the requests of one server connection with the
// rules of http.ReadRequest, into a Request it reuses. The zero value is
// ready to use.
type RequestReader struct {
	head   headReader
	tmpl   *http.Request // carries the context of every request
	st     *requestState
	target string // the last request target, reused when repeated
	vals   slab
}

// requestState is everything a request read by a RequestReader points to,
// allocated together and reused until Detach.
type requestState struct {
	req    http.Request
	url    url.URL
	header http.Header
	body   body
	te     [1]string
	// hasBody says whether req.Body is body (not http.NoBody).
	hasBody bool
}

// SetContext sets the context of the requests ReadRequest returns (the
// connection's), as Request.WithContext would, once per connection rather
// than once per request.
func (r *RequestReader) SetContext(ctx context.Context) {
	r.tmpl = new(http.Request).WithContext(ctx)
}

// Detach gives up the request last returned: the caller may keep it, its
// Header and its Body, and the next ReadRequest fills new ones. Call it when
// something may still use the request after it was served.
func (r *RequestReader) Detach() {
	r.st = nil
}

// DiscardBody reads and discards up to max bytes of what is left of the
// last request's body, and reports whether the body ended within them, so
// that the connection can read the next request. A body that was read to
// its end counts as ended even if it was also closed (as net/http's client
// closes a request body it sent).
func (r *RequestReader) DiscardBody(max int64) bool {
	st := r.st
	if st == nil || !st.hasBody {
		return true
	}
	return st.body.discard(max)
}

// ReadRequest reads the next request from br. The request, its URL, Header
// and Body belong to r and are overwritten by the next call, unless Detach
// is called first. Errors are those of http.ReadRequest; read errors of br
// are returned as they are (io.EOF before the first byte of a request).
func (r *RequestReader) ReadRequest(br *bufio.Reader) (*http.Request, error) {
	r.head.br = br
	st := r.st
	if st == nil {
		st = &requestState{header: make(http.Header, 16)}
		r.st = st
	} else {
		clear(st.header)
	}
	st.hasBody = false
	r.vals.reuse()
	line, err := r.head.readLine()
	if err != nil {
		return nil, err
	}
	req, err := r.read(br, st, line)
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	return req, nil
}

// unexpectedEOF reports an end of input inside a message head as
// io.ErrUnexpectedEOF, as net/http does.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *RequestReader) read(br *bufio.Reader, st *requestState, line []byte) (*http.Request, error) {
	req := &st.req
	if r.tmpl != nil {
		*req = *r.tmpl
	} else {
		*req = http.Request{}
	}

	// Request line: METHOD SP target SP HTTP/x.y; line aliases br's buffer.
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 {
		return nil, badStringError("malformed HTTP request", string(line))
	}
	req.Method = internMethod(method)
	if !httpguts.ValidHeaderFieldName(req.Method) {
		return nil, badStringError("invalid method", req.Method)
	}
	if string(target) != r.target {
		r.target = string(target)
	}
	req.RequestURI = r.target
	req.Proto = internProto(proto)
	var ok bool
	if req.ProtoMajor, req.ProtoMinor, ok = http.ParseHTTPVersion(req.Proto); !ok {
		return nil, badStringError("malformed HTTP version", req.Proto)
	}
	if err := parseTarget(&st.url, req.Method, req.RequestURI); err != nil {
		return nil, err
	}
	req.URL = &st.url

	h := st.header
	seen, err := r.head.readHeader(h, &r.vals)
	if err != nil {
		return nil, err
	}
	req.Header = h
	var hosts []string
	if seen&hasHost != 0 {
		hosts = h["Host"]
	}
	if len(hosts) > 1 {
		return nil, errors.New("too many Host headers")
	}
	// An absolute-form target's host wins over the Host header (RFC 9112
	// section 3.2.2).
	req.Host = req.URL.Host
	if req.Host == "" && len(hosts) > 0 {
		req.Host = hosts[0]
	}
	fixPragmaCacheControl(h, seen, &r.vals)
	req.Close = shouldClose(req.ProtoMajor, req.ProtoMinor, h, seen, false)

	f, err := readFraming(h, seen, contentLengths(h, seen), &r.vals, false, 200, req.Method, req.ProtoMajor, req.ProtoMinor, req.Close)
	if err != nil {
		return nil, err
	}
	req.ContentLength = f.contentLength
	req.Close = f.close
	req.Trailer = f.trailer
	switch {
	case f.chunked:
		st.body.reset(br, bodyChunked, 0, f.close, &req.Trailer)
		req.Body = &st.body
		st.hasBody = true
		st.te[0] = "chunked"
		req.TransferEncoding = st.te[:1:1]
	case f.length == 0:
		req.Body = http.NoBody
	default:
		st.body.reset(br, bodyFixed, f.length, f.close, nil)
		req.Body = &st.body
		st.hasBody = true
	}
	if req.Method == "PRI" && len(h) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0" {
		// The HTTP/2 preface read as HTTP/1: neither chunked nor declared.
		req.ContentLength = -1
		req.Close = true
	}
	// As http.ReadRequest: the host is in req.Host only.
	delete(h, "Host")
	return req, nil
}

// parseTarget sets u from a request target as http.ReadRequest does
// (url.ParseRequestURI, and the authority form of CONNECT), without
// allocating for the common origin form.
func parseTarget(u *url.URL, method, target string) error {
	*u = url.URL{}
	justAuthority := method == "CONNECT" && !strings.HasPrefix(target, "/")
	if !justAuthority && simpleOriginForm(u, target) {
		return nil
	}
	raw := target
	if justAuthority {
		raw = "http://" + target
	}
	p, err := url.ParseRequestURI(raw)
	if err != nil {
		return err
	}
	if justAuthority {
		p.Scheme = "" // the "http://" was only for the parser
	}
	*u = *p
	return nil
}

// simpleOriginForm fills u from an origin-form target (absolute path and
// optional query) whose path url.ParseRequestURI would take as it is: no
// percent-encoding and no byte it would escape (so RawPath stays empty).
// It reports false, leaving u alone, for any other target.
func simpleOriginForm(u *url.URL, t string) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	path, query, force := t, "", false
	if i := strings.IndexByte(t, '?'); i >= 0 {
		path, query = t[:i], t[i+1:]
		// "/p?" (one '?', last) sets ForceQuery.
		force = query == ""
	}
	for i := 0; i < len(path); i++ {
		if !pathAsIs[path[i]] {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	u.Path, u.RawQuery, u.ForceQuery = path, query, force
	return true
}

// pathAsIs holds the bytes net/url keeps as they are in a path: neither
// escaped when the path is re-encoded nor a control character nor '%'.
// Computed with net/url itself so that the two cannot disagree.
var pathAsIs = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		if c == '%' || c == '?' {
			continue
		}
		p := "/" + string(rune(c))
		u := url.URL{Path: p}
		t[c] = u.EscapedPath() == p
	}
	return t
}()

func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "HEAD":
		return "HEAD"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return string(b)
}

func internProto(b []byte) string {
	switch string(b) {
	case "HTTP/1.1":
		return "HTTP/1.1"
	case "HTTP/1.0":
		return "HTTP/1.0"
	}
	return string(b)
}
