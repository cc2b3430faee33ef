package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// RequestWriter writes client requests in HTTP/1.1 wire format exactly as
// http.Request.Write does (request line, Host, User-Agent, Content-Length,
// then the other headers sorted by name, then the body), without
// allocating for the common requests: no Transfer-Encoding, trailers or
// Close flag, a body that is absent or of known length, a plain ASCII
// host, no client trace. Other requests are written by Request.Write. The
// zero value is ready to use.
type RequestWriter struct {
	fields []field
	body   io.LimitedReader
	num    [20]byte // a local array would escape through bw.Write
}

// field is a header field with its values, as a map entry of http.Header.
type field struct {
	name   string
	values []string
}

// Write writes req to bw, and its body, which it closes; it does not
// flush bw (but, as Request.Write, flushes the head before a body that is
// not in memory).
func (w *RequestWriter) Write(bw *bufio.Writer, req *http.Request) error {
	if !w.simple(req) {
		return req.Write(bw)
	}
	err := w.write(bw, req)
	if req.Body != nil {
		// Request.Write closes the body whatever happened.
		if cerr := req.Body.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// simple reports whether req takes the allocation-free path.
func (w *RequestWriter) simple(req *http.Request) bool {
	u := req.URL
	if u == nil || u.Opaque != "" || req.Method == "CONNECT" || req.Close ||
		len(req.TransferEncoding) > 0 || req.Trailer != nil {
		return false
	}
	if !(req.Body == nil && req.ContentLength == 0 || req.Body == http.NoBody || req.Body != nil && req.ContentLength > 0) {
		return false
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	for i := 0; i < len(host); i++ {
		if !hostAsIs[host[i]] {
			return false
		}
	}
	return httptrace.ContextClientTrace(req.Context()) == nil
}

// hostAsIs holds the bytes of host names that net/http sends unchanged:
// no punycode, no zone to remove, nothing that makes it invalid.
var hostAsIs = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range ".-_:[]" {
		t[c] = true
	}
	return t
}()

func (w *RequestWriter) write(bw *bufio.Writer, req *http.Request) error {
	h := req.Header
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if containsCTL(path) || containsCTL(req.URL.RawQuery) {
		return fmt.Errorf("net/http: can't write control character in Request.URL")
	}
	method := req.Method
	if method == "" {
		method = "GET"
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")

	// User-Agent: Go's default unless the header has one; an empty one
	// means none.
	ua := "Go-http-client/1.1"
	if vs, ok := h["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			ua = vs[0]
		}
	}
	if ua != "" {
		bw.WriteString("User-Agent: ")
		writeValue(bw, ua)
		bw.WriteString("\r\n")
	}

	hasBody := req.Body != nil && req.Body != http.NoBody
	length := int64(0)
	if hasBody {
		length = req.ContentLength
	}
	if length > 0 || req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH" {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.num[:0], length, 10))
		bw.WriteString("\r\n")
	}

	// Sorted by insertion as the map yields them: a head has a handful of
	// fields, for which this costs less than a sort afterwards.
	fields := w.fields[:0]
	for k, vs := range h {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		fields = append(fields, field{})
		i := len(fields) - 1
		for ; i > 0 && fields[i-1].name > k; i-- {
			fields[i] = fields[i-1]
		}
		fields[i] = field{k, vs}
	}
	for _, f := range fields {
		if !httpguts.ValidHeaderFieldName(f.name) {
			continue // as net/http: dropped
		}
		WriteField(bw, f.name, f.values)
	}
	clear(fields)
	w.fields = fields[:0]
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	if !hasBody {
		return nil
	}
	if !inMemory(req.Body) {
		// Let the server see the head before a body that may be slow.
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	// As Request.Write, through bw.ReadFrom.
	w.body = io.LimitedReader{R: req.Body, N: length}
	n, err := bw.ReadFrom(&w.body)
	w.body.R = nil
	if err != nil {
		return err
	}
	// As Request.Write: what the body has beyond ContentLength is read
	// and dropped, and a body of another length is an error.
	extra, err := io.Copy(io.Discard, req.Body)
	if err != nil {
		return err
	}
	if n+extra != length {
		return fmt.Errorf("http: ContentLength=%d with Body length %d", length, n+extra)
	}
	return nil
}

var nopCloserTypes = [...]reflect.Type{
	reflect.TypeOf(io.NopCloser(nil)),
	reflect.TypeOf(io.NopCloser(struct {
		io.Reader
		io.WriterTo
	}{})),
}

// inMemory reports whether r is one of the in-memory readers (possibly in
// io.NopCloser) before which net/http does not flush the head.
func inMemory(r io.Reader) bool {
	switch r.(type) {
	case *bytes.Reader, *bytes.Buffer, *strings.Reader:
		return true
	}
	t := reflect.TypeOf(r)
	if t == nopCloserTypes[0] || t == nopCloserTypes[1] {
		inner, _ := reflect.ValueOf(r).Field(0).Interface().(io.Reader)
		return inMemory(inner)
	}
	return false
}

// WriteField writes a header field, one line per value, each value as
// writeValue writes it.
func WriteField(bw *bufio.Writer, name string, values []string) {
	for _, v := range values {
		WriteLine(bw, name, v)
	}
}

// WriteLine writes one header field line, its value as writeValue writes
// it.
func WriteLine(bw *bufio.Writer, name, value string) {
	bw.WriteString(name)
	bw.WriteString(": ")
	writeValue(bw, value)
	bw.WriteString("\r\n")
}

// writeValue writes a header field value as net/http does in requests and
// responses alike: CR and LF become spaces, and surrounding spaces, tabs,
// CRs and LFs are dropped.
func writeValue(bw *bufio.Writer, v string) {
	// The common value needs neither, which two vectorized scans and two
	// byte tests tell faster than a trim with a cutset does.
	if n := len(v); n > 0 && !trimmed(v[0]) && !trimmed(v[n-1]) &&
		strings.IndexByte(v, '\n') < 0 && strings.IndexByte(v, '\r') < 0 {
		bw.WriteString(v)
		return
	}
	v = strings.Trim(v, " \t\r\n")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

// trimmed reports whether writeValue drops c at either end of a value.
func trimmed(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func containsCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}
