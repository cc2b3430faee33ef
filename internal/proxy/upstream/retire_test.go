package upstream

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestRetiredEndpointClosesTransportConnections: an endpoint that leaves
// the configuration while a request is in flight on one of its
// connections closes that connection once the response is read, over
// HTTP/1.1 (a request for net/http's Transport: a body of unknown length)
// and over HTTP/2.
func TestRetiredEndpointClosesTransportConnections(t *testing.T) {
	for _, protocol := range []Protocol{HTTP1, HTTP2} {
		t.Run(protocol.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var open atomic.Int32
			release := make(chan struct{})
			p := new(http.Protocols)
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			srv := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
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
			defer pools.Close()
			ep := pools.Build([]ClusterSpec{{Name: "c", Protocol: protocol, Endpoints: []EndpointSpec{{Address: addr}}}})["c"].Pick(nil)
			done := make(chan error, 1)
			go func() {
				pr, pw := io.Pipe()
				go func() { pw.Write([]byte("body")); pw.Close() }()
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", pr)
				req.ContentLength = -1
				resp, err := ep.RoundTrip(req)
				if err == nil {
					io.ReadAll(resp.Body)
					err = resp.Body.Close()
				}
				done <- err
			}()
			time.Sleep(100 * time.Millisecond)
			pools.Build(nil) // the endpoint goes while its request is in flight
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(2 * time.Second); open.Load() != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d connection(s) of a removed endpoint still open after its last response", open.Load())
				}
			}
		})
	}
}

// TestRemovedEndpointClosesH2Conn: an endpoint removed while its HTTP/2
// connection carries a stream closes the connection once the stream ends.
func TestRemovedEndpointClosesH2Conn(t *testing.T) {
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
