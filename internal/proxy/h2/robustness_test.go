package h2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// rawServer accepts one connection and hands a conn (preface read) to f.
func rawServer(t *testing.T, f func(c *conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c := &conn{}
		c.init(nc)
		if err := c.readPreface(); err != nil {
			return
		}
		f(c)
	}()
	return ln.Addr().String()
}

func writeRaw(c *conn, b []byte) { c.nc.Write(b) }

// A SETTINGS_INITIAL_WINDOW_SIZE decrease may make a stream's send window
// negative (RFC 9113, 6.9.2): the sender waits for WINDOW_UPDATE rather
// than failing.
func TestNegativeSendWindowWaits(t *testing.T) {
	addr := rawServer(t, func(c *conn) {
		writeRaw(c, appendSettings(nil, settingInitialWindowSize, 10))
		got := 0
		for {
			h, p, err := c.readFrame()
			if err != nil {
				return
			}
			if h.typ == frameData {
				got += len(p)
				if got >= 10 {
					writeRaw(c, appendSettings(nil, settingInitialWindowSize, 0))
				}
			}
		}
	})
	cc := dialClient(t, addr)
	time.Sleep(100 * time.Millisecond) // SETTINGS applied
	cc.Reserve()
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		req, _ := http.NewRequest("POST", "http://x/", bytes.NewReader(make([]byte, 100)))
		cc.RoundTrip(req)
	}()
	select {
	case p := <-panicked:
		if p != nil {
			t.Fatalf("RoundTrip panicked: %v", p)
		}
	case <-time.After(300 * time.Millisecond):
		// Waiting for window, as it should.
	}
	locked := make(chan bool, 1)
	go func() {
		ok := cc.wmu.TryLock()
		if ok {
			cc.wmu.Unlock()
		}
		locked <- !ok
	}()
	if <-locked {
		t.Errorf("wmu held while the stream waits for window: the connection is wedged")
	}
}

// A pipe whose reader keeps up holds what is unread, not the whole
// stream.
func TestPipeDropsWhatWasRead(t *testing.T) {
	var p pipe
	p.init()
	chunk := make([]byte, 16<<10)
	rb := make([]byte, 16<<10)
	p.write(chunk)
	p.write(chunk)
	for i := 0; i < 6000; i++ { // ~100 MB through, never more than 32 KB unread
		p.write(chunk)
		p.read(rb)
	}
	t.Logf("unread %d bytes, buffer len %d, cap %d", len(p.buf)-p.r, len(p.buf), cap(p.buf))
	if cap(p.buf) > 1<<20 {
		t.Errorf("pipe holds %d MB for %d KB unread", cap(p.buf)>>20, (len(p.buf)-p.r)>>10)
	}
}

// A server may answer before it has read the whole body, and reset the
// rest with NO_ERROR: the client keeps the response.
func TestEarlyResponseStands(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	req, _ := http.NewRequest("POST", "http://x/", bytes.NewReader(make([]byte, 20<<20)))
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Errorf("RoundTrip lost the 413 response: %v", err)
		return
	}
	resp.Body.Close()
}

// RoundTrip returns with the response head while the request body is
// still being sent (a bidirectional stream, as gRPC's).
func TestFullDuplexStream(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 100)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	pr, pw := io.Pipe()
	go pw.Write([]byte("ping")) // the client waits for "ping" back before it ends
	req, _ := http.NewRequest("POST", "http://x/", pr)
	req.ContentLength = -1
	done := make(chan error, 1)
	go func() {
		resp, err := cc.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("RoundTrip returned %v", err)
	case <-time.After(2 * time.Second):
		t.Errorf("RoundTrip did not return the response head while the request body streams")
		pw.Close()
	}
}

// A handler that returns without reading the request body gives its
// connection window back: later uploads on the connection do not stall.
func TestUnreadBodyGivesWindowBack(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/drop" {
			r.Body.Read(make([]byte, 1))
			time.Sleep(200 * time.Millisecond) // let the body arrive
			w.WriteHeader(503)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("x", 0)+string(rune('0'+n%10)))
	})
	c := stdClient(t)
	c.Timeout = 3 * time.Second
	for i := 0; i < 6; i++ {
		resp, err := c.Post("http://"+addr+"/drop", "x", bytes.NewReader(make([]byte, 4<<20)))
		if err != nil {
			t.Logf("drop %d: %v", i, err)
			continue
		}
		resp.Body.Close()
	}
	resp, err := c.Post("http://"+addr+"/ok", "x", bytes.NewReader(make([]byte, 1<<20)))
	if err != nil {
		t.Errorf("a 1 MB upload after 6 dropped bodies: %v", err)
		return
	}
	resp.Body.Close()
}

// RoundTrip waiting for the send window ends with its context.
func TestCancelWhileSendingBody(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://x/", bytes.NewReader(make([]byte, 8<<20)))
	done := make(chan error, 1)
	go func() { _, err := cc.RoundTrip(req); done <- err }()
	select {
	case err := <-done:
		t.Logf("returned: %v", err)
	case <-time.After(3 * time.Second):
		t.Errorf("RoundTrip still blocked 3s after its context ended")
		cc.Close()
	}
}

// A response body's Read ends with the request's context.
func TestBodyReadEndsWithContext(t *testing.T) {
	var handlerCtxEnded atomic.Bool
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		handlerCtxEnded.Store(true)
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { _, err := resp.Body.Read(make([]byte, 10)); done <- err }()
	select {
	case err := <-done:
		t.Logf("Read: %v", err)
	case <-time.After(2 * time.Second):
		t.Errorf("body Read blocked 2s after the request's context ended (handler ctx ended: %v)", handlerCtxEnded.Load())
		resp.Body.Close()
	}
}

// A malformed response head fails the stream and resets it with
// RST_STREAM.
func TestMalformedResponseHeadIsReset(t *testing.T) {
	gotRST := make(chan bool, 1)
	addr := rawServer(t, func(c *conn) {
		writeRaw(c, appendSettings(nil))
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for {
			c.nc.SetReadDeadline(time.Now().Add(time.Second))
			h, _, err := c.readFrame()
			if err != nil {
				gotRST <- false
				return
			}
			if h.typ == frameHeaders {
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "2000"})
				writeRaw(c, append(appendFrameHeader(nil, buf.Len(), frameHeaders, flagEndHeaders, h.streamID), buf.Bytes()...))
			}
			if h.typ == frameRSTStream {
				gotRST <- true
				return
			}
		}
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	req, _ := http.NewRequest("GET", "http://x/", nil)
	_, err := cc.RoundTrip(req)
	t.Logf("RoundTrip: %v", err)
	if !<-gotRST {
		t.Errorf("no RST_STREAM after a malformed response head: the server's stream stays open")
	}
}

// HEADERS (trailers) on a stream the server has reset are ignored: the
// connection and its other streams go on.
func TestHeadersOnResetStreamIgnored(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
			io.WriteString(w, "slow done")
			return
		}
		w.WriteHeader(400) // answers without reading: RST_STREAM(NO_ERROR)
	})
	rc := dialRaw(t, addr)
	rc.write(rc.headers(1, flagEndStream, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/slow"))
	rc.write(rc.headers(3, 0, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/"))
	rc.expect(frameRSTStream, 3)
	rc.write(rc.headers(3, flagEndStream, "grpc-status", "0")) // trailers crossing the reset
	for {
		h, p, err := rc.readFrame()
		if err != nil {
			t.Errorf("connection ended before stream 1 answered: %v", err)
			return
		}
		if h.typ == frameGoAway {
			t.Errorf("GOAWAY %s: stream 1 killed", ErrCode(binary.BigEndian.Uint32(p[4:])))
			return
		}
		if h.typ == frameData && h.streamID == 1 {
			return
		}
	}
}

// CR and LF in :method and :authority never reach the handler.
func TestPseudoHeaderValuesChecked(t *testing.T) {
	got := make(chan *http.Request, 1)
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) { got <- r })
	rc := dialRaw(t, addr)
	rc.write(rc.headers(1, flagEndStream, ":method", "GET / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET", ":scheme", "http", ":authority", "a\r\nX-Evil: 1", ":path", "/", "x-v", "a\x00b"))
	select {
	case r := <-got:
		t.Errorf("accepted: method %q host %q x-v %q", r.Method, r.Host, r.Header.Get("X-V"))
	case <-time.After(300 * time.Millisecond):
	}
	if p := rc.expect(frameRSTStream, 1); ErrCode(binary.BigEndian.Uint32(p)) != ErrCodeProtocol {
		t.Errorf("RST_STREAM %s, want PROTOCOL_ERROR", ErrCode(binary.BigEndian.Uint32(p)))
	}
	for _, f := range [][]string{
		{":method", "GET", ":scheme", "http", ":authority", "a\r\nX-Evil: 1", ":path", "/"},
		{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/ HTTP/1.1"},
		{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "x-v", "a\x00b"},
	} {
		rc := dialRaw(t, addr)
		rc.write(rc.headers(1, flagEndStream, f...))
		rc.expect(frameRSTStream, 1)
	}
}

// Handlers of streams the client reset count against
// MaxConcurrentStreams (rapid reset cannot run handlers without bound).
func TestRapidResetBounded(t *testing.T) {
	var running, peak atomic.Int64
	release := make(chan struct{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		nc, _ := ln.Accept()
		ServeConn(nc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release // a handler busy upstream, slow to notice its context
			running.Add(-1)
		}), ServerOptions{MaxConcurrentStreams: 10})
	}()
	defer close(release)
	rc := dialRaw(t, ln.Addr().String())
	for id := uint32(1); id < 4000; id += 2 {
		rc.write(append(rc.headers(id, flagEndStream, getFields...), appendRSTStream(nil, id, ErrCodeCancel)...))
	}
	time.Sleep(500 * time.Millisecond)
	if peak.Load() > 10 {
		t.Errorf("%d handlers at once with MaxConcurrentStreams 10", peak.Load())
	}
}

var _ = errors.New

// A streaming echo of a body larger than two stream windows completes:
// the client reads the response while it sends the body.
func TestStreamingEcho(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	cc := dialClient(t, addr)
	cc.Reserve()
	req, _ := http.NewRequest("POST", "http://x/", bytes.NewReader(make([]byte, 20<<20)))
	done := make(chan error, 1)
	go func() {
		resp, err := cc.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("RoundTrip: %v", err)
	case <-time.After(3 * time.Second):
		t.Errorf("20 MB streaming echo deadlocked")
		cc.Close()
	}
}

// A peer that sends PINGs and reads nothing fails its connection once
// the answers queued for it pass a bound, instead of growing the heap.
func TestPingFloodFailsConnection(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 8<<20)) // blocks in Write: the client never reads
	})
	nc, _ := net.Dial("tcp", addr)
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	var enc bytes.Buffer
	e := hpack.NewEncoder(&enc)
	for i := 0; i+1 < len(getFields); i += 2 {
		e.WriteField(hpack.HeaderField{Name: getFields[i], Value: getFields[i+1]})
	}
	out := append([]byte(Preface), appendSettings(nil, settingInitialWindowSize, maxWindow)...)
	out = appendWindowUpdate(out, 0, maxWindow-defaultWindow)
	out = append(appendFrameHeader(out, enc.Len(), frameHeaders, flagEndHeaders|flagEndStream, 1), enc.Bytes()...)
	nc.Write(out)
	time.Sleep(200 * time.Millisecond)
	var ms0, ms1 runtimeMem
	ms0.read()
	ping := append(appendFrameHeader(nil, 8, framePing, 0, 0), make([]byte, 8)...)
	batch := bytes.Repeat(ping, 10000)
	for i := 0; i < 300; i++ { // 3M PINGs, 51 MB
		nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := nc.Write(batch); err != nil {
			t.Logf("write stopped after %d batches: %v", i, err)
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	ms1.read()
	if grew := (int64(ms1.HeapInuse) - int64(ms0.HeapInuse)) >> 20; grew > 16 {
		t.Errorf("server heap grew by %d MB while the client sent PINGs and read nothing", grew)
	}
}

// END_STREAM is recorded before the body's reader can see the end (a
// data race the race detector caught).
func TestEndStreamBeforeReaderSeesEnd(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hi"))
		w.(http.Flusher).Flush()
		r.Body.Read(make([]byte, 100))
	})
	cc := dialClient(t, addr)
	for i := 0; i < 500; i++ {
		cc.Reserve()
		req, _ := http.NewRequest("POST", "http://x/", struct{ io.Reader }{bytes.NewReader(make([]byte, 10))})
		req.ContentLength = 10
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hi" {
			t.Fatalf("request %d: body %q, want \"hi\"", i, b)
		}
	}
}

type runtimeMem struct{ runtime.MemStats }

func (m *runtimeMem) read() { runtime.GC(); runtime.ReadMemStats(&m.MemStats) }
