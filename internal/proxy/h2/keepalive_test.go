package h2

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// SetMaxConcurrentStreams holds the connection below a server that
// allows more: the n+1st reservation is refused until one is given back.
func TestClientMaxConcurrentStreams(t *testing.T) {
	cc := dialClient(t, leanServer(t, echoHandler))
	cc.SetMaxConcurrentStreams(3)
	<-cc.Settled() // the server allows 1000
	for i := range 3 {
		if !cc.Reserve() {
			t.Fatalf("reservation %d refused under the cap of 3", i+1)
		}
	}
	if cc.Reserve() {
		t.Fatal("a fourth stream was reserved over a cap of 3")
	}
	cc.Unreserve()
	if !cc.Reserve() {
		t.Fatal("a stream given back could not be reserved again")
	}
}

// A server that answers PINGs keeps a connection with a keepalive open,
// through many intervals, and requests go on working.
func TestKeepaliveAnswered(t *testing.T) {
	cc := dialClient(t, leanServer(t, echoHandler))
	cc.SetKeepalive(20*time.Millisecond, 200*time.Millisecond)
	<-cc.Settled()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-cc.Done():
		t.Fatal("the connection ended though the server answers PINGs")
	default:
	}
	k := cc.ping.Load()
	k.mu.Lock()
	sent := k.data
	k.mu.Unlock()
	// Each PING after the first goes out only once the one before was
	// answered.
	if sent < 3 {
		t.Fatalf("%d PINGs sent in 300ms at a 20ms interval", sent)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	resp, _ := roundTrip(t, cc, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// A server that announces no stream limit gets the client's own cap, even
// above the default of 100 used until the server's SETTINGS arrive.
func TestClientMaxConcurrentStreamsWithoutServerLimit(t *testing.T) {
	addr := rawServer(t, func(c *conn) {
		writeRaw(c, appendFrameHeader(nil, 0, frameSettings, 0, 0)) // no limit
		for {
			if _, _, err := c.readFrame(); err != nil {
				return
			}
		}
	})
	cc := dialClient(t, addr)
	cc.SetMaxConcurrentStreams(150)
	<-cc.Settled()
	for i := range 150 {
		if !cc.Reserve() {
			t.Fatalf("reservation %d refused under a cap of 150 and no server limit", i+1)
		}
	}
	if cc.Reserve() {
		t.Fatal("a 151st stream was reserved over a cap of 150")
	}
}

// A peer that goes silent (here: it reads and never writes again) is
// found by the keepalive: the connection ends, and a request in flight
// fails saying why.
func TestKeepaliveUnanswered(t *testing.T) {
	pings := make(chan struct{}, 16)
	addr := rawServer(t, func(c *conn) {
		writeRaw(c, appendFrameHeader(nil, 0, frameSettings, 0, 0))
		for {
			h, _, err := c.readFrame()
			if err != nil {
				return
			}
			if h.typ == framePing && h.flags&flagAck == 0 {
				pings <- struct{}{}
			}
		}
	})
	cc := dialClient(t, addr)
	cc.SetKeepalive(30*time.Millisecond, 50*time.Millisecond)
	<-cc.Settled()
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	if !cc.Reserve() {
		t.Fatal("no stream")
	}
	errc := make(chan error, 1)
	go func() {
		_, err := cc.RoundTrip(req)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "no answer to a keepalive PING within 50ms") {
			t.Fatalf("request error %v, want the keepalive's", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request still waits on a peer that answers nothing")
	}
	<-cc.Done()
	if len(pings) == 0 {
		t.Fatal("no PING reached the server")
	}
	if cc.Usable() {
		t.Fatal("the connection still takes streams after it ended")
	}
}
