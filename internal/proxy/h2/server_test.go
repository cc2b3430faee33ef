package h2

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// stdClient is net/http's HTTP/2 client over cleartext with prior
// knowledge: the reference peer for the server.
func stdClient(t *testing.T) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestServerAgainstNetHTTP(t *testing.T) {
	addr := leanServer(t, echoHandler)
	c := stdClient(t)
	base := "http://" + addr

	req, _ := http.NewRequest(http.MethodGet, base+"/path?q=1", nil)
	req.Host = "reviews.default:9080"
	req.Header.Set("X-Test", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "0 "+sum(nil) {
		t.Errorf("GET = %s %q", resp.Proto, body)
	}
	for k, want := range map[string]string{"X-Method": "GET", "X-Host": "reviews.default:9080", "X-Query": "q=1", "X-Test": "yes", "Content-Length": "18"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := resp.Header["X-Multi"]; len(got) != 2 {
		t.Errorf("X-Multi = %q, want two values", got)
	}

	payload := bytes.Repeat([]byte("y"), 5<<20+3) // more than the stream window
	resp, err = c.Post(base+"/", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %s", len(payload), sum(payload)); string(body) != want {
		t.Errorf("POST answered %q, want %q", body, want)
	}

	resp, err = c.Get(base + "/big")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 10<<20 {
		t.Errorf("GET /big: %d bytes", len(body))
	}

	resp, err = c.Get(base + "/trailers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "data" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("GET /trailers = %q, trailers %v", body, resp.Trailer)
	}

	// Many streams at once on one connection.
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := strings.Repeat("z", g*1000)
			resp, err := c.Post(base+"/", "text/plain", strings.NewReader(payload))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %s", len(payload), sum([]byte(payload))); string(body) != want {
				errs <- fmt.Errorf("stream %d: %q, want %q", g, body, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServerRequestTrailersAndCancel(t *testing.T) {
	cancelled := make(chan error, 1)
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailers":
			io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "checksum=%s", r.Trailer.Get("Checksum"))
		case "/wait":
			w.WriteHeader(http.StatusAccepted)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			cancelled <- r.Context().Err()
		case "/panic":
			panic("boom")
		}
	})
	c := stdClient(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/trailers", pr)
	req.Trailer = http.Header{"Checksum": nil}
	go func() {
		pw.Write([]byte("some body"))
		req.Trailer.Set("Checksum", "abc")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "checksum=abc" {
		t.Errorf("request trailers: %q", body)
	}

	// A client that gives up on a stream resets it: the handler's context
	// ends.
	resp, err = c.Get("http://" + addr + "/wait")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("flushed head: %d", resp.StatusCode)
	}
	resp.Body.Close()
	select {
	case err := <-cancelled:
		if err == nil {
			t.Error("the handler's context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end when the client reset the stream")
	}

	// A handler that panics resets its stream; the connection serves on.
	if _, err := c.Get("http://" + addr + "/panic"); err == nil {
		t.Error("a panicking handler's request succeeded")
	}
	if resp, err := c.Post("http://"+addr+"/trailers", "text/plain", strings.NewReader("x")); err != nil {
		t.Errorf("after a panic: %v", err)
	} else {
		resp.Body.Close()
	}
}

// rawConn is a client that writes frames by hand, to send what a well
// behaved client would not.
type rawConn struct {
	t *testing.T
	conn
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rawConn{t: t}
	rc.init(nc)
	rc.enc = hpack.NewEncoder(&rc.buf)
	rc.write(append([]byte(Preface), appendSettings(nil)...))
	return rc
}

func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) headers(stream uint32, flags uint8, fields ...string) []byte {
	rc.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		rc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append(appendFrameHeader(nil, rc.buf.Len(), frameHeaders, flags|flagEndHeaders, stream), rc.buf.Bytes()...)
}

// expect reads frames until one of type typ on stream, and returns its
// payload.
func (rc *rawConn) expect(typ uint8, stream uint32) []byte {
	rc.t.Helper()
	for {
		h, p, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("waiting for a frame of type %d on stream %d: %v", typ, stream, err)
		}
		if h.typ == typ && h.streamID == stream {
			return append([]byte(nil), p...)
		}
	}
}

var getFields = []string{":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/"}

func TestServerRejectsMalformed(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err == nil {
			io.WriteString(w, "ok")
		}
	})

	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"upper case name", append(getFields, "X-Upper", "v")},
		{"connection header", append(getFields, "connection", "keep-alive")},
		{"no path", []string{":method", "GET", ":scheme", "http", ":authority", "svc"}},
		{"unknown pseudo-header", append(getFields, ":protocol", "x")},
		{"pseudo-header after a field", []string{":method", "GET", "x", "1", ":scheme", "http", ":path", "/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.write(rc.headers(1, flagEndStream, tc.fields...))
			if p := rc.expect(frameRSTStream, 1); ErrCode(binary.BigEndian.Uint32(p)) != ErrCodeProtocol {
				t.Errorf("RST_STREAM %s, want PROTOCOL_ERROR", ErrCode(binary.BigEndian.Uint32(p)))
			}
			// The connection still serves.
			rc.write(rc.headers(3, flagEndStream, getFields...))
			rc.expect(frameHeaders, 3)
		})
	}

	t.Run("DATA on an idle stream", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.write(append(appendFrameHeader(nil, 2, frameData, 0, 5), "hi"...))
		if p := rc.expect(frameGoAway, 0); ErrCode(binary.BigEndian.Uint32(p[4:])) != ErrCodeProtocol {
			t.Errorf("GOAWAY %s, want PROTOCOL_ERROR", ErrCode(binary.BigEndian.Uint32(p[4:])))
		}
	})
	t.Run("body longer than its content-length", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.write(rc.headers(1, 0, append([]string{":method", "POST", ":scheme", "http", ":authority", "svc", ":path", "/"}, "content-length", "1")...))
		rc.write(append(appendFrameHeader(nil, 2, frameData, flagEndStream, 1), "hi"...))
		if p := rc.expect(frameRSTStream, 1); ErrCode(binary.BigEndian.Uint32(p)) != ErrCodeProtocol {
			t.Errorf("RST_STREAM %s, want PROTOCOL_ERROR", ErrCode(binary.BigEndian.Uint32(p)))
		}
	})
	t.Run("not HTTP/2", func(t *testing.T) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		b, _ := io.ReadAll(nc)
		if !bytes.Contains(b, []byte("client preface")) {
			t.Errorf("an HTTP/1.1 request got %q, want a GOAWAY naming the preface", b)
		}
	})
}

func TestServerShutdown(t *testing.T) {
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	addr, served := serveOne(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}, ServerOptions{Context: ctx})
	c := stdClient(t)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	cancel() // GOAWAY; the stream in flight finishes
	time.Sleep(50 * time.Millisecond)
	close(release)
	select {
	case b := <-got:
		if b != "done" {
			t.Errorf("the request in flight at shutdown got %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight at shutdown did not finish")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeConn after shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after shutdown")
	}
}

func TestServerIdleTimeout(t *testing.T) {
	addr, served := serveOne(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // longer than the idle timeout
		io.WriteString(w, "ok")
	}, ServerOptions{IdleTimeout: 100 * time.Millisecond})
	rc := dialRaw(t, addr)
	rc.write(rc.headers(1, flagEndStream, getFields...))
	// A stream in flight keeps the connection; once it is done, the
	// connection ends after the idle timeout, with GOAWAY.
	rc.expect(frameData, 1)
	if p := rc.expect(frameGoAway, 0); binary.BigEndian.Uint32(p) != 1 || ErrCode(binary.BigEndian.Uint32(p[4:])) != ErrCodeNo {
		t.Errorf("GOAWAY last stream %d, %s; want 1, NO_ERROR", binary.BigEndian.Uint32(p), ErrCode(binary.BigEndian.Uint32(p[4:])))
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeConn after its idle timeout = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not end after its idle timeout")
	}
}

// serveOne serves the first connection to a loopback port with ServeConn;
// what ServeConn returns arrives on served.
func serveOne(t *testing.T, h http.HandlerFunc, o ServerOptions) (addr string, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			out <- err
			return
		}
		out <- ServeConn(nc, h, o)
	}()
	return ln.Addr().String(), out
}

// TestStreamContextAfterFunc: context.AfterFunc and WithCancel on a
// request's context run and end with it, and stop as they should.
func TestStreamContextAfterFunc(t *testing.T) {
	c := &streamContext{parent: context.Background()}
	ran := make(chan string, 3)
	context.AfterFunc(c, func() { ran <- "a" })
	stopB := context.AfterFunc(c, func() { ran <- "b" })
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	if !stopB() {
		t.Error("stopping an AfterFunc before the end returned false")
	}
	c.cancel()
	select {
	case got := <-ran:
		if got != "a" {
			t.Errorf("ran %q, want a", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc did not run when the stream's context ended")
	}
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context derived with WithCancel did not end with the stream's")
	}
	select {
	case got := <-ran:
		t.Errorf("a stopped AfterFunc ran: %q", got)
	case <-time.After(50 * time.Millisecond):
	}
	context.AfterFunc(c, func() { ran <- "late" }) // after the end: runs at once
	if got := <-ran; got != "late" {
		t.Errorf("ran %q, want late", got)
	}
}

// requestURL must make what url.ParseRequestURI makes.
func TestRequestURL(t *testing.T) {
	for _, p := range []string{"/", "/a/b", "/a?b=c&d", "/a?", "/?", "//host/x", "/a%20b?c=%41", "/a#frag", "/a?b#c", "/a;b?c;d", "/a??b"} {
		want, werr := url.ParseRequestURI(p)
		var dst url.URL
		got, gerr := requestURL(&dst, p)
		if (werr != nil) != (gerr != nil) || werr == nil && *got != *want {
			t.Errorf("requestURL(%q) = %#v, %v; url.ParseRequestURI: %#v, %v", p, got, gerr, want, werr)
		}
	}
}
