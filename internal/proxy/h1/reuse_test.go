package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// repeat is a reader that returns the same bytes forever, like a client
// sending the same request on a keep-alive connection.
type repeat struct {
	msg []byte
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.msg[r.off:])
		n += c
		r.off = (r.off + c) % len(r.msg)
	}
	return n, nil
}

const keepAliveRequest = "GET /api/v1/reviews/42?verbose=1 HTTP/1.1\r\n" +
	"Host: reviews:9080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n" +
	"Accept-Encoding: gzip\r\nX-Tenant-Name: acme\r\nX-B3-Traceid: 80f198ee56343ba8\r\n\r\n"

const keepAliveResponse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" +
	"Server: envoy\r\nX-Upstream-Thing: 1\r\nContent-Length: 2\r\n\r\n{}"

func TestReadRequestRepeatedHeadersDoNotAllocate(t *testing.T) {
	br := bufio.NewReaderSize(&repeat{msg: []byte(keepAliveRequest)}, 4096)
	var rr RequestReader
	rr.SetContext(context.Background())
	read := func() {
		req, err := rr.ReadRequest(br)
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.Path != "/api/v1/reviews/42" || req.Header.Get("X-Tenant-Name") != "acme" || req.Host != "reviews:9080" {
			t.Fatalf("read %s %s %v", req.Host, req.URL, req.Header)
		}
	}
	read() // fills the caches
	if n := testing.AllocsPerRun(100, read); n != 0 {
		t.Errorf("ReadRequest allocates %v times per repeated request, want 0", n)
	}
}

func TestReadResponseRepeatedHeadersAllocateOnce(t *testing.T) {
	br := bufio.NewReaderSize(&repeat{msg: []byte(keepAliveResponse)}, 4096)
	var rr ResponseReader
	req := &http.Request{Method: "GET"}
	buf := make([]byte, 16)
	read := func() {
		resp, err := rr.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := io.ReadFull(resp.Body, buf[:2]); n != 2 || resp.Header.Get("Server") != "envoy" {
			t.Fatalf("read %d %v", n, resp.Header)
		}
	}
	read()
	// One allocation: the header values' slices, new for every response.
	if n := testing.AllocsPerRun(100, read); n != 1 {
		t.Errorf("ReadResponse allocates %v times per repeated response, want 1", n)
	}
}

// TestChangingValues: a value that changes with every request (a request
// id) is not allocated for each, and every value read stays as it was
// read while later ones are cut from the same block and from new ones.
func TestChangingValues(t *testing.T) {
	var in bytes.Buffer
	const n = 400
	for i := range n {
		fmt.Fprintf(&in, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: %036d\r\nAccept: */*\r\n\r\n", i)
	}
	br := bufio.NewReader(&in)
	var rr RequestReader
	rr.SetContext(context.Background())
	var got []string
	read := func() {
		req, err := rr.ReadRequest(br)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, req.Header.Get("X-Request-Id"))
	}
	read()
	read()
	got = slices.Grow(got, n)
	if a := testing.AllocsPerRun(n/2, read); a != 0 {
		t.Errorf("%v allocations per request whose X-Request-Id changes, want less than one", a)
	}
	for i, id := range got {
		if want := fmt.Sprintf("%036d", i); id != want {
			t.Fatalf("request %d's X-Request-Id is %q, want %q (read wrong, or changed after)", i, id, want)
		}
	}
}

// TestLazyResponse: a Lazy reader leaves a plain response's fields out of
// its Header, in arrival order, without allocating; a response whose
// framing fields the rules rewrite is loaded as usual.
func TestLazyResponse(t *testing.T) {
	br := bufio.NewReaderSize(&repeat{msg: []byte(keepAliveResponse)}, 4096)
	rr := ResponseReader{Lazy: true}
	req := &http.Request{Method: "GET"}
	buf := make([]byte, 16)
	want := []Field{{"Content-Type", "application/json"}, {"Server", "envoy"}, {"X-Upstream-Thing", "1"}, {"Content-Length", "2"}}
	read := func() {
		resp, err := rr.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		fields, ok := rr.Fields()
		if !ok || len(resp.Header) != 0 || !slices.Equal(fields, want) {
			t.Fatalf("Fields() = %v, %v with Header %v; want %v and an empty Header", fields, ok, resp.Header, want)
		}
		if n, _ := io.ReadFull(resp.Body, buf[:2]); n != 2 || resp.ContentLength != 2 {
			t.Fatalf("read %d of a body of length %d", n, resp.ContentLength)
		}
	}
	read()
	if n := testing.AllocsPerRun(100, read); n != 0 {
		t.Errorf("a lazy ReadResponse allocates %v times per repeated response, want 0", n)
	}
	resp, err := rr.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	rr.LoadHeader()
	if _, ok := rr.Fields(); ok || resp.Header.Get("Server") != "envoy" || resp.Header.Get("Content-Length") != "2" {
		t.Fatalf("after LoadHeader: Fields ok %v, Header %v", ok, resp.Header)
	}
	io.ReadFull(resp.Body, buf[:2])

	chunked := "HTTP/1.1 200 OK\r\nServer: envoy\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
	rr = ResponseReader{Lazy: true}
	resp, err = rr.ReadResponse(bufio.NewReader(strings.NewReader(chunked)), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rr.Fields(); ok || resp.Header.Get("Server") != "envoy" || resp.ContentLength != -1 {
		t.Fatalf("chunked: Fields ok %v, Header %v, length %d; want the Header loaded", ok, resp.Header, resp.ContentLength)
	}
}

func TestRequestReaderReusesUntilDetached(t *testing.T) {
	in := "POST /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /b HTTP/1.1\r\nHost: b\r\nX-B: 2\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: c\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var rr RequestReader
	first, err := rr.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	hdr := first.Header
	if !rr.DiscardBody(100) {
		t.Fatal("the body of the first request did not end")
	}
	second, err := rr.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if second != first || second.URL.Path != "/b" || hdr.Get("X-A") != "" || hdr.Get("X-B") != "2" || second.Body != http.NoBody {
		t.Fatalf("second request: same object %v, path %s, header %v", second == first, second.URL.Path, hdr)
	}
	rr.Detach()
	third, err := rr.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if third == second || third.Header["X-B"] != nil {
		t.Fatalf("after Detach the request was reused (same object %v, header %v)", third == second, third.Header)
	}
	// What the caller kept is as it was.
	if second.URL.Path != "/b" || second.Host != "b" || second.Header.Get("X-B") != "2" {
		t.Errorf("detached request changed: %s %s %v", second.Host, second.URL.Path, second.Header)
	}
}

func TestDiscardBody(t *testing.T) {
	tests := []struct {
		name string
		req  string
		// read is how many body bytes the handler reads; close says it
		// closes the body afterwards (as net/http's client does with a
		// request body it sent).
		read  int
		close bool
		max   int64
		want  bool
	}{
		{"no body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, false, 10, true},
		{"unread, small", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 0, false, 10, true},
		{"unread, too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 0, false, 4, false},
		{"read and closed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 5, true, 0, true},
		{"partly read and closed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 2, true, 10, true},
		{"truncated", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\nhello", 0, false, 2000, false},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 1, false, 100, true},
		{"chunked, bad trailer", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n", 5, false, 100, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.req + "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"))
			var rr RequestReader
			req, err := rr.ReadRequest(br)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadFull(req.Body, make([]byte, tc.read))
			if tc.close {
				req.Body.Close()
			}
			if got := rr.DiscardBody(tc.max); got != tc.want {
				t.Fatalf("DiscardBody = %v, want %v", got, tc.want)
			}
			if !tc.want {
				return
			}
			next, err := rr.ReadRequest(br)
			if err != nil || next.URL.Path != "/next" {
				t.Fatalf("next request: %v %v", next, err)
			}
		})
	}
}

func TestBodyReadAfterCloseFails(t *testing.T) {
	br := bufio.NewReader(bytes.NewReader([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")))
	var rr RequestReader
	req, err := rr.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	req.Body.Close()
	if _, err := req.Body.Read(make([]byte, 1)); err != http.ErrBodyReadAfterClose {
		t.Errorf("read after close: %v, want %v", err, http.ErrBodyReadAfterClose)
	}
}

func TestSetContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "conn")
	var rr RequestReader
	rr.SetContext(ctx)
	br := bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	for i := range 2 {
		req, err := rr.ReadRequest(br)
		if err != nil {
			t.Fatal(err)
		}
		if req.Context().Value(key{}) != "conn" {
			t.Fatalf("request %d does not carry the connection's context", i)
		}
	}
}
