package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// stdServer serves h with net/http's HTTP/2 server, over cleartext with
// prior knowledge, on a loopback port: the reference peer.
func stdServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// leanServer serves h with this package's server on a loopback port.
func leanServer(t *testing.T, h http.HandlerFunc) string { return leanServerB(t, h) }

func leanServerB(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ServeConn(nc, h, ServerOptions{Context: ctx})
			}()
		}
	}()
	return ln.Addr().String()
}

// servers are the servers the client is tested against.
var servers = []struct {
	name  string
	start func(*testing.T, http.HandlerFunc) string
}{{"net/http", stdServer}, {"h2", leanServer}}

func dialClient(t *testing.T, addr string) *ClientConn { return dialClientB(t, addr) }

func dialClientB(t testing.TB, addr string) *ClientConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConn(nc)
	t.Cleanup(func() { cc.Close() })
	return cc
}

func roundTrip(t *testing.T, cc *ClientConn, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if !cc.Reserve() {
		t.Fatal("Reserve refused a stream on a fresh connection")
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip %s %s: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body of %s: %v", req.URL, err)
	}
	return resp, body
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:8]) }

func echoHandler(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "not HTTP/2", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case "/big":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16))
		return
	case "/trailers":
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte("data"))
		w.Header().Set("Grpc-Status", "0")
		return
	case "/slow":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Query", r.URL.RawQuery)
	w.Header().Set("X-Test", r.Header.Get("X-Test"))
	w.Header()["X-Multi"] = []string{"a", "b"}
	fmt.Fprintf(w, "%d %s", len(body), sum(body))
}

func TestClient(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			cc := dialClient(t, srv.start(t, echoHandler))

			req, _ := http.NewRequest(http.MethodGet, "http://reviews.default:9080/path?q=1", nil)
			req.Header.Set("X-Test", "yes")
			resp, body := roundTrip(t, cc, req)
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != "0 "+sum(nil) {
				t.Errorf("GET = %d %s %q", resp.StatusCode, resp.Proto, body)
			}
			for k, want := range map[string]string{"X-Method": "GET", "X-Host": "reviews.default:9080", "X-Query": "q=1", "X-Test": "yes"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if got := resp.Header["X-Multi"]; len(got) != 2 || got[0] != "a" || got[1] != "b" {
				t.Errorf("X-Multi = %q, want [a b]", got)
			}

			// A body larger than HTTP/2's default window of 64 KB, and one of
			// unknown length.
			payload := bytes.Repeat([]byte("x"), 1<<20+7)
			for _, cl := range []int64{int64(len(payload)), -1} {
				req, _ = http.NewRequest(http.MethodPost, "http://reviews.default:9080/", io.NopCloser(bytes.NewReader(payload)))
				req.ContentLength = cl
				_, body = roundTrip(t, cc, req)
				if want := fmt.Sprintf("%d %s", len(payload), sum(payload)); string(body) != want {
					t.Errorf("POST (Content-Length %d) answered %q, want %q", cl, body, want)
				}
			}

			// A response larger than the stream and connection windows the
			// client offers: it must give window back as it reads.
			req, _ = http.NewRequest(http.MethodGet, "http://reviews.default:9080/big", nil)
			resp, body = roundTrip(t, cc, req)
			if want := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16); !bytes.Equal(body, want) {
				t.Errorf("GET /big: %d bytes, want %d", len(body), len(want))
			}
			if resp.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("GET /big Content-Type = %q", resp.Header.Get("Content-Type"))
			}

			req, _ = http.NewRequest(http.MethodGet, "http://reviews.default:9080/trailers", nil)
			resp, body = roundTrip(t, cc, req)
			if string(body) != "data" || resp.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("GET /trailers = %q, trailers %v", body, resp.Trailer)
			}
		})
	}
}

func TestClientConcurrentStreams(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			cc := dialClient(t, srv.start(t, echoHandler))
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 20 {
						payload := []byte(strings.Repeat(fmt.Sprint(g), i*100))
						req, _ := http.NewRequest(http.MethodPost, "http://svc/", bytes.NewReader(payload))
						for !cc.Reserve() {
							time.Sleep(time.Millisecond)
						}
						resp, err := cc.RoundTrip(req)
						if err != nil {
							errs <- err
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if want := fmt.Sprintf("%d %s", len(payload), sum(payload)); err != nil || string(body) != want {
							errs <- fmt.Errorf("goroutine %d request %d: %q, %v; want %q", g, i, body, err, want)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// (A stream is done once its body's last frame went out too,
			// which the goroutine sending it notes a moment later.)
			for deadline := time.Now().Add(2 * time.Second); cc.Active() != 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if n := cc.Active(); n != 0 {
				t.Errorf("%d streams still open after every response was read", n)
			}
		})
	}
}

func TestClientCancelAndClose(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			addr := srv.start(t, echoHandler)
			cc := dialClient(t, addr)

			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/slow", nil)
			cc.Reserve()
			if _, err := cc.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("RoundTrip past its deadline = %v, want DeadlineExceeded", err)
			}
			// The connection goes on serving.
			req, _ = http.NewRequest(http.MethodGet, "http://svc/", nil)
			if resp, _ := roundTrip(t, cc, req); resp.StatusCode != 200 {
				t.Errorf("after a cancelled stream: %d", resp.StatusCode)
			}
			if n := cc.Active(); n != 0 {
				t.Errorf("%d streams open after the cancel", n)
			}

			// A request in flight when the connection closes fails; later ones
			// are refused a stream.
			req, _ = http.NewRequest(http.MethodGet, "http://svc/slow", nil)
			cc.Reserve()
			got := make(chan error, 1)
			go func() { _, err := cc.RoundTrip(req); got <- err }()
			time.Sleep(50 * time.Millisecond)
			cc.Close()
			select {
			case err := <-got:
				if err == nil {
					t.Error("a request in flight succeeded on a closed connection")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a request in flight did not fail when the connection closed")
			}
			<-cc.Done()
			if cc.Reserve() {
				t.Error("Reserve gave a stream on a closed connection")
			}
		})
	}
}

// A response body that does not match its Content-Length ends with an
// error, not io.EOF: a proxy must not pass on a truncated body as whole.
func TestResponseContentLengthChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{{"shorter", "hi"}, {"longer", "hello, world"}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, func(c *conn) {
				writeRaw(c, appendSettings(nil))
				var buf bytes.Buffer
				enc := hpack.NewEncoder(&buf)
				for {
					c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
					h, _, err := c.readFrame()
					if err != nil {
						return
					}
					if h.typ == frameHeaders {
						enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
						enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "5"})
						out := append(appendFrameHeader(nil, buf.Len(), frameHeaders, flagEndHeaders, h.streamID), buf.Bytes()...)
						out = append(appendFrameHeader(out, len(tc.body), frameData, flagEndStream, h.streamID), tc.body...)
						writeRaw(c, out)
					}
				}
			})
			cc := dialClient(t, addr)
			cc.Reserve()
			req, _ := http.NewRequest("GET", "http://x/", nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				return // the body came with the head: the whole response failed
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("read %q of a body whose Content-Length is 5, and no error", b)
			}
		})
	}
}

// A request with a Body and a ContentLength of 0 has a body of unknown
// length (as net/http has it): it is sent, not dropped.
func TestZeroContentLengthMeansUnknown(t *testing.T) {
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	cc := dialClient(t, addr)
	cc.Reserve()
	req, _ := http.NewRequest("POST", "http://x/", io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = 0
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "abc" {
		t.Errorf("the server got %q, want \"abc\"", b)
	}
}
