package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lifeServer is a backend that counts the connections it accepted and
// those that have closed.
func lifeServer(t *testing.T, h http.HandlerFunc) (addr string, opened, closed *atomic.Int32) {
	t.Helper()
	opened, closed = new(atomic.Int32), new(atomic.Int32)
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), opened, closed
}

// sendOK sends a request through ep, with a body of unknown length (the
// Transport's path) when stream is set, and wants a 200.
func sendOK(t *testing.T, ep *Endpoint, stream bool) {
	t.Helper()
	var code int
	var err error
	if stream {
		code, err = postStream(context.Background(), ep, "/")
	} else {
		code, _, err = get(t, ep, "GET", "/", nil)
	}
	if err != nil || code != http.StatusOK {
		t.Fatalf("request: %d, %v", code, err)
	}
}

// MaxConnectionDuration closes an upstream HTTP/1.1 connection at its age:
// an idle one then, one carrying a request once the request has ended
// (which it does whole). Both the lean pool's connections and the
// Transport's (bodies of unknown length) are held to it.
func TestMaxConnectionDurationHTTP1(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream bool // a body of unknown length: the Transport's path
	}{{"lean pool", false}, {"transport", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var slow atomic.Bool
			addr, opened, closed := lifeServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if slow.Load() {
					time.Sleep(300 * time.Millisecond)
				}
				io.WriteString(w, "ok")
			})
			p := NewPools(PoolsOptions{})
			t.Cleanup(p.Close)
			ep := p.Build([]ClusterSpec{{Name: "c", MaxConnectionDuration: 100 * time.Millisecond,
				Endpoints: []EndpointSpec{{Address: addr}}}})["c"].Pick(nil)
			send := func() { sendOK(t, ep, tc.stream) }
			send()
			waitUntil(t, func() bool { return closed.Load() == 1 }, "the idle connection to close at its maximum duration")
			if opened.Load() != 1 {
				t.Fatalf("%d connections for one request", opened.Load())
			}
			// A request that outlives the connection's age ends whole, and
			// the connection closes after it.
			slow.Store(true)
			send()
			waitUntil(t, func() bool { return closed.Load() == 2 }, "the connection to close once its request ended")
			if opened.Load() != 2 {
				t.Fatalf("%d connections for two requests, want 2", opened.Load())
			}
		})
	}
}

// Without MaxConnectionDuration, an idle connection stays open (until the
// idle timeout, an hour by default).
func TestNoMaxConnectionDuration(t *testing.T) {
	addr, opened, closed := lifeServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ep := endpointFor(t, addr, PoolsOptions{})
	get(t, ep, "GET", "/", nil)
	time.Sleep(200 * time.Millisecond)
	get(t, ep, "GET", "/", nil)
	if opened.Load() != 1 || closed.Load() != 0 {
		t.Fatalf("%d connections opened, %d closed; want 1, 0", opened.Load(), closed.Load())
	}
}

// An HTTP/2 connection reaches its maximum duration too: the next request
// goes over a new one.
func TestMaxConnectionDurationHTTP2(t *testing.T) {
	addr := protoServer(t)
	for _, tc := range []struct {
		age       time.Duration
		wantConns uint64
	}{{100 * time.Millisecond, 2}, {0, 1}} {
		pools := NewPools(PoolsOptions{})
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, MaxConnectionDuration: tc.age,
			Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
		if got := protoOf(t, c.Pick(nil), addr, 0); got != "HTTP/2.0" {
			t.Fatalf("request went over %s", got)
		}
		time.Sleep(300 * time.Millisecond)
		protoOf(t, c.Pick(nil), addr, 0)
		if n := c.Stats().Snapshot().CxHTTP2; n != tc.wantConns {
			t.Errorf("max connection duration %v, two requests 300ms apart: %d HTTP/2 connections, want %d", tc.age, n, tc.wantConns)
		}
		pools.Close()
	}
}

// HTTP2.MaxConcurrentStreams holds each connection to that many requests
// at once: more in flight open more connections.
func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	var release atomic.Pointer[chan struct{}]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	var inside sync.WaitGroup
	srv := &http.Server{Protocols: protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside.Done()
		<-*release.Load()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, tc := range []struct {
		max       uint32
		wantConns uint64
	}{{1, 3}, {2, 2}, {0, 1}} {
		pools := NewPools(PoolsOptions{})
		c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, HTTP2: HTTP2Options{MaxConcurrentStreams: tc.max},
			Endpoints: []EndpointSpec{{Address: ln.Addr().String()}}}})["c"]
		ch := make(chan struct{})
		release.Store(&ch)
		inside.Add(3)
		var done sync.WaitGroup
		for range 3 {
			done.Add(1)
			go func() {
				defer done.Done()
				req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
				if resp, err := c.Pick(nil).RoundTrip(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					t.Error(err)
				}
			}()
		}
		inside.Wait() // all three are at the server at once
		close(ch)
		done.Wait()
		if n := c.Stats().Snapshot().CxHTTP2; n != tc.wantConns {
			t.Errorf("max concurrent streams %d, three requests at once: %d connections, want %d", tc.max, n, tc.wantConns)
		}
		pools.Close()
	}
}

// Once an aged connection has closed, the connections after it are kept
// alive as usual: requests one after another share the new one.
func TestMaxConnectionDurationKeepsLaterConnections(t *testing.T) {
	for _, stream := range []bool{false, true} {
		addr, opened, closed := lifeServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		})
		p := NewPools(PoolsOptions{})
		ep := p.Build([]ClusterSpec{{Name: "c", MaxConnectionDuration: time.Second,
			Endpoints: []EndpointSpec{{Address: addr}}}})["c"].Pick(nil)
		send := func() { sendOK(t, ep, stream) }
		send()
		waitUntil(t, func() bool { return closed.Load() == 1 }, "the first connection to close at its age")
		for range 5 {
			send()
		}
		if n := opened.Load(); n != 2 {
			t.Errorf("stream %v: 1 request, its connection's age, then 5 more one after another: %d connections, want 2", stream, n)
		}
		p.Close()
	}
}
