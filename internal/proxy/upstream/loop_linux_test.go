package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/evloop"
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

// waiterFunc is a LoopWaiter for tests.
type waiterFunc func(resp *http.Response, err error)

func (f waiterFunc) Response(resp *http.Response, err error) { f(resp, err) }
func (f waiterFunc) Stream(head *http.Response, conn net.Conn) {
	conn.Close()
	f(head, errors.New("streamed"))
}

// TestLoopClientLetsGoOfARetiredEndpoint: once no configuration uses an
// endpoint, the idle connections a loop keeps to it close.
func TestLoopClientLetsGoOfARetiredEndpoint(t *testing.T) {
	closed := make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if _, err := br.ReadByte(); err == io.EOF {
			closed <- struct{}{}
		}
	}()
	pools := NewPools(PoolsOptions{})
	defer pools.Close()
	clusters := pools.Build([]ClusterSpec{{Name: "c", Endpoints: []EndpointSpec{{Address: ln.Addr().String()}}}})
	ep := clusters["c"].Endpoints()[0]
	if !LoopOK(clusters["c"]) {
		t.Fatal("a plain HTTP/1.1 cluster of one IP endpoint is not LoopOK")
	}
	l, err := evloop.New()
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	defer l.Close()
	client := NewLoopClient(l)
	defer l.Post(client.CloseIdle)
	got := make(chan string, 1)
	var x LoopExchange
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	l.Post(func() {
		client.Send(ep, req, 0, waiterFunc(func(resp *http.Response, err error) {
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			got <- string(b)
		}), &x)
	})
	select {
	case b := <-got:
		if b != "ok" {
			t.Fatalf("response %q, want ok", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response")
	}
	pools.Build(nil) // the endpoint leaves the configuration
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop kept its idle connection to a retired endpoint")
	}
}
