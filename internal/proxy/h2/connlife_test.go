package h2

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// sendNow waits for a writer's yield but not for its write, which may
// block on a peer that does not read: such a peer must not pin the read
// loop (client) or ServeConn (server).
func TestSendNowDoesNotWaitForABlockedWrite(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: a write on a blocks until closed
	defer b.Close()
	var c conn
	c.init(a)
	locked := make(chan struct{})
	go func() { // a writer (RoundTrip, a handler's Write)
		c.wmu.Lock()
		close(locked)
		time.Sleep(50 * time.Millisecond) // sendNow queues on wmu
		c.pending = append(c.pending, "frame"...)
		c.flushSoonLocked() // yields: sendNow takes wmu, sees yielding
		c.wmu.Unlock()
	}()
	<-locked
	done := make(chan struct{})
	go func() { // the read loop's GOAWAY after a connection error
		c.sendNow(func(p []byte) []byte { return append(p, "goaway"...) })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("sendNow still blocked 2s after the yielding writer started its (blocked) write: the read loop never closes the connection")
		a.Close() // unblock the write so the goroutines end
		<-done
	}
	a.Close()
}

// A body kept from a stream's earlier use, read while the stream is
// reset for its next use, never enters the new one (the race detector
// watches the use word; it reported the reset's plain write before).
func TestStaleBodyVersusReuse(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	reviewReserve(t, cc)
	req, _ := http.NewRequest("GET", "http://x/e/first", nil)
	r1, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r1.Body)
	r1.Body.Close()
	cs1 := r1.Body.(*clientBody).cs
	// First let the stream serve a second request (generation 1), so that
	// the kept body (generation 0) no longer holds it off.
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("the stream was not reused in 50 requests")
		}
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://x/e/warm%d", i), nil)
		r, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(r.Body)
		r.Body.Close()
		if r.Body.(*clientBody).cs == cs1 {
			break
		}
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // someone who kept the first body
		defer wg.Done()
		buf := make([]byte, 64)
		for !stop.Load() {
			if n, err := r1.Body.Read(buf); n > 0 || err != errBodyClosed {
				bad.Add(1)
			}
		}
	}()
	reused := 0
	for i := range 300 {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://x/e/n%d", i), nil)
		r, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.Body.(*clientBody).cs == cs1 {
			reused++
		}
		io.ReadAll(r.Body)
		r.Body.Close()
	}
	stop.Store(true)
	wg.Wait()
	if reused == 0 {
		t.Fatal("the stream was not reused in 300 requests")
	}
	if n := bad.Load(); n > 0 {
		t.Errorf("a closed body's Read got into a later use %d times", n)
	}
}

// A connection retired while a reservation is outstanding closes when the
// reservation goes back unused (RoundTrip's path for a request it cannot
// encode).
func TestRetireThenUnreserveCloses(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	<-cc.Settled()
	reviewReserve(t, cc)
	cc.Retire()
	req, _ := http.NewRequest("GET", "http://x/e/bad", nil)
	req.Header["Bad Name"] = []string{"x"} // requestFields fails: Unreserve
	if _, err := cc.RoundTrip(req); err == nil {
		t.Fatal("want an error for an invalid header name")
	}
	select {
	case <-cc.Done():
	case <-time.After(2 * time.Second):
		t.Error("retired connection with no stream and no reservation still open after 2s")
	}
}

// DATA on a response without content (HEAD here) aborts the stream and
// gives its bytes back to the connection's receive window, which would
// otherwise shrink with every such response until no DATA could come.
func TestNoContentDataGivesWindowBack(t *testing.T) {
	const n, size = 5, 1000
	addr := rawServer(t, func(c *conn) {
		writeRaw(c, appendSettings(nil))
		for {
			h, _, err := c.readFrame()
			if err != nil {
				return
			}
			if h.typ != frameHeaders {
				continue
			}
			c.wmu.Lock()
			c.appendHeaders(h.streamID, []hpack.HeaderField{{Name: ":status", Value: "200"}}, false)
			c.pending = appendFrameHeader(c.pending, size, frameData, flagEndStream, h.streamID)
			c.pending = append(c.pending, make([]byte, size)...)
			c.flushLocked()
			c.wmu.Unlock()
		}
	})
	cc := dialClient(t, addr)
	<-cc.Settled()
	for i := range n {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("HEAD", fmt.Sprintf("http://x/%d", i), nil)
		if resp, err := cc.RoundTrip(req); err == nil {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	time.Sleep(100 * time.Millisecond) // the read loop is done with the frames
	cc.wmu.Lock()
	avail := cc.recvWin.Load() + int64(cc.consumed)
	cc.wmu.Unlock()
	if leaked := connWindow - avail; leaked != 0 {
		t.Errorf("connection receive window short by %d bytes after %d HEAD responses with %d bytes of DATA each", leaked, n, size)
	}
}
