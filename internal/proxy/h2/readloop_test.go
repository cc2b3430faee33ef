package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The read loop never blocks on a write: with both sides' socket buffers
// full (large bodies each way, some left unread), requests keep
// completing.
func TestReadLoopNeverBlocksOnAWrite(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	big := make([]byte, 1<<20)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		nc.(*net.TCPConn).SetReadBuffer(65536)
		nc.(*net.TCPConn).SetWriteBuffer(65536)
		ServeConn(nc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/read" {
				defer r.Body.Close()
			}
			if r.URL.Path == "/read" {
				io.Copy(io.Discard, r.Body)
			}
			w.Write(big)
		}), ServerOptions{})
	}()
	nc, _ := net.Dial("tcp", ln.Addr().String())
	nc.(*net.TCPConn).SetReadBuffer(65536)
	nc.(*net.TCPConn).SetWriteBuffer(65536)
	cc := NewClientConn(nc)
	defer cc.Close()
	var progress atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if !cc.Reserve() {
					time.Sleep(time.Millisecond)
					continue
				}
				path := "/read"
				if (g+i)%2 == 0 {
					path = "/ignore"
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://x"+path, bytes.NewReader(make([]byte, 2<<20)))
				resp, err := cc.RoundTrip(req)
				if err == nil {
					io.CopyN(io.Discard, resp.Body, int64(i%3)<<18)
					resp.Body.Close()
				}
				progress.Add(1)
			}
		}()
	}
	last, stuck := progress.Load(), 0
	for ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		if p := progress.Load(); p == last {
			stuck++
			if stuck >= 6 {
				buf := make([]byte, 1<<20)
				t.Errorf("no progress for 3s after %d requests; goroutines:\n%s", p, buf[:runtime.Stack(buf, true)])
				cc.Close()
				break
			}
		} else {
			last, stuck = p, 0
		}
	}
	t.Logf("%d requests", progress.Load())
	cancel()
	cc.Close()
	wg.Wait()
}
