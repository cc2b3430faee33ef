package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/model"
)

// serving starts a Manager with one listener whose chain is h.
func serving(t *testing.T, h func(x *chain.Exchange)) (*Manager, string) {
	t.Helper()
	return servingWith(t, Options{}, h)
}

// servingWith is serving with a Manager built from o.
func servingWith(t *testing.T, o Options, h func(x *chain.Exchange)) (*Manager, string) {
	t.Helper()
	m := New(o)
	addr := freeAddr(t)
	l := answering(t, "l", addr, "")
	l.FilterChains[0].Chain = chain.HandlerFunc(h)
	m.Apply(&model.Model{Listeners: []*model.Listener{l}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m, addr
}

// testHandler answers by path.
func testHandler(x *chain.Exchange) {
	w, r := x.W, x.R
	switch r.URL.Path {
	case "/stream":
		io.WriteString(w, "one,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two")
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	case "/ignore-body":
		io.WriteString(w, "ignored")
	case "/abort":
		io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	case "/close":
		w.Header().Set("Connection", "close")
		io.WriteString(w, "closing")
	case "/big":
		io.WriteString(w, strings.Repeat("b", 10000))
	case "/empty":
		w.WriteHeader(http.StatusNoContent)
	case "/not-modified":
		w.Header().Set("Content-Length", "10")
		w.Header().Set("Transfer-Encoding", "chunked")
		w.Header().Set("Date", "Tue, 01 Jan 2030 00:00:00 GMT")
		w.WriteHeader(http.StatusNotModified)
	case "/sized":
		w.Header().Set("Content-Length", "2")
		w.Header().Set("Transfer-Encoding", "chunked")
		io.WriteString(w, "hi")
	case "/empty-length":
		w.Header()["Content-Length"] = nil
		io.WriteString(w, "hi")
	case "/trailers":
		// As the Forwarder passes on an upstream's trailers, after a
		// head it has not written yet.
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		w.Header()[http.TrailerPrefix+"Grpc-Status"] = []string{"5"}
	case "/chunked-trailers":
		io.WriteString(w, "one,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two")
		w.Header()[http.TrailerPrefix+"Grpc-Status"] = []string{"0"}
		w.Header()[http.TrailerPrefix+"X-Odd"] = []string{"a\r\nb"}
	case "/unsafe-value":
		w.Header()["X-Odd"] = []string{" a\r\nb\t"}
		io.WriteString(w, "hi")
	default:
		w.Header().Set("X-Host", r.Host)
		io.WriteString(w, "hi")
	}
}

type exchange struct {
	send string // raw bytes written at once (may hold several requests)
	want []wantResp
	// open says whether the connection must still be open afterwards.
	open bool
}

type wantResp struct {
	code    int
	body    string
	header  map[string]string // "" value: must be absent
	chunked bool
	method  string
	trailer map[string]string // read after the body
}

func TestLeanServerFraming(t *testing.T) {
	tests := []struct {
		name string
		exchange
	}{
		{"keep-alive GET, pipelined twice", exchange{
			send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n",
			want: []wantResp{
				{code: 200, body: "hi", header: map[string]string{"Content-Length": "2", "X-Host": "x", "Connection": ""}},
				{code: 200, body: "hi", header: map[string]string{"X-Host": "y"}},
			},
			open: true}},
		{"absolute form", exchange{
			send: "GET http://reviews:9080/x HTTP/1.1\r\nHost: reviews:9080\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"X-Host": "reviews:9080"}}}, open: true}},
		{"streamed response is chunked", exchange{
			send: "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "one,two", chunked: true}}, open: true}},
		{"large response is chunked", exchange{
			send: "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: strings.Repeat("b", 10000), chunked: true}, {code: 200, body: "hi"}}, open: true}},
		{"HEAD has no body", exchange{
			send: "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, method: "HEAD", header: map[string]string{"Content-Length": "2"}}, {code: 200, body: "hi"}}, open: true}},
		{"204 has no length", exchange{
			send: "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 204, header: map[string]string{"Content-Length": "", "Transfer-Encoding": ""}}}, open: true}},
		{"304 keeps its Content-Length and Date, not Transfer-Encoding", exchange{
			send: "GET /not-modified HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 304, header: map[string]string{"Content-Length": "10", "Date": "Tue, 01 Jan 2030 00:00:00 GMT"}}, {code: 200, body: "hi"}}, open: true}},
		{"the handler's Content-Length wins over its Transfer-Encoding", exchange{
			send: "GET /sized HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"Content-Length": "2"}}, {code: 200, body: "hi"}}, open: true}},
		{"a Content-Length key without a value sets no length", exchange{
			send: "GET /empty-length HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"Content-Length": "2"}}, {code: 200, body: "hi"}}, open: true}},
		{"trailers the writer cannot send are not written as header lines", exchange{
			send: "GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, header: map[string]string{"Trailer": "", "Content-Length": "0"}}, {code: 200, body: "hi"}}, open: true}},
		{"a chunked body ends with the handler's trailers", exchange{
			send: "GET /chunked-trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "one,two", chunked: true, header: map[string]string{"Trailer": ""},
				trailer: map[string]string{"Grpc-Status": "0", "X-Odd": "a  b"}}, {code: 200, body: "hi"}}, open: true}},
		{"CR and LF in a value become spaces, the ends are trimmed", exchange{
			send: "GET /unsafe-value HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"X-Odd": "a  b"}}}, open: true}},
		{"POST body echoed, then next request", exchange{
			send: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "hello"}, {code: 200, body: "hi"}}, open: true}},
		{"unread body is discarded", exchange{
			send: "POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "ignored"}, {code: 200, body: "hi"}}, open: true}},
		{"chunked request body", exchange{
			send: "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			want: []wantResp{{code: 200, body: "abc"}}, open: true}},
		{"100-continue", exchange{
			send: "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
			want: []wantResp{{code: 100}, {code: 200, body: "ok"}}, open: true}},
		{"HTTP/1.0 closes", exchange{
			send: "GET /a HTTP/1.0\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"Connection": "close"}}}}},
		{"HTTP/1.0 keep-alive", exchange{
			send: "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"Connection": "keep-alive"}}}, open: true}},
		{"Connection: close from the client", exchange{
			send: "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			want: []wantResp{{code: 200, body: "hi", header: map[string]string{"Connection": "close"}}}}},
		{"Connection: close from the handler", exchange{
			send: "GET /close HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []wantResp{{code: 200, body: "closing", header: map[string]string{"Connection": "close"}}}}},
		{"malformed request", exchange{
			send: "GET /a HTTP/1.1\r\nHost x\r\n\r\n",
			want: []wantResp{{code: 400}}}},
		{"missing Host", exchange{
			send: "GET /a HTTP/1.1\r\n\r\n",
			want: []wantResp{{code: 400}}}},
		{"head too large", exchange{
			send: "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", http.DefaultMaxHeaderBytes+8192) + "\r\n\r\n",
			want: []wantResp{{code: 431}}}},
		{"aborted response closes without a response", exchange{
			send: "GET /abort HTTP/1.1\r\nHost: x\r\n\r\n"}},
	}
	_, addr := serving(t, testHandler)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialClient(t, addr)
			go io.WriteString(c, tc.send)
			for i, want := range tc.want {
				req := &http.Request{Method: "GET"}
				if want.method != "" {
					req.Method = want.method
				}
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("response %d body: %v", i, err)
				}
				if resp.StatusCode != want.code || (want.code < 300 && string(b) != want.body) {
					t.Errorf("response %d: %d %q, want %d %q", i, resp.StatusCode, b, want.code, want.body)
				}
				if chunked := len(resp.TransferEncoding) > 0; chunked != want.chunked {
					t.Errorf("response %d: chunked %v, want %v", i, chunked, want.chunked)
				}
				if wc := want.header["Connection"]; wc == "close" && !resp.Close {
					t.Errorf("response %d: not marked Connection: close", i)
				}
				for k, v := range want.header {
					if k == "Connection" && v == "close" {
						continue // ReadResponse moves it to resp.Close
					}
					if got := resp.Header.Get(k); got != v {
						t.Errorf("response %d: header %s = %q, want %q", i, k, got, v)
					}
				}
				for k, v := range want.trailer {
					if got := resp.Trailer.Get(k); got != v {
						t.Errorf("response %d: trailer %s = %q, want %q", i, k, got, v)
					}
				}
				if resp.Header.Get("Date") == "" && want.code >= 200 && want.code < 400 {
					t.Errorf("response %d has no Date header", i)
				}
			}
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := br.Read(make([]byte, 1))
			open := n == 0 && err != nil && strings.Contains(err.Error(), "timeout")
			if open != tc.open {
				t.Errorf("connection open afterwards = %v (read %d, %v), want %v", open, n, err, tc.open)
			}
		})
	}
}

func TestLeanServerHandsH2CToHTTP2(t *testing.T) {
	_, addr := serving(t, testHandler)
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: protos, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	resp, err := c.Get("http://" + addr + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(b) != "hi" {
		t.Errorf("got %s %q, want HTTP/2 \"hi\"", resp.Proto, b)
	}
}

func TestLeanServerShutdownClosesIdleConnectionsAtOnce(t *testing.T) {
	m, addr := serving(t, testHandler)
	c, br := dialClient(t, addr)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown waited %v for an idle keep-alive connection", d)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: read err %v, want EOF", err)
	}
}

// BenchmarkLeanServer measures a kept-alive request through the lean server
// to a handler that answers 1 KiB.
func BenchmarkLeanServer(b *testing.B) {
	m := New(Options{})
	defer m.Shutdown(context.Background())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	payload := strings.Repeat("x", 1024)
	l := answering(&testing.T{}, "l", addr, payload)
	m.Apply(&model.Model{Listeners: []*model.Listener{l}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		c.Write(req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
}

// TestLeanServerIdleTimeout: a connection that keeps sending requests,
// each within the idle timeout of the last, stays open for longer than the
// timeout; once it stops, the server closes it.
func TestLeanServerIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	_, addr := servingWith(t, Options{IdleTimeout: idle}, testHandler)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	start := time.Now()
	var idleFrom time.Time // the last response
	for i := 0; time.Since(start) < 3*idle; i++ {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("request %d, %v after the first: %v", i, time.Since(start), err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d, %v after the first: %v (closed while in use?)", i, time.Since(start), err)
		}
		io.Copy(io.Discard, resp.Body)
		idleFrom = time.Now()
		time.Sleep(idle / 3)
	}
	c.SetReadDeadline(time.Now().Add(10 * idle))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want the server to close it (EOF)", n, err)
	}
	if d := time.Since(idleFrom); d < idle-idle/64-50*time.Millisecond {
		t.Errorf("closed after %v idle, before the idle timeout (%v)", d, idle)
	}
}

// TestLeanServerBetweenRequests sends a connection's second request in
// the shapes a client may send it once the first was answered and the
// server waits for the next: whole, with its head or body in pieces,
// malformed, or followed by a third request (or the end of the stream)
// while the second is still being served.
func TestLeanServerBetweenRequests(t *testing.T) {
	hold := make(chan struct{})
	held := make(chan struct{}, 1)
	_, addr := serving(t, func(x *chain.Exchange) {
		if x.R.URL.Path == "/hold" {
			held <- struct{}{}
			<-hold
		}
		testHandler(x)
	})
	// Each step is written after the previous one, a pause apart, so
	// that the server has read what came before (and waits) when it
	// arrives; "" marks the end of the client's stream (half-close).
	tests := []struct {
		name  string
		steps []string
		// whileHeld is written while the server holds the second
		// request (path /hold) in its handler.
		whileHeld string
		want      []wantResp
		open      bool
	}{
		{"whole request",
			[]string{"GET /a HTTP/1.1\r\nHost: two\r\n\r\n"}, "",
			[]wantResp{{code: 200, body: "hi", header: map[string]string{"X-Host": "two"}}}, true},
		{"head in pieces",
			[]string{"GET /a HTTP/1.1\r\nHo", "st: two\r\n", "\r\n"}, "",
			[]wantResp{{code: 200, body: "hi", header: map[string]string{"X-Host": "two"}}}, true},
		{"body after the head",
			[]string{"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe", "llo"}, "",
			[]wantResp{{code: 200, body: "hello"}}, true},
		{"chunked body in pieces",
			[]string{"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "0\r\n\r\n"}, "",
			[]wantResp{{code: 200, body: "abc"}}, true},
		{"malformed",
			[]string{"GET /a HTTP/1.1\r\nHost x\r\n\r\n"}, "",
			[]wantResp{{code: 400}}, false},
		{"third request sent while the second is served",
			[]string{"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"}, "GET /a HTTP/1.1\r\nHost: three\r\n\r\n",
			[]wantResp{{code: 200, body: "hi"}, {code: 200, body: "hi", header: map[string]string{"X-Host": "three"}}}, true},
		{"stream ended while the second is served",
			[]string{"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"}, "",
			[]wantResp{{code: 200, body: "hi"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialClient(t, addr)
			io.WriteString(c, "GET /a HTTP/1.1\r\nHost: one\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("first response: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			for _, s := range tc.steps {
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, s)
			}
			if strings.HasPrefix(tc.steps[0], "GET /hold") {
				<-held
				// The server read the request before it reached the
				// handler; what comes now arrives after that read.
				if tc.whileHeld != "" {
					io.WriteString(c, tc.whileHeld)
				} else {
					c.(*net.TCPConn).CloseWrite()
				}
				time.Sleep(20 * time.Millisecond)
				hold <- struct{}{}
			}
			for i, want := range tc.want {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d after the first: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want.code || (want.code < 300 && string(b) != want.body) {
					t.Errorf("response %d after the first: %d %q, want %d %q", i, resp.StatusCode, b, want.code, want.body)
				}
				for k, v := range want.header {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("response %d after the first: header %s = %q, want %q", i, k, got, v)
					}
				}
			}
			if tc.open {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if n, err := br.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
					t.Errorf("after the answers: read %d, %v; want the connection open and quiet", n, err)
				}
				return
			}
			// The server must close the connection, not wait for more.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := io.Copy(io.Discard, br); err != nil {
				t.Errorf("after the answers: read %d more bytes, then %v; want the server to close the connection", n, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestIdleKeepAliveConnectionMemory measures the heap a keep-alive
// connection holds while it waits for its next request. It keeps its read
// buffer (4 KB) and its per-connection objects, but no write buffer and no
// held-back body: those are taken from pools for a response and given back
// once it is flushed.
func TestIdleKeepAliveConnectionMemory(t *testing.T) {
	_, addr := serving(t, func(x *chain.Exchange) {
		io.WriteString(x.W, strings.Repeat("r", 1000)) // held back: no Content-Length
	})
	const conns = 200
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	buf := make([]byte, 4096)
	cs := make([]net.Conn, 0, conns)
	// The first connection warms the pools and caches up.
	for i := 0; i <= conns; i++ {
		if i == 1 {
			runtime.GC()
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		got := 0
		for got < 1000 || !strings.HasSuffix(string(buf[:got]), "rrr") {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("connection %d: %v after %q", i, err, buf[:got])
			}
			got += n
		}
		if !strings.HasPrefix(string(buf[:got]), "HTTP/1.1 200 OK\r\n") {
			t.Fatalf("connection %d: %q", i, buf[:got])
		}
		cs = append(cs, c)
		if i == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Measure with the connections open, then after they are closed and
	// the server has let go of them.
	open := heap()
	for _, c := range cs[1:] {
		c.Close()
	}
	var closed uint64
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		if closed = heap(); closed < open {
			if open-closed > conns*4<<10 {
				break
			}
		}
	}
	per := (int64(open) - int64(closed)) / conns
	t.Logf("heap per idle keep-alive connection (both ends): %d bytes", per)
	if per < 4<<10 {
		t.Fatalf("heap per idle connection %d bytes: less than its read buffer; the measurement is wrong", per)
	}
	if per > 11<<10 {
		t.Errorf("heap per idle keep-alive connection is %d bytes, want at most 11 KB (read buffer 4 KB, connection objects; no write buffer)", per)
	}
}
