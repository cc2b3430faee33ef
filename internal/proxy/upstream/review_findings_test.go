package upstream

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// An endpoint removed while its HTTP/2 connection carries a stream: the
// connection is never closed once the stream ends.
func TestReviewRemovedEndpointKeepsH2Conn(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	var open atomic.Int32
	release := make(chan struct{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}), ConnState: func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	pools := NewPools(PoolsOptions{})
	c := pools.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, Endpoints: []EndpointSpec{{Address: addr}}}})["c"]
	ep := c.Pick(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := ep.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}()
	time.Sleep(200 * time.Millisecond)
	pools.Build(nil) // the endpoint goes away while the stream is open
	close(release)
	<-done
	time.Sleep(500 * time.Millisecond)
	pools.Close()
	time.Sleep(100 * time.Millisecond)
	if n := open.Load(); n != 0 {
		t.Errorf("%d connection(s) of a removed endpoint still open", n)
	}
}
