package upstream

import (
	"net/http"
	"testing"
)

func TestResponseEnd(t *testing.T) {
	get := &http.Request{Method: http.MethodGet}
	head := &http.Request{Method: http.MethodHead}
	cases := []struct {
		name   string
		resp   string
		req    *http.Request
		eof    bool
		end    int // -1: not all there
		keep   bool
		stream bool
		err    bool
	}{
		{name: "content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", end: 41, keep: true},
		{name: "content-length, body short", resp: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabc", end: -1},
		{name: "head incomplete", resp: "HTTP/1.1 200 OK\r\nContent-Len", end: -1},
		{name: "bare LF lines", resp: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", end: 36, keep: true},
		{name: "chunked with trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n", end: 80, keep: true},
		{name: "chunked, last chunk missing", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", end: -1, stream: true},
		{name: "chunked, trailer unfinished", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n", end: -1, stream: true},
		{name: "content-length too long to hold", resp: "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\nabc", end: -1, stream: true},
		{name: "chunked, bad size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: true},
		{name: "interim then final", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", end: 52, keep: true},
		{name: "no body for HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", req: head, end: 39, keep: true},
		{name: "304", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", end: 49, keep: true},
		{name: "until close, open", resp: "HTTP/1.0 200 OK\r\n\r\nabc", end: -1, stream: true},
		{name: "until close, closed", resp: "HTTP/1.0 200 OK\r\n\r\nabc", eof: true, end: 22},
		{name: "not HTTP", resp: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.req
			if req == nil {
				req = get
			}
			end, keep, stream, err := responseEnd([]byte(c.resp), req, c.eof)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error: %v", err, c.err)
			}
			if c.err {
				return
			}
			if end != c.end || end >= 0 && keep != c.keep || stream != c.stream {
				t.Errorf("responseEnd = %d, keep %v, stream %v; want %d, keep %v, stream %v", end, keep, stream, c.end, c.keep, c.stream)
			}
			if end > len(c.resp) {
				t.Errorf("end %d beyond the %d bytes", end, len(c.resp))
			}
		})
	}
}
