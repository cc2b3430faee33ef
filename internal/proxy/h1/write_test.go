package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// closeCounter is a body that counts Close calls; it is neither one of
// net/http's in-memory readers nor wrapped in io.NopCloser.
type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// flushCounter counts the writes that reach the connection; like the
// proxy's connections, it has no ReadFrom.
type flushCounter struct {
	buf    bytes.Buffer
	writes int
}

func (f *flushCounter) Write(p []byte) (int, error) { f.writes++; return f.buf.Write(p) }

type writeCase struct {
	name string
	// req builds the request; body is its content (nil: no body).
	req  func() *http.Request
	body func() io.ReadCloser
}

func newReq(method, target string, h http.Header, cl int64) func() *http.Request {
	return func() *http.Request {
		u, err := url.Parse(target)
		if err != nil {
			panic(err)
		}
		return &http.Request{Method: method, URL: u, Header: h.Clone(), ContentLength: cl, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	}
}

var writeCases = []writeCase{
	{name: "GET without User-Agent gets Go's", req: newReq("GET", "http://10.0.0.1:80/a/b?x=1", http.Header{"Accept": {"*/*"}}, 0)},
	{name: "empty User-Agent means none", req: newReq("GET", "http://h/", http.Header{"User-Agent": {""}, "X-B": {"2"}, "X-A": {"1"}}, 0)},
	{name: "only the first User-Agent", req: newReq("GET", "http://h/", http.Header{"User-Agent": {" ua/1\r\n", "ua/2"}}, 0)},
	{name: "values sanitized", req: newReq("GET", "http://h/", http.Header{"X-A": {"  a\r\nb\tc ", "\r\n", ""}, "X-Multi": {"1", "2"}}, 0)},
	{name: "values sanitized inside or at one end", req: newReq("GET", "http://h/", http.Header{"X-A": {"a\rb", "a\nb", "\ta", "a\n", " ", "plain"}}, 0)},
	{name: "invalid names dropped, excluded ones ignored", req: newReq("GET", "http://h/", http.Header{
		"Bad Name": {"x"}, "Host": {"other"}, "Content-Length": {"99"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Ok": {"y"}}, 0)},
	{name: "POST without body sends a zero length", req: newReq("POST", "http://h/p", nil, 0)},
	{name: "PATCH NoBody", req: func() *http.Request {
		r := newReq("PATCH", "http://h/p", nil, 5)()
		r.Body = http.NoBody
		return r
	}},
	{name: "DELETE without body sends no length", req: newReq("DELETE", "http://h/p", nil, 0)},
	{name: "escaped path and forced query", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.URL.Path, r.URL.RawPath, r.URL.ForceQuery = "/a b/c/d", "", true
		return r
	}},
	{name: "raw path kept", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.URL.Path, r.URL.RawPath = "/a/b", "/a%2Fb"
		return r
	}},
	{name: "empty path is /", req: func() *http.Request {
		r := newReq("GET", "http://h", nil, 0)()
		r.Host = "reviews:9080"
		return r
	}},
	{name: "control character in path", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.URL.Path, r.URL.RawPath = "/a\x01", "/a\x01"
		return r
	}},
	{name: "control character in query", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.URL.RawQuery = "a=\x7f"
		return r
	}},
	{name: "host with a space is not sent", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.Host = "a b"
		return r
	}},
	{name: "IPv6 zone removed", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.Host = "[fe80::1%25eth0]:80"
		return r
	}},
	{name: "unicode host in punycode", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.Host = "bücher.example:80"
		return r
	}},
	{name: "in-memory body", req: newReq("PUT", "http://h/p", http.Header{"Content-Type": {"text/plain"}}, 5),
		body: func() io.ReadCloser { return io.NopCloser(strings.NewReader("hello")) }},
	{name: "streamed body", req: newReq("POST", "http://h/p", nil, 5),
		body: func() io.ReadCloser { return &closeCounter{Reader: strings.NewReader("hello")} }},
	{name: "body shorter than its length", req: newReq("POST", "http://h/p", nil, 9),
		body: func() io.ReadCloser { return &closeCounter{Reader: strings.NewReader("hello")} }},
	{name: "body longer than its length", req: newReq("POST", "http://h/p", nil, 2),
		body: func() io.ReadCloser { return &closeCounter{Reader: strings.NewReader("hello")} }},
	{name: "body larger than the buffer", req: newReq("POST", "http://h/p", nil, 10000),
		body: func() io.ReadCloser { return &closeCounter{Reader: strings.NewReader(strings.Repeat("z", 10000))} }},
	{name: "Close flag (net/http's path)", req: func() *http.Request {
		r := newReq("GET", "http://h/", nil, 0)()
		r.Close = true
		return r
	}},
	{name: "chunked (net/http's path)", req: newReq("POST", "http://h/p", nil, -1),
		body: func() io.ReadCloser { return &closeCounter{Reader: strings.NewReader("hello")} }},
}

// written writes c's request with write into a 4 KiB bufio.Writer over a
// connection that counts writes.
func written(c writeCase, write func(*bufio.Writer, *http.Request) error) (out string, writes int, closed int, err error) {
	req := c.req()
	var cc *closeCounter
	if c.body != nil {
		req.Body = c.body()
		cc, _ = req.Body.(*closeCounter)
	}
	conn := &flushCounter{}
	bw := bufio.NewWriterSize(conn, 4096)
	err = write(bw, req)
	bw.Flush()
	if cc != nil {
		closed = cc.closed
	}
	return conn.buf.String(), conn.writes, closed, err
}

func TestRequestWriterWritesWhatRequestWriteDoes(t *testing.T) {
	for _, c := range writeCases {
		t.Run(c.name, func(t *testing.T) {
			want, wantWrites, wantClosed, wantErr := written(c, func(bw *bufio.Writer, r *http.Request) error { return r.Write(bw) })
			var w RequestWriter
			got, gotWrites, gotClosed, gotErr := written(c, w.Write)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("error: Request.Write %v, RequestWriter %v", wantErr, gotErr)
			}
			if wantErr == nil && got != want {
				t.Errorf("wrote\n%q\nwant (Request.Write)\n%q", got, want)
			}
			if gotWrites != wantWrites {
				t.Errorf("%d writes to the connection, Request.Write makes %d", gotWrites, wantWrites)
			}
			if gotClosed != wantClosed {
				t.Errorf("body closed %d times, Request.Write closes it %d times", gotClosed, wantClosed)
			}
		})
	}
}

// TestRequestWriterAcrossRequests writes every case with one writer, in
// turn, as a connection does: what it remembers of one head must not
// change how it writes the next.
func TestRequestWriterAcrossRequests(t *testing.T) {
	var w RequestWriter
	for range 2 {
		for _, c := range writeCases {
			want, _, _, wantErr := written(c, func(bw *bufio.Writer, r *http.Request) error { return r.Write(bw) })
			got, _, _, gotErr := written(c, w.Write)
			if (wantErr == nil) != (gotErr == nil) || wantErr == nil && got != want {
				t.Fatalf("%s: wrote\n%q (%v)\nwant (Request.Write)\n%q (%v)", c.name, got, gotErr, want, wantErr)
			}
		}
	}
}

func TestRequestWriterDoesNotAllocate(t *testing.T) {
	u, _ := url.Parse("http://10.0.0.1:9080/api/v1/reviews/42?verbose=1")
	req := &http.Request{Method: "GET", URL: u, Host: "reviews:9080", Header: http.Header{
		"User-Agent": {"curl/8"}, "Accept": {"*/*"}, "X-Request-Id": {"5f1c"}, "X-Forwarded-Proto": {"http"},
	}}
	bw := bufio.NewWriterSize(io.Discard, 4096)
	var w RequestWriter
	if n := testing.AllocsPerRun(100, func() {
		if err := w.Write(bw, req); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
	}); n != 0 {
		t.Errorf("RequestWriter.Write allocates %v times per request, want 0", n)
	}
}

// FuzzRequestWrite writes requests parsed from the input, as the proxy
// forwards them, with both writers.
func FuzzRequestWrite(f *testing.F) {
	f.Add([]byte("GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n"))
	f.Add([]byte("POST /p HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET /a%2Fb%zz HTTP/1.1\r\nHost: b\u00fccher\r\nX: \x80\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		body, err := io.ReadAll(in.Body)
		if err != nil {
			return
		}
		c := writeCase{req: func() *http.Request {
			return &http.Request{
				Method:        in.Method,
				URL:           &url.URL{Scheme: "http", Host: "10.0.0.1:80", Path: in.URL.Path, RawPath: in.URL.RawPath, RawQuery: in.URL.RawQuery, ForceQuery: in.URL.ForceQuery},
				Header:        in.Header.Clone(),
				Host:          in.Host,
				ContentLength: int64(len(body)),
			}
		}}
		if len(body) > 0 {
			c.body = func() io.ReadCloser { return &closeCounter{Reader: bytes.NewReader(body)} }
		}
		want, _, _, wantErr := written(c, func(bw *bufio.Writer, r *http.Request) error { return r.Write(bw) })
		var w RequestWriter
		got, _, _, gotErr := written(c, w.Write)
		if (wantErr == nil) != (gotErr == nil) || wantErr == nil && got != want {
			t.Fatalf("RequestWriter wrote %q (%v), Request.Write %q (%v)", got, gotErr, want, wantErr)
		}
	})
}

func TestHeadEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: h\n\nbody", 24},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22},
		{"GET / HTTP/1.1\r\nHost: h\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r", -1},
		{"\r\n", -1},
		{"", -1},
	} {
		if got := HeadEnd([]byte(c.in)); got != c.want {
			t.Errorf("HeadEnd(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestHeadEndFrom: a head scanned as it arrives, a byte at a time, ends
// where HeadEnd says it does.
func TestHeadEndFrom(t *testing.T) {
	for _, head := range []string{"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n", "\r\nGET / HTTP/1.0\n\n"} {
		msg := head + "next"
		next := 0
		for n := 1; n <= len(msg); n++ {
			var end int
			end, next = HeadEndFrom([]byte(msg[:n]), next)
			want := -1
			if n >= len(head) {
				want = len(head)
			}
			if end != want {
				t.Fatalf("%q after %d bytes: end %d, want %d", head, n, end, want)
			}
			if end >= 0 {
				break
			}
		}
	}
}
